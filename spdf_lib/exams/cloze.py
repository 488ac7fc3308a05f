"""The cloze side of the exam study: formulations, length normalisations, options that name other options, and
the baselines that fit a cloze scorer.

Formulations (`ExamParams.formulation`, recorded per run and per question):

- `mcf`: the lettered prompt of `prompts.loglik_prompt`; the letters " A", " B", … are scored;
- `cf` (cloze): the context `Question: {stem}\\nAnswer:`, options not shown; each continuation is `" " + option`.
  This is OLMES's and lm-evaluation-harness `mmlu_continuation`'s prompt;
- `hybrid`: the lettered prompt of `mcf`, the option *text* scored as the continuation;
- `best`: both `mcf` and `cf` are scored and reported; the headline is the one with the higher accuracy (OLMES).

Normalisations of an option's log-likelihood (`ExamParams.norm`): `none` (the sum), `char` (divided by the
option's character length, lm-eval's `acc_norm`), `token` (per token), `pmi` (minus log P(option | "Answer:"),
the unconditional context of OLMES and lighteval).

An option such as "All of the above", "Both A and C" or "None of these" cannot be scored as a continuation
without the others; `option_references` finds them, and `cf` scores those questions in `hybrid` (the reason is in
the record, and the data report counts them).
"""

from __future__ import annotations

import re
from typing import Literal

from spdf_lib.exams.parse import LETTERS, Question

Formulation = Literal["mcf", "cf", "hybrid", "best"]
Norm = Literal["none", "char", "token", "pmi"]
FORMULATIONS: tuple[str, ...] = ("mcf", "cf", "hybrid", "best")
NORMS: tuple[str, ...] = ("none", "char", "token", "pmi")
UNCONDITIONAL = "Answer:"  # the context of the `pmi` normalisation

# --- prompts -----------------------------------------------------------------------------------------------


def cloze_context(q: Question) -> str:
    """The `cf` context: `Question: {stem}\\nAnswer:` (lm-eval `mmlu_continuation`, OLMES)."""
    return f"Question: {q.stem.strip()}\nAnswer:"


def continuations(q: Question) -> list[str]:
    """The strings scored after the context: `" " + option text` (lm-eval's `target_delimiter`)."""
    return [" " + o for o in q.options]


def normalise(loglik: float, n_tokens: int, text: str, norm: Norm, unconditional: float | None = None) -> float:
    """An option's score under `norm` from its summed log-likelihood, token count and text (without the space
    before it, as lm-eval's `acc_norm` counts characters); `pmi` needs the unconditional log-likelihood."""
    if norm == "none":
        return loglik
    if norm == "char":
        return loglik / max(1, len(text))
    if norm == "token":
        return loglik / max(1, n_tokens)
    if norm == "pmi":
        if unconditional is None:
            raise ValueError("norm pmi needs the unconditional log-likelihood of each option")
        return loglik - unconditional
    raise ValueError(f"norm {norm!r}: choose one of {', '.join(NORMS)}")


# --- options that name other options -----------------------------------------------------------------------

_L = "[a-j]"  # an option letter
_REFERENCES = [  # (reason, pattern): matched against the lower-cased option text
    ("all_of_the_above", r"\ball (of )?(the )?(listed |given )?(above|these|those|options|answers|choices)\b"),
    ("all_of_the_above", r"\ball (of the )?(above |the )?(options |answers |choices )?(are )?(correct|true)\b"),
    ("none_of_the_above", r"\bnone (of )?(the )?(above|these|those|of them|options|answers|choices)\b"),
    ("none_of_the_above", r"\bnone (of the (options|answers|choices) )?(is|are) (correct|true)\b"),
    ("any_of_the_above", r"\b(any|either|neither|both) of (the above|these|those)\b"),
    ("names_letters", rf"\bsame as (option |answer )?{_L}\b"),
    ("both_are_correct", r"^(both|neither)( options| answers)? (are|is) (correct|true|right)\b"),
    ("names_letters", rf"\b(both|options?|answers?|choices?) {_L}( ?,| and| &| or| nor) ?(option |answer )?{_L}\b"),
    ("names_letters", rf"^(only )?{_L}( ?,| and| &| or) ?{_L}\b"),
    ("names_letters", rf"^(only )?{_L}(, ?{_L})*,? (and|&) {_L}( only| are (correct|true))?\W*$"),
    ("names_letters", rf"\bneither {_L} nor {_L}\b"),
]
_COMPILED = [(reason, re.compile(p)) for reason, p in _REFERENCES]


