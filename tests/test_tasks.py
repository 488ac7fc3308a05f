"""Data-to-text task loaders, split mapping, linearisation and token format, on the real mirror files.

Counts are those measured on the mirror copies and stated in the mirror's README.md.
"""

from __future__ import annotations

from collections import Counter

import pytest

from spdf_lib.data import tasks
from spdf_lib.data.encoding import encode_examples, encode_pair, encode_prompt
from spdf_lib.data.registry import DataError
from spdf_lib.data.streams import IGNORE, PairData
from spdf_lib.data.tasks import (
    TASKS,
    WEBNLG_UNSEEN_CATEGORIES,
    Example,
    linearise_mr,
    linearise_triples,
    load_split,
    load_task,
    parse_mr,
    split_available,
    split_files,
    split_table,
    training_pairs,
)
from spdf_lib.tokenizer import EOS, SEP, train_tokenizer

# (task, split) -> (examples, references), from the mirror's README.md
COUNTS = {
    ("e2e", "dev"): (547, 4672),
    ("e2e", "test"): (630, 4693),
    ("webnlg", "train"): (6940, 18102),
    ("webnlg", "dev"): (872, 2268),
    ("webnlg", "test"): (1862, 4928),
    ("webnlg", "test_unseen"): (891, 2433),
    ("webnlg", "test_seen"): (971, 4928 - 2433),
    ("dart", "dev"): (2768, 6980),
    ("dart", "test_xml"): (5097, 12552 - 1),  # one <lex/> is empty (entry Id116): dropped
}


@pytest.fixture(scope="module")
def splits(mirror):
    return {key: load_split(*key) for key in COUNTS}


@pytest.fixture(scope="module")
def tokenizer(splits):
    ex = splits[("e2e", "dev")]
    return train_tokenizer([e.source for e in ex] + [r for e in ex for r in e.references], 512)


# --- loaders: counts and contents ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(COUNTS))
def test_counts_match_the_data_readme(splits, key):
    examples = splits[key]
    assert (len(examples), sum(len(e.references) for e in examples)) == COUNTS[key]
    assert len({e.id for e in examples}) == len(examples), "ids must be unique within a split"
    assert all(e.id.startswith(f"{key[1]}/") for e in examples)
    assert all(e.source and e.references and all(r for r in e.references) for e in examples)


def test_e2e_examples(splits):
    dev, test = splits[("e2e", "dev")], splits[("e2e", "test")]
    # devset.csv: CRLF and an unquoted header; testset_w_refs.csv: LF and a quoted header. Both read the same way.
    assert dev[0].source == "name[Alimentum] | area[city centre] | familyFriendly[no]"
    assert dev[0].references[0] == "There is a place in the city centre, Alimentum, that is not family-friendly."
    assert dev[0].meta["mr"] == "name[Alimentum], area[city centre], familyFriendly[no]"
    assert test[0].source == "name[Blue Spice] | eatType[coffee shop] | area[city centre]"
    assert test[0].references[:2] == ("A coffee shop in the city centre area called Blue Spice.",
                                      "Blue Spice is a coffee shop in city centre.")
    refs = [r for e in dev + test for r in e.references]
    assert not any("\r" in r or "\n" in r or "  " in r or r != r.strip() for r in refs)
    slots = Counter(slot for e in test for slot, _ in parse_mr(e.meta["mr"]))
    assert set(slots) == {"name", "eatType", "food", "priceRange", "customer rating", "area", "familyFriendly", "near"}


