"""Answer extraction: from a generated reply to the option letters it commits to, or to a reason it commits to none.

`extract_answer(reply, n_options)` is the only entry point. It returns an `Extraction`: the chosen letters (empty
when the reply is not an answer) and a reason code:

- `ok`: the reply commits to these letters;
- `empty`: nothing but whitespace or markup;
- `no_answer`: no option letter in the reply ("I don't know", "A firewall blocks it.", "None of the above" is
  `negation`);
- `hedge`: the reply leaves the choice open between letters ("B or C", "either A or D", "B/C");
- `negation`: the letters it names are ruled out, not chosen ("Neither A nor B", "not C", "C is incorrect",
  "none of the above");
- `option_echo`: the reply repeats the option list ("A. foo\\nB. bar …") without stating an answer;
- `ambiguous`: several letters without a statement that decides between them ("A is good, but D…"), or two
  statements that disagree ("The answer is A. … The answer is C.");
- `out_of_range`: the letters it commits to include one the question does not have (E for four options).

How a letter is recognised. Upper-case letters stand alone ("B", "B)", "(B)", "B.", "B:", "**B**", "Option B")
unless they are the article "A" or the pronoun "I" in running text ("A firewall …", "I think …"; "A is correct",
"A and C" stay letters). Lower-case letters count only where the text shows a choice: bracketed or closed by a
bracket ("(b)", "c)"), a reply that is nothing but the letter ("c", "**c**"), or right after an answer statement
when no word follows ("the answer is c", "Answer: b.", "Answer: (a)"); so "a firewall" and "the answer is a
firewall" are never an answer. Multi-letter answers: "A and C", "B, D", "A, C and D", "A & C", "AC" (a run of
distinct upper-case letters standing alone).

Order of decisions: negated letters ("not C", "neither A nor B", "C is wrong") are set aside first; then an
explicit statement ("the answer is …", "Answer: …", "correct options are …", "I choose …", "… is correct") wins,
also over a letter that opens the reply ("A. iSCSI\n\nThe correct answer is D." is D; two statements that
disagree are `ambiguous`); a first line that is nothing but letters ("B", "A, C") is the answer whatever
follows; otherwise a reply that lists the options is an echo; then a reply that starts with its letters ("B)
Port 443", "A. <the text of option A>", "A and C"); then the only letter (group) mentioned anywhere ("I think
C", "Both A and B").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LETTERS = "ABCDEFGHIJ"
REASONS = ("ok", "empty", "no_answer", "hedge", "negation", "option_echo", "ambiguous", "out_of_range")
UNANSWERED = REASONS[1:]


@dataclass(frozen=True)
class Extraction:
    """What a reply answers: `letters` (upper-case, empty unless `reason` is "ok") and the `reason` code."""

    letters: frozenset[str]
    reason: str

    @property
    def answered(self) -> bool:
        return self.reason == "ok"

    @property
    def choice(self) -> str | None:
        """The letters as a sorted string ("AC"), or None when the reply is not an answer."""
        return "".join(sorted(self.letters)) if self.answered else None


# --- the letter grammar ------------------------------------------------------------------------------------

_B = r"(?<![A-Za-z0-9'’_\-])"  # a letter is not inside a word, number, contraction or hyphenated name
_A = r"(?![A-Za-z0-9'’_\-+#]|\.[A-Za-z0-9])"  # … and "e.g." / "A.1" are not letters either
# One letter in any of its written forms; group 1/2/3 hold the letter (bracketed, closed by a bracket, bare).
_ONE = rf"(?:[(\[]\s*([A-Ja-j])\s*[)\]]|{_B}([A-Ja-j])\s*\)|{_B}([A-Ja-j]){_A})"
_ONE_RX = re.compile(_ONE)
_AND = r"(?:\s*(?:,|;|&|\+|/|\band\b|,\s*and\b)\s*)"
_OR = r"(?:\s*(?:/|\(\s*or\b|[?,]?\s*\bor\b(?:\s+(?:maybe|possibly|perhaps|probably|even))?)\s*)"
_SEP = rf"(?:{_AND}|{_OR})"
_GROUP = rf"(?:(?:either|both)\s+)?{_ONE}(?:{_SEP}(?:option\s+|choice\s+)?{_ONE})*"
_GROUP_RX = re.compile(_GROUP, re.IGNORECASE)
_RUN = rf"(?:[(\[]\s*|{_B})([A-J]{{2,10}})(?:\s*[)\]]|{_A})"  # "AC", "BDE", "(AC)"
# Words after "A"/"I" that keep it a letter rather than the article or the pronoun.
_PRONOUN_I_VERBS = {"and", "or", "nor", "is", "are"}  # "I is correct"; "I will", "I was" are the pronoun
_LETTER_VERBS = {"and", "or", "nor", "is", "are", "was", "were", "seems", "would", "should", "must", "might",
                 "could", "will", "can", "because", "since", "as", "then", "only", "also", "too", "though"}

_STATEMENT = re.compile(
    r"(?:"
    r"\b(?:correct|right|best|final|true|proper)\s+(?:answer|option|choice|response|letter)s?"
    r"(?:\s+(?:here|then|therefore))?\s*(?:is|are|would\s+be|will\s+be|should\s+be|must\s+be|=|:|-|would\s+have\s+to\s+be)"
    r"|\b(?:answer|option|choice|response|solution)s?\s*(?:is|are|would\s+be|will\s+be|should\s+be|must\s+be|=|:|-)"
    r"|\b(?:answer|answers)(?=\s*[(\[])"  # "Answer (B)"
    r"|\bmy\s+(?:answer|choice|pick)s?\s*(?:is|are|would\s+be|:)?"
    r"|\bi\s*(?:would|will|'d|’d|'ll|’ll)?\s*(?:choose|pick|select|go\s+with|say|answer)"
    r"|\b(?:so|thus|therefore|hence)\s*,?\s*(?:the\s+answer\s+is\s*)?(?=[(\[]?\s*[A-J]\b)"
    r")\s*(?:the\s+)?(?:options?|choices?|letters?|answers?)?\s*[:\-]?\s*",
    re.IGNORECASE,
)
# "<letters> is correct", "<letters> are the correct answers", "option C is right"
_IS_CORRECT = re.compile(
    rf"(?:\b(?:option|choice|letter|answer)s?\s+)?(?P<g>{_RUN}|{_GROUP})\s*(?:is|are)\s+(?:the\s+|both\s+|all\s+)?"
    r"(?:correct|right|true|best|valid|accurate)\b(?!\s*[,:]?\s*but\b)",
    re.IGNORECASE,
)
_NEGATIONS = [
    re.compile(rf"\bneither\s+(?:option\s+)?{_GROUP}\s*,?\s*nor\s+(?:option\s+)?{_GROUP}", re.IGNORECASE),
    re.compile(rf"\b(?:not|except|excluding|but\s+not|isn't|is\s+not|aren't)\s+(?:options?\s+|choices?\s+)?{_GROUP}",
               re.IGNORECASE),
    re.compile(rf"(?:\b(?:option|choice|letter|answer)s?\s+)?{_GROUP}\s*(?:is|are)\s*(?:not|n't|incorrect|wrong|"
               r"false|invalid|inaccurate)\b", re.IGNORECASE),
    re.compile(rf"(?:\b(?:option|choice|letter|answer)s?\s+)?{_GROUP}\s*(?:isn't|aren't)\b", re.IGNORECASE),
]
_NONE_OF = re.compile(r"\b(?:none\s+of\s+(?:the\s+)?(?:above|options|choices|answers|them|these)|no\s+correct\s+"
                      r"(?:answer|option))\b", re.IGNORECASE)
# An option marker at the start of a line or after whitespace: "A. text", "B) text", "(C) text"; or a letter
# alone on its line ("A\nB\nC", and where a reply cut off by the token limit stops: "A. foo\nB. bar\nC").
_MARKER = re.compile(r"(?:^|(?<=\s))[(\[]?([A-J])[.)\]:]\s+\S|^[(\[]?([A-J])[.)\]:]?[ \t]*$", re.MULTILINE)
_MARKUP = re.compile(r"\*+|__+|`+|^\s*(?:#+|>+)\s*|\\(?=[()\[\]])", re.MULTILINE)


def _normalise(reply: str) -> str:
    text = _MARKUP.sub(" ", reply.replace("\r", ""))
    text = text.replace("“", '"').replace("”", '"').replace("‘", "'").replace("’", "'")
    return "\n".join(" ".join(line.split()) for line in text.split("\n")).strip()


def _letters_of(match: re.Match[str] | str) -> list[tuple[str, int, int, bool]]:
    """(letter, start, end, shown as a choice: bracketed or closed by a bracket) for each letter in a group."""
    text = match.group(0) if isinstance(match, re.Match) else match
    base = match.start() if isinstance(match, re.Match) else 0
    out = []
    for m in _ONE_RX.finditer(text):
        if m.group(1):
            out.append((m.group(1), base + m.start(1), base + m.end(1), True))
        elif m.group(2):
            out.append((m.group(2), base + m.start(2), base + m.end(2), True))
        else:
            out.append((m.group(3), base + m.start(3), base + m.end(3), False))
    return out


def _word_after(text: str, end: int) -> str:
    m = re.match(r"\s+([A-Za-z]+)", text[end:])
    return m.group(1).lower() if m else ""


_PRONOUN_VERBS = {"think", "believe", "am", "was", "would", "will", "guess", "feel", "know", "can", "could",
                  "should", "must", "have", "had", "do", "did", "hope", "say", "suppose", "need", "want", "m", "d"}


def _is_letter(text: str, letter: str, start: int, end: int, shown: bool, stated: bool, after_letter: bool = False
               ) -> bool:
    """Whether a letter-shaped token is a choice (see the module docstring for the rules). `after_letter`: it
    follows another letter in a list ("A, I because …"), where only a pronoun's verb makes "I" the pronoun."""
    if shown:
        return True
    if after_letter and letter.isupper():
        return not (letter == "I" and _word_after(text, end) in _PRONOUN_VERBS)
    after = text[end:]
    if letter.islower():
        # a bare lower-case letter: only when nothing but punctuation follows it (or and/or/nor + letter)
        nxt = _word_after(text, end)
        closes = re.match(r"\s*(?:$|[.,;:!?)\]\n])", after) is not None
        if stated or text[:start].strip() == "":
            return closes or nxt in ("and", "or", "nor")
        return closes and re.search(r"(?:\b(?:is|be)|'s)\s+$", text[:start]) is not None  # "it is b."
    if letter in "AI":
        word = _word_after(text, end)
        # after a stated answer ("I would choose I because …") "I" is the letter unless a pronoun's verb follows
        verbs = (_LETTER_VERBS if letter == "A" else
                 _PRONOUN_I_VERBS | (_LETTER_VERBS - _PRONOUN_VERBS) if stated else _PRONOUN_I_VERBS)
        if word and word not in verbs and not re.match(r"\s*[.):,\-]", after):
            return False  # "A firewall …", "I think …"
        if letter == "I" and not stated and re.match(r"\s*(?:'|’)", after):
            return False  # "I'm", "I'd"
    return True


