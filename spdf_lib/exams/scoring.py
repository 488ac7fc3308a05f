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

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tqdm import tqdm

from spdf_lib.exams import pride
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


@dataclass(frozen=True)
class ScoreOptions:
    """How `score` asks the questions.

    `formulation` `mcf` scores letters (`mode` loglik) or generates (`mode` generate); `cf` and `hybrid` score
    option texts under `norm` (`score_options`). `circular` asks each question under all its rotations
    (CircularEval); `answer_count` says how many letters are asked for (`n_answers`). `prompt_format`
    (generation) is `chat` or `plain` (see `prompts`). `pride` (`mcf` log-likelihood) estimates the letter prior
    from a `pride_share` of the questions (drawn with `seed`) and divides it out. `batch_tokens` bounds a
    log-likelihood batch, `max_new_tokens` a reply; `progress` shows a tqdm bar over the questions."""

    mode: Mode = "loglik"
    circular: bool = False
    answer_count: AnswerCount = "key"
    batch_tokens: int = 2048
    max_new_tokens: int = 16
    prompt_format: PromptFormat = "chat"
    progress: bool = True
    formulation: str = "mcf"
    norm: Norm = "char"
    pride: bool = False
    pride_share: float = 0.05
    seed: int = 0


@dataclass
class QuestionRecord:
    """What `score` records of one question (`mcf`), in this order; `as_dict` is the record the exam run writes
    (PriDe adds its keys there: `apply_pride`)."""

    model: str
    qid: str
    row: int
    certification: str
    field: str  # the certification's field (`fields`), "" when unknown
    number: Any
    options: list[str]  # as parsed
    n_options: int
    key: str  # the correct letters, sorted
    n_answers: int  # letters asked for
    mode: Mode
    formulation: str  # always "mcf" here (`score_options` records cf and hybrid)
    scored_as: str
    formulation_reason: str | None
    prompt_format: str  # chat or plain (generation), loglik
    prompt: str  # the exact prompt of the unrotated question (rendered chat, API messages as JSON, or text)
    choice: str | None  # the chosen letters (sorted), None when a reply named none
    correct: bool
    letter_logprobs: list[float] | None  # log-likelihood mode
    reply: str | None  # generation mode
    extraction: str | None  # generation mode: how the letters were read from the reply
    rotation_choices: list[str | None] = dataclasses.field(default_factory=list)  # circular: as original letters
    rotation_logprobs: list | None = None  # circular or PriDe estimation (log-likelihood mode)
    rotation_replies: list | None = None  # circular generation
    rotation_extractions: list | None = None
    circular_correct: bool | None = None  # circular: every rotation answered correctly

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def score(lm, questions: list[Question], opts: ScoreOptions = ScoreOptions(),
          fields: dict[str, str] | None = None) -> list[dict]:
    """Ask `lm` every question (and its rotations) as `opts` says and return one record per question: a
    `QuestionRecord` as a dict (`cf`, `hybrid`: `score_options`'s records), with PriDe's keys under `opts.pride`.

    `lm` is a `LocalLM` (every formulation and mode) or an `ApiLM` (`mcf` generation); `fields` maps a
    certification to its field."""
    questions = [q for q in questions if q.scored]
    if opts.formulation in ("cf", "hybrid"):
        if opts.mode != "loglik":
            raise ValueError(f"formulation {opts.formulation} scores option texts: set mode=loglik (generation is mcf)")
        return score_options(lm, questions, opts.formulation, opts.norm, opts.answer_count, fields, opts.progress)
    if opts.formulation != "mcf":
        raise ValueError(f"formulation {opts.formulation!r}: score() takes mcf, cf or hybrid (best runs two of them)")
    if opts.mode == "loglik" and not hasattr(lm, "letter_logprobs"):
        raise ValueError(f"{type(lm).__name__} cannot score log-likelihoods; use mode=generate")
    if opts.mode not in ("loglik", "generate"):
        raise ValueError(f"mode {opts.mode!r}: choose loglik or generate")
    with_pride = opts.pride and opts.mode == "loglik"
    estimation = pride.estimation_sample(questions, opts.pride_share, opts.seed) if with_pride else set()
    jobs = _jobs(questions, opts.circular, opts.answer_count, estimation)
    bar = _Bar(jobs, len(questions), f"scoring {lm.name} ({opts.mode})", opts.progress, getattr(lm, "stats", None))
    answers = _ask(lm, jobs, opts, bar)
    out = [r.as_dict() for r in _records(lm, jobs, answers, opts, fields, estimation)]
    if with_pride:
        apply_pride(out, estimation)
    return out


@dataclass
class _Answers:
    """The model's answers to the jobs, one entry per job."""

    shown: list  # the chosen letters in the shown order, None when a reply named none
    scores: list  # letter log-probabilities (log-likelihood mode)
    replies: list  # generation mode
    reasons: list  # generation mode
    texts: list[str]  # the unrotated prompt of each question (other jobs: "")


