"""Loader and parser of the certification data: properties (hypothesis) and the real file."""

from __future__ import annotations

import html
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spdf_lib.exams.parse import (
    LETTERS,
    load_questions,
    parse_key,
    parse_options,
    parse_row,
    repair_text,
    stated_answer_count,
    strip_stray_number,
)

# --- properties --------------------------------------------------------------------------------------------

word = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8)
capitalised = word.filter(lambda w: len(w) > 1).map(str.capitalize)  # "I." would be a genuinely ambiguous marker
number = st.integers(0, 9999).map(str)
option_word = st.one_of(word, word, capitalised, number)


@st.composite
def rendered_question(draw):
    """(prompt, stem, options): a stem and 2–10 options rendered inline with varied marker spacing."""
    stem = " ".join(draw(st.lists(st.one_of(word, capitalised), min_size=1, max_size=12)))
    stem += draw(st.sampled_from(["?", ":", ".", "", " []"]))
    options = [" ".join(draw(st.lists(option_word, min_size=1, max_size=6))) for _ in range(draw(st.integers(2, 10)))]
    options = [o + draw(st.sampled_from(["", ".", ";"])) for o in options]
    text = stem
    for i, opt in enumerate(options):
        glue_ok = not text[-1].isdigit() and not text[-1].isupper()
        before = draw(st.sampled_from([" ", "  ", ""] if glue_ok else [" "]))
        after = draw(st.sampled_from([" ", ""] if not opt[0].isdigit() else [" "]))  # "A.1" is a section number
        text += f"{before}{LETTERS[i]}.{after}{opt}"
    text += draw(st.sampled_from(["", " "]))
    expected_stem = " ".join(stem.split()).removesuffix(" []")
    return text, expected_stem, [" ".join(o.split()) for o in options]


@settings(max_examples=300, deadline=None)
@given(rendered_question())
def test_inline_options_are_recovered(case):
    prompt, stem, options = case
    parsed = parse_options(prompt)
    assert parsed is not None, prompt
    assert parsed == (stem, options), prompt


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parser_never_raises_and_returns_a_consistent_split(text):
    parsed = parse_options(text)
    if parsed is not None:
        stem, options = parsed
        assert 2 <= len(options) <= len(LETTERS)
    q = parse_row(0, "Cert", "1", text, "A")  # a row never raises either
    assert q.scored == (q.excluded is None)


@given(st.sets(st.sampled_from(LETTERS), min_size=1), st.randoms())
def test_key_letters_in_any_order_are_the_same_set(letters, rnd):
    ordered = sorted(letters)
    rnd.shuffle(ordered)
    assert parse_key("".join(ordered)) == frozenset(letters)
    assert parse_key(f" {''.join(ordered)}\r\n") == frozenset(letters)


@given(st.text(min_size=1).filter(lambda s: any(c not in LETTERS for c in s.strip()) or not s.strip()))
def test_keys_with_anything_but_letters_are_rejected(raw):
    assert parse_key(raw) is None


ACCENTED = ["Sémillon", "Côte-Rôtie", "Crème de Menthe", "Albariño", "Châteauneuf-du-Pape", "Rhône", "Über"]


@given(st.lists(st.one_of(word, st.sampled_from(ACCENTED)), min_size=1, max_size=8))
def test_cp1252_mojibake_is_repaired(words):
    text = " ".join(words)
    broken = text.encode("utf-8").decode("cp1252")
    fixed, kinds = repair_text(broken)
    assert fixed == text
    assert ("mojibake" in kinds) == (broken != text)


@given(st.text(alphabet=string.ascii_letters + string.digits + " <>&\"'=/.;#", max_size=80))
def test_html_entities_are_unescaped(text):
    fixed, kinds = repair_text(html.escape(text))
    assert fixed == text
    if html.escape(text) != text:
        assert "html" in kinds


@given(st.text(alphabet=string.ascii_letters + string.digits + " ?.,:;()[]-", max_size=200))
def test_clean_text_is_left_alone(text):
    assert repair_text(text) == (text, ())


# --- examples from the data --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt, options",
    [
        ("Which command? A. Move to D. B. Move from TN C. Copy from D. D. Copy from TN",
         ["Move to D.", "Move from TN", "Copy from D.", "Copy from TN"]),
        ("Which control? A. GridControlB. CardView C. GridView D. TreeListControl",
         ["GridControl", "CardView", "GridView", "TreeListControl"]),
        ("Loss? [] A. 3 dB. B. 20 dB. C. 30 dB.", ["3 dB.", "20 dB.", "30 dB."]),
        ("Router A. is linked to Router B. Which is the root? A. Router A. B. Router B. C. Neither",
         ["Router A.", "Router B.", "Neither"]),
        ("Which sequences? A. A B and C. B. A and C. C. C and D. D. C and D.",
         ["A B and C.", "A and C.", "C and D.", "C and D."]),
        ("What should you do?A. Shrink volume C. B. Compress volume C. C. Convert Disk 0.",
         ["Shrink volume C.", "Compress volume C.", "Convert Disk 0."]),
    ],
)
def test_letter_like_tokens_inside_options(prompt, options):
    assert parse_options(prompt)[1] == options


