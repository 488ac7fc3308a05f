"""The preconditions SPDF's report checks before any verdict (dense pre-training loss ≤ sparse, dense pre-trained
beats scratch downstream, every chosen learning rate inside its grid), each branch on run records written to a
temp dir and read back through the results table, as `spdf report` reads a study."""

from __future__ import annotations

import functools

import pandas as pd
import pytest

from spdf_lib import provenance, records
from spdf_lib.records import Run
from spdf_lib.report_document import Report
from spdf_lib.results import load_results
from spdf_lib.spdf.checks import BLEU_STATS
from spdf_lib.spdf.report_section import section

# Pre-training validation loss per learning rate, and WebNLG BLEU per fine-tuning seed, of a study whose
# preconditions all hold: each sparsity's best rate is inside its grid, dense pre-training ends below 75% sparse,
# dense pre-trained beats scratch by ~10 BLEU with a pooled seed sd of ~0.8.
PRETRAIN = {0.0: {1e-3: 4.90, 2e-3: 4.50, 4e-3: 4.70}, 0.75: {2e-3: 4.95, 4e-3: 4.80, 8e-3: 5.00}}
FINETUNE = {("dense", 0.0): [40, 41, 42], ("dense", 0.75): [39, 40, 41], ("sparse", 0.75): [37, 38],
            ("scratch", 0.0): [30, 31]}
VERDICT = "- **webnlg**, dense fine-tuning from 75% sparse vs dense pre-training"


@pytest.fixture(autouse=True)
def _packages_read_once(monkeypatch):
    """Each manifest lists the installed packages, a ~1 s scan: read them once for the study's 16 runs."""
    monkeypatch.setattr(records, "package_versions", functools.cache(provenance.package_versions))


def _write_study(root, pretrain=PRETRAIN, finetune=FINETUNE, other_tasks=None) -> pd.DataFrame:
    """Pre-training runs (validation loss per sparsity and rate; a list: per pre-training seed) and WebNLG fine-tuning
    runs (`other_tasks`: {task: finetune} for more tasks) whose 50 test outputs each have n-gram precision bleu/100
    (their corpus BLEU), as the kit's records; returns the results table `load_results` reads from them."""
    for s, losses in pretrain.items():
        for lr, loss in losses.items():
            for seed, seed_loss in enumerate(loss if isinstance(loss, list) else [loss]):  # a list: one per seed
                run = Run(root / f"pre-s{s}-lr{lr:g}-{seed}", "spdf_pretrain",
                          {"sparsity": s, "lr": lr, "tokens": 1e6, "seed": seed}, seed)
                for step in (100, 200):  # what a pre-training logs (its curves are the report's figure)
                    run.log({"step": step, "loss": 5.0, "grad_norm": 1.0, "eval_loss": seed_loss})
                run.finish({"eval_loss": seed_loss})
    for task, runs in {"webnlg": finetune, **(other_tasks or {})}.items():
        for (mode, s), bleus in runs.items():
            for seed, bleu in enumerate(bleus):
                _write_finetune(root / f"ft-{task}-{mode}-s{s}-{seed}", task, mode, s, seed, bleu)
    return load_results(root)


def _write_finetune(folder, task: str, mode: str, sparsity: float, seed: int, bleu: float) -> None:
    run = Run(folder, "spdf_finetune", {"task": task, "mode": mode, "seed": seed}, seed)
    row = [100, 100, *[round(bleu)] * 4, *[100] * 4]
    run.write_table("examples", pd.DataFrame([row] * 50, columns=BLEU_STATS).assign(id=range(50)))
    run.finish({"arch": "gpt", "pretrain_sparsity": sparsity, "n_train_pairs": 100, "total_flops": 1.0,
                "bleu": float(bleu)})


def _summary(tmp_path, **study) -> str:
    rep = Report(tmp_path / "runs", tmp_path / "figures")
    section(_write_study(tmp_path / "runs", **study), rep)
    return rep.markdown()


def _preconditions(md: str) -> dict[str, str]:
    """{precondition: status} from the summary's precondition lines."""
    lines = [line for line in md.splitlines() if line.startswith("- Precondition: ")]
    return {line[len("- Precondition: "):].split(": **")[0]: line.split("**")[1] for line in lines}