def option_references(q: Question) -> list[tuple[str, str, str]]:
    """The options that name other options: (letter, reason, option text) for each, e.g. ("D",
    "all_of_the_above", "All of the above"). `names_letters` is an option such as "Both A and C" or "A, B and D"
    (letters only count when the question has that many options)."""
    found = []
    for i, text in enumerate(q.options):
        t = " ".join(text.lower().split())
        for reason, rx in _COMPILED:
            m = rx.search(t)
            if not m:
                continue
            if reason == "names_letters":
                named = set(re.findall(rf"\b{_L}\b", m.group(0)))
                if not named or any(LETTERS.index(x.upper()) >= len(q.options) for x in named):
                    continue
            found.append((LETTERS[i], reason, text))
            break
    return found


def reference_reason(q: Question) -> str | None:
    """One line saying why `q` is scored in `hybrid` under `cf` (None when every option reads on its own)."""
    refs = option_references(q)
    if not refs:
        return None
    return "; ".join(f"option {x} names other options ({reason}: {text[:40]!r})" for x, reason, text in refs)


def reference_counts(questions: list[Question]) -> dict[str, int]:
    """For the data report: scored questions with an option that names other options, in all and by reason."""
    out: dict[str, int] = {"questions": 0}
    for q in questions:
        if not q.scored:
            continue
        refs = option_references(q)
        if refs:
            out["questions"] += 1
            for reason in {r for _, r, _ in refs}:
                out[reason] = out.get(reason, 0) + 1
    return out


# --- baselines that fit a cloze scorer ---------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "for",
        "and",
        "or",
        "is",
        "are",
        "be",
        "by",
        "with",
        "as",
        "at",
        "from",
        "that",
        "this",
        "which",
        "what",
        "who",
        "it",
        "its",
        "not",
        "no",
    ]
)


def words(text: str) -> set[str]:
    """Lower-cased word set without a few function words (they would make every option overlap)."""
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS}


def overlap(q: Question, i: int) -> float:
    """Share of option i's words that occur in the stem (0 for an option without content words)."""
    ow = words(q.options[i])
    return len(ow & words(q.stem)) / len(ow) if ow else 0.0


def top_k(scores: list[float], k: int) -> frozenset[str]:
    """The letters of the k highest scores (ties towards the earlier option)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return frozenset(LETTERS[i] for i in order[:k])


CF_BASELINES = {  # name -> (label, the score an option gets; the k best are chosen)
    "longest": ("longest option(s)", lambda q, i: len(q.options[i])),
    "shortest": ("shortest option(s)", lambda q, i: -len(q.options[i])),
    "overlap": ("most word overlap with the question", overlap),
}


def cf_baseline_correct(questions: list[Question], ks: dict[str, int]) -> dict[str, dict[str, bool]]:
    """{baseline: {qid: correct}} for the cloze baselines: the k longest options, the k shortest, the k options
    whose words most occur in the stem (k = `ks[qid]`, the number of answers asked for)."""
    out: dict[str, dict[str, bool]] = {}
    for name, (_, fn) in CF_BASELINES.items():
        out[name] = {q.qid: top_k([fn(q, i) for i in range(len(q.options))], ks[q.qid]) == q.key
                     for q in questions if q.scored and q.qid in ks}
    return out
