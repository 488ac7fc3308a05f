"""Scoring a model on questions: letter log-likelihood (`mcf`), option-text log-likelihood (`cf`, `hybrid`: see
`cloze`) or generation; position bias measured by CircularEval and removed by PriDe (`pride`).

A question with k correct letters is answered with k letters (the k most likely letters, or the letters a reply
names) and counts as correct only when the chosen set equals the key. With `circular=True` each question is
asked again with its options rotated (n rotations for n options, as MMBench's CircularEval does); it is
circular-correct only if every rotation is answered correctly, so a model that always picks one position cannot
pass on a lucky key. With `pride` (letter log-likelihood) a random 5% of the questions is asked under every
rotation, the model's letter prior is estimated from them and divided out (`pride_choice`, `pride_correct`).

In `cf` and `hybrid` the k options with the best normalised scores are the answer; a `cf` question with an option
that names other options ("All of the above") is scored in `hybrid`, and its record says so (`scored_as`,
`formulation_reason`). Rotations mean nothing when the options are not shown: CircularEval is `mcf` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tqdm import tqdm

from spdf_lib.exams import pride as P
from spdf_lib.exams.cloze import (
    UNCONDITIONAL,
    Norm,
    cloze_context,
    continuations,
    normalise,
    reference_reason,
    top_k,
)
from spdf_lib.exams.extract import extract_answer
from spdf_lib.exams.parse import Question
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
    return top_k(logprobs, k)


@dataclass
class Asked:
    """One (question, option order) pair put to the model."""

    q: Question
    order: tuple[int, ...]
    k: int


def _jobs(questions: list[Question], circular: bool, answer_count: AnswerCount, rotate: set[str] = frozenset()
          ) -> list[Asked]:
    """Every question in its own order, and under all its rotations with `circular` (or when in `rotate`)."""
    jobs = []
    for q in questions:
        n, k = len(q.options), n_answers(q, answer_count)
        for r in range(n if circular or q.qid in rotate else 1):
            jobs.append(Asked(q, rotation(n, r), k))
    return jobs


class _Bar:
    """A plain tqdm bar over questions (questions/s, ETA) fed by finished jobs; a question's rotations each
    count 1/n of it."""

    def __init__(self, jobs: list, n_questions: int, desc: str, enabled: bool, stats=None):
        per_q: dict[str, int] = {}
        for j in jobs:
            per_q[j.q.qid] = per_q.get(j.q.qid, 0) + 1
        self.weight = [1.0 / per_q[j.q.qid] for j in jobs]
        self.bar = tqdm(total=n_questions, desc=desc, unit="q", leave=True, disable=not enabled,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} "
                                   "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")
        self.stats = stats  # a served model's request counts: the bar shows its retries


    def __call__(self, done: Sequence[int]) -> None:
        if self.stats is not None and (retries := sum(self.stats.retries.values())):
            self.bar.set_postfix_str(f"retries {retries}", refresh=False)
        self.bar.update(sum(self.weight[i] for i in done))

    def close(self) -> None:
        """End the bar: at its total when every job finished (fractional rotations add up to it up to
        rounding), where it stopped when scoring failed part-way (an API that went away)."""
        if self.bar.total - self.bar.n < 0.5:
            self.bar.n = self.bar.total
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
    formulation: str = "mcf",
    norm: Norm = "char",
    pride: bool = False,
    pride_share: float = 0.05,
    seed: int = 0,
) -> list[dict]:
    """Ask `lm` every question (and its rotations) and return one record per question.

    `formulation` `mcf` scores letters (log-likelihood) or generates; `cf` and `hybrid` score option texts under
    `norm` (`score_options`). `lm` is a `LocalLM` (every formulation and mode) or an `ApiLM` (`mcf` generation);
    `prompt_format` (generation) is `chat` or `plain` (see `prompts`). A record holds the model, question id,
    certification, field, parsed options, key, the exact prompt of the unrotated question (`prompt`: the
    rendered chat, the API request's messages as JSON, or the text), the chosen letters, whether they are
    correct, the letter log-probabilities (log-likelihood mode) or the reply and its extraction reason
    (generation mode), and with `circular` the choice (as original letters), reply and reason under every
    rotation and whether all of them are correct. With `pride` (`mcf` log-likelihood) the records also hold the
    estimated letter prior (`pride_prior`), the debiased scores, choice and correctness, and whether the question
    was one of the `pride_share` used for the estimate. `progress` shows a tqdm bar over the questions."""
    questions = [q for q in questions if q.scored]
    if formulation in ("cf", "hybrid"):
        if mode != "loglik":
            raise ValueError(f"formulation {formulation} scores option texts: set mode=loglik (generation is mcf)")
        return score_options(lm, questions, formulation, norm, answer_count, fields, progress)
    if formulation != "mcf":
        raise ValueError(f"formulation {formulation!r}: score() takes mcf, cf or hybrid (best runs two of them)")
    if mode == "loglik" and not hasattr(lm, "letter_logprobs"):
        raise ValueError(f"{type(lm).__name__} cannot score log-likelihoods; use mode=generate")
    if mode not in ("loglik", "generate"):
        raise ValueError(f"mode {mode!r}: choose loglik or generate")
    pride = pride and mode == "loglik"
    estimation = P.estimation_sample(questions, pride_share, seed) if pride else set()
    jobs = _jobs(questions, circular, answer_count, estimation)
    bar = _Bar(jobs, len(questions), f"scoring {lm.name} ({mode})", progress,
               getattr(lm, "stats", None))
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
                "formulation": "mcf",
                "scored_as": "mcf",
                "formulation_reason": None,
                "prompt_format": prompt_format if mode == "generate" else "loglik",
                "prompt": text,
                "choice": chosen,
                "correct": original == j.q.key,
                "letter_logprobs": sc,
                "reply": reply,
                "extraction": reason,
                "rotation_choices": [],
                "rotation_logprobs": [] if mode == "loglik" and (circular or j.q.qid in estimation) else None,
                "rotation_replies": [] if mode == "generate" and circular else None,
                "rotation_extractions": [] if mode == "generate" and circular else None,
            }
        if rec["rotation_logprobs"] is not None:
            rec["rotation_logprobs"].append(sc)
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
    out = list(records.values())
    if pride:
        apply_pride(out, estimation)
    return out


def apply_pride(records: list[dict], estimation: set[str]) -> dict[int, list[float]]:
    """Add PriDe's debiased answers to `mcf` log-likelihood records (in place) and return the prior: estimated
    from the records in `estimation` (their `rotation_logprobs`, every rotation), divided out of the others'
    letter log-probabilities; the estimation questions are answered from their rotation average."""
    est = [r for r in records if r["qid"] in estimation]
    prior = P.estimate_prior([r["rotation_logprobs"] for r in est])
    counts: dict[int, int] = {}
    for r in est:
        counts[r["n_options"]] = counts.get(r["n_options"], 0) + 1
    for r in records:
        n = r["n_options"]
        r["pride_estimation"] = r["qid"] in estimation
        if r["pride_estimation"]:
            scores = P.original_average(r["rotation_logprobs"])
        else:
            scores = P.debias(r["letter_logprobs"], prior.get(n))
        r["pride_prior"] = prior.get(n)
        r["pride_prior_questions"] = counts.get(n, 0)
        r["pride_scores"] = scores
        r["pride_choice"] = "".join(sorted(top_letters(scores, r["n_answers"])))
        r["pride_correct"] = r["pride_choice"] == r["key"]
    return prior


def score_options(
    lm, questions: list[Question], formulation: str = "cf", norm: Norm = "char", answer_count: AnswerCount = "key",
    fields: dict[str, str] | None = None, progress: bool = True,
) -> list[dict]:
    """`cf` or `hybrid`: every option's text scored as a continuation (`LocalLM.option_logliks`, shared
    prefixes) and normalised by `norm`; the k best options are the answer. Under `cf` a question with an option
    that names others is scored in `hybrid` (`scored_as`, `formulation_reason`). `pmi` also scores every option
    after the unconditional context "Answer:"."""
    if not hasattr(lm, "option_logliks"):
        raise ValueError(f"{type(lm).__name__} cannot score option texts; use formulation mcf with mode=generate")
    plan = []
    for q in questions:
        reason = reference_reason(q) if formulation == "cf" else None
        how = "hybrid" if reason or formulation == "hybrid" else "cf"
        plan.append((q, how, reason, cloze_context(q) if how == "cf" else loglik_prompt(q)))
    requests = [(ctx, continuations(q)) for q, _, _, ctx in plan]
    if norm == "pmi":
        requests += [(UNCONDITIONAL, continuations(q)) for q in questions]
    bar = _Bar([Asked(q, (), 0) for q, *_ in plan] * (2 if norm == "pmi" else 1), len(questions),
               f"scoring {lm.name} ({formulation}, {norm})", progress, getattr(lm, "stats", None))
    try:
        lls = lm.option_logliks(requests, progress=bar)
    finally:
        bar.close()
    records = []
    for i, (q, how, reason, ctx) in enumerate(plan):
        k = n_answers(q, answer_count)
        ll = lls[i]
        uncond = [u for u, _ in lls[len(plan) + i]] if norm == "pmi" else [None] * len(ll)
        scores = [normalise(s, n, text, norm, u) for (s, n), text, u in zip(ll, q.options, uncond, strict=True)]
        choice = "".join(sorted(top_k(scores, k)))
        records.append({
            "model": lm.name, "qid": q.qid, "row": int(q.qid), "certification": q.certification,
            "field": (fields or {}).get(q.certification, ""), "number": q.number, "options": list(q.options),
            "n_options": len(q.options), "key": "".join(sorted(q.key)), "n_answers": k, "mode": "loglik",
            "formulation": formulation, "scored_as": how, "formulation_reason": reason, "norm": norm,
            "prompt_format": "loglik", "prompt": ctx, "choice": choice, "correct": choice == "".join(sorted(q.key)),
            "option_logliks": [s for s, _ in ll], "option_tokens": [n for _, n in ll],
            "option_chars": [len(t) for t in q.options], "option_unconditional": uncond if norm == "pmi" else None,
            "option_scores": scores, "letter_logprobs": None, "reply": None, "extraction": None,
            "rotation_choices": [], "circular_correct": None,
        })
    return records


def score_all(p, lm, chosen: list[Question], fields: dict[str, str], fmt: str, progress: bool) -> dict[str, list[dict]]:
    """Records by formulation of the exam `p` (`ExamParams`): one, or (`best`, as OLMES) both mcf and cf."""
    formulation = p.resolved_formulation
    kw = dict(mode=p.mode, circular=p.circular, answer_count=p.answer_count, batch_tokens=p.batch_tokens,
              max_new_tokens=p.max_new_tokens, fields=fields, prompt_format=fmt if p.mode == "generate" else "chat",
              progress=progress, norm=p.norm, pride=p.pride, pride_share=p.pride_share, seed=p.seed)
    forms = ("mcf", "cf") if formulation == "best" else (formulation,)
    return {f: score(lm, chosen, formulation=f, **kw) for f in forms}
