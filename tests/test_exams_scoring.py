"""Fields, prompts, answer extraction, baselines and the pass rule of the certification exams (no model)."""

from __future__ import annotations

import itertools
import random
from math import comb

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spdf_lib.exams.baselines import (
    baseline_correct,
    majority_letter,
    pass_probability,
    passes,
    random_correct_probability,
    random_pass_probabilities,
)
from spdf_lib.exams.fields import OTHER, assign_fields, coverage, load_rules
from spdf_lib.exams.parse import LETTERS, parse_row
from spdf_lib.exams.prompts import SYSTEM, chat_messages, loglik_prompt, plain_prompt, rotation, to_original
from spdf_lib.exams.scoring import top_letters
from spdf_lib.exams.tables import certification_table, headline_table, letter_distribution

# --- fields --------------------------------------------------------------------------------------------------


def test_field_rules_cover_every_certification_of_the_data(mirror):
    from spdf_lib.exams.parse import load_questions

    questions, _ = load_questions()
    cov = coverage({q.certification for q in questions})
    assert cov["uncovered"] == []
    assert sum(cov["certifications_per_field"].values()) == 1148
    rules = load_rules()
    assert rules.field_of("Offensive Security Certified Professional (OSCP)") == "cybersecurity"
    assert rules.field_of("Sommelier Level 2 Certification") == "hospitality"
    assert rules.field_of("Test Prep Nclex Rn") == "healthcare"
    assert rules.field_of("Twitter Flight School Certification-Marketing") == "business_finance"
    assert rules.field_of("Amazon Aws Certified Solutions Architect Professional Sap C02") == "cloud"
    assert rules.field_of("Microsoft Az 500") == "cybersecurity"
    assert rules.field_of("Microsoft Az 104") == "cloud"


