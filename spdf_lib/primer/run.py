"""The Primer ablation run (So et al. 2021, §4): every variant at every size and seed, each point one run of the
core's pre-training (`spdf_lib.pretrain`: the same runner, records and checkpoints as SPDF's) with the variant's
architecture options; then speedups and power laws (`spdf_lib.primer.analysis`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from spdf_lib.jsonio import read_json
from spdf_lib.locations import new_run_dir
from spdf_lib.params import Params
from spdf_lib.plots import metrics_frame
from spdf_lib.precision import resolve
from spdf_lib.pretrain import run_pretrain
from spdf_lib.pretrain_params import PretrainBase, PretrainParams, steps_for
from spdf_lib.primer import analysis
from spdf_lib.primer.params import VARIANTS, PrimerParams
from spdf_lib.records import Run
from spdf_lib.run_status import ends_runs_on_error

TABLES = ("runs", "speedups", "summary", "powerlaw")  # what a Primer run writes (records.read_table names)


def point_params(p: PrimerParams, size: str, variant: str, seed: int) -> PretrainParams:
    """The pre-training parameters of one (size, variant, seed) run of the Primer ablation: the shared fields
    of `PretrainBase` as `p` sets them, the variant's architecture, and a budget of `tokens_per_param` per
    parameter of the size."""
    from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config

    with torch.device("meta"):
        n_params = sum(x.numel() for x in GPTForCausalLM(gpt_config(size, vocab_size=p.model_vocab,
                                                                      n_positions=p.seq_len)).parameters())
    tokens = max(p.min_tokens, p.tokens_per_param * n_params)
    steps = steps_for(tokens, p.batch_size, p.seq_len)
    shared = p.model_dump(include=set(PretrainBase.model_fields) - set(Params.model_fields))
    return PretrainParams(model_size=size, **VARIANTS[variant], **shared, tokens=tokens, seed=seed,
                          eval_every=max(1, steps // p.eval_points), log_every=max(1, steps // 50))


@ends_runs_on_error
def run_primer(p: PrimerParams, run_dir: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Train every (size, variant, seed) of `p` into `<run_dir>/points/` (skipping finished ones), then compute
    speedups and power-law fits. Returns the tables (`runs`, `speedups`, `summary`, `powerlaw`) and `curves`."""
    run_dir = Path(run_dir or p.run_dir or new_run_dir("primer"))
    run = Run(run_dir, "primer", p.model_dump(), p.seed)
    run.describe(precision=resolve(p.precision, p.device), precision_requested=p.precision)
    rows, curves = [], {}
    for size in p.sizes:
        for seed in p.seeds:
            for variant in p.variants:
                point = run_dir / "points" / f"{size}-{variant}-s{seed}"
                if not (point / "results.json").is_file():
                    run_pretrain(point_params(p, size, variant, seed), point)
                curves[size, variant, seed] = metrics_frame(point)
                rows.append({"size": size, "variant": variant, "seed": seed, **read_json(point / "results.json")})
    runs = pd.DataFrame(rows)
    sp = []
    if "baseline" in p.variants:
        for (size, variant, seed), df in curves.items():
            base = curves[size, "baseline", seed]
            sp.append({"size": size, "variant": variant, "seed": seed,
                       "speedup_flops": analysis.speedup(base, df, "flops"),
                       "speedup_time": analysis.speedup(base, df, "elapsed_s")})
    speedups = pd.DataFrame(sp, columns=["size", "variant", "seed", "speedup_flops", "speedup_time"])
    summary = (runs.merge(speedups, on=["size", "variant", "seed"], how="left")
               .groupby(["size", "variant"], sort=False)
               .agg(eval_loss=("eval_loss", "mean"), eval_loss_std=("eval_loss", "std"),
                    train_flops=("train_flops", "mean"), train_seconds=("train_seconds", "mean"),
                    speedup_flops=("speedup_flops", "mean"), speedup_flops_std=("speedup_flops", "std"),
                    speedup_time=("speedup_time", "mean"), speedup_time_std=("speedup_time", "std"))
               .reset_index())
    results: dict[str, float] = {}
    for r in summary.itertuples():
        for m in ("eval_loss", "speedup_flops", "speedup_flops_std", "speedup_time", "speedup_time_std"):
            results[f"{m}_{r.variant}_{r.size}"] = getattr(r, m)
    powerlaw = pd.DataFrame(columns=["arch", "a", "k", "constant_speedup"])
    if len(p.sizes) >= 2 and "baseline" in p.variants:
        powerlaw = analysis.powerlaw_table(summary)
        results["powerlaw_k"] = powerlaw["k"].iloc[0]
        results |= {f"powerlaw_speedup_{r.arch}": r.constant_speedup for r in powerlaw.itertuples()}
    tables = {"runs": runs, "speedups": speedups, "summary": summary, "powerlaw": powerlaw}
    for name in TABLES:
        run.write_table(f"primer_{name}", tables[name])
    run.finish({k: float(v) for k, v in results.items()})
    return {**tables, "curves": curves}