def _ask(lm, jobs: list[Asked], opts: ScoreOptions, bar: _Bar) -> _Answers:
    """Put every job to `lm`: letter log-likelihoods, or generated replies with the letters extracted."""
    try:
        if opts.mode == "loglik":
            texts = [loglik_prompt(j.q, j.order) for j in jobs]
            scores = lm.letter_logprobs(texts, [len(j.order) for j in jobs], batch_tokens=opts.batch_tokens,
                                        progress=bar)
            shown = [top_letters(s, j.k) for s, j in zip(scores, jobs, strict=True)]
            return _Answers(shown, scores, [None] * len(jobs), [None] * len(jobs), texts)
        prompts = [generation_prompt(j.q, j.k, opts.prompt_format, j.order) for j in jobs]
        texts = [lm.render(p) if i == 0 or jobs[i].q is not jobs[i - 1].q else ""
                 for i, p in enumerate(prompts)]  # the unrotated prompt of each question, rendered once
        replies = lm.generate(prompts, max_new_tokens=opts.max_new_tokens, progress=bar)
        found = [extract_answer(r, len(j.order)) for r, j in zip(replies, jobs, strict=True)]
        return _Answers([e.letters if e.answered else None for e in found], [None] * len(jobs), replies,
                        [e.reason for e in found], texts)
    finally:
        bar.close()


def _records(lm, jobs: list[Asked], a: _Answers, opts: ScoreOptions, fields: dict[str, str] | None,
             estimation: set[str]) -> list[QuestionRecord]:
    """One record per question from its jobs' answers: the first job (the unrotated order) fills it, the
    rotations add their choices."""
    mode, circular = opts.mode, opts.circular
    records: dict[str, QuestionRecord] = {}
    for j, s, sc, reply, reason, text in zip(jobs, a.shown, a.scores, a.replies, a.reasons, a.texts, strict=True):
        original = to_original(s, j.order) if s is not None else None
        chosen = "".join(sorted(original)) if original is not None else None
        rec = records.get(j.q.qid)
        if rec is None:  # the first job of a question is its unrotated order
            rec = records[j.q.qid] = QuestionRecord(
                model=lm.name, qid=j.q.qid, row=int(j.q.qid), certification=j.q.certification,
                field=(fields or {}).get(j.q.certification, ""), number=j.q.number, options=list(j.q.options),
                n_options=len(j.q.options), key="".join(sorted(j.q.key)), n_answers=j.k, mode=mode,
                formulation="mcf", scored_as="mcf", formulation_reason=None,
                prompt_format=opts.prompt_format if mode == "generate" else "loglik", prompt=text, choice=chosen,
                correct=original == j.q.key, letter_logprobs=sc, reply=reply, extraction=reason,
                rotation_logprobs=[] if mode == "loglik" and (circular or j.q.qid in estimation) else None,
                rotation_replies=[] if mode == "generate" and circular else None,
                rotation_extractions=[] if mode == "generate" and circular else None)
        if rec.rotation_logprobs is not None:
            rec.rotation_logprobs.append(sc)
        if circular:
            rec.rotation_choices.append(chosen)
            if mode == "generate":
                rec.rotation_replies.append(reply)
                rec.rotation_extractions.append(reason)
    for rec in records.values():
        rec.circular_correct = all(c == rec.key for c in rec.rotation_choices) if circular else None
    return list(records.values())


def apply_pride(records: list[dict], estimation: set[str]) -> dict[int, list[float]]:
    """Add PriDe's debiased answers to `mcf` log-likelihood records (in place) and return the prior: estimated
    from the records in `estimation` (their `rotation_logprobs`, every rotation), divided out of the others'
    letter log-probabilities; the estimation questions are answered from their rotation average."""
    est = [r for r in records if r["qid"] in estimation]
    prior = pride.estimate_prior([r["rotation_logprobs"] for r in est])
    counts: dict[int, int] = {}
    for r in est:
        counts[r["n_options"]] = counts.get(r["n_options"], 0) + 1
    for r in records:
        n = r["n_options"]
        r["pride_estimation"] = r["qid"] in estimation
        if r["pride_estimation"]:
            scores = pride.original_average(r["rotation_logprobs"])
        else:
            scores = pride.debias(r["letter_logprobs"], prior.get(n))
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
    opts = ScoreOptions(mode=p.mode, circular=p.circular, answer_count=p.answer_count, batch_tokens=p.batch_tokens,
                        max_new_tokens=p.max_new_tokens, prompt_format=fmt if p.mode == "generate" else "chat",
                        progress=progress, norm=p.norm, pride=p.pride, pride_share=p.pride_share, seed=p.seed)
    forms = ("mcf", "cf") if formulation == "best" else (formulation,)
    return {f: score(lm, chosen, dataclasses.replace(opts, formulation=f), fields) for f in forms}
