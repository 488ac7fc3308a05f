"""What an exam point (`exams`) costs on this machine: loading the model, then one log-likelihood forward per
prompt (`spdf_lib.unit_costs.Calibration.exam_prompt`)."""

from __future__ import annotations

from typing import Any

from spdf_lib.unit_costs import Calibration, Parts, PointPlan, Pricer, add_parts

EXAM_LOAD_S = 8.0  # loading SmolLM2 from its GGUF file (dequantised) and its tokenizer
EXAMS_CIRCULAR_PROMPTS = 4  # CircularEval asks each question under its rotations (4 options: 4 prompts)


def exam_parts(p: dict[str, Any], n_questions: int, cal: Calibration) -> Parts:
    """The model load and the prompts of `n_questions` (each under its rotations with `circular`)."""
    prompts = n_questions * (EXAMS_CIRCULAR_PROMPTS if p.get("circular") else 1)
    return {"start": EXAM_LOAD_S, "score": prompts * cal.exam_prompt(p.get("batch_tokens", 2048))}


def price(pricer: Pricer, point, start: Parts) -> PointPlan:
    """Seconds of an exam point on this machine; an API backend is not priced (its speed is not measured here)."""
    from spdf_lib.exams.params import ExamParams
    from spdf_lib.exams.run import prepare, select

    p = point.params
    ep = ExamParams(**p)
    if ep.backend == "api":
        return PointPlan(point.id, point.stage, "exams (api)", None, "an API's speed is not measured here")
    key = ("exams", ep.data_file, ep.fields_file)
    if key not in pricer.memo:  # parsing the certification data takes seconds: once per plan
        pricer.memo[key] = prepare(ep)
    questions, _, _, fields = pricer.memo[key]
    n = len(select(questions, ep, fields))
    return PointPlan(point.id, point.stage, f"exams {n} questions", add_parts(start, exam_parts(p, n, pricer.cal)))
