"""Loading the certification questions: text repair, option parsing, answer keys, exclusion reasons.

The authors' public data (`certify/certification_exams.csv`, Noever & Ciolino 2023) stores each question as one
string, the stem followed by inline options `A. … B. … C. …`, and its answer key as a string of letters. This
module turns every row into a `Question`. Nothing is dropped: a row that cannot be scored keeps its place with an
`excluded` reason code, and `DataReport` counts rows loaded, repaired and excluded by reason.

Reason codes (`Question.excluded`, the first that applies, in this order):
- `bad_key`: the key is not a string of letters A–J (`1`, `16`, `fi`, `2+B`, empty);
- `no_options`: fewer than two options `A. B.` could be found (free-text, drag-and-drop, simulation items);
- `empty_option`: an option has no text (image-only options such as `A.B.C.D.`);
- `empty_stem`: nothing before option A;
- `key_out_of_range`: a key letter names an option the question does not have.

Repairs: HTML entities (`&lt;`, `&amp;gt;`, `&#160;`) are unescaped and cp1252/latin-1 mojibake
(`SÃ©millon` → `Sémillon`, and the Cyrillic of the translator exams) is undone with `ftfy.fix_encoding`.
A stray number that the scrape left at the end of the last option ("B. FALSE. 1", "D. AWS Inspector 43",
"B. No 10"; apparently vote counts of the source site) is removed (`stray_number`, see `strip_stray_number`).
"""

from __future__ import annotations

import copy
import csv
import functools
import html
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ftfy

LETTERS = "ABCDEFGHIJ"  # at most 10 options
MIN_OPTIONS = 2
DATASET, DATA_FILE = "certify", "certification_exams.csv"

REASONS = ("bad_key", "no_options", "empty_option", "empty_stem", "key_out_of_range")


@dataclass(frozen=True)
class Question:
    """One row of the data, parsed. `options[i]` is the text of option `LETTERS[i]`; `key` the correct letters."""

    qid: str  # the row's position in the file, zero-padded ("0000" … "6136"); stable for the pinned file
    certification: str
    number: int | None
    stem: str
    options: tuple[str, ...]
    key: frozenset[str]
    raw_key: str
    n_stated: int  # answers the question asks for ("choose two" -> 2); 1 when it does not say
    excluded: str | None = None  # a reason code from REASONS, or None when the question is scored
    repairs: tuple[str, ...] = ()  # "html", "mojibake", "stray_number"
    flags: tuple[str, ...] = ()  # notes that do not exclude: "multi_key", "unordered_key", "stated_count_mismatch", …

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]

    @property
    def scored(self) -> bool:
        return self.excluded is None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["key"] = "".join(sorted(self.key))
        return d


# --- text repair -------------------------------------------------------------------------------------------

_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+\d*);")


def repair_text(text: str) -> tuple[str, tuple[str, ...]]:
    """(repaired text, kinds of repair applied). Entities are unescaped until none is left (the data has
    doubly escaped ones such as `&amp;gt;`); mojibake is fixed by ftfy, which only changes text that decodes
    to something more plausible. Non-breaking spaces from `&#160;` become plain spaces."""
    kinds = []
    out = text
    for _ in range(3):
        if not _ENTITY.search(out):
            break
        unescaped = html.unescape(out)
        if unescaped == out:
            break
        out = unescaped
    if out != text:
        kinds.append("html")
        out = out.replace("\xa0", " ")
    fixed = ftfy.fix_encoding(out)
    if fixed != out:
        kinds.append("mojibake")
        out = fixed
    return out, tuple(kinds)


# --- option parsing ----------------------------------------------------------------------------------------

# A marker is a capital letter A–J followed by a period, not followed by a digit ("A.1" is a section number).
_MARKER = re.compile(r"([A-J])\.(?!\d)")
_PUNCT_BEFORE = set("?:;!.,)]}\"'*-/>|")
_WORD_BEFORE = re.compile(r"(\S+)\s$")


@dataclass(frozen=True)
class _Cand:
    letter: int  # 0 for A
    start: int  # index of the letter
    end: int  # index after the period
    score: float