def _group_letters(text: str, m: re.Match[str], stated: bool) -> tuple[list[str], bool] | None:
    """(letters, hedged) of a matched group, or None when its first token is not a letter (an article …)."""
    parts = _letters_of(m)
    listed = len(parts) > 1 and re.match(r"\s*(?:$|[.,;:!?)\]\n])", text[m.end():]) is not None
    kept = []
    for letter, s, e, shown in parts:
        if not _is_letter(text, letter, s, e, shown, stated or listed, after_letter=bool(kept)):  # "c or d." too
            if not kept:
                return None
            break
        kept.append(letter.upper())
    if not kept:
        return None
    span = text[m.start() : m.end()]
    hedged = len(set(kept)) > 1 and re.search(_OR, span, re.IGNORECASE) is not None
    return kept, hedged


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for s, e in spans:
        for i in range(s, e):
            if chars[i] != "\n":
                chars[i] = " "
    return "".join(chars)


def _finish(letters: list[str], hedged: bool, n_options: int) -> Extraction:
    if hedged:
        return Extraction(frozenset(), "hedge")
    chosen = frozenset(letters)
    if any(LETTERS.index(x) >= n_options for x in chosen):
        return Extraction(frozenset(), "out_of_range")
    return Extraction(chosen, "ok")


def _negated(text: str) -> tuple[str, bool]:
    """The text with negated letters blanked out, and whether any letter was negated."""
    spans = []
    for rx in _NEGATIONS:
        for m in rx.finditer(text):
            letters = [x for x in _letters_of(m) if _is_letter(text, x[0], x[1], x[2], x[3], True)]
            if letters:
                spans.append((m.start(), m.end()))
    none_of = _NONE_OF.search(text)
    if none_of:
        spans.append((none_of.start(), none_of.end()))
    return _mask(text, spans), bool(spans)