def test_all_preconditions_met_and_no_warning(tmp_path):
    md = _summary(tmp_path)
    assert _preconditions(md) == {
        "dense pre-training loss ≤ sparse": "met",
        "every sparsity's chosen learning rate inside its grid": "met",
        "dense pre-trained beats scratch downstream (webnlg, BLEU)": "met",
    }
    assert "Precondition failed" not in md
    assert VERDICT in md


def _failed_before_verdicts(md: str) -> str:
    """The failed-precondition line, which must come before the first verdict (the verdicts are still printed)."""
    assert VERDICT in md
    warning = next(line for line in md.splitlines() if line.startswith("- **Precondition failed"))
    assert md.index(warning) < md.index(VERDICT)
    return warning


def test_dense_pretraining_worse_than_sparse_fails(tmp_path):
    pretrain = {0.0: {1e-3: 5.10, 2e-3: 5.00, 4e-3: 5.05}, 0.75: PRETRAIN[0.75] | {4e-3: 4.60}}
    md = _summary(tmp_path, pretrain=pretrain)
    status = _preconditions(md)
    assert status["dense pre-training loss ≤ sparse"] == "failed"
    assert status["every sparsity's chosen learning rate inside its grid"] == "met"
    assert "validation loss dense 5.000 (lr 0.002), 75% sparse 4.600 (lr 0.004)" in md
    warning = _failed_before_verdicts(md)
    assert "Dense pre-training loss ≤ sparse failed: the dense model is weaker than the 75% sparse one" in warning
    assert "grid" not in warning and "scratch" not in warning  # only the failed precondition is named


def test_a_chosen_rate_at_the_grid_edge_fails(tmp_path):
    pretrain = {0.0: PRETRAIN[0.0], 0.75: {2e-3: 4.95, 4e-3: 4.80}}  # two rates: the chosen one is an edge
    md = _summary(tmp_path, pretrain=pretrain)
    assert _preconditions(md)["every sparsity's chosen learning rate inside its grid"] == "failed"
    assert (
        "sparsity 0: 0.002 of [0.001, 0.002, 0.004], inside; sparsity 0.75: 0.004 of [0.002, 0.004], its upper edge"
        in md
    )
    warning = _failed_before_verdicts(md)
    assert "the best rate of 75% sparse pre-training may lie outside the grid" in warning


def test_each_pretraining_seed_is_chosen_and_checked_on_its_own(tmp_path):
    """`best:` takes each pre-training seed's best rate: the dense seeds choose 2e-3 and 4e-3 (the grid's upper
    edge), so the grid precondition fails for dense, and the loss compared is the mean of the seeds' best."""
    pretrain = {0.0: {1e-3: [4.90, 4.90], 2e-3: [4.50, 4.70], 4e-3: [4.70, 4.60]},
                0.75: {2e-3: [4.95, 4.95], 4e-3: [4.80, 4.82], 8e-3: [5.00, 5.00]}}
    md = _summary(tmp_path, pretrain=pretrain)
    assert _preconditions(md)["every sparsity's chosen learning rate inside its grid"] == "failed"
    assert "sparsity 0: 0.002 and 0.004 of [0.001, 0.002, 0.004], 0.002 inside, 0.004 its upper edge" in md
    assert "sparsity 0.75: 0.004 of [0.002, 0.004, 0.008], inside" in md
    assert "validation loss dense 4.550 (mean of 2 seeds, lr 0.002 and 0.004), 75% sparse 4.810" in md
    assert _preconditions(md)["dense pre-training loss ≤ sparse"] == "met"
    # the report's pre-training curves: one run per (sparsity, seed, rate), the chosen ones marked
    rep = Report(tmp_path / "runs", tmp_path / "figures2")
    section(load_results(tmp_path / "runs"), rep)
    curves = rep.tables["pretrain_curves"]
    assert curves.groupby(["sparsity", "seed", "lr"]).ngroups == 12
    assert set(curves[curves["chosen"]].groupby(["sparsity", "seed", "lr"]).groups) == {
        (0.0, 0, 2e-3), (0.0, 1, 4e-3), (0.75, 0, 4e-3), (0.75, 1, 4e-3)}
    assert (tmp_path / "figures2" / "spdf_pretrain_curves.png").is_file()