def _candidates(text: str) -> list[_Cand]:
    """Every place a marker could start an option, with a plausibility score.

    The score prefers markers that stand alone (`… A. text`), tolerates markers glued after punctuation
    (`below?A. text`) or text (`GridControlB. text`), and penalises letters that look like part of a name
    (`Router A.`, `Plan B.`) or an acronym (`W.E.B.`)."""
    out = []
    for m in _MARKER.finditer(text):
        i, j = m.start(), m.end()
        prev = text[i - 1] if i else ""
        if prev and (prev.isupper() or prev.isdigit()):
            continue  # inside a code or acronym: "XD.", "1B."
        score = 1.0
        if not prev or prev.isspace():
            score += 1.0
            w = _WORD_BEFORE.search(text, 0, i)
            if w and w.group(1)[-1].isalnum() and w.group(1)[0].isupper() and len(w.group(1)) > 1:
                score -= 0.4  # "Router A.", "Hepatitis B.": a capitalised word right before the letter
            elif w and w.group(1)[-1] in ".?:)]":
                score += 0.2  # the previous option (or the stem) ended a sentence: "… and C. B. …"
        elif prev in _PUNCT_BEFORE:
            score += 0.6
            if prev == "." and i >= 2 and text[i - 2].isupper() and (i < 3 or not text[i - 3].isalpha()):
                score -= 1.0  # the middle of an acronym: "W.E.B."
        else:
            score -= 0.3  # glued to a word
        nxt = text[j] if j < len(text) else ""
        score += 0.5 if (not nxt or nxt.isspace()) else -0.5
        out.append(_Cand(LETTERS.index(m.group(1)), i, j, score))
    return out


_EMPTY_PENALTY = 2.5  # more than one marker can earn, so an empty trailing "Router E." never extends a chain


def _segment_penalty(text: str) -> float:
    return _EMPTY_PENALTY if not _clean(text) else 0.0


def _clean(text: str) -> str:
    return " ".join(text.split())


def parse_options(prompt: str) -> tuple[str, list[str]] | None:
    """Split a prompt into (stem, options). None when no chain `A. B. …` of at least two markers exists.

    The options are the chain of markers A, B, C, … (in order of position) with the highest total score:
    each marker earns its plausibility score (see `_candidates`) and each empty option costs a penalty. So the
    longest plausible chain wins, letters inside option texts ("Router B.") lose against the real markers, and a
    stem that mentions "Router A. … Router B." does not swallow the options that follow it.
    """
    cands = _candidates(prompt)
    by_letter: list[list[_Cand]] = [[] for _ in LETTERS]
    for c in cands:
        by_letter[c.letter].append(c)
    # best[c] = (score, chain) of the best chain A, B, … ending at candidate c of the current letter
    best: dict[_Cand, tuple[float, tuple[_Cand, ...]]] = {c: (c.score, (c,)) for c in by_letter[0]}
    finished: list[tuple[float, tuple[_Cand, ...]]] = []
    for k in range(1, len(LETTERS)):
        nxt: dict[_Cand, tuple[float, tuple[_Cand, ...]]] = {}
        for c in by_letter[k]:
            options = [
                (s - _segment_penalty(prompt[p[-1].end : c.start]) + c.score, (*p, c))
                for s, p in best.values()
                if p[-1].end <= c.start
            ]
            if options:
                nxt[c] = max(options, key=lambda o: (round(o[0], 6), o[1][0].start))
        for s, chain in nxt.values():
            finished.append((s - _segment_penalty(prompt[chain[-1].end :]), chain))
        best = nxt
        if not best:
            break
    if not finished:
        return None
    # Highest score; on a tie the chain that starts later (a stem is more likely to mention "A." than options).
    _, chain = max(finished, key=lambda f: (round(f[0], 6), f[1][0].start))
    stem = prompt[: chain[0].start]
    bounds = [c.start for c in chain[1:]] + [len(prompt)]
    options = [_clean(prompt[c.end : b]) for c, b in zip(chain, bounds, strict=True)]
    stem = _clean(stem)
    stem = re.sub(r"\s*\[\]\s*$", "", stem)  # a scraping artefact "[]" before the options
    return stem, options


# --- stray numbers after the last option ------------------------------------------------------------------

_TRAILING = re.compile(r"^(?P<text>.*\S)\s+(?P<n>\d{1,3})$")
_AFTER_SENTENCE = re.compile(r"[.!?)]$")
_DIGITS = re.compile(r"\d+")
_ENDS_IN_NUMBER = re.compile(r"(?:^|\s)[-+$]?[\d.,]+$")  # "Windows 10", "3 000", "24"; not "Amazon S3"


def _shape(text: str, words: int = 0) -> str:
    """The text lower-cased with digit runs as `#`; only its last `words` words when `words` > 0."""
    shape = _DIGITS.sub("#", text.lower())
    return " ".join(shape.split()[-words:]) if words else shape