_RUN_RX = re.compile(_RUN)


def _letters_at(text: str, pos: int) -> tuple[list[str], bool] | None:
    """(letters, hedged) of the run ("AC") or group ("A and C") that starts at `pos` in a statement."""
    g = _GROUP_RX.match(text, pos)
    run = _RUN_RX.match(text, pos)
    if run and (not g or run.end() > g.end()) and len(set(run.group(1))) == len(run.group(1)):
        return list(run.group(1)), False
    return _group_letters(text, g, stated=True) if g else None


def _statements(text: str) -> list[tuple[list[str], bool]]:
    """Letters of every explicit answer statement, in order of appearance."""
    found: list[tuple[int, list[str], bool]] = []
    for m in _STATEMENT.finditer(text):
        got = _letters_at(text, m.end())
        if got:
            found.append((m.start(), *got))
    for m in _IS_CORRECT.finditer(text):
        got = _letters_at(text, m.start("g"))
        if got and not any(abs(pos - m.start()) < 3 for pos, _, _ in found):
            found.append((m.start(), *got))
    return [(letters, hedged) for _, letters, hedged in sorted(found, key=lambda f: f[0])]


def _is_echo(text: str) -> bool:
    """Whether the reply lists options: two consecutive markers ("A. …", "B) …") in order, as an exam shows them."""
    seq = [LETTERS.index(m.group(1) or m.group(2)) for m in _MARKER.finditer(text)]
    return any(b == a + 1 for a, b in zip(seq, seq[1:], strict=False))


