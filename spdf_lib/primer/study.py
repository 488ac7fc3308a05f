"""Primer's study in its regime (issue 34): per model size, each variant's speedup over the baseline with its
interval, in tokens, FLOPs and wall time, the gap cross-check, and a verdict beside the paper's number.

Verdicts (`speedup_verdict`, `spdf_lib.stats.verdict` on the log-speedup, claim "gain", margin log(MARGIN)):
"agrees" when the interval lies above 1 (the paper's side); "disagrees" when it lies below MARGIN (no speedup as
large as 1.1x is possible, where the paper claims 1.75x for Primer-EZ); otherwise "inconclusive at this noise".
The token speedup decides: the FLOP and wall-time ones are it times a ratio measured once per arm. Sizes are never
pooled: each has its own noise, speedups and verdicts.
"""

from __future__ import annotations

import math

import pandas as pd

from spdf_lib.primer import grid
from spdf_lib.primer.speedup import OutsideBudgets, Speedup, gap_speedup, speedup_interval
from spdf_lib.stats import Interval, verdict

MARGIN = 1.1
VARIANTS = ("primer-ez", "mdha", "relu2")
# The paper (So et al. 2021): ~35M parameters on LM1B. Primer-EZ 1.75x-2.34x by codebase/hardware; MDHA alone
# 1.76x ± 0.06; squared ReLU alone: a speedup in the ablations of Fig. 7, no single factor stated.
PAPER = {"primer-ez": "1.75x–2.34x (35M, LM1B)", "mdha": "1.76x ± 0.06 (35M)", "relu2": "> 1x (ablation, Fig. 7)"}


def speedup_verdict(s: Speedup) -> str:
    """'agrees', 'disagrees' or 'inconclusive at this noise' for a speedup interval (module docstring)."""
    iv = s.interval
    v = verdict(Interval(math.log(iv.estimate), math.log(iv.lo), math.log(iv.hi), iv.level), math.log(MARGIN),
                "gain")
    return "inconclusive at this noise" if v.label == "inconclusive" else v.label


def size_speedups(table: pd.DataFrame, size: str, n_draw: int = 4000) -> pd.DataFrame:
    """One row per variant of `size`: token, FLOP and wall-time speedups with intervals, the gap cross-check, the
    verdict and the paper's number. Empty when the size lacks a baseline with two budgets or a seed noise."""
    best = grid.chosen(table)
    curves = grid.curves(best)
    noise = grid.seed_noise(table, size)
    if (size, "baseline") not in curves or noise is None:
        return pd.DataFrame()
    base = curves[size, "baseline"]
    rows = []
    for variant in VARIANTS:
        if (size, variant) not in curves:
            continue
        cur = curves[size, variant]
        tok = speedup_interval(base, cur, noise, n_draw=n_draw)
        flop_ratio = grid.per_token_flops(table, size, "baseline") / grid.per_token_flops(table, size, variant)
        time_ratio = grid.per_step_seconds(table, size, "baseline") / grid.per_step_seconds(table, size, variant)
        try:
            gap = speedup_interval(base, cur, noise, n_draw=n_draw, reader=gap_speedup).text()
        except (ValueError, OutsideBudgets) as e:
            gap = f"not readable: {e}"
        rows.append({"size": size, "variant": variant, "sd": noise.sd, "df": noise.df,
                     "tokens": tok.text(), "flops": tok.scaled(flop_ratio).text(),
                     "wall": tok.scaled(time_ratio).text(), "flop_ratio": flop_ratio, "time_ratio": time_ratio,
                     "gap_crosscheck": gap, "verdict": speedup_verdict(tok), "paper": PAPER[variant],
                     "estimate": tok.interval.estimate, "lo": tok.interval.lo, "hi": tok.interval.hi})
    return pd.DataFrame(rows)


def first_crossing(base_metrics: list[pd.DataFrame], variant_metrics: list[pd.DataFrame], x: str = "flops") -> float:
    """The old reading, kept to be printed beside the new one **labelled biased**: the geometric mean over seed
    pairs of `analysis.speedup` read at first crossings of intermediate checkpoints of one cosine schedule (which
    sit above an annealed endpoint at the same tokens, pulling the factor toward 1)."""
    from spdf_lib.primer.analysis import speedup

    logs = [math.log(v) for b, m in zip(base_metrics, variant_metrics, strict=False)
            if (v := speedup(b, m, x)) > 0 and math.isfinite(v)]
    return math.exp(sum(logs) / len(logs)) if logs else float("nan")