def test_webnlg_examples_and_seen_unseen(splits):
    train, test = splits[("webnlg", "train")], splits[("webnlg", "test")]
    seen, unseen = splits[("webnlg", "test_seen")], splits[("webnlg", "test_unseen")]
    assert len({e.meta["category"] for e in train}) == 10
    assert {e.meta["category"] for e in test} >= WEBNLG_UNSEEN_CATEGORIES
    assert len({e.meta["category"] for e in test}) == 15
    assert not {e.meta["category"] for e in train} & WEBNLG_UNSEEN_CATEGORIES
    assert {e.meta["category"] for e in unseen} == WEBNLG_UNSEEN_CATEGORIES
    assert not {e.meta["category"] for e in seen} & WEBNLG_UNSEEN_CATEGORIES
    assert all(e.meta["seen"] for e in seen) and not any(e.meta["seen"] for e in unseen)
    # The unseen file holds the full test set's unseen-category entries, in the same order.
    assert [(e.source, e.references) for e in test if not e.meta["seen"]] == [(e.source, e.references) for e in unseen]

    first = train[0]
    assert first.id == "train/1triple_allSolutions_Airport_train_challenge/Id1"
    assert first.source == 'Aarhus Airport | cityServed | "Aarhus, Denmark"'  # underscores -> spaces, quotes kept
    by_eid = {e.meta["eid"]: e for e in test}
    assert by_eid["Id1"].source == "Abilene Regional Airport | cityServed | Abilene, Texas"
    assert by_eid["Id1"].references == ("Abilene, Texas is served by the Abilene regional airport.",
                                        "Abilene Regional Airport serves the city of Abilene in Texas.")
    multi = next(e for e in train if e.meta["size"] == 2)
    assert multi.source.count(" ; ") == 1 and multi.source.count(" | ") == 4
    assert not any("_" in e.source for e in train), "DBpedia underscores must become spaces"


def test_dart_examples(splits):
    dev, test = splits[("dart", "dev")], splits[("dart", "test_xml")]
    assert (
        dev[0].source == "Mars Hill College | JOINED | 1973 ; Mars Hill College | LOCATION | Mars Hill, North Carolina"
    )
    assert dev[0].references == ("A school from Mars Hill, North Carolina, joined in 1973.",)
    assert dev[0].meta["subtree_was_extended"] is True
    assert test[0].id == "test_xml/Id1"
    assert test[0].source.startswith(
        "Hawaii Five-O | NOTES | Episode: The Flight of the Jewels ; [TABLECONTEXT] | [TITLE]"
    )
    # Reference sources, as counted in the data README.
    assert Counter(s for e in dev for s in e.meta["sources"]) == {
        "e2e": 4290, "webnlg": 2268, "WikiSQL_decl_sents": 250, "WikiTableQuestions_lily": 106,
        "WikiTableQuestions_mturk": 39, "WikiSQL_lily": 27}
    assert Counter(s for e in test for s in e.meta["sources"]) == {
        "webnlg": 7361, "e2e": 4690, "WikiSQL_decl_sents": 346, "WikiTableQuestions_lily": 96 - 1,
        "WikiTableQuestions_mturk": 34, "WikiSQL_lily": 25}
    dropped = [e for e in test if e.meta["dropped_empty_references"]]
    assert [(e.id, e.meta["dropped_empty_references"], len(e.references)) for e in dropped] == [
        ("test_xml/Id116", 1, 1)
    ]
    assert {e.meta["size"] for e in dev} <= set(range(1, 9))
    assert any("_" in e.source for e in dev), "DART relation names are kept verbatim (e.g. LEADER_NAME)"


# --- split mapping, setups and errors --------------------------------------------------------------------------


def test_split_mapping(mirror):
    assert len(split_files("webnlg", "train")) == 52 and len(split_files("webnlg", "dev")) == 52
    assert split_files("webnlg", "test_seen") == ["test/testdata_with_lex.xml"]
    assert split_files("dart", "test_xml") == ["dart-v1.1.1-full-test.xml"]
    rows = {(r["task"], r["split"]): r for r in split_table()}
    assert set(rows) == {(t, s) for t, spec in TASKS.items() for s in spec.splits}
    # The shared mirror lacks these three (too large) and Curation Corpus (its article bodies need the web, see
    # test_curation.py); everything else must be there.
    curation = {("curation", s) for s in TASKS["curation"].splits}
    assert {k for k, r in rows.items() if not r["available"]} <= {("e2e", "train"), ("dart", "train"),
                                                                  ("dart", "test"), *curation}
    for name, spec in TASKS.items():
        assert name == "curation" or all(split_available(name, s) for s in spec.setups["offline"]), name


