"""Bootstrap intervals over questions for the exam study's accuracies and pass shares.

- Accuracy: the questions are resampled with replacement (percentile interval).
- Pass share: each whole certification's questions are resampled with replacement within it (its size kept),
  its pass decided again by the pass rule, and the share of passed certifications recomputed. This is the noise
  of having asked these questions rather than others like them; the certifications themselves are fixed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from spdf_lib.exams.baselines import passes
from spdf_lib.stats import Interval

N_BOOT, LEVEL = 1000, 0.95


def _interval(estimate: float, samples: np.ndarray, level: float) -> Interval:
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(estimate), float(lo), float(hi), level)


def accuracy_interval(correct: Sequence[float], n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0
                      ) -> Interval:
    """Mean of per-question correctness (0/1, or a probability for random guessing) with its bootstrap interval."""
    x = np.asarray(correct, dtype=np.float64)
    if not len(x):
        return Interval(float("nan"), float("nan"), float("nan"), level)
    rng = np.random.default_rng(seed)
    return _interval(x.mean(), x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1), level)


def pass_share_interval(
    correct_by_cert: Mapping[str, Sequence[bool]], threshold: float = 0.7, rule: str = ">", n_boot: int = N_BOOT,
    level: float = LEVEL, seed: int = 0,
) -> Interval:
    """Share of certifications passed, with the interval of resampling each certification's questions."""
    if not correct_by_cert:
        return Interval(float("nan"), float("nan"), float("nan"), level)
    rng = np.random.default_rng(seed)
    passed = np.zeros((n_boot, len(correct_by_cert)))
    estimate = []
    for j, c in enumerate(correct_by_cert.values()):
        c = np.asarray(c, dtype=np.int64)
        m = len(c)
        ok = np.array([passes(k, m, threshold, rule) for k in range(m + 1)])  # pass as a function of #correct
        estimate.append(ok[c.sum()])
        passed[:, j] = ok[c[rng.integers(0, m, size=(n_boot, m))].sum(1)]
    return _interval(float(np.mean(estimate)), passed.mean(1), level)
