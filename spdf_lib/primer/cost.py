"""What a Primer ablation point costs: the pre-training runs it holds (one per size, variant and seed), each
priced as the core prices a pre-training run (`spdf_lib.unit_costs`, `spdf_lib.sweep_cost`)."""

from __future__ import annotations

from typing import Any

from spdf_lib.sweep_cost import PointCost, pretrain_flops
from spdf_lib.unit_costs import SHARDS_NOTE, Parts, PointPlan, Pricer, add_parts, pretrain_parts


def point_runs(params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(what the plan calls the point, the parameters of each of its pre-training runs)."""
    from spdf_lib.primer.params import PrimerParams
    from spdf_lib.primer.run import point_params

    p = PrimerParams(**params)
    runs = [point_params(p, size, v, seed).model_dump() for size in p.sizes for v in p.variants for seed in p.seeds]
    return f"{len(runs)} runs ({', '.join(p.sizes)})", runs


def price(pricer: Pricer, point, start: Parts) -> PointPlan:
    """Seconds of a Primer point on this machine: its runs' training and evaluation, after one start-up."""
    what, runs = point_runs(point.params)
    if any(r.get("tokenizer") for r in runs):
        return PointPlan(point.id, point.stage, what, None, SHARDS_NOTE)
    parts = start
    for r in runs:
        parts = add_parts(parts, pretrain_parts(r, pricer.cal))
    return PointPlan(point.id, point.stage, what, parts)


def gpu_cost(point) -> PointCost:
    """Training FLOPs and tokens of a Primer point on GPUs: the sum over its runs."""
    what, runs = point_runs(point.params)
    costs = [pretrain_flops(r) for r in runs]
    return PointCost(point.id, point.stage, what, *(sum(c[i] for c in costs) for i in range(3)), None)
