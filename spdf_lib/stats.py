"""Verdicts that can fail: confidence intervals of a difference and the rule that turns them into words.

A comparison in the report ("sparse pre-training loses no quality", "Primer-EZ is faster") is decided by the
interval of the difference, never by its point estimate alone:

- **Intervals** (`bootstrap_difference`): a bootstrap over both sources of noise at once — the test inputs
  (resampled with replacement, the same draw for both conditions, since they are decoded on the same inputs) and
  the seeds. Each replicate recomputes the corpus metric from per-example sufficient statistics (BLEU's n-gram
  counts, realised/total slot counts), so corpus BLEU is bootstrapped as corpus BLEU. The interval is the
  percentile interval (default 95%).
  - Seeds, from few runs (`SeedNoise`, `pooled_seed_noise`): 2–3 seeds per condition cannot measure their own
    spread. Resampling them underestimates it (a resampled mean of n runs has (n−1)/n of their variance, and 2 runs
    have 3 distinct resamples): in the tiny study, greedy and beam outputs of the same models gave tight,
    contradictory intervals. So the run-to-run sd is pooled over every condition of a study (as an ANOVA or a
    t-test does: df = runs − conditions), and each replicate adds sd·√(1/n_A + 1/n_B)·t_df: a small-sample
    interval. Without a pooled estimate the seeds are resampled as before.
- **The rule** (`verdict`), with a margin `m` stated beside every verdict:
  - claim `no_loss` (the paper's "no significant loss", a non-inferiority claim): *agrees* when the whole interval
    lies above −m (any loss is smaller than the margin); *disagrees* when it lies below −m (a loss larger than the
    margin); otherwise *inconclusive at this noise*.
  - claim `equal` (two-sided): *agrees* when the interval lies within [−m, m]; *disagrees* when it lies entirely
    outside; otherwise inconclusive.
  - claim `gain` (B improves on A): *agrees* when the interval excludes 0 on the positive side; *disagrees* when
    it lies below m (no gain as large as the margin is possible); otherwise inconclusive.
  A ratio such as a speedup is judged on its logarithm with margin 0: it is claimed only if its interval
  excludes 1.0 (`ratio_verdict`).
- **Margins** (`Margins`): 1 BLEU point for BLEU-like scores, 2% relative (of the reference condition's value)
  for slot realisation, entity coverage and losses. They are parameters of the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

BLEU_ORDER = 4


@dataclass(frozen=True)
class Margins:
    """What difference counts as no difference: `absolute` for BLEU-like scores (points), `relative` for
    shares and losses (fraction of the reference condition's value)."""

    absolute: float = 1.0
    relative: float = 0.02

    def __post_init__(self):
        if self.absolute < 0 or self.relative < 0:
            raise ValueError(f"margins must be >= 0, got absolute={self.absolute}, relative={self.relative}")

    def for_metric(self, metric: str, reference_value: float) -> float:
        """The margin for `metric` (BLEU-like metrics absolute, the rest relative to `reference_value`)."""
        return self.absolute if metric in ABSOLUTE_METRICS else self.relative * abs(reference_value)


ABSOLUTE_METRICS = frozenset({"bleu", "chrfpp", "rouge_l"})


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval [lo, hi] at `level`."""

    estimate: float
    lo: float
    hi: float
    level: float = 0.95

    def __str__(self) -> str:
        return f"{self.estimate:+.2f} [{self.lo:+.2f}, {self.hi:+.2f}]"


@dataclass(frozen=True)
class Verdict:
    label: str  # "agrees", "disagrees" or "inconclusive"
    interval: Interval
    margin: float
    claim: str

    @property
    def text(self) -> str:
        """"agrees", "disagrees" or "inconclusive at this noise", with the interval and the margin."""
        word = "inconclusive at this noise" if self.label == "inconclusive" else self.label
        gain = ", a gain beyond the margin" if self.claim == "no_loss" and self.interval.lo > self.margin else ""
        level = f"{100 * self.interval.level:.0f}%"
        return f"**{word}** (difference {self.interval}, {level} interval; margin ±{self.margin:.3g}{gain})"


CLAIMS = ("no_loss", "equal", "gain")


def verdict(interval: Interval, margin: float, claim: str = "no_loss") -> Verdict:
    """The rule of the module docstring: agrees / disagrees / inconclusive for `claim` at `margin` (>= 0)."""
    if claim not in CLAIMS:
        raise ValueError(f"unknown claim {claim!r}; choose one of {', '.join(CLAIMS)}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    lo, hi = interval.lo, interval.hi
    if claim == "no_loss":
        label = "agrees" if lo >= -margin else "disagrees" if hi < -margin else "inconclusive"
    elif claim == "equal":
        label = ("agrees" if -margin <= lo and hi <= margin else
                 "disagrees" if hi < -margin or lo > margin else "inconclusive")
    else:
        label = "agrees" if lo > 0 else "disagrees" if hi < margin else "inconclusive"
    return Verdict(label, interval, margin, claim)


def ratio_verdict(interval: Interval) -> str:
    """A speedup-like ratio: "faster" only if the interval lies above 1.0, "slower" if below, else
    "inconclusive at this noise"."""
    return "faster" if interval.lo > 1 else "slower" if interval.hi < 1 else "inconclusive at this noise"


# --- statistics from per-example counts ----------------------------------------------------------------------


def bleu_from_stats(stats: np.ndarray) -> np.ndarray:
    """Corpus BLEU (0–100) from summed sufficient statistics `[..., 10]` (sys_len, ref_len, correct 1–4, total
    1–4), vectorised over leading axes; the same numbers as sacrebleu's default BLEU (exp smoothing)."""
    stats = np.asarray(stats, dtype=np.float64)
    sys_len, ref_len = stats[..., 0], stats[..., 1]
    correct, total = stats[..., 2:2 + BLEU_ORDER], stats[..., 2 + BLEU_ORDER:2 + 2 * BLEU_ORDER]
    # exp smoothing (mteval-v13a): the k-th order with no match gets precision 1 / (2^k · total)
    zero = correct == 0
    k = np.cumsum(zero, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(zero, 1.0 / (np.power(2.0, k) * total), correct / total)
        log_p = np.where(total > 0, np.log(np.where(prec > 0, prec, 1.0)), -np.inf)
        bp = np.where(sys_len < ref_len, np.exp(1 - ref_len / np.where(sys_len > 0, sys_len, 1)), 1.0)
        score = 100.0 * bp * np.exp(log_p.mean(axis=-1))
    score = np.where((sys_len == 0) | ~np.any(correct > 0, axis=-1), 0.0, score)
    return np.nan_to_num(score, nan=0.0, posinf=0.0, neginf=0.0)


def share_from_counts(counts: np.ndarray) -> np.ndarray:
    """100 · hits / total from summed `[..., 2]` counts (slot realisation, entity coverage)."""
    counts = np.asarray(counts, dtype=np.float64)
    return 100.0 * counts[..., 0] / np.maximum(counts[..., 1], 1)


def mean_of_values(values: np.ndarray) -> np.ndarray:
    """The mean of per-example `[..., 2]` (value sum, count) rows, e.g. a per-example loss."""
    values = np.asarray(values, dtype=np.float64)
    return values[..., 0] / np.maximum(values[..., 1], 1)


# --- the bootstrap ------------------------------------------------------------------------------------------


def _resampled_stats(runs: Sequence[np.ndarray], counts: np.ndarray, statistic: Callable) -> np.ndarray:
    """[replicates, runs]: `statistic` of each run's per-example rows summed with the replicate's weights."""
    return np.stack([statistic(counts @ np.asarray(r, dtype=np.float64)) for r in runs], axis=1)


@dataclass(frozen=True)
class SeedNoise:
    """The run-to-run standard deviation of a metric (different seeds, same condition), pooled over conditions,
    with its degrees of freedom."""

    sd: float
    df: int


def pooled_seed_noise(groups: Sequence[Sequence[float]]) -> SeedNoise | None:
    """The pooled within-condition sd of per-run values (one sequence per condition): Σ(n_i−1)s_i² / Σ(n_i−1), with
    df = Σ(n_i−1); None when no condition has two runs (nothing to estimate it from)."""
    groups = [np.asarray(g, dtype=np.float64) for g in groups]
    df = sum(len(g) - 1 for g in groups if len(g) > 1)
    if df < 1:
        return None
    ss = sum(float(((g - g.mean()) ** 2).sum()) for g in groups if len(g) > 1)
    return SeedNoise(float(np.sqrt(ss / df)), df)


def bootstrap_difference(
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    statistic: Callable[[np.ndarray], np.ndarray],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    seed_noise: SeedNoise | None = None,
) -> Interval:
    """Interval of mean-over-seeds `statistic`(A) − (B), bootstrapping test inputs and seeds (module docstring).

    `a`, `b`: one array per seed run, `[n_examples, k]` per-example sufficient statistics, rows aligned on the same
    test inputs in every run; `statistic` maps summed `[..., k]` rows to the metric (`bleu_from_stats`,
    `share_from_counts`). The estimate is the observed difference of the seed means. With `seed_noise` (in the
    metric's units, e.g. from `pooled_seed_noise`), the seed term is its t-distributed draw instead of resampled
    runs.
    """
    if not a or not b:
        raise ValueError("both conditions need at least one run")
    n = {np.asarray(r).shape[0] for r in [*a, *b]}
    if len(n) != 1:
        raise ValueError(f"runs are not aligned on the same test inputs (example counts {sorted(n)})")
    n_ex = n.pop()
    rng = np.random.default_rng(seed)
    estimate = float(np.mean([statistic(np.asarray(r).sum(0)) for r in a]) -
                     np.mean([statistic(np.asarray(r).sum(0)) for r in b]))
    counts = rng.multinomial(n_ex, np.full(n_ex, 1.0 / n_ex), size=n_boot).astype(np.float64)  # inputs, shared
    sa, sb = _resampled_stats(a, counts, statistic), _resampled_stats(b, counts, statistic)
    if seed_noise is not None:
        spread = seed_noise.sd * np.sqrt(1 / len(a) + 1 / len(b))
        diffs = sa.mean(1) - sb.mean(1) + spread * rng.standard_t(seed_noise.df, size=n_boot)
    else:
        pick_a = rng.integers(0, len(a), size=(n_boot, len(a)))  # seeds, per condition
        pick_b = rng.integers(0, len(b), size=(n_boot, len(b)))
        rows = np.arange(n_boot)[:, None]
        diffs = sa[rows, pick_a].mean(1) - sb[rows, pick_b].mean(1)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return Interval(estimate, float(lo), float(hi), level)


def bootstrap_ratio(values: Sequence[float], n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Interval of the geometric mean of positive ratios (e.g. speedups over sizes and seeds), resampling them."""
    v = np.log(np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=np.float64))
    if len(v) == 0:
        raise ValueError("no positive finite ratios to bootstrap")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(np.exp(v.mean())), float(np.exp(lo)), float(np.exp(hi)), level)
