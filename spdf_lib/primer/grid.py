"""Primer's grid as run records: each (size, variant, token budget, learning rate, seed) is one `spdf_pretrain` run
(the SPDF pre-training recipe with the variant's `activation` and `mdha`), so the dense GELU runs of the SPDF sweep
are the baseline's runs when recipe, seeds, data order and evaluation match (issue 34). Torch-free.

`runs_table(results)` takes the results table (`spdf_lib.results`) and keeps the dense runs with one row per run;
`chosen(table)` picks each arm's rate per budget (the lowest mean validation loss over seeds); `curves` turns the
chosen endpoints into `speedup.Curve`s; `seed_noise` pools the run-to-run sd over every condition of one size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spdf_lib.primer.params import VARIANTS
from spdf_lib.primer.speedup import Curve
from spdf_lib.report_document import column
from spdf_lib.stats import SeedNoise, pooled_seed_noise

SIZES_ORDER = ("nano", "micro", "mini", "small", "gpt2-small", "gpt2-small-2048", "gpt3-xl")  # smallest first
CONDITION = ["size", "variant", "tokens", "lr"]  # a condition: its runs differ only in their seed
ARM_BUDGET = ["size", "variant", "tokens"]


def variant_name(activation: str, mdha: bool) -> str:
    """`baseline`, `relu2`, `mdha` or `primer-ez` for a run's architecture options."""
    for name, opts in VARIANTS.items():
        if opts == {"activation": activation, "mdha": bool(mdha)}:
            return name
    raise ValueError(f"no Primer variant has activation={activation!r}, mdha={mdha!r}")


def runs_table(results: pd.DataFrame) -> pd.DataFrame:
    """The dense pre-training runs of a results table, one row each: size, variant, tokens, lr, seed, eval_loss,
    steps, train_seconds, flops_per_token, run (and the recipe columns that must match across arms)."""
    # a diverged run was tried at its rate (it stays in the grid) but has no loss to choose it by
    pre = results[(results["experiment"] == "spdf_pretrain") & results["status"].isin(["ok", "diverged"])].copy()
    if "sparsity" in pre:
        pre = pre[pre["sparsity"].fillna(0).astype(float) == 0]
    if pre.empty:
        return pd.DataFrame(columns=[*CONDITION, "seed", "eval_loss"])

    def col(name: str, default) -> pd.Series:
        try:
            return column(pre, name)
        except KeyError:
            return pd.Series(default, index=pre.index)

    out = pd.DataFrame({
        "size": col("model_size", "nano"),
        "variant": [variant_name(a, m) for a, m in zip(col("activation", "gelu").fillna("gelu"),
                                                        col("mdha", False).fillna(False), strict=True)],
        "tokens": col("tokens", np.nan).astype(float), "lr": col("lr", np.nan).astype(float),
        "seed": col("seed", 0).fillna(0).astype(int),
        "eval_loss": col("eval_loss", np.nan).astype(float).where(pre["status"] == "ok"),
        "steps": col("steps", np.nan).astype(float), "train_seconds": col("train_seconds", np.nan).astype(float),
        "flops_per_token": col("flops_per_token", np.nan).astype(float),
        "run": col("run", ""),
    })
    for recipe in RECIPE:
        out[recipe] = col(recipe, None)
    return out.reset_index(drop=True)


# What must be the same for every arm of one size for its runs to be compared (the baseline's included): the
# recipe, the data, the evaluation windows. `primer.preconditions.same_recipe` checks them.
RECIPE = ("corpus", "vocab_size", "seq_len", "batch_size", "matrix_lr_scale", "warmup_fraction", "min_lr_ratio",
          "weight_decay", "eval_windows", "precision", "resolved_precision", "mdha_kernel")


def chosen(table: pd.DataFrame) -> pd.DataFrame:
    """Per (size, variant, tokens): the rate with the lowest mean validation loss over its seeds (`lr`), that
    mean (`eval_loss`), its seeds (`n`, `seeds`), the rates tried (`grid`) and the seeds of each rate."""
    measured = table.dropna(subset=["eval_loss"])
    cells = (measured.groupby(CONDITION).agg(eval_loss=("eval_loss", "mean"), n=("seed", "size"),
                                             seeds=("seed", lambda s: sorted(set(s))))
             .reset_index())
    best = cells.loc[cells.groupby(ARM_BUDGET)["eval_loss"].idxmin()].set_index(ARM_BUDGET)
    best["grid"] = table.groupby(ARM_BUDGET)["lr"].agg(lambda x: sorted(set(x)))
    best["seeds_per_rate"] = table.groupby([*ARM_BUDGET, "lr"])["seed"].nunique().groupby(ARM_BUDGET).agg(list)
    return best.reset_index()


def curves(best: pd.DataFrame) -> dict[tuple[str, str], Curve]:
    """{(size, variant): its annealed endpoints at the chosen rates}, for arms with >= 2 budgets."""
    out = {}
    for (size, variant), g in best.groupby(["size", "variant"]):
        if g["tokens"].nunique() >= 2:
            out[size, variant] = Curve.of({r.tokens: (r.eval_loss, r.n) for r in g.itertuples()})
    return out


def seed_noise(table: pd.DataFrame, size: str) -> SeedNoise | None:
    """The run-to-run sd of the final validation loss, pooled over every condition of `size` (each variant,
    budget and rate; df = runs − conditions). Sizes are never pooled."""
    runs = table[(table["size"] == size)].dropna(subset=["eval_loss"])
    return pooled_seed_noise([g["eval_loss"].to_numpy() for _, g in runs.groupby(CONDITION)])


def per_step_seconds(table: pd.DataFrame, size: str, variant: str) -> float:
    """The median measured training seconds per step of an arm's runs (all rates and budgets: one architecture,
    one step shape)."""
    g = table[(table["size"] == size) & (table["variant"] == variant)]
    return float((g["train_seconds"] / g["steps"]).median())


def per_token_flops(table: pd.DataFrame, size: str, variant: str) -> float:
    """An arm's training FLOPs per token (analytic, `spdf_lib.flops`; the same for all of its runs)."""
    g = table[(table["size"] == size) & (table["variant"] == variant)]
    return float(g["flops_per_token"].median())
