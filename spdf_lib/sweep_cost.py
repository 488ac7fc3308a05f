"""`spdf plan`: what a sweep will cost before anyone spends it.

On this machine (`machine_plan`, the default): each point's wall time from its work and unit costs measured here
(`spdf_lib.unit_costs`), per stage and in total at the chosen workers, against the sweep file's `budget_minutes`.

On GPUs (`plan_costs`, `--gpus N --gpu NAME`): each point's training FLOPs (the kit's counter), tokens, disk for
its token shards, and GPU-hours at a model-FLOPs utilisation (MFU) on a given GPU.

GPU-hours = executed training FLOPs / (peak dense bf16 FLOP/s of the GPU × MFU) / 3600, summed over the GPUs;
the wall time on `gpus` GPUs is that divided by `gpus` (data parallelism scales the throughput, not the FLOPs).
The FLOPs column is SPDF's sparse-aware count, but a GPU runs masked weights as dense matrices, so the time is
that of the dense FLOPs: only hardware that skips zeros (the paper's Cerebras CS-2) turns sparsity into time. The MFU
is the one `python -m bench gpu` measured for that GPU (`MEASURED_MFU`) or, until there is one, an assumption
that the output names as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Dense bf16 tensor-core peak FLOP/s (no sparsity), from the vendors' data sheets.
PEAK_BF16 = {"h200": 989e12, "h100": 989e12, "a100": 312e12, "l40s": 362e12, "a10": 125e12, "l4": 121e12}
# MFU of `gpt2-small-2048` training as `python -m bench gpu` measured it, by GPU (none measured yet).
MEASURED_MFU: dict[str, float] = {}
ASSUMED_MFU = 0.40


def peak_flops(gpu: str) -> float | None:
    """The dense bf16 peak of a GPU by name (`h100`, or a `torch.cuda.get_device_name()`), None when unknown."""
    name = gpu.lower()
    return next((v for k, v in sorted(PEAK_BF16.items(), key=lambda kv: -len(kv[0])) if k in name), None)


@dataclass
class PointCost:
    point: str
    stage: str
    what: str
    train_flops: float | None  # SPDF's count: non-zero weights only
    dense_flops: float | None  # what a GPU executes (masked weights as dense matrices)
    tokens: float | None
    shard_bytes: float | None


def pretrain_flops(params: dict[str, Any]) -> tuple[float, float, float]:
    """(training FLOPs, the same run's dense FLOPs, tokens) of one pre-training run: the kit's counter at the
    run's sparsity and context."""
    from spdf_lib import flops
    from spdf_lib.modeling_gpt import gpt_config
    from spdf_lib.pretrain import trained_tokens
    from spdf_lib.pretrain_params import PretrainParams

    p = PretrainParams(**{k: v for k, v in params.items() if k in PretrainParams.model_fields})
    overrides = {k: v for k in ("n_layer", "n_embd", "n_head") if (v := getattr(p, k)) is not None}
    config = gpt_config(p.model_size, vocab_size=p.model_vocab, n_positions=p.seq_len, mdha=p.mdha,
                        mdha_kernel=p.mdha_kernel, **overrides)
    tokens = trained_tokens(p)
    return (flops.count(config, tokens, p.sparsity, p.seq_len)["total"],
            flops.count(config, tokens, 0.0, p.seq_len)["total"], tokens)


def pretrain_gpu_cost(point) -> PointCost:
    """The GPU cost of one pre-training point (`spdf_pretrain`)."""
    params = point.params
    f, dense, t = pretrain_flops(params)
    return PointCost(point.id, point.stage, f"{params['model_size']} s={params['sparsity']:g}", f, dense, t, None)


def prepare_gpu_cost(point) -> PointCost:
    """The disk of one token-shard preparation (`data_prepare`)."""
    from spdf_lib.data.shards import planned_shard_bytes

    params = point.params
    tokens = params.get("tokens")
    vocab = 50257  # uint16 tokens (GPT-2's vocabulary; any vocabulary under 65,536 takes the same)
    val = min(10_000_000, int(0.01 * tokens)) if tokens else 0
    return PointCost(point.id, point.stage, f"{params['corpus']} shards", None, None, tokens,
                     planned_shard_bytes(int(tokens), vocab, val) if tokens else None)


def point_cost(point) -> PointCost:
    """The cost of one planned sweep point (`spdf_lib.sweep.Point`): the experiment table names each
    experiment's `gpu_cost(point)` (`Experiment.gpu_cost_ref`); fine-tuning and exams are small next to
    pre-training and have none."""
    from spdf_lib.experiments import get

    cost = get(point.experiment).gpu_cost_function()
    if cost is None:
        return PointCost(point.id, point.stage, point.experiment, None, None, None, None)
    return cost(point)


def plan_costs(sweep: str | Path, gpus: int, gpu: str, mfu: float | None = None) -> tuple[list[PointCost], list[str]]:
    """(per-point costs, the printed lines) of sweep file `sweep` on `gpus` GPUs of type `gpu`."""
    from spdf_lib.sweep import plan_sweep

    peak = peak_flops(gpu)
    if peak is None:
        raise ValueError(f"unknown GPU {gpu!r}; choose one of {', '.join(PEAK_BF16)}")
    if gpus < 1:
        raise ValueError(f"--gpus must be at least 1, got {gpus}")
    source = "given" if mfu else ("measured by `python -m bench gpu`" if gpu.lower() in MEASURED_MFU else
                                  "assumed: no GPU measurement yet, run `python -m bench gpu` on one")
    mfu = mfu or MEASURED_MFU.get(gpu.lower(), ASSUMED_MFU)
    plan = plan_sweep(sweep)
    costs = [point_cost(p) for p in plan.points]
    per_hour = peak * mfu * 3600  # FLOPs one GPU does in an hour at this MFU

    def cell(x: float | None, spec: str, width: int, unit: str = "") -> str:
        return format("—" if x is None else format(x, spec) + unit, f">{width}")

    lines = [f"plan {plan.name}: {len(costs)} points on {gpus} x {gpu.upper()} (bf16 peak {peak / 1e12:.0f} TFLOP/s "
             f"each), MFU {mfu:.0%} ({source})",
             f"{'STAGE':<14} {'POINT':<25} {'WHAT':<26} {'FLOPs':>10} {'tokens':>9} {'shards':>9} {'GPU-h':>8} "
             f"{'wall h':>7}"]
    for c in costs:
        gpu_h = c.dense_flops / per_hour if c.dense_flops else None
        lines.append(f"{c.stage[:14]:<14} {c.point:<25} {c.what[:26]:<26} {cell(c.train_flops, '.3e', 10)} "
                     f"{cell(c.tokens, '.3g', 9)} {cell(c.shard_bytes and c.shard_bytes / 1e9, '.1f', 9, ' GB')} "
                     f"{cell(gpu_h, '.1f', 8)} {cell(gpu_h and gpu_h / gpus, '.2f', 7)}")
    total = sum(c.train_flops or 0 for c in costs)
    dense = sum(c.dense_flops or 0 for c in costs)
    disk = sum(c.shard_bytes or 0 for c in costs) / 1e9
    lines += [f"total: {total:.3e} training FLOPs (sparse-aware; {dense:.3e} executed as dense matrices), "
              f"{dense / per_hour:,.0f} GPU-hours ({dense / per_hour / gpus:,.1f} h on {gpus} GPUs), {disk:,.1f} GB "
              f"of token shards",
              "GPU-hours count the dense FLOPs a GPU executes (masked weights are dense matrices there); fine-tuning "
              "and exam points are not counted (small next to pre-training)."]
    return costs, lines + _more_lines(plan.points)


def _more_lines(points) -> list[str]:
    """The lines the experiment table adds to a plan (`Experiment.plan_lines_ref`): a served exam's requests,
    tokens, time and money (`spdf_lib.exams.price`)."""
    from spdf_lib.experiments import get

    return [line for p in points if (more := get(p.experiment).plan_lines_function()) for line in more(p)]


# --- on this machine (CPU) ----------------------------------------------------------------------------------------


def default_workers() -> int:
    """The cores this process may use (`os.sched_getaffinity`): the default of `spdf sweep` and `spdf reproduce`."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    h, m = divmod(round(seconds / 60), 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


def machine_plan(plan, workers: int, todo_only: bool = False, recalibrate: bool = False):
    """(point plans, simulated wall seconds, the printed lines) of a planned sweep (`spdf_lib.sweep.Plan`) run on
    this machine with `workers` at a time (`spdf_lib.unit_costs`); `todo_only`: leave out points already done;
    `recalibrate`: measure the unit costs again instead of reading the cache."""
    import time

    from spdf_lib.precision import describe
    from spdf_lib.sweep import point_status
    from spdf_lib.unit_costs import Calibration, Pricer, simulate

    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    points = [p for p in plan.points if not (todo_only and point_status(p) == "done")]
    threads = max(1, default_workers() // max(1, min(workers, len(points))))
    t0 = time.perf_counter()
    pricers: dict[str, Pricer] = {}
    priced = []
    for point in points:
        precision = _point_precision(point.params)
        if precision not in pricers:
            pricers[precision] = Pricer(plan, Calibration(threads, precision, recalibrate=recalibrate))
        priced.append(pricers[precision].price(point))
    cals = [pr.cal for pr in pricers.values()]
    for cal in cals:
        cal.save()
    took = time.perf_counter() - t0
    seconds = {pp.point: pp.seconds or 0.0 for pp in priced}
    wall = simulate(points, seconds, workers)
    machine = describe("cpu")
    precisions = ", ".join(sorted(cal.precision for cal in cals)) or "—"
    lines = [f"plan {plan.name} on this machine: {machine['cpu_model']} ({machine['capability']}, bf16 "
             f"{'native' if machine['native_bf16'] else 'emulated'}), {workers} worker(s) x {threads} torch "
             f"thread(s), computing in {precisions}; unit costs: {sum(c.measured for c in cals)} measured "
             f"now, the rest cached ({took:.1f} s)"]
    by_stage: dict[str, list] = {}
    for pp in priced:
        by_stage.setdefault(pp.stage, []).append(pp)
    kinds = ("start", "train", "eval", "decode", "score")
    lines.append(
        f"{'STAGE':<21} {'POINTS':>6} {'WORKER-S':>9} {'EACH':>11}   " + " ".join(f"{k.upper():>7}" for k in kinds)
    )
    for stage, pps in by_stage.items():
        s = [pp.seconds for pp in pps if pp.seconds is not None]
        each = f"{min(s):.0f}-{max(s):.0f} s" if s and len(s) > 1 and max(s) > 1.05 * min(s) else (
            f"{s[0]:.0f} s" if s else "—")
        kind_s = {k: sum((pp.parts or {}).get(k, 0.0) for pp in pps) for k in kinds}
        lines.append(f"{stage[:21]:<21} {len(pps):>6} {sum(s):>9,.0f} {each:>11}   "
                     + " ".join(f"{kind_s[k]:>7,.0f}" for k in kinds))
        lines += [f"  not priced: {pp.point} ({pp.note})" for pp in pps if pp.seconds is None]
    total_kind = {k: sum((pp.parts or {}).get(k, 0.0) for pp in priced) for k in kinds}
    lines.append(f"{'(share of the total)':<21} {'':>6} {'':>9} {'':>11}   " + " ".join(
        f"{total_kind[k] / max(1e-9, sum(total_kind.values())):>7.0%}" for k in kinds))
    lines.append(f"total: {len(points)} points, {sum(seconds.values()):,.0f} worker-seconds; about "
                 f"{_duration(wall)} at {workers} worker(s) (the scheduler simulated)")
    from spdf_lib.machine_load import busy_line, worst

    conditions = None
    for cal in cals:
        conditions = worst(conditions, getattr(cal, "conditions", None))
    if busy := busy_line(conditions):
        lines.append(busy)
    if plan.budget_minutes is not None and wall > 60 * plan.budget_minutes:
        lines.append(f"OVER BUDGET: this plan takes about {_duration(wall)}, more than the {plan.budget_minutes:g} "
                     f"minutes {plan.file} is meant for, on this machine")
    return priced, wall, lines


def _point_precision(params: dict[str, Any]) -> str:
    """A point's precision request: `precision`, or an exam model's dtype."""
    if "precision" in params:
        return params["precision"]
    return {"bfloat16": "bf16", "float32": "fp32"}.get(params.get("dtype", "auto"), "auto")
