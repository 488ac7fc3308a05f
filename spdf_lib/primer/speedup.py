"""Primer's speedup read the paper's way, from annealed endpoints (So et al. 2021, §4; issue 34).

Every arm (a variant at a model size) is trained to several token budgets, each with its own full schedule (warmup,
cosine decay to its end), so each budget's final validation loss is an annealed endpoint, not an intermediate
checkpoint of a longer schedule (which sits higher on the curve and pulls a speedup toward 1).

- **Tokens to reach the baseline's quality** (`tokens_to_reach`): the baseline's final loss L* is its endpoint at
  its largest budget. The tokens at which a variant reaches L* are read by linear interpolation of the variant's
  endpoints in log-tokens, between the two budgets that bracket L*. Outside the budgets nothing is read: an
  extrapolation is refused (`OutsideBudgets`), and the answer is only a bound (e.g. "at least 2x": the smallest
  budget already reaches L*). A variant that never reaches L* is read from the other side: the baseline's tokens to
  reach the variant's final loss over the variant's largest budget (a factor below 1).
- **Speedup in tokens** = baseline's largest budget / those tokens. **In FLOPs**: × the ratio of training FLOPs per
  token (baseline / variant; MDHA adds a little). **In wall time**: × the ratio of measured seconds per step.
- **Cross-check** (`gap_speedup`): the loss gap at the largest budget over the baseline's slope per doubling of
  tokens, 2^(gap / slope). It assumes the baseline's local power law; the endpoint reading does not.
- **Interval** (`speedup_interval`): each endpoint is a mean over seeds (seed pairs: every arm's seed s sees the
  same data order). The run-to-run sd is pooled over all conditions of a size (df = runs − conditions,
  `spdf_lib.stats.pooled_seed_noise`) and propagated: each draw takes one sd from its χ² distribution (df) and
  moves every endpoint mean by a normal draw of sd·√(1/n); the speedup is re-read per draw. A draw outside the
  budgets is censored at the readable bound, and an interval end that falls there is reported as open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from spdf_lib.stats import Interval, SeedNoise


class OutsideBudgets(ValueError):
    """Reading the target loss would need an extrapolation beyond the budgets that were trained."""


@dataclass(frozen=True)
class Curve:
    """An arm's annealed endpoints: `tokens` (increasing budgets) and the mean final validation `loss` at each, over
    `n` seeds each."""

    tokens: np.ndarray
    loss: np.ndarray
    n: np.ndarray

    @classmethod
    def of(cls, endpoints: Mapping[float, tuple[float, int]]) -> Curve:
        """From {budget: (mean loss, seeds)}; at least two budgets."""
        if len(endpoints) < 2:
            raise ValueError(f"an arm needs endpoints at >= 2 token budgets to be read, got {len(endpoints)}")
        t = np.array(sorted(endpoints), dtype=float)
        return cls(t, np.array([endpoints[x][0] for x in t], float), np.array([endpoints[x][1] for x in t], float))

    def with_loss(self, loss: np.ndarray) -> Curve:
        return Curve(self.tokens, np.asarray(loss, float), self.n)


def tokens_to_reach(curve: Curve, target: float) -> float:
    """The tokens at which `curve` reaches loss `target`, interpolated linearly in log-tokens between the two
    bracketing budgets (the first bracket, walking up the budgets). Raises `OutsideBudgets` when `target` lies
    above the smallest budget's loss or below the largest's."""
    logt, loss = np.log(curve.tokens), curve.loss
    if target > loss[0]:
        raise OutsideBudgets(f"loss {target:.4f} is reached before the smallest budget ({curve.tokens[0]:.3g} tokens, "
                             f"loss {loss[0]:.4f}): add a smaller budget")
    for i in range(len(loss) - 1):
        lo, hi = loss[i], loss[i + 1]
        if hi <= target <= lo:
            frac = 0.0 if lo == hi else (lo - target) / (lo - hi)
            return float(np.exp(logt[i] + frac * (logt[i + 1] - logt[i])))
    raise OutsideBudgets(f"loss {target:.4f} is not reached within the budgets (largest {curve.tokens[-1]:.3g} "
                         f"tokens, loss {loss[-1]:.4f}): add a larger budget")


def token_speedup(base: Curve, variant: Curve) -> float:
    """The baseline's largest budget over the tokens the variant needs to reach the baseline's final loss; when the
    variant never gets there, the baseline's tokens to reach the variant's final loss over the variant's largest
    budget. Raises `OutsideBudgets` when neither can be read without extrapolating."""
    target = base.loss[-1]
    if variant.loss[-1] <= target:
        return float(base.tokens[-1] / tokens_to_reach(variant, target))
    return float(tokens_to_reach(base, variant.loss[-1]) / variant.tokens[-1])


def readable_range(base: Curve, variant: Curve) -> tuple[float, float]:
    """The smallest and largest token speedups the budgets can read: (baseline's smallest-budget reading from the
    other side, baseline's largest budget / variant's smallest)."""
    return float(base.tokens[0] / variant.tokens[-1]), float(base.tokens[-1] / variant.tokens[0])


def gap_speedup(base: Curve, variant: Curve) -> float:
    """2^(gap / slope): the loss gap at the largest budgets (baseline − variant) over the baseline's slope per
    doubling of tokens between its two largest budgets. The same factor if the baseline's loss is a power law."""
    t, loss = base.tokens, base.loss
    slope = (loss[-2] - loss[-1]) / np.log2(t[-1] / t[-2])
    if not slope > 0:
        raise ValueError(f"the baseline's loss does not fall between its two largest budgets (slope {slope:.4f} per "
                         f"doubling): no power law to read a gap with")
    return float(2.0 ** ((loss[-1] - variant.loss[-1]) / slope))


