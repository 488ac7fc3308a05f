"""Pass-share intervals resample certifications, the unit a pass share counts (spdf_lib.exams.intervals)."""

from __future__ import annotations

import numpy as np
import pytest

from spdf_lib.exams.intervals import pass_share_interval


def test_pass_share_interval_has_the_width_of_the_certifications_not_of_their_questions():
    # 40 certifications of 10 questions, half all right and half all wrong: resampling questions inside each
    # certification never changes a pass (the old interval was [0.5, 0.5]); 40 certifications leave the share
    # uncertain by about ±1.96·sqrt(0.25/40) = ±0.155.
    by_cert = {f"c{i}": [i % 2 == 0] * 10 for i in range(40)}
    ps = pass_share_interval(by_cert)
    assert ps.estimate == pytest.approx(0.5)
    assert ps.lo == pytest.approx(0.5 - 0.155, abs=0.04) and ps.hi == pytest.approx(0.5 + 0.155, abs=0.04)


def test_pass_share_interval_covers_the_true_share_of_certifications():
    # Certifications differ in difficulty: each has its own chance of a right answer (uniform 0.3-1.0; 38.6% of
    # such 10-question certifications score over 70%). 300 simulated studies of 30 certifications: a 95%
    # interval must cover the population's pass share in about 95% of them. Measured: 0.94 here, 0.81 with the
    # old resampling of questions inside fixed certifications.
    rng = np.random.default_rng(0)
    skill = rng.uniform(0.3, 1.0, 200_000)
    truth = np.mean(rng.binomial(10, skill) > 7)
    covered = 0
    for s in range(300):
        p = rng.uniform(0.3, 1.0, 30)
        by_cert = {f"c{j}": list(rng.random(10) < p[j]) for j in range(30)}
        ci = pass_share_interval(by_cert, n_boot=400, seed=s)
        covered += ci.lo <= truth <= ci.hi
    assert covered / 300 > 0.88
