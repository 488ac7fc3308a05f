"""Primer's analysis (So et al. 2021): speedups as the paper defines them, and power-law fits.

Primer-EZ = squared ReLU + multi-dconv-head attention (both options of `spdf_lib.modeling_gpt`). The paper's
speedup (§4, "speedup factor"): the baseline's training compute to reach *its own final quality*, divided by the
compute the variant needs to reach that same quality (each read where its validation-loss curve first reaches
that loss, interpolating between evaluations). Here compute is training FLOPs (analytic, counted by the
training loop) or wall-clock training seconds, and quality is the validation loss. When a variant never reaches
the baseline's final loss, the speedup is below 1: the baseline's compute to reach the *variant's* final loss
over the variant's total compute (the same ratio read from the other side).

Power laws (§4.2, Fig. 1): at each model size the end point (compute, final loss) of each architecture is fitted
with loss = a · C^(−k); with a shared exponent k, the two lines are parallel in log-log space and the compute
saving is the constant factor (a_baseline / a_variant)^(1/k).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


def compute_to_reach(x: np.ndarray | list, loss: np.ndarray | list, target: float) -> float | None:
    """The compute (or time) at which a loss curve first reaches `target`, by linear interpolation between the
    two logged points around the crossing; None when the curve never gets that low.

    `x` is cumulative compute (FLOPs) or seconds, increasing; `loss` the matching losses (noisy is fine: the
    first crossing is used).
    """
    x, loss = np.asarray(x, dtype=float), np.asarray(loss, dtype=float)
    if x.shape != loss.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError("x and loss must be 1-D arrays of the same non-zero length")
    below = np.nonzero(loss <= target)[0]
    if len(below) == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(x[0])
    x0, x1, l0, l1 = x[i - 1], x[i], loss[i - 1], loss[i]
    return float(x0 + (l0 - target) / (l0 - l1) * (x1 - x0))


def eval_curve(metrics: pd.DataFrame, x: str) -> tuple[np.ndarray, np.ndarray]:
    """(compute, validation loss) points of a run's metrics, compute = `x` ("flops" or "elapsed_s")."""
    ev = metrics.dropna(subset=["eval_loss"]).sort_values("step")
    return ev[x].to_numpy(float), ev["eval_loss"].to_numpy(float)


def speedup(base: pd.DataFrame, variant: pd.DataFrame, x: str = "flops") -> float:
    """The paper's speedup of `variant` over `base` (metrics frames with eval_loss), in compute `x`."""
    bx, bl = eval_curve(base, x)
    vx, vl = eval_curve(variant, x)
    if len(bx) == 0 or len(vx) == 0:
        raise ValueError("both runs need logged validation losses (set eval_every)")
    # Both sides read at their first crossing of the target, so a run compared with itself gives exactly 1
    # even when its validation loss is noisy (the baseline can touch its final loss before the end).
    reached = compute_to_reach(vx, vl, bl[-1])
    if reached is not None and reached > 0:
        return float(compute_to_reach(bx, bl, bl[-1]) / reached)
    base_reach = compute_to_reach(bx, bl, vl[-1])  # the variant ends above the baseline's final loss
    return float(base_reach / vx[-1]) if base_reach is not None else float("nan")


@dataclass
class PowerLaw:
    a: float
    k: float

    def __call__(self, c: np.ndarray) -> np.ndarray:
        return self.a * np.power(c, -self.k)


def fit_power_law(compute: Sequence[float], loss: Sequence[float]) -> PowerLaw:
    """Least-squares fit of log(loss) = log(a) − k·log(C)."""
    log_c, log_l = np.log(np.asarray(compute, float)), np.log(np.asarray(loss, float))
    if len(log_c) < 2:
        raise ValueError("a power-law fit needs at least 2 model sizes")
    slope, intercept = np.polyfit(log_c, log_l, 1)
    return PowerLaw(float(np.exp(intercept)), float(-slope))


def shared_slope_fit(points: pd.DataFrame) -> tuple[float, dict[str, float]]:
    """Fit loss = a_arch · C^(−k) with one k for all architectures (columns: arch, compute, loss).

    Returns (k, {arch: a}); the constant compute saving of arch B over A is (a_A / a_B)^(1/k).
    """
    archs = sorted(points["arch"].unique())
    X = np.column_stack([-np.log(points["compute"].to_numpy(float))] +
                        [(points["arch"] == a).to_numpy(float) for a in archs])
    coef, *_ = np.linalg.lstsq(X, np.log(points["loss"].to_numpy(float)), rcond=None)
    return float(coef[0]), {a: float(np.exp(c)) for a, c in zip(archs, coef[1:], strict=True)}


def constant_speedup(k: float, a: dict[str, float], base: str, variant: str) -> float:
    """Compute saving implied by parallel power laws: baseline compute / variant compute at equal loss."""
    return float((a[base] / a[variant]) ** (1.0 / k))


def powerlaw_table(summary: pd.DataFrame, base: str = "baseline") -> pd.DataFrame:
    """Shared-slope power laws over model sizes from per-(size, variant) end points (columns `variant`,
    `train_flops`, `eval_loss`): one row per architecture with a, k and its constant speedup over `base`."""
    points = summary.rename(columns={"variant": "arch", "train_flops": "compute", "eval_loss": "loss"})
    k, a = shared_slope_fit(points)
    return pd.DataFrame([{"arch": arch, "a": a[arch], "k": k, "constant_speedup": constant_speedup(k, a, base, arch)}
                         for arch in a])
