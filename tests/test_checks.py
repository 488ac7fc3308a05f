"""Task-level checks: E2E slot realisation and WebNLG/DART entity coverage on hand-written outputs with known
answers, delexicalisation round trips, and the per-example table on the mirror's data."""

from __future__ import annotations

import pytest

from spdf_lib.data.tasks import Example, linearise_mr
from spdf_lib.spdf.checks import (
    BLEU_STATS,
    check_name,
    corpus_checks,
    covered,
    e2e_slots,
    entities,
    example_table,
    slot_realised,
)
from spdf_lib.spdf.delex import DELEX_SLOTS, added_slots, delexicalise, relexicalise
from spdf_lib.stats import bleu_from_stats

MR = ("name[Blue Spice], eatType[coffee shop], food[Italian], priceRange[less than £20], customer rating[low], "
      "area[riverside], familyFriendly[no], near[Avalon]")


def test_a_faithful_output_realises_every_slot():
    out = ("Blue Spice is a cheap Italian coffee shop by the river near Avalon. It has a low customer rating and "
           "is not family-friendly.")
    assert e2e_slots(MR, out) == dict.fromkeys(
        ["name", "eatType", "food", "priceRange", "customer rating", "area", "familyFriendly", "near"], True)


def test_paraphrases_count_as_realised():
    assert slot_realised("priceRange", "less than £20", "meals under £20")
    assert slot_realised("priceRange", "more than £30", "it is not cheap")
    assert slot_realised("priceRange", "£20-25", "prices from £20-25")
    assert slot_realised("customer rating", "5 out of 5", "a five star place")
    assert slot_realised("customer rating", "high", "it is highly rated")
    assert slot_realised("customer rating", "3 out of 5", "rated 3 out of 5 by customers")
    assert slot_realised("area", "city centre", "in the center of the city")
    assert slot_realised("eatType", "coffee shop", "a small café")
    assert slot_realised("familyFriendly", "yes", "it welcomes children")
    assert slot_realised("familyFriendly", "yes", "a kid-friendly pub")
    assert slot_realised("familyFriendly", "no", "it isn't family friendly")
    assert slot_realised("familyFriendly", "no", "adults only")
    assert slot_realised("food", "English", "British food")


def test_wrong_and_missing_values_are_not_realised():
    wrong = "Fitzbillies is an expensive Chinese restaurant in the city centre. It is family friendly."
    got = e2e_slots(MR, wrong)
    assert not any(got.values()), got  # wrong name, type, food, price, area, family; rating and near missing
    # the negation decides familyFriendly: "not family friendly" is a no, never a yes
    assert not slot_realised("familyFriendly", "yes", "it is not family friendly")
    assert not slot_realised("priceRange", "cheap", "it is not cheap")
    # a second, contradicting value of the same slot: not realised (overlapping wordings are no contradiction)
    assert not slot_realised("priceRange", "cheap", "a cheap place in the high price range")
    assert slot_realised("priceRange", "less than £20", "a cheap place, under £20")
    assert not slot_realised("customer rating", "high", "highly rated, with a customer rating of 1 out of 5")
    assert not slot_realised("area", "riverside", "by the riverside in the city centre")
    # the names of the place and its landmark are not wordings of other slots
    assert e2e_slots("name[Zizzi], food[Italian], near[Raja Indian Cuisine]", "Zizzi serves Italian food near "
                     "Raja Indian Cuisine.") == {"name": True, "food": True, "near": True}
    assert e2e_slots("name[Zizzi], eatType[pub], near[Café Rouge]", "Zizzi is a pub near Café Rouge.")["eatType"]
    # names must be there verbatim and whole
    assert not slot_realised("name", "The Mill", "the Millstone pub")
    assert slot_realised("name", "The Mill", "the mill is a pub")  # case-insensitive, as the E2E scripts


def test_human_references_realise_most_slots(mirror):
    """A sanity check of the patterns on the data: E2E references are known to omit some values (Dušek et al.
    2019 found omissions in about 40% of them), but the large majority is realised."""
    from spdf_lib.data.tasks import load_split

    examples = load_split("e2e", "test")[:120]
    table = example_table("e2e", examples, [e.references[0] for e in examples])
    checks = corpus_checks(table)
    assert checks["name_realisation"] > 97 and checks["slot_realisation"] > 85
    assert 0.5 < checks["len_ratio"] < 1.5


