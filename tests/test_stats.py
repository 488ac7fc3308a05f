"""The verdict rule and the bootstrap intervals on synthetic differences with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from spdf_lib.stats import (
    Interval,
    Margins,
    SeedNoise,
    bootstrap_difference,
    bootstrap_ratio,
    pooled_seed_noise,
    ratio_verdict,
    share_from_counts,
    verdict,
)


def _runs(rate: float, n_runs: int, n_examples: int, seed: int) -> list[np.ndarray]:
    """Per-example (hits, total) counts of runs whose true realisation rate is `rate`."""
    rng = np.random.default_rng(seed)
    return [np.stack([rng.binomial(10, rate, n_examples), np.full(n_examples, 10)], axis=1) for _ in range(n_runs)]


def test_the_rule_on_intervals():
    m = 1.0
    assert verdict(Interval(0.1, -0.4, 0.6), m).label == "agrees"  # tight, inside the margin
    assert verdict(Interval(-3.0, -3.5, -2.5), m).label == "disagrees"  # tight, a loss outside the margin
    assert verdict(Interval(-1.0, -4.0, 2.0), m).label == "inconclusive"  # wide
    assert verdict(Interval(4.0, 3.0, 5.0), m, "no_loss").label == "agrees"  # a clear gain is no loss
    assert verdict(Interval(4.0, 3.0, 5.0), m, "equal").label == "disagrees"  # ... but not equality
    assert verdict(Interval(2.0, 0.5, 3.5), m, "gain").label == "agrees"
    assert verdict(Interval(0.0, -0.3, 0.4), m, "gain").label == "disagrees"  # no gain as large as the margin
    assert verdict(Interval(0.5, -1.0, 2.0), m, "gain").label == "inconclusive"
    assert "inconclusive at this noise" in verdict(Interval(-1.0, -4.0, 2.0), m).text
    with pytest.raises(ValueError, match="unknown claim"):
        verdict(Interval(0, 0, 0), m, "better")


def test_bootstrap_verdicts_on_synthetic_runs():
    """Many inputs and equal rates: a tight interval around 0 (agrees); rates 20 points apart: disagrees; a
    handful of inputs: wide, inconclusive."""
    a, b = _runs(0.8, 3, 2000, 0), _runs(0.8, 3, 2000, 1)
    iv = bootstrap_difference(a, b, share_from_counts, n_boot=400)
    assert iv.lo < iv.estimate < iv.hi and iv.hi - iv.lo < 1.5
    assert verdict(iv, 1.6).label == "agrees"  # 2% relative of 80
    far = bootstrap_difference(_runs(0.6, 3, 2000, 2), b, share_from_counts, n_boot=400)
    assert far.estimate == pytest.approx(-20, abs=1.5) and verdict(far, 1.6).label == "disagrees"
    few = bootstrap_difference(_runs(0.75, 3, 6, 3), _runs(0.8, 3, 6, 4), share_from_counts, n_boot=400)
    assert few.hi - few.lo > 10 and verdict(few, 1.6).label == "inconclusive"


def test_seed_noise_widens_the_interval():
    """Runs that disagree with each other (seed noise) give a wider interval than runs that agree."""
    steady = _runs(0.7, 3, 500, 5)
    noisy = [_runs(rate, 1, 500, 6 + i)[0] for i, rate in enumerate((0.55, 0.7, 0.85))]
    base = _runs(0.7, 3, 500, 9)
    tight = bootstrap_difference(steady, base, share_from_counts, n_boot=400)
    wide = bootstrap_difference(noisy, base, share_from_counts, n_boot=400)
    assert wide.hi - wide.lo > 2 * (tight.hi - tight.lo)


def test_pooled_seed_noise():
    noise = pooled_seed_noise([[50.0, 54.0], [40.0, 42.0, 44.0], [47.0]])  # a lone run adds nothing
    assert noise.df == 3 and noise.sd == pytest.approx(np.sqrt((8 + 8) / 3))
    assert pooled_seed_noise([[50.0], [40.0]]) is None


def test_pooled_seed_noise_gives_the_small_sample_interval():
    """Two runs per condition whose rates differ by 10 points (huge test sets: no input noise): resampling the
    runs gives a far narrower interval than the t interval from the pooled sd, whose half-width is known."""
    a = [_runs(rate, 1, 20000, 20 + i)[0] for i, rate in enumerate((0.65, 0.75))]
    b = [_runs(rate, 1, 20000, 30 + i)[0] for i, rate in enumerate((0.6, 0.7))]
    noise = pooled_seed_noise([[share_from_counts(r.sum(0)) for r in runs] for runs in (a, b)])
    assert noise.df == 2 and noise.sd == pytest.approx(7.07, abs=0.2)
    pooled = bootstrap_difference(a, b, share_from_counts, n_boot=4000, seed_noise=noise)
    resampled = bootstrap_difference(a, b, share_from_counts, n_boot=4000)
    half = 4.303 * noise.sd * np.sqrt(1 / 2 + 1 / 2)  # t(0.975, df=2) = 4.303
    assert (pooled.hi - pooled.lo) / 2 == pytest.approx(half, rel=0.1)
    assert pooled.estimate == resampled.estimate == pytest.approx(5.0, abs=0.3)
    assert resampled.hi - resampled.lo < 0.5 * (pooled.hi - pooled.lo)
    assert pooled.lo < resampled.lo and resampled.hi < pooled.hi
    unchanged = bootstrap_difference(a, b, share_from_counts, n_boot=400, seed_noise=SeedNoise(0.0, 2))
    assert unchanged.hi - unchanged.lo < 1.0  # no seed noise: only the (tiny) input noise is left


def test_mismatched_runs_are_an_error():
    with pytest.raises(ValueError, match="aligned"):
        bootstrap_difference(_runs(0.5, 1, 10, 0), _runs(0.5, 1, 11, 0), share_from_counts)


def test_speedup_intervals():
    assert ratio_verdict(bootstrap_ratio([1.3, 1.4, 1.35, 1.32, 1.38, 1.36])) == "faster"
    assert ratio_verdict(bootstrap_ratio([0.7, 1.6, 1.1, 0.9, 1.4, 0.8])) == "inconclusive at this noise"
    assert ratio_verdict(bootstrap_ratio([0.8, 0.82, 0.79])) == "slower"


def test_margins():
    m = Margins()
    assert m.for_metric("bleu", 40.0) == 1.0 and m.for_metric("slot_realisation", 80.0) == pytest.approx(1.6)
    with pytest.raises(ValueError):
        Margins(absolute=-1)