def strip_stray_number(stem: str, options: list[str]) -> tuple[list[str], bool]:
    """Options without the stray number that ends the last one, and whether one was removed.

    The last option may end in a number of 1–3 digits that the scrape appended ("B. FALSE. 1", "D. AWS
    Inspector 43", "B. No 10"). It is removed when it follows a finished sentence ("FALSE. 1", "… record target.
    33"), or when it is 2 or more, follows a word (not an operator: "[Attempts] + 1") and does not fit the other
    options:
    - no other option has the last option's shape (digit runs compared as `#`), in full or in its last two
      words ("RAID 10" beside "RAID 5", "Interface 1" beside "Interface 0", "$35 100" beside "$32 500" keep
      their numbers), and the number with the word before it does not occur in the question ("… TOGAF 9"
      asked about TOGAF 9); and
    - either another option ends like the last option without the number ("Layer 7 36" beside "Layer 6", "2 11"
      beside "4", "… port 993 20" beside "… port 995"), or no other option ends in a number ("No 10" beside
      "Yes", "AWS Inspector 43" beside service names), or the only ones that do are bare numbers and the last
      option is words ("a null value 43" beside "24"). "January 3" beside "March 27" keeps its number."""
    if len(options) < 2:
        return options, False
    m = _TRAILING.match(options[-1])
    if not m:
        return options, False
    text, others = m.group("text"), options[:-1]
    if not _AFTER_SENTENCE.search(text):
        if int(m.group("n")) < 2 or not re.search(r"[\w\]\"')]$", text):
            return options, False  # "skill 1", "[Attempts] + 1": a 1, or a number after an operator, is text
        last = options[-1]
        if any(_shape(last, w) in {_shape(o, w) for o in others} for w in (0, 2)):
            return options, False
        words = f"{text.split()[-1]} {m.group('n')}".lower()
        if re.search(rf"(?<!\w){re.escape(words)}(?!\w)", " ".join([stem, *others]).lower()):
            return options, False
        numbered = [o for o in others if _ENDS_IN_NUMBER.search(o)]
        fits = any(_shape(text, w) in {_shape(o, w) for o in others} for w in (0, 2))
        bare = all(_ENDS_IN_NUMBER.fullmatch(o) or re.fullmatch(r"[-+$]?[\d.,\s]+", o) for o in numbered)
        if not (fits or not numbered or (bare and not _DIGITS.search(text))):
            return options, False
    return [*others, text], True


# --- answer keys and stated answer counts ------------------------------------------------------------------

_KEY = re.compile(r"[A-J]+")
_NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "2": 2, "3": 3, "4": 4, "5": 5}
_STATED = re.compile(
    r"\b(?:choose|select|pick|identify|mark)\s+(two|three|four|five|[2-5])\b"
    r"|\b(?:which|what)\s+(two|three|four|five|[2-5])\b",
    re.IGNORECASE,
)


def parse_key(raw: str) -> frozenset[str] | None:
    """The set of answer letters of a key such as `B`, `AB` or `DCA`; None when it is not letters A–J."""
    s = raw.strip()
    return frozenset(s) if _KEY.fullmatch(s) else None


def stated_answer_count(stem: str) -> int:
    """How many answers the question asks for: "(Choose two.)", "Which three …" -> 2, 3; otherwise 1."""
    m = _STATED.search(stem)
    return _NUMBER_WORDS[(m.group(1) or m.group(2)).lower()] if m else 1


_EXHIBIT = re.compile(r"\b(exhibit|refer to the (?:image|graphic|figure)|shown (?:below|above))\b", re.IGNORECASE)