def test_rules_file_is_editable_and_misses_are_reported(tmp_path):
    f = tmp_path / "fields.yaml"
    f.write_text("labels: {wine: wine & spirits}\nrules:\n  - field: wine\n    match: [sommelier, ^beer]\n")
    rules = load_rules(f)
    assert assign_fields(["Sommelier Level 1", "Beer Judge", "Root Beer Judge"], rules) == {
        "Beer Judge": "wine", "Root Beer Judge": OTHER, "Sommelier Level 1": "wine"}
    assert coverage(["Beer Judge", "Pmi Pmp"], rules)["uncovered"] == ["Pmi Pmp"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels: {a: A}\nrules:\n  - field: b\n    match: [x]\n")
    with pytest.raises(ValueError, match=r"rules\[0\]: field 'b' has no entry under `labels`"):
        load_rules(bad)


# --- prompts, rotations, extraction ------------------------------------------------------------------------

Q4 = parse_row(7, "Cert X", "1", "Which port does HTTPS use? A. 80 B. 443 C. 22 D. 25", "B")


def test_loglik_prompt_is_the_mmlu_format():
    assert loglik_prompt(Q4) == "Which port does HTTPS use?\nA. 80\nB. 443\nC. 22\nD. 25\nAnswer:"
    assert loglik_prompt(Q4, rotation(4, 1)) == "Which port does HTTPS use?\nA. 443\nB. 22\nC. 25\nD. 80\nAnswer:"


@given(st.integers(2, 10), st.data())
def test_rotations_map_back_to_the_original_letters(n, data):
    r = data.draw(st.integers(0, n - 1))
    order = rotation(n, r)
    assert sorted(order) == list(range(n))
    shown = data.draw(st.sets(st.sampled_from(LETTERS[:n]), min_size=1))
    back = to_original(frozenset(shown), order)
    assert back == frozenset(LETTERS[(LETTERS.index(s) + r) % n] for s in shown)


def test_chat_and_plain_prompts_state_the_answer_format():
    chat = chat_messages(Q4, 1)
    assert chat[0] == {"role": "system", "content": SYSTEM}
    assert chat[1]["role"] == "user" and chat[1]["content"].startswith(loglik_prompt(Q4).removesuffix("Answer:"))
    assert chat[1]["content"].endswith("Answer with the letter of the correct option.")
    assert "Choose exactly two options" in chat_messages(Q4, 2)[1]["content"]
    plain = plain_prompt(Q4, 1)
    assert plain.startswith(SYSTEM + "\n\n") and plain.endswith(loglik_prompt(Q4))
    assert plain_prompt(Q4, 2).endswith("(Choose exactly two options; answer with their letters.)\nAnswer:")


def test_top_letters_breaks_ties_towards_the_earlier_letter():
    assert top_letters([-1.0, -0.5, -0.5, -3.0], 1) == frozenset("B")
    assert top_letters([-1.0, -0.5, -0.5, -3.0], 2) == frozenset("BC")


# --- pass rule and baselines -------------------------------------------------------------------------------


def test_pass_rule_is_over_the_threshold_by_default():
    assert not passes(7, 10)  # exactly 70% is not "over 70%"
    assert passes(7, 10, rule=">=")
    assert passes(3, 4) and not passes(2, 4)
    assert not passes(0, 0)
    with pytest.raises(ValueError, match="pass rule"):
        passes(1, 1, rule="=>")


@given(st.lists(st.floats(0, 1), min_size=1, max_size=8), st.sampled_from([">", ">="]), st.sampled_from([0.5, 0.7]))
def test_pass_probability_is_exact(probs, rule, threshold):
    # brute force over all 2^m outcomes
    brute = 0.0
    for outcome in itertools.product([0, 1], repeat=len(probs)):
        p = 1.0
        for o, pi in zip(outcome, probs, strict=True):
            p *= pi if o else 1 - pi
        brute += p * passes(sum(outcome), len(probs), threshold, rule)
    assert pass_probability(probs, threshold, rule) == pytest.approx(brute, abs=1e-12)


_rows = itertools.count()


def _cert(name, keys, n=4):
    """Questions of one certification with these keys (row indices, hence qids, unique across calls)."""
    opts = " ".join(f"{LETTERS[i]}. option{i}" for i in range(n))
    return [parse_row(next(_rows), name, str(i + 1), f"{name} question {i}? {opts}", k) for i, k in enumerate(keys)]


def test_random_guessing_pass_probability_of_a_four_question_certification():
    qs = _cert("C4", ["A", "B", "C", "D"])
    # passing 4 questions "over 70%" needs all 4 right (3/4 = 75% > 70% also passes): P(>=3 of 4), p = 1/4
    p = 0.25
    expected = 4 * p**3 * (1 - p) + p**4
    assert random_pass_probabilities(qs)["C4"] == pytest.approx(expected)
    multi = _cert("M", ["AB"], n=5)[0]
    assert random_correct_probability(multi) == pytest.approx(1 / comb(5, 2))
    assert random_correct_probability(multi, "stated") == 0.0  # the stem does not ask for two


def test_letter_baselines_on_an_unbalanced_certification():
    qs = _cert("AllA", ["A", "A", "A", "B"]) + _cert("Mixed", ["B", "C", "D", "C"])
    base = baseline_correct(qs)
    assert sum(base["always_A"].values()) == 3
    assert majority_letter(qs) == "A"
    assert sum(base["majority_per_cert"].values()) == 3 + 2
    assert set(base) >= {"always_A", "always_B", "always_C", "always_D", "majority", "majority_per_cert"}


def test_headline_table_puts_baselines_beside_the_model():
    qs = _cert("AllA", ["A", "A", "A", "A"]) + _cert("Mixed", ["B", "C", "D", "A"])
    fields = {"AllA": "f1", "Mixed": "f2"}
    rng = random.Random(0)
    records = []
    for q in qs:  # a model that always says A
        records.append({"qid": q.qid, "certification": q.certification, "field": fields[q.certification],
                        "n_options": 4, "n_answers": 1, "key": "".join(q.key), "choice": "A",
                        "correct": q.key == frozenset("A"), "circular_correct": False, "mode": "loglik",
                        "noise": rng.random()})
    table = headline_table(records, qs, fields)
    row = table.set_index("field").loc["all"]
    assert row["pass_share"] == 0.5 and row["circular_pass_share"] == 0.0
    assert row["best_always_letter"] == "A" and row["best_always_pass_share"] == 0.5
    assert row["random_pass_share"] == pytest.approx(4 * 0.25**3 * 0.75 + 0.25**4)
    certs = certification_table(records)
    assert certs.set_index("certification")["passed"].to_dict() == {"AllA": True, "Mixed": False}
    letters = letter_distribution(records).set_index("letter")
    assert letters.loc["A", "model_share"] == 1.0 and letters.loc["A", "key_share"] == 5 / 8
