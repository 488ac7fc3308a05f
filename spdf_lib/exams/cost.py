"""What an exam point (`exams`) costs on this machine, counted as the scorer does it (`spdf_lib.exams.scoring`,
`exams.backends`): loading the model, then tokens through the model, not prompts times a typical prompt. The
experiment table registers `price` as the exams' `price_ref` (`spdf_lib.unit_costs.Pricer`).

- `cf` (the local default) and `hybrid`: one packed pass per request (the context, then every option's text),
  several requests a pass up to `PACK_TOKENS` (`LocalLM._packed_logliks`); the kit's GPT instead runs the
  context once and the options as one batch on its KV cache (`_shared_logliks`): two calls a question.
- `mcf`: one lettered prompt per question, under every rotation with `circular`; without it, PriDe's estimation
  sample (`pride_share` of the questions) is still asked under every rotation.
- `best`: `mcf` and `cf` both.

Token counts come from the questions' characters at a tokenizer's measured characters per token
(`CHARS_PER_TOKEN`): the plan does not load a tokenizer (SmolLM2's takes a minute from its GGUF file, the kit
model's is trained by the sweep itself). A served model's exam is not priced in seconds here: its requests,
tokens and money are `spdf_lib.exams.price`'s (`spdf plan` prints them).
"""

from __future__ import annotations

import math
from typing import Any

from spdf_lib.unit_costs import EXAM_PROMPT_TOKENS, Arch, Calibration, Parts, PointPlan, Pricer, add_parts

# Characters per token on the tiny exam set (86 questions; 26,016 characters of cloze contexts and options):
# SmolLM2's tokenizer gave 5,033 tokens, the nano model's 1,024-token BPE (Shakespeare + WikiText-2) 11,439.
CHARS_PER_TOKEN = {"smollm2": 5.2, "kit": 2.27}
LOAD_S = {"smollm2": 8.0, "kit": 1.0}  # loading the model and its tokenizer


def scorer_work(p: dict[str, Any], questions: list, formulation: str, kit_model: bool) -> dict[str, float]:
    """{"tokens": tokens through the model, "calls": forward calls} of one exam point's scoring."""
    from spdf_lib.exams.cloze import cloze_context, continuations
    from spdf_lib.exams.pride import estimation_sample
    from spdf_lib.exams.prompts import loglik_prompt

    cpt = CHARS_PER_TOKEN["kit" if kit_model else "smollm2"]
    tokens, calls = 0.0, 0.0
    if formulation in ("cf", "hybrid", "best"):
        for q in questions:
            context = cloze_context(q) if formulation != "hybrid" else loglik_prompt(q)
            tokens += (len(context) + sum(len(c) for c in continuations(q))) / cpt
        calls += 2 * len(questions) if kit_model else math.ceil(tokens / 512)  # exams.backends.PACK_TOKENS
    if formulation in ("mcf", "best"):
        sample = estimation_sample(questions, p.get("pride_share", 0.05), p.get("seed", 0)) if p.get("pride") else set()
        for q in questions:
            asked = len(q.options) if p.get("circular") or q.qid in sample else 1
            tokens += asked * len(loglik_prompt(q)) / cpt
            calls += asked
    return {"tokens": tokens, "calls": calls}


def exam_parts(p: dict[str, Any], questions: list, formulation: str, cal: Calibration,
               arch: Arch | None = None) -> Parts:
    """Loading the model, then the scorer's tokens and forward calls (`scorer_work`) at the unit costs of
    SmolLM2's architecture, or of the kit's GPT (`arch`) when the point scores a pre-trained kit model."""
    work = scorer_work(p, questions, formulation, kit_model=arch is not None)
    if arch is None:
        per_token = cal.exam_prompt(p.get("batch_tokens", 2048)) / EXAM_PROMPT_TOKENS
        return {"start": LOAD_S["smollm2"], "score": work["tokens"] * per_token}
    per_token = cal.forward(arch, 1, arch.n_positions) / arch.n_positions
    per_call = cal.forward(arch, 1, 8)
    return {"start": LOAD_S["kit"], "score": work["tokens"] * per_token + work["calls"] * per_call}


def price(pricer: Pricer, point, start: Parts) -> PointPlan:
    """Seconds of an exam point on this machine; a served model is not priced in seconds (its speed is not
    measured here; `spdf_lib.exams.price` counts its requests and tokens)."""
    from spdf_lib.exams.params import ExamParams
    from spdf_lib.exams.run import prepare, select

    p = point.params
    ep = ExamParams(**p)
    if ep.backend != "local":
        return PointPlan(point.id, point.stage, f"exams ({ep.backend})", None,
                         "a served model's speed is not measured here")
    key = ("exams", ep.data_file, ep.fields_file)
    if key not in pricer.memo:  # parsing the certification data takes seconds: once per plan
        pricer.memo[key] = prepare(ep)
    questions, _, _, fields = pricer.memo[key]
    chosen = [q for q in select(questions, ep, fields) if q.scored]
    pre = pricer.pretrain_params_of(point) if ep.model not in ("smollm2",) else None
    parts = exam_parts(p, chosen, ep.resolved_formulation, pricer.cal, Arch.of(pre) if pre else None)
    return PointPlan(point.id, point.stage, f"exams {len(chosen)} questions", add_parts(start, parts))


def served_plan_lines(point) -> list[str]:
    """The requests, tokens, time and cost of an exam of a served model (`spdf_lib.exams.price`), for
    `spdf plan`; none for a local model."""
    from spdf_lib.exams.params import ExamParams
    from spdf_lib.exams.run import plan_exam

    if point.params.get("backend", "local") == "local":
        return []
    ep = ExamParams(**point.params)
    return [f"exam {point.id}: {line.removeprefix('plan: ')}" for line in plan_exam(ep).lines(ep, 1.0)]