@dataclass(frozen=True)
class Speedup:
    """A token speedup with its interval. `below`/`above`: the share of draws that fell outside the budgets (an
    interval end inside that share is open: `lo_open`, `hi_open`)."""

    interval: Interval
    lo_open: bool
    hi_open: bool
    below: float
    above: float
    point_open: str = ""  # "" when the estimate itself was read; else "above"/"below": only a bound is known

    def scaled(self, factor: float) -> Speedup:
        """The same speedup times a constant (per-token FLOP ratio, per-step time ratio)."""
        iv = self.interval
        return Speedup(Interval(iv.estimate * factor, iv.lo * factor, iv.hi * factor, iv.level), self.lo_open,
                       self.hi_open, self.below, self.above, self.point_open)

    def text(self, digits: int = 2) -> str:
        """'1.31x [1.12, 1.55]', with '≤'/'≥' on an open end or a bound-only estimate."""
        iv, f = self.interval, f".{digits}f"
        est = {"above": "≥ ", "below": "≤ "}.get(self.point_open, "") + format(iv.estimate, f)
        return f"{est}x [{'≤ ' if self.lo_open else ''}{iv.lo:{f}}, {'≥ ' if self.hi_open else ''}{iv.hi:{f}}]"


def speedup_interval(base: Curve, variant: Curve, noise: SeedNoise, n_draw: int = 4000, level: float = 0.95,
                     seed: int = 0, reader=token_speedup) -> Speedup:
    """The speedup `reader(base, variant)` with its interval from the pooled seed noise (module docstring)."""
    # only the endpoint reading is bounded by the budgets; the gap reading extrapolates by design
    lo_r, hi_r = readable_range(base, variant) if reader is token_speedup else (0.0, np.inf)
    try:
        estimate, point_open = reader(base, variant), ""
    except OutsideBudgets:
        above = variant.loss[0] <= base.loss[-1]
        estimate, point_open = (hi_r, "above") if above else (lo_r, "below")
    rng = np.random.default_rng(seed)
    sd = noise.sd * np.sqrt(noise.df / rng.chisquare(noise.df, size=n_draw))  # one sd per draw: a t-like spread
    draws = np.empty(n_draw)
    for i in range(n_draw):
        b = base.with_loss(base.loss + sd[i] * rng.standard_normal(len(base.loss)) / np.sqrt(base.n))
        v = variant.with_loss(variant.loss + sd[i] * rng.standard_normal(len(variant.loss)) / np.sqrt(variant.n))
        try:
            draws[i] = reader(b, v)
        except OutsideBudgets:
            draws[i] = hi_r if v.loss[0] <= b.loss[-1] else lo_r
        except ValueError:  # a draw whose baseline does not fall: no reading, counted as unreadable
            draws[i] = np.nan
    draws = draws[np.isfinite(draws)]
    q_lo, q_hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    below, above = float(np.mean(draws <= lo_r * (1 + 1e-9))), float(np.mean(draws >= hi_r * (1 - 1e-9)))
    tail = (1 - level) / 2
    return Speedup(Interval(float(estimate), float(q_lo), float(q_hi), level), lo_open=below > tail,
                   hi_open=above > tail, below=below, above=above, point_open=point_open)
