"""Prompt formats, option rotations (CircularEval) and answer extraction from generated text.

Log-likelihood prompts follow lm-evaluation-harness's MMLU task (`doc_to_text`), zero-shot:

    {stem}
    A. {option}
    B. {option}
    Answer:

and the continuations scored are " A", " B", … (`target_delimiter` " "). Chat prompts put the same question in
one user message with an instruction to answer with letters only.
"""

from __future__ import annotations

import re

from spdf_lib.exams.parse import LETTERS, Question

_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def rotation(n: int, r: int) -> tuple[int, ...]:
    """Option order for rotation `r` of `n` options: shown position i holds original option (i + r) mod n."""
    return tuple((i + r) % n for i in range(n))


def to_original(shown: frozenset[str], order: tuple[int, ...]) -> frozenset[str]:
    """Letters chosen among the shown (rotated) options -> the original options' letters."""
    return frozenset(LETTERS[order[LETTERS.index(s)]] for s in shown)


def question_block(q: Question, order: tuple[int, ...] | None = None) -> str:
    order = order if order is not None else tuple(range(len(q.options)))
    lines = [q.stem.strip()]
    lines += [f"{LETTERS[i]}. {q.options[j]}" for i, j in enumerate(order)]
    return "\n".join(lines)


def loglik_prompt(q: Question, order: tuple[int, ...] | None = None) -> str:
    """The MMLU-style zero-shot prompt: question, lettered options, `Answer:`."""
    return question_block(q, order) + "\nAnswer:"


def chat_messages(q: Question, n_answers: int, order: tuple[int, ...] | None = None) -> list[dict]:
    """One user message asking for `n_answers` letters and nothing else."""
    if n_answers == 1:
        ask = "Reply with the letter of the correct option only."
    else:
        ask = f"Choose exactly {_NUMBER_WORDS.get(n_answers, n_answers)} options; reply with their letters only."
    text = (
        "The following is a multiple-choice question from a professional certification exam. "
        f"{ask}\n\n{question_block(q, order)}"
    )
    return [{"role": "user", "content": text}]


# --- answer extraction -------------------------------------------------------------------------------------

_L = r"[A-J]"
# "the answer is B", "Answer: **C**", "correct options are A and D", "answer: (B)"
_STATED = re.compile(
    rf"(?:answers?|options?|choices?)\s*(?:is|are|would be|:|=)\s*(?:options?\s+|letters?\s+)?"
    rf"[\s*_(\[]*({_L}(?:[\s*_)\].]*(?:,|and|&|/|\+)?[\s*_(\[]*{_L})*)(?![A-Za-z])",
    re.IGNORECASE,
)
# a reply that starts with its letter(s): "B", "B)", "B.", "**B**", "(B)", "B: text", "A, C", "A and C"
_LEADING = re.compile(
    rf"^[\s*_(\[]*({_L}(?:[\s*_)\].]*(?:,|and|&|/|\+)[\s*_(\[]*{_L})*)"
    rf"(?:$|[\s*_]*[).:\]\n,]|[\s*_]*$|\*\*)"
)
_RUN = re.compile(rf"^[\s*_(\[]*({_L}{{2,}})[\s*_)\].]*$")  # "AC", "**BD**"
_LIST = re.compile(rf"^[\s*_(\[]*({_L}(?:[\s*_)\].]*(?:,|and|&|/|\+)[\s*_(\[]*{_L})+)(?![A-Za-z])")  # "A and C …"
# "A" and "I" are words too: the article / pronoun before a lower-case word (but not before "and", "or", "is")
_WORD_AFTER = re.compile(r"(?:\s+(?!(?:and|or|is|are|was|were)\b)[a-z]|'|’)")
_LONE = re.compile(rf"(?<![A-Za-z0-9'’-])({_L})(?![A-Za-z0-9'’-])")


def _letters(span: str, n_options: int) -> frozenset[str] | None:
    found = frozenset(re.findall(_L, span))
    return found if found and all(LETTERS.index(x) < n_options for x in found) else None


def extract_answer(text: str, n_options: int) -> frozenset[str] | None:
    """The option letters a generated reply chooses, or None when it commits to none (or names a letter the
    question does not have).

    Handles "The answer is B.", "B) …", "**B**", "(C)", "Answer: A and D", "AC"; an article "A" at the start
    of a sentence ("A firewall …") is not a choice. When a reply only mentions letters in passing, it counts
    only if exactly one letter is mentioned."""
    text = text.strip()
    if not text:
        return None
    m = _STATED.search(text)
    if m:
        return _letters(m.group(1), n_options)
    m = _RUN.match(text) or _LIST.match(text) or _LEADING.match(text)
    if m:
        return _letters(m.group(1), n_options)
    lone = set()
    for m in _LONE.finditer(text):
        if m.group(1) in "AI" and _WORD_AFTER.match(text, m.end()):
            continue  # "A firewall …", "I think …"
        lone.add(m.group(1))
    return _letters("".join(lone), n_options) if len(lone) == 1 else None