def extract_answer(reply: str | None, n_options: int) -> Extraction:
    """The option letters a generated `reply` commits to among `n_options` options (A, B, …), with a reason.

    Never raises. `Extraction.letters` is empty unless `reason == "ok"`. See the module docstring for what counts
    as a letter, as a hedge, a negation and an option echo."""
    text = _normalise(reply or "")
    if not text or not re.search(r"\w", text):
        return Extraction(frozenset(), "empty")
    masked, negated = _negated(text)

    stated = _statements(masked)
    if stated:
        sets = {frozenset(letters) for letters, _ in stated}
        if any(h for _, h in stated):
            return Extraction(frozenset(), "hedge")
        if len(sets) > 1:
            return Extraction(frozenset(), "ambiguous")
        return _finish(stated[0][0], False, n_options)

    lines = [line.strip() for line in masked.split("\n") if line.strip()]
    first = lines[0].strip(" .:;,!") if lines else ""
    alone = _GROUP_RX.fullmatch(first) if len(lines) > 1 else None
    if alone and (got := _group_letters(first, alone, stated=False)):
        nxt = _MARKER.match(lines[1])
        listing = (len(got[0]) == 1 and nxt is not None
                   and LETTERS.index(nxt.group(1) or nxt.group(2)) == LETTERS.index(got[0][0]) + 1)
        if not listing:  # "B" alone on the first line is the answer, whatever follows; "A\nB\nC" is a list
            return _finish(got[0], got[1], n_options)
    if _is_echo(text):
        return Extraction(frozenset(), "option_echo")

    # A reply that starts with its letters: "B", "B) Port 443", "(c)", "A and C", "AC", "Option D".
    lead = re.match(r"\s*(?:(?:option|choice|letter|answer)s?\s+)?", masked, re.IGNORECASE)
    start = lead.end() if lead else 0
    named = bool(lead and lead.group(0).strip())  # "Option b" names a choice like a statement does
    run = re.compile(_RUN + r"(?=\s*(?:$|[.,;:!)\n]))").match(masked, start)
    if run and len(set(run.group(1))) == len(run.group(1)):
        return _finish(list(run.group(1)), False, n_options)
    g = _GROUP_RX.match(masked, start)
    if g:
        got = _group_letters(masked, g, stated=named)
        if got:
            return _finish(got[0], got[1], n_options)

    # Otherwise: the letter groups mentioned anywhere; one group (or one letter, repeated) is the answer.
    groups: list[tuple[list[str], bool]] = []
    for m in _GROUP_RX.finditer(masked):
        got = _group_letters(masked, m, stated=False)
        if got:
            groups.append(got)
    if groups:
        distinct = {frozenset(letters) for letters, _ in groups}
        if len(distinct) == 1:
            return _finish(*groups[0], n_options)
        return Extraction(frozenset(), "ambiguous")
    return Extraction(frozenset(), "negation" if negated else "no_answer")
