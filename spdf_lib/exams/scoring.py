"""Scoring a model on questions: letter log-likelihood or generation, plain and position-debiased (CircularEval).

A question with k correct letters is answered with k letters (the k most likely letters, or the letters a reply
names) and counts as correct only when the chosen set equals the key. With `circular=True` each question is
asked again with its options rotated (n rotations for n options, as MMBench's CircularEval does); it is
circular-correct only if every rotation is answered correctly, so a model that always picks one position cannot
pass on a lucky key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tqdm import tqdm

from spdf_lib.exams.extract import extract_answer
from spdf_lib.exams.parse import LETTERS, Question
from spdf_lib.exams.prompts import PromptFormat, generation_prompt, loglik_prompt, rotation, to_original

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


class _Bar:
    """A plain tqdm bar over questions (questions/s, ETA) fed by finished jobs; a question's rotations each
    count 1/n of it."""

    def __init__(self, jobs: list[Asked], n_questions: int, desc: str, enabled: bool):
        self.weight = [1.0 / (len(j.order) if len(jobs) > n_questions else 1) for j in jobs]
        self.bar = tqdm(total=n_questions, desc=desc, unit="q", leave=True, disable=not enabled,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} "
                                   "[{elapsed}<{remaining}, {rate_fmt}]")

    def __call__(self, done: Sequence[int]) -> None:
        self.bar.update(sum(self.weight[i] for i in done))

    def close(self) -> None:
        self.bar.n = self.bar.total  # fractional rotations add up to the total up to rounding
        self.bar.close()


def score(
    lm,
    questions: list[Question],
    mode: Mode = "loglik",
    circular: bool = False,
    answer_count: AnswerCount = "key",
    batch_tokens: int = 2048,
    max_new_tokens: int = 16,
    fields: dict[str, str] | None = None,
    prompt_format: PromptFormat = "chat",
    progress: bool = True,
) -> list[dict]:
    """Ask `lm` every question (and its rotations) and return one record per question.

    `lm` is a `LocalLM` (both modes) or an `ApiLM` (generation only); `prompt_format` (generation) is `chat` or
    `plain` (see `prompts`). A record holds the model, question id, certification, field, parsed options, key,
    the exact prompt of the unrotated question (`prompt`: the rendered chat, the API request's messages as
    JSON, or the text), the chosen letters, whether they are correct, the letter log-probabilities
    (log-likelihood mode) or the reply and its extraction reason (generation mode), and with `circular` the
    choice (as original letters), reply and reason under every rotation and whether all of them are correct.
    `progress` shows a tqdm bar over the questions (questions/s, ETA)."""
    questions = [q for q in questions if q.scored]
    if mode == "loglik" and not hasattr(lm, "letter_logprobs"):
        raise ValueError(f"{type(lm).__name__} cannot score log-likelihoods; use mode=generate")
    if mode not in ("loglik", "generate"):
        raise ValueError(f"mode {mode!r}: choose loglik or generate")
    jobs = _jobs(questions, circular, answer_count)
    bar = _Bar(jobs, len(questions), f"scoring {lm.name} ({mode})", progress)
    try:
        if mode == "loglik":
            texts = [loglik_prompt(j.q, j.order) for j in jobs]
            scores = lm.letter_logprobs(texts, [len(j.order) for j in jobs], batch_tokens=batch_tokens,
                                        progress=bar)
            shown = [top_letters(s, j.k) for s, j in zip(scores, jobs, strict=True)]
            replies: list[str | None] = [None] * len(jobs)
            reasons: list[str | None] = [None] * len(jobs)
        else:
            prompts = [generation_prompt(j.q, j.k, prompt_format, j.order) for j in jobs]
            texts = [lm.render(p) if i == 0 or jobs[i].q is not jobs[i - 1].q else ""
                     for i, p in enumerate(prompts)]  # the unrotated prompt of each question, rendered once
            replies = lm.generate(prompts, max_new_tokens=max_new_tokens, progress=bar)
            found = [extract_answer(r, len(j.order)) for r, j in zip(replies, jobs, strict=True)]
            shown = [e.letters if e.answered else None for e in found]
            reasons = [e.reason for e in found]
            scores = [None] * len(jobs)
    finally:
        bar.close()

    records: dict[str, dict] = {}
    for j, s, sc, reply, reason, text in zip(jobs, shown, scores, replies, reasons, texts, strict=True):
        original = to_original(s, j.order) if s is not None else None
        chosen = "".join(sorted(original)) if original is not None else None
        rec = records.get(j.q.qid)
        if rec is None:  # the first job of a question is its unrotated order
            rec = records[j.q.qid] = {
                "model": lm.name,
                "qid": j.q.qid,
                "row": int(j.q.qid),
                "certification": j.q.certification,
                "field": (fields or {}).get(j.q.certification, ""),
                "number": j.q.number,
                "options": list(j.q.options),
                "n_options": len(j.q.options),
                "key": "".join(sorted(j.q.key)),
                "n_answers": j.k,
                "mode": mode,
                "prompt_format": prompt_format if mode == "generate" else "loglik",
                "prompt": text,
                "choice": chosen,
                "correct": original == j.q.key,
                "letter_logprobs": sc,
                "reply": reply,
                "extraction": reason,
                "rotation_choices": [],
                "rotation_replies": [] if mode == "generate" and circular else None,
                "rotation_extractions": [] if mode == "generate" and circular else None,
            }
        if circular:
            rec["rotation_choices"].append(chosen)
            if mode == "generate":
                rec["rotation_replies"].append(reply)
                rec["rotation_extractions"].append(reason)
    for rec in records.values():
        if circular:
            rec["circular_correct"] = all(c == rec["key"] for c in rec["rotation_choices"])
        else:
            rec["circular_correct"] = None
    return list(records.values())