def test_entity_coverage_reads_subjects_and_objects():
    source = ('Aarhus Airport | cityServed | Aarhus, Denmark ; Aarhus Airport | runwayName | "10L/28R" ; '
              '[TABLECONTEXT] | [TITLE] | Foo')
    assert entities(source) == ["aarhus airport", "aarhus, denmark", "10l/28r", "foo"]
    assert covered("aarhus airport", "Aarhus_Airport serves the city")  # underscores as spaces
    assert not covered("aarhus", "Aarhusian food")  # whole words only
    ex = Example("t/0", source, ("Aarhus Airport serves Aarhus, Denmark; its runway is 10L/28R.",), {})
    table = example_table("webnlg", [ex, ex], ["Aarhus Airport has runway 10L/28R.", "An airport."])
    assert table["entities_total"].tolist() == [4, 4] and table["entities_covered"].tolist() == [2, 0]
    assert corpus_checks(table)["entity_coverage"] == pytest.approx(25.0)


def test_bleu_statistics_sum_to_sacrebleus_corpus_bleu(mirror):
    from sacrebleu.metrics import BLEU

    from spdf_lib.data.tasks import load_split

    examples = load_split("webnlg", "test")[:60]
    hyps = [e.references[-1][: 20 + i] for i, e in enumerate(examples)]  # partial, differently long outputs
    refs = [list(e.references) for e in examples]
    table = example_table("webnlg", examples, hyps)
    ours = float(bleu_from_stats(table[BLEU_STATS].to_numpy().sum(0)))
    streams = [[r[j] if j < len(r) else None for r in refs] for j in range(max(map(len, refs)))]
    assert ours == pytest.approx(BLEU().corpus_score(hyps, streams).score, abs=1e-9)
    assert bleu_from_stats(table[BLEU_STATS].to_numpy()[:0].sum(0)) == 0.0  # no output at all: 0, not an error


def test_delexicalisation_round_trip():
    refs = ("Blue Spice is near Avalon.", "Near avalon, you find BLUE SPICE, a coffee shop.")
    ex = Example("e2e/0", linearise_mr(MR), refs, {"mr": MR})
    d = delexicalise(ex, ["name", "near"])
    assert d.source.startswith("name[X-name] | eatType[coffee shop]") and d.source.endswith("near[X-near]")
    assert d.references == ("X-name is near X-near.", "Near X-near, you find X-name, a coffee shop.")
    assert relexicalise("X-name is a coffee shop near X-near.", d) == "Blue Spice is a coffee shop near Avalon."
    no_near = Example("e2e/1", "name[Zizzi]", ("Zizzi.",), {"mr": "name[Zizzi]"})
    assert relexicalise("X-name near X-near", delexicalise(no_near)) == "Zizzi near X-near"  # stays an error
    with pytest.raises(ValueError, match="cannot delexicalise"):
        delexicalise(ex, ["area"])


def test_the_check_of_delexicalised_e2e_counts_only_the_slots_left_in_words():
    """Validation (`val_check`) and the report read the same check: with name/near delexicalised, an output that
    writes both placeholders but gets area wrong and omits the rest realises 0 of the 6 slots left in words."""
    ex = Example("e2e/0", linearise_mr(MR), ("ref",), {"mr": MR})
    table = example_table("e2e", [ex], ["Blue Spice is near Avalon in the city centre."], ["name", "near"])
    checks = corpus_checks(table)
    assert check_name("e2e", ["name", "near"]) == "lex_slot_realisation" and checks["lex_slot_realisation"] == 0.0
    assert check_name("e2e") == "slot_realisation" and checks["slot_realisation"] == pytest.approx(100 * 2 / 8)
    assert check_name("webnlg", ["name"]) == check_name("dart") == "entity_coverage"


def test_a_placeholder_left_unfilled_is_an_added_slot():
    """`relexicalise` fills the slots the input has; a placeholder it leaves is a slot the model added."""
    no_near = delexicalise(Example("e2e/1", "name[Zizzi] | area[riverside]", ("Zizzi is by the river.",),
                                   {"mr": "name[Zizzi], area[riverside]"}))
    with_near = delexicalise(Example("e2e/0", linearise_mr(MR), ("ref",), {"mr": MR}))
    outputs = ["X-name is a X-food place by the river near X-near.", "X-name is near X-near."]
    hyps = [relexicalise(h, e) for h, e in zip(outputs, (no_near, with_near), strict=True)]
    assert hyps == ["Zizzi is a X-food place by the river near X-near.", "Blue Spice is near Avalon."]
    table = example_table("e2e", [no_near, with_near], hyps, DELEX_SLOTS)
    assert table["added_slots"].tolist() == [2, 0]
    assert corpus_checks(table)["added_slot_outputs"] == 50.0
    assert added_slots("X-nearby, AX-near and X-name-like are words, not placeholders") == 0
