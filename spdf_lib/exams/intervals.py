"""Bootstrap intervals for the exam study's accuracies (over questions) and pass shares (over certifications).

- Accuracy is a share of questions: the questions are resampled with replacement (percentile interval).
- Pass share is a share of certifications, so the certification is the unit that is resampled: whole
  certifications are drawn with replacement, each keeping the pass it earned on its own questions, and the share
  of passes is recomputed (a one-stage cluster bootstrap). The interval is the noise of having these
  certifications rather than others like them, which is what "the model passes x% of certifications" claims.

Why not also resample the questions inside each drawn certification (a two-stage bootstrap)? Each
certification's observed pass already carries the noise of its questions: the spread of passes across
certifications is the between-certification spread *plus* the within-certification question noise. Resampling
questions again inside each drawn certification adds that question noise a second time, so the two-stage interval
is too wide (Davison & Hinkley 1997, Bootstrap Methods and their Application, §3.8: with many clusters, resample
the clusters only). The earlier interval did the opposite and resampled only the questions inside fixed
certifications, leaving out the between-certification spread: a certification far from the 70% bar never
changes its pass under that resampling, so when every certification is all right or all wrong the interval had
zero width whatever the number of certifications (tests/test_exams_intervals.py).
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


def _nan(level: float) -> Interval:
    return Interval(float("nan"), float("nan"), float("nan"), level)


def accuracy_interval(correct: Sequence[float], n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0
                      ) -> Interval:
    """Mean of per-question correctness (0/1, or a probability for random guessing) with its bootstrap interval."""
    x = np.asarray(correct, dtype=np.float64)
    if not len(x):
        return _nan(level)
    rng = np.random.default_rng(seed)
    return _interval(x.mean(), x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1), level)


def certification_passes(correct_by_cert: Mapping[str, Sequence[bool]], threshold: float = 0.7, rule: str = ">"
                         ) -> np.ndarray:
    """Each certification's pass (0/1) under the pass rule, in the mapping's order."""
    return np.array([float(passes(int(np.sum(c)), len(c), threshold, rule)) for c in correct_by_cert.values()])


def pass_share_interval(
    correct_by_cert: Mapping[str, Sequence[bool]], threshold: float = 0.7, rule: str = ">", n_boot: int = N_BOOT,
    level: float = LEVEL, seed: int = 0,
) -> Interval:
    """Share of certifications passed, with the interval of resampling whole certifications (see the module)."""
    if not correct_by_cert:
        return _nan(level)
    passed = certification_passes(correct_by_cert, threshold, rule)
    rng = np.random.default_rng(seed)
    boots = passed[rng.integers(0, len(passed), size=(n_boot, len(passed)))].mean(1)
    return _interval(float(passed.mean()), boots, level)
