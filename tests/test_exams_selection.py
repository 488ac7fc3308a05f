"""Question selection (questions file, sample), pass shares over whole certifications, baselines in both
constant-letter definitions, letter distribution and unanswered reasons, on the real data (no model)."""

from __future__ import annotations

import math

import pytest

from spdf_lib.exams.baselines import KEYSIZE, STRICT, baseline_correct
from spdf_lib.exams.params import ExamParams
from spdf_lib.exams.parse import parse_row
from spdf_lib.exams.run import prepare, read_questions_file, select
from spdf_lib.exams.tables import (
    baseline_table,
    format_table,
    headline_table,
    letter_distribution,
    letter_summary,
    letter_tvd,
    split_note,
    unanswered_by_reason,
    whole_certifications,
)
from spdf_lib.params import ParamsError, validate


@pytest.fixture(scope="module")
def data(mirror):
    questions, _, _, fields = prepare(ExamParams())
    return questions, fields


def test_a_questions_file_selects_exactly_its_rows(data, tmp_path):
    questions, fields = data
    f = tmp_path / "rows.txt"
    f.write_text("# a fixed sample\n0\n\n121  # TRUE./FALSE.\n6136\n")
    chosen = select(questions, ExamParams(questions_file=str(f)), fields)
    assert [q.qid for q in chosen] == ["0000", "0121", "6136"]
    assert chosen[1].options == ("TRUE.", "FALSE.")  # row 121's stray "1" is gone


@pytest.mark.parametrize("text, message", [
    ("0\nx1\n", r"line 2: 'x1' is not a row index; write one 0-based data-row number a line"),
    ("6137\n", r"line 1: row 6137 is past the last data row \(6136\); rows are 0-based"),
    ("5\n5\n", r"line 2: row 5 is listed twice \(first on line 1\); remove one"),
    ("# nothing\n\n", r"no row indices in it"),
])
def test_a_bad_questions_file_is_one_line_naming_the_problem(data, tmp_path, text, message):
    questions, _ = data
    f = tmp_path / "rows.txt"
    f.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_questions_file(f, questions)


def test_a_row_that_cannot_be_scored_is_named_with_its_reason(data, tmp_path):
    questions, _ = data
    bad = next(q for q in questions if q.excluded == "bad_key")
    f = tmp_path / "rows.txt"
    f.write_text(f"{int(bad.qid)}\n")
    with pytest.raises(ValueError, match=rf"row {int(bad.qid)} cannot be scored \(bad_key\); remove it"):
        read_questions_file(f, questions)
    with pytest.raises(ValueError, match="no such file"):
        read_questions_file(tmp_path / "missing.txt", questions)


def test_selection_parameters_that_conflict_fail_before_any_compute():
    with pytest.raises(ParamsError, match="questions_file chooses the questions itself: set limit"):
        validate(ExamParams, {"questions_file": "rows.txt", "limit": 8})
    with pytest.raises(ParamsError, match="set limit=0 and sample_certifications=0 to sample questions"):
        validate(ExamParams, {"sample": 20, "limit": 8})
    with pytest.raises(ParamsError, match="backend api sends chat messages"):
        validate(ExamParams, {"backend": "api", "mode": "generate", "prompt_format": "plain"})
    with pytest.raises(ParamsError, match="sample: Input should be greater than or equal to 0|sample: must be"):
        validate(ExamParams, {"sample": -1})


def test_a_sample_is_seeded_and_splits_certifications(data):
    questions, fields = data
    a = select(questions, ExamParams(sample=200, seed=0), fields)
    assert a == select(questions, ExamParams(sample=200, seed=0), fields)
    assert a != select(questions, ExamParams(sample=200, seed=1), fields)
    assert len(a) == 200 == len({q.qid for q in a}) and all(q.scored for q in a)
    whole = whole_certifications(a, questions)
    certs = {q.certification for q in a}
    assert whole < certs  # 200 random questions out of 6,099 split most certifications
    note = split_note(a, whole)
    assert note.startswith(f"the selection splits {len(certs - whole)} of its {len(certs)} certifications")
    assert split_note(select(questions, ExamParams(limit=20), fields), set()) is not None
    cert_sel = select(questions, ExamParams(limit=20), fields)
    assert split_note(cert_sel, whole_certifications(cert_sel, questions)) is None
    with pytest.raises(ValueError, match="sample: 9999 questions asked for, but the selection has only 6099"):
        select(questions, ExamParams(sample=9999), fields)


