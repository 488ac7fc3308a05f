"""Answer extraction (`spdf_lib.exams.extract`): a labelled corpus of written and real replies, and properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spdf_lib.exams.extract import REASONS, UNANSWERED, Extraction, extract_answer

CORPUS = Path(__file__).parent / "data" / "exam_replies.tsv"


def _corpus() -> list[tuple[str, int, str, str]]:
    """(source, n_options, expected, reply) rows; the reply column is JSON (newlines, quotes)."""
    lines = [x for x in CORPUS.read_text(encoding="utf-8").splitlines() if x and not x.startswith("#")]
    assert lines[0].split("\t") == ["source", "n_options", "expected", "reply"]
    rows = []
    for line in lines[1:]:
        source, n, expected, reply = line.split("\t", 3)
        rows.append((source, int(n), expected, json.loads(reply)))
    return rows


def _label(e: Extraction) -> str:
    return e.choice if e.answered else e.reason


def test_the_labelled_corpus_is_extracted_exactly():
    rows = _corpus()
    assert len(rows) >= 200
    sources = {s for s, *_ in rows}
    assert {"written", "smollm2-chat", "smollm2-plain", "kit-gpt-micro-plain"} <= sources
    assert sum(s != "written" for s, *_ in rows) >= 100  # replies of real runs, read and labelled by hand
    # every reason and multi-letter answers are covered
    labels = {e for _, _, e, _ in rows}
    assert set(UNANSWERED) <= labels and any(len(x) > 1 and x.isupper() and x.isalpha() for x in labels)
    wrong = [(s, r, e, _label(extract_answer(r, n))) for s, n, e, r in rows if _label(extract_answer(r, n)) != e]
    assert not wrong, wrong[:5]


def test_the_issue_examples():
    cases = {"c)": "C", "the answer is c": "C", "Answer: b": "B", "(b) Port 443": "B", "**c**": "C",
             "Answer: (a)": "A", "The answers are A and c": "AC", "The correct answer is B or C.": "hedge",
             "Neither A nor B": "negation", "A. foo\nB. bar\nC. baz": "option_echo", "a firewall": "no_answer",
             "A firewall blocks it.": "no_answer", "B, D": "BD", "AC": "AC", "A and C": "AC", "not C": "negation"}
    assert {r: _label(extract_answer(r, 4)) for r in cases} == cases


def test_extraction_record():
    e = extract_answer("Answer: C", 4)
    assert e == Extraction(frozenset("C"), "ok") and e.answered and e.choice == "C"
    none = extract_answer("I don't know", 4)
    assert not none.answered and none.letters == frozenset() and none.choice is None and none.reason in REASONS
    assert extract_answer(None, 4).reason == "empty"  # type: ignore[arg-type]


# --- properties ----------------------------------------------------------------------------------------------

# Filler words with no stand-alone letter, no negation, hedge or answer keyword.
FILLER = st.lists(st.sampled_from(["the", "port", "firewall", "uses", "network", "traffic", "because", "secure",
                                   "protocol", "443", "server", "data", "this", "encrypts", "which", "we", "tls"]),
                  min_size=1, max_size=8).map(" ".join)

LEADING = ["{L}", "{L}.", "{L})", "({L})", "[{L}]", "**{L}**", "{L}. {f}", "{L}) {f}", "{L}: {f}", "Option {L}",
           "**{L}.** {f}", "{L}\n\n{f}"]
STATED = ["{f}. The answer is {L}.", "{f}\nAnswer: {L}", "The correct answer is {L}: {f}",
          "I would choose {L} because {f}", "Answer: **{L}**", "{f}. So the answer is ({L}).",
          "The correct option is {L}.", "{L} is correct because {f}", "My answer: {L}"]
LOWER = ["({l})", "{l})", "Answer: {l}", "the answer is {l}.", "{l}", "**{l}**", "Answer: ({l}) {f}"]


@st.composite
def letters_and_options(draw, max_k: int = 3):
    n = draw(st.integers(2, 10))
    k = draw(st.integers(1, min(max_k, n)))
    letters = sorted(draw(st.sets(st.sampled_from("ABCDEFGHIJ"[:n]), min_size=k, max_size=k)))
    return n, letters


def _join(letters: list[str], how: str) -> str:
    if len(letters) == 1:
        return letters[0]
    if how == "run":
        return "".join(letters)
    if how == "and":
        return ", ".join(letters[:-1]) + " and " + letters[-1]
    return ", ".join(letters)


@settings(max_examples=400, deadline=None)
@given(letters_and_options(), st.sampled_from(LEADING + STATED), FILLER, st.sampled_from(["comma", "and", "run"]))
def test_a_reply_around_known_letters_gives_them(case, template, filler, how):
    n, letters = case
    reply = template.format(L=_join(letters, how), f=filler)
    got = extract_answer(reply, n)
    assert got == Extraction(frozenset(letters), "ok"), reply


@settings(max_examples=200, deadline=None)
@given(letters_and_options(max_k=1), st.sampled_from(LOWER), FILLER)
def test_lower_case_letters_count_where_the_text_shows_a_choice(case, template, filler):
    n, [letter] = case
    reply = template.format(l=letter.lower(), f=filler)
    assert extract_answer(reply, n) == Extraction(frozenset(letter), "ok"), reply


NOUNS = st.lists(st.sampled_from(["port", "firewall", "network", "server", "protocol", "secure", "data", "tls",
                                   "router", "policy"]), min_size=1, max_size=6).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 10), NOUNS, FILLER)
def test_the_article_and_the_pronoun_are_not_answers(n, noun, filler):
    for reply in (f"A {noun}", f"a {noun}. {filler}", f"The answer is a {noun}", f"I {noun} {filler}",
                  f"{filler} a {noun}", f"A {noun} is a {noun}."):
        assert extract_answer(reply, n).reason == "no_answer", reply


# (number of options, two distinct letters among them)
TWO_LETTERS = st.integers(2, 10).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.sampled_from("ABCDEFGHIJ"[:n]), min_size=2, max_size=2, unique=True)))


@settings(max_examples=200, deadline=None)
@given(TWO_LETTERS, st.sampled_from(["The answer is {a} or {b}.", "either {a} or {b}", "{a}/{b}",
                                    "Answer: {a} (or {b})", "It could be {a} or {b}.", "{a} or maybe {b}"]))
def test_hedges_are_not_answers(case, template):
    n, (a, b) = case
    assert extract_answer(template.format(a=a, b=b), n).reason == "hedge"


@settings(max_examples=200, deadline=None)
@given(TWO_LETTERS, st.sampled_from(["Neither {a} nor {b}", "not {a}", "{a} is not correct", "{a} is wrong.",
                                    "Options {a} and {b} are incorrect.", "It is not {b}."]))
def test_negations_are_not_answers(case, template):
    n, (a, b) = case
    assert extract_answer(template.format(a=a, b=b), n).reason == "negation"


@settings(max_examples=200, deadline=None)
@given(st.lists(FILLER, min_size=2, max_size=6), st.sampled_from(["\n", " "]), st.sampled_from([".", ")"]),
       st.booleans())
def test_an_echo_of_the_option_list_is_not_an_answer(options, sep, mark, cut):
    reply = sep.join(f"{'ABCDEFGHIJ'[i]}{mark} {o}" for i, o in enumerate(options))
    if cut and sep == "\n":
        reply += f"\n{'ABCDEFGHIJ'[len(options)]}"  # cut off by the token limit
    assert extract_answer(reply, len(options) + 1).reason == "option_echo", reply


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.integers(2, 10))
def test_extraction_never_raises_and_stays_in_range(text, n):
    got = extract_answer(text, n)
    assert got.reason in REASONS
    assert (got.reason == "ok") == bool(got.letters)
    assert all("ABCDEFGHIJ".index(x) < n for x in got.letters)


@pytest.mark.parametrize("n", [2, 4])
def test_a_letter_the_question_does_not_have_is_out_of_range(n):
    assert extract_answer("The answer is J.", n).reason == "out_of_range"