def test_offline_setups_load_only_mirror_files(mirror):
    e2e = load_task("e2e", "offline", max_train=5, max_eval=3)
    assert (e2e.train_split, e2e.eval_split) == ("dev", "test")
    assert (len(e2e.train), len(e2e.eval)) == (5, 3)
    assert set(e2e.checksums) == {"e2e/devset.csv", "e2e/testset_w_refs.csv"}
    assert all(v.startswith("sha256:") for v in e2e.checksums.values())
    dart = load_task("dart", "offline")
    assert (dart.train_split, dart.eval_split, len(dart.train), len(dart.eval)) == ("dev", "test_xml", 2768, 5097)
    web = load_task("webnlg", "offline", eval_split="test_unseen")
    assert (len(web.train), len(web.eval)) == (6940, 891)
    assert len(web.checksums) == 53


@pytest.mark.parametrize("task_name,split,missing", [
    ("e2e", "train", "e2e/trainset.csv"),
    ("dart", "train", "dart/dart-v1.1.1-full-train.json"),
    ("dart", "test", "dart/dart-v1.1.1-full-test.json"),
])
def test_split_missing_from_the_mirror_fails_with_the_registry_error(mirror, task_name, split, missing):
    if split_available(task_name, split):
        pytest.skip(f"this mirror has {missing}")
    with pytest.raises(DataError) as err:
        load_split(task_name, split)
    msg = str(err.value)
    assert "\n" not in msg and missing in msg and "https://raw.githubusercontent.com/" in msg


def test_paper_setup_fails_before_parsing_when_a_file_is_missing(mirror, monkeypatch):
    if split_available("e2e", "train"):
        pytest.skip("this mirror has e2e/trainset.csv")
    def must_not_parse(*a, **k):
        raise AssertionError("parsed a file although the setup cannot be loaded")

    monkeypatch.setitem(TASKS, "e2e", TASKS["e2e"].__class__(
        "e2e", "e2e", {k: tasks.SplitSpec(v.pattern, must_not_parse) for k, v in TASKS["e2e"].splits.items()},
        TASKS["e2e"].setups))
    with pytest.raises(DataError, match="trainset.csv"):
        load_task("e2e", "paper")


