"""Scoring a model on questions: letter log-likelihood or generation, plain and position-debiased (CircularEval).

A question with k correct letters is answered with k letters (the k most likely letters, or the letters a reply
names) and counts as correct only when the chosen set equals the key. With `circular=True` each question is
asked again with its options rotated (n rotations for n options, as MMBench's CircularEval does); it is
circular-correct only if every rotation is answered correctly, so a model that always picks one position cannot
pass on a lucky key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from spdf_lib.exams.parse import LETTERS, Question
from spdf_lib.exams.prompts import chat_messages, extract_answer, loglik_prompt, rotation, to_original

Mode = Literal["loglik", "generate"]
AnswerCount = Literal["key", "stated"]


def n_answers(q: Question, answer_count: AnswerCount = "key") -> int:
    """How many letters the model must give: the key's size (default), or the count the stem states ("choose
    two"). Many keys in this data list fewer letters than the stem asks for, so "stated" makes those
    questions unwinnable; "key" tells the model how many answers the key has, as a real exam states it."""
    return len(q.key) if answer_count == "key" else q.n_stated


def top_letters(logprobs: list[float], k: int) -> frozenset[str]:
    """The k most likely letters (ties broken towards the earlier letter, deterministically)."""
    order = sorted(range(len(logprobs)), key=lambda i: (-logprobs[i], i))
    return frozenset(LETTERS[i] for i in order[:k])


@dataclass
class Asked:
    """One (question, option order) pair put to the model."""

    q: Question
    order: tuple[int, ...]
    k: int


def _jobs(questions: list[Question], circular: bool, answer_count: AnswerCount) -> list[Asked]:
    jobs = []
    for q in questions:
        n, k = len(q.options), n_answers(q, answer_count)
        for r in range(n if circular else 1):
            jobs.append(Asked(q, rotation(n, r), k))
    return jobs


def score(
    lm,
    questions: list[Question],
    mode: Mode = "loglik",
    circular: bool = False,
    answer_count: AnswerCount = "key",
    batch_tokens: int = 2048,
    max_new_tokens: int = 16,
    fields: dict[str, str] | None = None,
) -> list[dict]:
    """Ask `lm` every question (and its rotations) and return one record per question.

    `lm` is a `LocalLM` (both modes) or an `ApiLM` (generation only). A record holds the model, question id,
    certification, field, parsed options, key, the chosen letters, whether they are correct, the letter
    log-probabilities (log-likelihood mode) or the reply (generation mode), and with `circular` the choice under
    every rotation (as original letters) and whether all of them are correct."""
    questions = [q for q in questions if q.scored]
    if mode == "loglik" and not hasattr(lm, "letter_logprobs"):
        raise ValueError(f"{type(lm).__name__} cannot score log-likelihoods; use mode=generate")
    jobs = _jobs(questions, circular, answer_count)
    if mode == "loglik":
        scores = lm.letter_logprobs(
            [loglik_prompt(j.q, j.order) for j in jobs], [len(j.order) for j in jobs], batch_tokens=batch_tokens
        )
        shown = [top_letters(s, j.k) for s, j in zip(scores, jobs, strict=True)]
        replies: list[str | None] = [None] * len(jobs)
    elif mode == "generate":
        replies = lm.generate([chat_messages(j.q, j.k, j.order) for j in jobs], max_new_tokens=max_new_tokens)
        shown = [extract_answer(r, len(j.order)) for r, j in zip(replies, jobs, strict=True)]
        scores = [None] * len(jobs)
    else:
        raise ValueError(f"mode {mode!r}: choose loglik or generate")

    records: dict[str, dict] = {}
    for j, s, sc, reply in zip(jobs, shown, scores, replies, strict=True):
        original = to_original(s, j.order) if s is not None else None
        chosen = "".join(sorted(original)) if original is not None else None
        rec = records.get(j.q.qid)
        if rec is None:  # the first job of a question is its unrotated order
            rec = records[j.q.qid] = {
                "model": lm.name,
                "qid": j.q.qid,
                "certification": j.q.certification,
                "field": (fields or {}).get(j.q.certification, ""),
                "number": j.q.number,
                "options": list(j.q.options),
                "n_options": len(j.q.options),
                "key": "".join(sorted(j.q.key)),
                "n_answers": j.k,
                "mode": mode,
                "choice": chosen,
                "correct": original == j.q.key,
                "letter_logprobs": sc,
                "reply": reply,
                "rotation_choices": [],
            }
        if circular:
            rec["rotation_choices"].append(chosen)
    for rec in records.values():
        if circular:
            rec["circular_correct"] = all(c == rec["key"] for c in rec["rotation_choices"])
        else:
            rec["circular_correct"] = None
    return list(records.values())