@pytest.mark.parametrize("scratch, how", [
    ([45, 46], "is worse than or no better than"),     # scratch ahead by ~4.5 BLEU: the interval lies below the margin
    ([40, 42], "is not shown, at this noise, to beat"),  # dense ahead by 0.5: the interval straddles 0
])
def test_dense_pretraining_that_does_not_beat_scratch_fails(tmp_path, scratch, how):
    md = _summary(tmp_path, finetune=FINETUNE | {("scratch", 0.0): scratch})
    status = _preconditions(md)
    assert status["dense pre-trained beats scratch downstream (webnlg, BLEU)"] == "failed"
    assert status["dense pre-training loss ≤ sparse"] == "met"
    assert f"dense pre-training {how} scratch: difference" in md
    warning = _failed_before_verdicts(md)
    assert "on webnlg, pre-training has no measured benefit" in warning


def test_a_task_s_failed_precondition_heads_only_that_task_s_verdicts(tmp_path):
    """Dense pre-training beats scratch on WebNLG but not on E2E: the E2E verdicts are printed under E2E's failure,
    the WebNLG ones under no warning (they do not rest on E2E's runs)."""
    e2e = FINETUNE | {("scratch", 0.0): [45, 46]}
    rep = Report(tmp_path / "runs", tmp_path / "figures")
    section(_write_study(tmp_path / "runs", other_tasks={"e2e": e2e}), rep)
    lines = rep.markdown().splitlines()
    status = _preconditions("\n".join(lines))
    assert status["dense pre-trained beats scratch downstream (e2e, BLEU)"] == "failed"
    assert status["dense pre-trained beats scratch downstream (webnlg, BLEU)"] == "met"
    warnings = [i for i, line in enumerate(lines) if line.startswith("- **Precondition failed")]
    assert len(warnings) == 1 and "the e2e verdicts" in lines[warnings[0]]
    assert "on e2e, pre-training has no measured benefit" in lines[warnings[0]]
    first = {
        task: next(i for i, line in enumerate(lines) if line.startswith(f"- **{task}**")) for task in ("e2e", "webnlg")
    }
    assert first["e2e"] == warnings[0] + 1  # right under its warning
    assert not lines[first["webnlg"] - 1].startswith("- **Precondition failed")
    assert first["webnlg"] > first["e2e"]


def test_without_pretraining_runs_the_pretraining_preconditions_are_not_checked(tmp_path):
    md = _summary(tmp_path, pretrain={})
    status = _preconditions(md)
    assert status["dense pre-training loss ≤ sparse"] == "not checked"
    assert status["every sparsity's chosen learning rate inside its grid"] == "not checked"
    assert "Precondition failed" not in md


def test_null_losses_of_diverged_runs_are_not_chosen_and_do_not_break_the_report(tmp_path):
    # records hold null (not NaN) for a run with no loss; a sparsity whose every rate has none has no choice
    pretrain = {0.0: {1e-3: 4.90, 2e-3: 4.50, 4e-3: None}, 0.75: {2e-3: None, 4e-3: None, 8e-3: None}}
    md = _summary(tmp_path, pretrain=pretrain)
    assert "sparsity 0 seed 0 → lr 0.002 (4.500)" in md
    assert _preconditions(md)["dense pre-training loss ≤ sparse"] == "not checked"
    assert "sparsity 0: 0.002 of [0.001, 0.002, 0.004], inside" in md


def test_primer_runs_in_the_same_table_are_not_spdf_s_grid(tmp_path):
    """Primer's variants, its shorter budgets and its second size share the tiny sweep's runs folder
    (params/sweeps/primer.yaml): none of them may become a sparsity's chosen rate or widen its grid."""
    root = tmp_path / "runs"
    others = [({"activation": "relu2", "mdha": True, "lr": 8e-3}, 4.10),  # a variant, lower loss, an edge rate
              ({"tokens": 5e5, "lr": 8e-3}, 4.95),                         # the baseline at a shorter budget
              ({"model_size": "micro", "lr": 8e-3}, 4.00)]                 # the second size
    for i, (params, loss) in enumerate(others):
        run = Run(root / f"primer-{i}", "spdf_pretrain", {"sparsity": 0.0, "tokens": 1e6, "seed": 0, **params}, 0)
        run.finish({"eval_loss": loss})
    rep = Report(root, tmp_path / "figures")
    section(_write_study(root), rep)
    md = rep.markdown()
    assert set(_preconditions(md).values()) == {"met"}
    assert "sparsity 0: 0.002 of [0.001, 0.002, 0.004], inside" in md