@pytest.mark.parametrize("call,match", [
    (lambda: load_split("e2e-cleaned", "dev"), "unknown task 'e2e-cleaned'; choose one of e2e, webnlg, dart"),
    (lambda: load_split("webnlg", "validation"), "task 'webnlg' has no split 'validation'; choose one of"),
    (lambda: load_task("dart", "cluster"), "task 'dart' has no setup 'cluster'; choose one of paper, offline"),
    (lambda: load_task("e2e", "offline", eval_split="tset"), "no split 'tset'"),
    (lambda: load_split("e2e", "dev", limit=0), "limit=0: must be at least 1"),
    (lambda: load_task("e2e", "offline", max_train=0), "max_train=0"),
])
def test_bad_names_fail_in_one_line_before_any_work(mirror, call, match):
    with pytest.raises(DataError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def test_an_empty_split_is_an_error(mirror, monkeypatch):
    spec = TASKS["webnlg"]
    splits = dict(spec.splits, test_none=tasks.SplitSpec("test/testdata_with_lex.xml", tasks._read_webnlg,
                                                          keep=lambda e: e.meta["category"] == "Nowhere"))
    monkeypatch.setitem(TASKS, "webnlg", tasks.TaskSpec("webnlg", "webnlg2017", splits, spec.setups))
    with pytest.raises(DataError, match="split 'test_none' of task 'webnlg' has no examples"):
        load_split("webnlg", "test_none")


# --- linearisation -----------------------------------------------------------------------------------------------


def test_linearisation_rules():
    assert linearise_mr("name[The Vaults], eatType[pub], priceRange[more than £30]") == \
        "name[The Vaults] | eatType[pub] | priceRange[more than £30]"
    assert parse_mr("name[A],customer rating[5 out of 5]") == [("name", "A"), ("customer rating", "5 out of 5")]
    for bad in ("name[A] area[x]", "name[A", "", "name[A], junk"):
        with pytest.raises(DataError, match="cannot parse E2E MR"):
            parse_mr(bad)
    triples = [
        ["Aarhus_Airport", "elevationAboveTheSeaLevel_(in_metres)", "25.0"],
        ["Aarhus", "leaderName", "Jacob_Bundsgaard"],
    ]
    assert linearise_triples(triples, dbpedia=True) == \
        "Aarhus Airport | elevationAboveTheSeaLevel (in metres) | 25.0 ; Aarhus | leaderName | Jacob Bundsgaard"
    assert linearise_triples([["[TABLECONTEXT]", "LEADER_NAME", "x  y"]]) == "[TABLECONTEXT] | LEADER_NAME | x y"
    with pytest.raises(DataError, match="subject, relation and object"):
        linearise_triples([["a", "b"]])


def test_training_pairs_one_per_reference(splits):
    dev = splits[("e2e", "dev")]
    pairs = training_pairs(dev)
    assert len(pairs) == 4672
    assert pairs[0] == (dev[0].source, dev[0].references[0])
    assert pairs[len(dev[0].references)] == (dev[1].source, dev[1].references[0])


# --- token format ------------------------------------------------------------------------------------------------


def test_encode_pair_and_prompt(tokenizer):
    sep, eos = tokenizer.convert_tokens_to_ids(SEP), tokenizer.convert_tokens_to_ids(EOS)
    source, target = "name[The Vaults] | eatType[pub]", "The Vaults is a pub."
    prompt, tgt = encode_pair(tokenizer, source, target, max_len=128)
    assert prompt[-1] == sep and sep not in prompt[:-1]
    assert tgt[-1] == eos and eos not in tgt[:-1]
    assert tokenizer.decode(prompt[:-1]) == source and tokenizer.decode(tgt[:-1]) == target
    assert encode_prompt(tokenizer, source, 128) == prompt
    # A literal "<|sep|>" in the data is text, not the separator.
    assert encode_prompt(tokenizer, "a <|sep|> b", 128).count(sep) == 1


def test_encode_pair_truncation(tokenizer):
    source = " | ".join(f"slot{i}[value number {i}]" for i in range(40))
    target = " ".join(f"word{i}" for i in range(60)) + "."
    sep, eos = tokenizer.convert_tokens_to_ids(SEP), tokenizer.convert_tokens_to_ids(EOS)
    full_p, full_t = encode_pair(tokenizer, source, target, max_len=10_000)
    for max_len in (16, 64, 200):
        p, t = encode_pair(tokenizer, source, target, max_len)
        assert len(p) + len(t) <= max_len and p[-1] == sep
        assert p[:-1] == full_p[: len(p) - 1] and t == full_t[: len(t)]  # cut from the right, never reordered
        assert len(p) == min(len(full_p), max_len // 2)  # the prompt gets half, whatever the target
        assert p == encode_prompt(tokenizer, source, max_len) == encode_pair(tokenizer, source, "x", max_len)[0]
    short_p, short_t = encode_pair(tokenizer, "name[A]", target, max_len=64)
    assert short_p == encode_prompt(tokenizer, "name[A]", 64) and len(short_p) + len(short_t) == 64
    assert short_t[-1] != eos  # the target lost its EOS to the cut
    assert len(encode_prompt(tokenizer, source, max_len=24)) == 12
    with pytest.raises(ValueError, match="max_len=3"):
        encode_pair(tokenizer, source, target, 3)


def test_pairs_feed_pairdata_with_loss_on_the_target_only(splits, tokenizer):
    examples = splits[("e2e", "dev")][:4]
    pairs = encode_examples(tokenizer, examples, max_len=96)
    assert len(pairs) == sum(len(e.references) for e in examples)
    data = PairData(pairs, pairs[:2], pad_id=tokenizer.pad_token_id, max_len=96)
    batch = data.collate(pairs[:3])
    for row, (prompt, target) in enumerate(pairs[:3]):
        targets = batch["targets"][row].tolist()  # position t predicts token t + 1
        assert targets[: len(prompt) - 1] == [IGNORE] * (len(prompt) - 1)
        assert targets[len(prompt) - 1: len(prompt) - 1 + len(target)] == target
        assert batch["input_ids"][row, : len(prompt)].tolist() == prompt


def test_tokenizer_without_separator_is_refused():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bare = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")), unk_token="[UNK]"
    )
    with pytest.raises(ValueError, match=r"no <\|sep\|> token"):
        encode_prompt(bare, "a", 16)


def test_example_equality_ignores_meta():
    assert Example("x/1", "s", ("r",), {"a": 1}) == Example("x/1", "s", ("r",), {"a": 2})
