"""The SPDF report: which conclusions a second decoding changes, and verdicts whose seed noise is pooled over
the task's runs (on run records written to a temp dir)."""

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


def _run(root, name: str, mode: str, sparsity: float, seed: int, bleu: float) -> dict:
    """A finished WebNLG fine-tuning run whose 50 test outputs each have n-gram precision bleu/100 (its corpus
    BLEU), written as the kit's records."""
    import pandas as pd

    from spdf_lib.records import Run
    from spdf_lib.spdf.checks import BLEU_STATS

    hits = round(bleu)
    row = [100, 100, *[hits] * 4, *[100] * 4]
    Run(root / name, "spdf_finetune", {"task": "webnlg", "mode": mode, "seed": seed}, seed).write_table(
        "examples", pd.DataFrame([row] * 50, columns=BLEU_STATS).assign(id=range(50)))
    return {"run": name, "experiment": "spdf_finetune", "status": "ok", "task": "webnlg", "mode": mode,
            "arch": "gpt", "pretrain_sparsity": sparsity, "n_train_pairs": 100, "seed": seed, "total_flops": 1.0,
            "bleu": float(bleu)}


def test_verdicts_pool_the_seed_noise_over_all_runs_of_a_task(tmp_path):
    """Dense and sparse fine-tuning of the 75% sparse model: 3 identical runs at 40 BLEU against 2 at 37. Alone,
    they look noiseless and the +3 gain certain. The task's other conditions show run-to-run spread (30/36/42 and
    30/40: pooled sd √(122/6) = 4.51 BLEU, df 6), and with it the gain is inconclusive."""
    import numpy as np
    import pandas as pd

    from spdf_lib.report_document import Report
    from spdf_lib.spdf.report_section import comparisons, finetune_frame
    from spdf_lib.stats import Margins

    spec = [("dense", 0.0, [30, 36, 42]), ("dense", 0.75, [40, 40, 40]), ("sparse", 0.75, [37, 37]),
            ("scratch", 0.0, [30, 40])]
    rows = [_run(tmp_path, f"{mode}-{s}-{i}", mode, s, i, b) for mode, s, bleus in spec for i, b in enumerate(bleus)]
    ft = finetune_frame(pd.DataFrame(rows))
    rep = Report(tmp_path, tmp_path / "figures")
    lines = comparisons(rep, ft[ft["mode"] != "scratch"], ft[ft["mode"] == "scratch"], Margins())
    recovers = next(line for line in lines if "dense minus sparse" in line)
    assert "BLEU: **inconclusive at this noise** (difference +3.00" in recovers
    low, high = map(float, recovers.split("[")[1].split("]")[0].split(", "))
    half = 2.447 * np.sqrt(122 / 6) * np.sqrt(1 / 3 + 1 / 2)  # t(0.975, 6) · pooled sd · √(1/3 + 1/2)
    assert abs((high - low) / 2 - half) < 0.1 * half  # a Monte Carlo t interval: within 10%
    assert lines[-1].startswith("- *webnlg: run-to-run sd pooled over its 4 conditions* — BLEU 4.51 (df 6)")