def parse_row(index: int, certification: str, number: str, prompt: str, raw_key: str) -> Question:
    """One CSV row -> `Question` (never raises; unscorable rows carry a reason code)."""
    certification, rep_c = repair_text(certification)
    prompt, rep_p = repair_text(prompt)
    repairs = tuple(sorted(set(rep_c + rep_p)))
    cert = _clean(certification)
    num = int(number) if number.strip().isdigit() else None
    parsed = parse_options(prompt)
    stem, options = parsed if parsed else (_clean(prompt), [])
    options, stray = strip_stray_number(stem, options)
    if stray:
        repairs = (*repairs, "stray_number")
    key = parse_key(raw_key)
    n_stated = stated_answer_count(stem)
    flags = []
    # One reason per row, the first that applies: a bad key makes any row unscorable, whatever its options.
    excluded = None
    if len(options) < MIN_OPTIONS:
        options = []
    if key is None:
        excluded, key = "bad_key", frozenset()
    elif not options:
        excluded = "no_options"
    elif any(not o for o in options):
        excluded = "empty_option"
    elif not stem:
        excluded = "empty_stem"
    elif max(LETTERS.index(k) for k in key) >= len(options):
        excluded = "key_out_of_range"
    if len(key) > 1:
        flags.append("multi_key")
        if list(raw_key.strip()) != sorted(raw_key.strip()):
            flags.append("unordered_key")
    if key and len(key) != n_stated:
        flags.append("stated_count_mismatch")
    if _EXHIBIT.search(stem):
        flags.append("mentions_exhibit")
    return Question(
        qid=f"{index:04d}", certification=cert, number=num, stem=stem, options=tuple(options), key=key,
        raw_key=raw_key, n_stated=n_stated, excluded=excluded, repairs=repairs, flags=tuple(flags),
    )


# --- loading and the data report ---------------------------------------------------------------------------


@dataclass
class DataReport:
    """What loading did: rows loaded, repaired (by kind), excluded (by reason), flagged, and certifications."""

    rows_loaded: int = 0
    rows_scored: int = 0
    repaired: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)
    certifications: int = 0
    certifications_scored: int = 0  # with at least one scored question
    excluded_examples: dict[str, list[str]] = field(default_factory=dict)  # a few qids per reason

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [
            f"rows loaded {self.rows_loaded}, scored {self.rows_scored}, excluded {sum(self.excluded.values())}",
            "repaired: " + (", ".join(f"{k} {v}" for k, v in sorted(self.repaired.items())) or "none"),
            "excluded: " + (", ".join(f"{k} {v}" for k, v in sorted(self.excluded.items())) or "none"),
            "flags: " + (", ".join(f"{k} {v}" for k, v in sorted(self.flags.items())) or "none"),
            f"certifications {self.certifications}, with a scored question {self.certifications_scored}",
        ]
        return out


def data_report(questions: list[Question]) -> DataReport:
    rep = DataReport(rows_loaded=len(questions))
    repaired: Counter[str] = Counter()
    excluded: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    for q in questions:
        repaired.update(q.repairs)
        flags.update(q.flags)
        if q.excluded:
            excluded[q.excluded] += 1
            rep.excluded_examples.setdefault(q.excluded, [])
            if len(rep.excluded_examples[q.excluded]) < 5:
                rep.excluded_examples[q.excluded].append(q.qid)
    rep.rows_scored = sum(q.scored for q in questions)
    rep.repaired, rep.excluded, rep.flags = dict(repaired), dict(excluded), dict(flags)
    rep.certifications = len({q.certification for q in questions})
    rep.certifications_scored = len({q.certification for q in questions if q.scored})
    return rep


def read_rows(path: str | Path) -> list[tuple[str, str, str, str]]:
    """The CSV's rows as (category, number, prompt, correct) strings, exactly as stored (BOM removed)."""
    path = Path(path)
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        need = {"category", "number", "prompt", "correct"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected columns {sorted(need)}, found {reader.fieldnames}")
        return [(r["category"] or "", r["number"] or "", r["prompt"] or "", r["correct"] or "") for r in reader]


def data_path() -> Path:
    """The verified local path of the certification data (via the data registry)."""
    from spdf_lib.data.registry import fetch

    return fetch(DATASET, [DATA_FILE])[DATA_FILE]


def load_questions(path: str | Path | None = None) -> tuple[list[Question], DataReport]:
    """Every row of the data as a `Question` (none dropped), and the data report.

    `path` defaults to the registry's verified copy (`$SPDF_DATA_MIRROR` or the download cache). A file
    parsed before in this process (same path, size and time) is not parsed again: a plan and its exam, or the
    notebook's cells, share it (the questions are frozen; the list and report are copies)."""
    path = Path(path if path is not None else data_path()).resolve()
    stat = path.stat()
    questions, report = _parsed(str(path), stat.st_size, stat.st_mtime_ns)
    return list(questions), copy.deepcopy(report)


@functools.lru_cache(maxsize=2)
def _parsed(path: str, size: int, mtime_ns: int) -> tuple[tuple[Question, ...], DataReport]:
    questions = [parse_row(i, *row) for i, row in enumerate(read_rows(path))]
    return tuple(questions), data_report(questions)
