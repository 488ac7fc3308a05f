"""What SPDF's verdicts presuppose, checked before any of them is read (issue 22).

SPDF asks whether sparse pre-training keeps the benefit of dense pre-training. Its verdicts mean that only when
1. dense pre-training reaches a validation loss no higher than sparse pre-training (the sparse model is a special
   case of the dense one; at the paper's scale sparse pre-training costs loss): otherwise a "no loss" or a gain
   of sparse over dense pre-training measures a weak dense baseline, not sparsity;
2. dense pre-training beats training from scratch downstream, per task (the BLEU interval of pre-trained minus
   scratch lies above 0): otherwise there is no benefit of pre-training for sparsity to keep;
3. every sparsity's chosen learning rate lies inside its grid, not at an edge: otherwise that sparsity's best
   rate may lie beyond the grid, and the verdicts may compare a tuned model against an untuned one.

A failed precondition does not hide the verdicts: the report prints them under a line saying which precondition
failed and what the verdicts therefore cannot mean (`warning`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from spdf_lib import preconditions as core
from spdf_lib.preconditions import FAILED, MET, UNCHECKED, Precondition, grid_position
from spdf_lib.report_document import Report
from spdf_lib.spdf.verdicts import BLEU, difference, learned, seed_noise, select, task_conditions
from spdf_lib.stats import Margins, SeedNoise, verdict

__all__ = ["FAILED", "MET", "UNCHECKED", "Precondition", "check_all", "spdf_runs", "warning"]


def _main_pretraining(pretrain: pd.DataFrame | None) -> pd.DataFrame | None:
    """The SPDF pre-training runs (the GPT baseline, not Primer's variants), or None when there are none."""
    if pretrain is None or pretrain.empty:
        return None
    gpt = pretrain[spdf_runs(pretrain)]
    return gpt if len(gpt) else None


def spdf_runs(pretrain: pd.DataFrame) -> pd.Series:
    """Which rows of the pre-training table are SPDF's grid: the GPT (not a Primer variant) at the model sizes that
    have sparse runs (all sizes when none has), at their largest budget. Primer's variants, its shorter budgets
    and its second size share the table (params/sweeps/primer.yaml) but are not SPDF's grid."""
    keep = (pretrain["activation"].fillna("gelu") == "gelu") & ~pretrain["mdha"].fillna(False).astype(bool)
    if "model_size" in pretrain:
        sparse_sizes = set(pretrain.loc[pretrain["sparsity"] > 0, "model_size"])
        keep &= pretrain["model_size"].isin(sparse_sizes) if sparse_sizes else True
    if "tokens" in pretrain and keep.any():
        tokens = pretrain["tokens"].astype(float)
        keep &= np.isclose(tokens, tokens[keep].max())
    return keep


def _chosen(pre: pd.DataFrame) -> pd.DataFrame:
    """Per sparsity: the rates its pre-training seeds fine-tune from (`best:` takes, per seed, the rate with the
    lowest validation loss), the mean of those seeds' losses, the number of seeds, and the grid of rates tried."""
    pre = pre.assign(seed=pre["seed"].fillna(0) if "seed" in pre else 0)
    # a rate with no loss (records hold null for a run that diverged or failed) cannot be chosen, but was tried:
    # it stays in the grid; a sparsity with no loss at all has no chosen rate (idxmin raises on all-NA groups)
    measured = pre.dropna(subset=["eval_loss"])
    per_seed = measured.loc[measured.groupby(["sparsity", "seed"])["eval_loss"].idxmin()]
    best = per_seed.groupby("sparsity").agg(eval_loss=("eval_loss", "mean"), seeds=("seed", "size"),
                                            rates=("lr", lambda x: sorted(set(x))))
    best["grid"] = pre.groupby("sparsity")["lr"].agg(lambda x: sorted(set(x)))
    return best


def _rates(r: pd.Series) -> str:
    """'lr 0.012' for one chosen rate, 'lr 0.012 and 0.024' when the seeds chose differently."""
    return "lr " + " and ".join(f"{x:g}" for x in r["rates"])


def _loss(r: pd.Series) -> str:
    return f"{r['eval_loss']:.3f}" + (
        f" (mean of {r['seeds']} seeds, {_rates(r)})" if r["seeds"] > 1 else f" ({_rates(r)})"
    )


def dense_not_worse(pretrain: pd.DataFrame | None) -> Precondition:
    """Precondition 1: dense pre-training's validation loss (at its chosen rates, the mean over its seeds) ≤ every
    sparsity's."""
    what = "dense pre-training loss ≤ sparse"
    pre = _main_pretraining(pretrain)
    if pre is None or not np.isclose(pre["sparsity"], 0.0).any() or not (pre["sparsity"] > 0).any():
        return Precondition(what, UNCHECKED, "the results table lacks dense or sparse pre-training runs")
    best = _chosen(pre)
    if not np.isclose(best.index, 0.0).any() or not (best.index > 0).any():
        return Precondition(what, UNCHECKED, "the dense or every sparse pre-training run has no validation loss")
    dense = best.loc[best.index[np.isclose(best.index, 0.0)][0]]
    worse = [(s, r) for s, r in best.iterrows() if s > 0 and r["eval_loss"] < dense["eval_loss"]]
    detail = (f"validation loss dense {_loss(dense)}, "
              + ", ".join(f"{s:.0%} sparse {_loss(r)}" for s, r in best.iterrows() if s > 0))
    if not worse:
        return Precondition(what, MET, detail)
    return Precondition(what, FAILED, detail, meaning=(
        f"the dense model is weaker than the {', '.join(f'{s:.0%}' for s, _ in worse)} sparse one it is a superset of, "
        f"so a comparison of sparse with dense pre-training measures that weak dense baseline, not what sparsity costs "
        f"(at the paper's scale sparse pre-training costs validation loss)"))


def rates_inside_grid(pretrain: pd.DataFrame | None) -> Precondition:
    """Precondition 3: the rate each pre-training seed of each sparsity was chosen at lies strictly inside its grid
    (so at least 3 rates)."""
    what = "every sparsity's chosen learning rate inside its grid"
    pre = _main_pretraining(pretrain)
    if pre is None:
        return Precondition(what, UNCHECKED, "no pre-training runs in the results table")
    edges = []
    parts = []
    for s, r in _chosen(pre).iterrows():
        grid = r["grid"]
        at = [grid_position(lr, grid) for lr in r["rates"]]
        where = ", ".join(f"{lr:g} {a}" if len(at) > 1 else a for lr, a in zip(r["rates"], at, strict=True))
        parts.append(f"sparsity {s:g}: {' and '.join(f'{x:g}' for x in r['rates'])} of "
                     f"[{', '.join(f'{x:g}' for x in grid)}], {where}")
        if any(a != "inside" for a in at):
            edges.append("dense" if s == 0 else f"{s:.0%} sparse")
    detail = "; ".join(parts)
    if not edges:
        return Precondition(what, MET, detail)
    return Precondition(
        what,
        FAILED,
        detail,
        meaning=(
            f"the best rate of {' and '.join(edges)} pre-training may lie outside the grid, so a difference between "
            f"sparsities may be a difference in how well each was tuned"
        ),
    )


def pretraining_beats_scratch(rep: Report, task: str, dense: pd.DataFrame, scratch: pd.DataFrame, margins: Margins,
                              noise: SeedNoise | None, table: str = "examples") -> Precondition:
    """Precondition 2 on one task: the BLEU interval of dense pre-trained (dense fine-tuning) minus from-scratch
    lies above 0, with the task's pooled seed noise (as the verdicts compute it)."""
    what = f"dense pre-trained beats scratch downstream ({task}, BLEU)"

    def outcome(status: str, detail: str, meaning: str = "") -> Precondition:
        return Precondition(what, status, detail, meaning, task)

    base = select(dense, sparsity=0.0)
    if base.empty or scratch.empty:
        return outcome(UNCHECKED, "no dense pre-trained or no from-scratch runs of this task")
    if not (learned(base) and learned(scratch)):
        return outcome(UNCHECKED, "a model that did not learn its task is not a result")
    d = difference(rep, base, scratch, BLEU, margins, table, noise)
    if d is None:
        return outcome(UNCHECKED, "a run lacks its per-example outputs")
    v = verdict(*d, "gain")
    detail = f"difference {v.interval}"
    if v.label == "agrees":
        return outcome(MET, detail)
    how = "is worse than or no better than" if v.label == "disagrees" else "is not shown, at this noise, to beat"
    return outcome(FAILED, f"dense pre-training {how} scratch: {detail}", meaning=(
        f"on {task}, pre-training has no measured benefit, so whether sparse pre-training keeps it (SPDF's question) "
        f"is moot, and a gain of sparse over dense pre-training measures the dense model's weakness"))


def warning(conditions: Sequence[Precondition], task: str | None = None) -> str:
    """The line the verdicts are printed under when a precondition failed ('' when none did): which ones, and
    what the verdicts therefore cannot mean. With `task`, only the preconditions those verdicts rest on count (the
    pre-training ones and that task's own): another task's failure says nothing about them."""
    return core.warning(conditions, "SPDF", task)


def check_all(rep: Report, full: pd.DataFrame, scratch: pd.DataFrame, margins: Margins,
              table: str = "examples") -> list[Precondition]:
    """Every precondition of the verdicts that `verdicts.comparisons(rep, full, scratch, ...)` draws: the two on
    pre-training (from the report's `pretrain` table), then dense pre-trained vs scratch on each task."""
    pretrain = rep.tables.get("pretrain")
    out = [dense_not_worse(pretrain), rates_inside_grid(pretrain)]
    for task, g in full.groupby("task"):
        sc = scratch[scratch["task"] == task]
        noise = seed_noise(rep, task_conditions(g, sc), BLEU, table)
        out.append(pretraining_beats_scratch(rep, task, g[g["mode"] == "dense"], sc, margins, noise, table))
    return out