def test_stated_answer_counts():
    assert stated_answer_count("Which two settings are defaults? (Choose two.)") == 2
    assert stated_answer_count("What three actions should you perform?") == 3
    assert stated_answer_count("Select 2 answers") == 2
    assert stated_answer_count("Which of the following is true?") == 1


def test_unscorable_rows_carry_a_reason():
    assert parse_row(0, "C", "1", "SIMULATION -How many threads?", "16").excluded == "bad_key"
    assert parse_row(0, "C", "1", "Fill in the blank: ____", "DCA").excluded == "no_options"
    assert parse_row(0, "C", "1", "Which exhibit?A.B.C.D. 5", "A").excluded == "empty_option"
    assert parse_row(0, "C", "1", "A. yes B. no", "A").excluded == "empty_stem"
    assert parse_row(0, "C", "1", "Pick one. A. yes B. no", "C").excluded == "key_out_of_range"
    assert parse_row(0, "C", "1", "Pick one. A. yes B. no", "").excluded == "bad_key"
    q = parse_row(0, "C", "1", "Pick three. A. a B. b C. c D. d", "DCA")
    assert q.scored and q.key == frozenset("ACD") and "unordered_key" in q.flags


@pytest.fixture(scope="module")
def loaded(mirror):
    return load_questions()


def test_every_row_loads_and_the_report_adds_up(loaded):
    questions, report = loaded
    assert report.rows_loaded == len(questions) == 6137
    assert report.rows_scored + sum(report.excluded.values()) == 6137
    assert report.certifications == 1148
    assert report.excluded["bad_key"] == 8  # "1" x3, "16", "32", "2+B", "fi", "" (the data README's count)
    assert set(report.excluded) <= {"bad_key", "no_options", "empty_option", "empty_stem", "key_out_of_range"}
    assert report.repaired["mojibake"] >= 25 and report.repaired["html"] >= 70
    assert report.flags["multi_key"] == 248  # the README: 248 rows list several letters
    assert [q.qid for q in questions] == [f"{i:04d}" for i in range(6137)]


def test_real_rows_are_repaired_and_parsed(loaded):
    questions, _ = loaded
    by_text = {q.qid: q for q in questions}
    sauternes = next(q for q in questions if "Sauternes" in " ".join(q.options) and "Sémillon" in q.stem)
    assert "Côte de Beaune" in sauternes.options and "mojibake" in sauternes.repairs
    cyrillic = [q for q in questions if q.certification.startswith("ATA Translator Cert, Russian")]
    assert any("Мы всегда рады" in q.stem for q in cyrillic)
    assert not any("Ã" in q.stem or "&lt;" in q.stem for q in questions)
    assert all(2 <= len(q.options) <= 10 for q in questions if q.scored)
    assert all(max(LETTERS.index(k) for k in q.key) < len(q.options) for q in questions if q.scored)
    assert sum(len(q.key) > 1 for q in questions if q.scored) >= 240
    assert by_text["0000"].options[0].startswith("Reboot is performed on vMaster")


@pytest.mark.parametrize("stem, options, expected", [
    ("True?", ["TRUE.", "FALSE. 1"], ["TRUE.", "FALSE."]),  # after a finished sentence
    ("Which?", ["Yes", "No 10"], ["Yes", "No"]),  # no other option ends in a number
    ("Which layer?", ["Layer 5", "Layer 6", "Layer 7 36"], ["Layer 5", "Layer 6", "Layer 7"]),
    ("How many?", ["4", "12", "8", "2 11"], ["4", "12", "8", "2"]),
    ("Which?", ["24", "an error", "a null value 43"], ["24", "an error", "a null value"]),
    ("Which RAID?", ["RAID 0", "RAID 5", "RAID 10"], None),  # the options' own shape
    ("Which?", ["March 27", "February 1", "January 3"], None),  # other options end in numbers too
    ("Which?", ["$32 500", "$35 100"], None),
    ("Which edition is TOGAF 9 about?", ["ADM", "TOGAF 9"], None),  # the question names it
    ("Which?", ["A", "[Attempts] + 1"], None),  # after an operator
    ("Which skill?", ["VDN 7201", "No agents are staffed in skill 1"], None),  # a 1 after a word
    ("Which year?", ["Act of 1986", "Wiretap Act"], None),  # four digits
])
def test_stray_numbers_after_the_last_option(stem, options, expected):
    got, stripped = strip_stray_number(stem, options)
    assert got == (expected or options) and stripped == (expected is not None)


def test_stray_numbers_are_removed_from_the_real_rows_and_counted(loaded):
    questions, report = loaded
    assert report.repaired["stray_number"] == 648
    assert sum("stray_number" in q.repairs for q in questions if q.scored) == 638
    q = {x.qid: x for x in questions}
    assert q["0121"].options == ("TRUE.", "FALSE.") and "stray_number" in q["0121"].repairs
    assert q["3138"].options == ("Yes", "No")
    assert q["0975"].options[-1] == "Layer 7"
    assert q["4319"].options[-1] == "RAID 10" and "stray_number" not in q["4319"].repairs