def _records(questions, fields, choose):
    out = []
    for q in questions:
        choice = choose(q)
        out.append({"qid": q.qid, "certification": q.certification, "field": fields[q.certification],
                    "n_options": len(q.options), "n_answers": len(q.key), "key": "".join(sorted(q.key)),
                    "choice": choice, "correct": choice == "".join(sorted(q.key)), "circular_correct": None,
                    "mode": "loglik"})
    return out


def test_pass_shares_count_only_whole_certifications(data):
    questions, fields = data
    by_cert: dict[str, list] = {}
    for q in questions:
        if q.scored:
            by_cert.setdefault(q.certification, []).append(q)
    four = [c for c, qs in sorted(by_cert.items()) if len(qs) == 4][:2]
    chosen = by_cert[four[0]] + by_cert[four[1]][:2]  # the second certification is split
    whole = whole_certifications(chosen, questions)
    assert whole == {four[0]}
    records = _records(chosen, fields, lambda q: "".join(sorted(q.key)))  # an oracle: every answer right
    table = headline_table(records, chosen, fields, whole=whole, reference=questions)
    row = table.set_index("field").loc["all"]
    assert row["certifications"] == 1 and row["certifications_split"] == 1 and row["questions"] == 6
    assert row["accuracy"] == 1.0 and row["pass_share"] == 1.0
    assert "split" in format_table(table)
    nothing_whole = headline_table(records[4:], chosen[4:], fields, whole=set(), reference=questions)
    assert math.isnan(nothing_whole.set_index("field").loc["all", "pass_share"])  # no whole certification


def test_both_constant_letter_definitions_are_reported_and_named():
    multi = parse_row(0, "M", "1", "Pick two. A. a B. b C. c D. d", "AB")
    single = parse_row(1, "M", "2", "Pick one. A. a B. b C. c D. d", "A")
    base = baseline_correct([multi, single])
    assert base["always_A"] == {"0000": True, "0001": True}  # as many letters as the key: A, B for the AB key
    assert base["always_A_strict"] == {"0000": False, "0001": True}  # strict single letter
    records = _records([multi, single], {"M": "f"}, lambda q: "A")
    table = baseline_table(records, [multi, single], {"M": "f"})
    always_a = table[table["baseline"] == "always A"].set_index("letters")
    assert always_a.loc[STRICT, "accuracy"] == 0.5 and always_a.loc[KEYSIZE, "accuracy"] == 1.0
    assert always_a.loc[STRICT, "pass_share"] == 0.0 and always_a.loc[KEYSIZE, "pass_share"] == 1.0
    assert {"model", "random guessing (expected)", "majority letter", "majority letter per certification"} <= set(
        table["baseline"])


def test_majority_per_certification_counts_the_whole_certification(data):
    questions, fields = data
    one_each = [next(q for q in questions if q.scored and q.certification == c)
                for c in sorted({q.certification for q in questions if q.scored})[:60]]
    own = baseline_correct(one_each)["majority_per_cert_strict"]
    assert all(own[q.qid] for q in one_each if len(q.key) == 1)  # answered from its own key: trivially right
    ref = baseline_correct(one_each, reference=questions)["majority_per_cert_strict"]
    assert sum(ref.values()) < sum(own.values())


def test_letter_distribution_beside_the_keys_and_unanswered_reasons():
    records = [{"n_answers": 1, "n_options": 4, "key": k, "choice": c, "extraction": r,
                "rotation_extractions": None}
               for k, c, r in [("A", "A", "ok"), ("B", "A", "ok"), ("C", "A", "ok"), ("D", None, "hedge"),
                               ("B", None, "option_echo"), ("C", None, "option_echo")]]
    letters = letter_distribution(records).set_index("letter")
    assert letters.loc["A", "model_count"] == 3 and letters.loc["A", "model_share"] == 1.0
    assert list(letters["key_count"]) == [1, 1, 1, 0]  # the keys of the same (answered) questions
    assert letter_tvd(letters.reset_index()) == pytest.approx(2 / 3)
    assert letter_summary(letters.reset_index()).startswith("the model answered A on 3 of 3 single-answer")
    assert unanswered_by_reason(records) == {"hedge": 1 / 6, "option_echo": 2 / 6}
