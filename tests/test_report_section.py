"""The SPDF report's greedy-vs-beam check: which conclusions the decoding changes."""

from __future__ import annotations

from spdf_lib.spdf.report_section import same_verdicts

GREEDY = ("- **e2e**, dense pre-trained minus from scratch: BLEU: **inconclusive at this noise** (difference -0.96 "
          "[-4.68, +2.74]); slot realisation (%): **inconclusive at this noise** (difference -8.58 [-19.35, +2.70]); "
          "test loss (nats/token): **disagrees** (difference -0.07 [-0.07, -0.06])")


def test_the_test_loss_which_decoding_cannot_change_is_not_compared():
    beam = ("- **e2e**, dense pre-trained minus from scratch: BLEU: **inconclusive at this noise** (difference +2.29 "
            "[-0.46, +4.97]); slot realisation (%): **inconclusive at this noise** (difference -1.58 [-10.93, +7.60])")
    assert same_verdicts(GREEDY, beam)


def test_a_changed_or_reordered_verdict_is_a_change():
    agrees_then_inconclusive = ("BLEU: **agrees** (difference +6.25 [+4.04, +8.78]); slot realisation (%): "
                                "**inconclusive at this noise** (difference +8.26 [-3.67, +18.96])")
    inconclusive_then_agrees = ("BLEU: **inconclusive at this noise** (difference -0.35 [-2.90, +2.01]); slot "
                                "realisation (%): **agrees** (difference +13.82 [+6.56, +19.93])")
    assert not same_verdicts(agrees_then_inconclusive, inconclusive_then_agrees)
    assert not same_verdicts(GREEDY, "BLEU: **disagrees** (difference -4.22 [-6.20, -1.99])")
    assert same_verdicts(agrees_then_inconclusive, agrees_then_inconclusive)
