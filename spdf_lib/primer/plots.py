"""Primer's figures: validation loss against compute per variant, the speedups, and the power-law fits."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from spdf_lib import plots  # noqa: F401  (sets the backend and theme)


def loss_curves(curves: dict, x: str = "flops", size: str | None = None) -> plt.Figure:
    """Validation loss against training FLOPs (or seconds) for each Primer variant; seeds as a band.

    `curves`: {(size, variant, seed): metrics frame} as `run_primer` returns them; one panel per size.
    """
    sizes = [size] if size else list(dict.fromkeys(k[0] for k in curves))
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.4), squeeze=False)
    for ax, sz in zip(axes[0], sizes, strict=True):
        frames = []
        for (s, variant, seed), df in curves.items():
            if s == sz:
                ev = df.dropna(subset=["eval_loss"])[[x, "eval_loss", "step"]].assign(variant=variant, seed=seed)
                frames.append(ev)
        data = pd.concat(frames)
        # seeds share step numbers, not exact FLOPs/seconds: average x per (variant, step) for the band
        data[x] = data.groupby(["variant", "step"])[x].transform("mean")
        sns.lineplot(data, x=x, y="eval_loss", hue="variant", errorbar="sd", marker="o", ax=ax)
        ax.set(xlabel={"flops": "training FLOPs", "elapsed_s": "training time (s)"}.get(x, x),
               ylabel="validation loss (nats/token)", title=f"{sz}")
        if x == "flops":
            ax.set_xscale("log")
    fig.tight_layout()
    return fig



def speedups(table: pd.DataFrame) -> plt.Figure:
    """The paper's speedup factor per variant and size, in FLOPs and in wall-clock time (mean ± sd over seeds)."""
    long = table.melt(id_vars=["size", "variant", "seed"], value_vars=["speedup_flops", "speedup_time"],
                         var_name="compute", value_name="speedup")
    long["compute"] = long["compute"].map({"speedup_flops": "training FLOPs", "speedup_time": "wall-clock"})
    g = sns.catplot(long, x="variant", y="speedup", hue="size", col="compute", kind="bar", errorbar="sd",
                    height=3.2, aspect=1.2)
    for ax in g.axes.flat:
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.set(xlabel="", ylabel="speedup over the baseline (x)")
    return g.figure



def power_law(summary: pd.DataFrame, powerlaw: pd.DataFrame) -> plt.Figure:
    """End points (training FLOPs, final validation loss) per size and architecture, with the shared-slope
    power-law fits loss = a·C^(−k) and each variant's implied constant speedup in the legend."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(5, 3.6))
    palette = dict(zip(powerlaw["arch"], sns.color_palette(n_colors=len(powerlaw)), strict=True))
    c = np.geomspace(summary["train_flops"].min() / 1.5, summary["train_flops"].max() * 1.5, 50)
    for r in powerlaw.itertuples():
        pts = summary[summary["variant"] == r.arch]
        ax.errorbar(pts["train_flops"], pts["eval_loss"], yerr=pts["eval_loss_std"].fillna(0), fmt="o",
                    color=palette[r.arch])
        ax.plot(c, r.a * c ** (-r.k), color=palette[r.arch], label=f"{r.arch} ({r.constant_speedup:.2f}x)")
    ax.set(xscale="log", yscale="log", xlabel="training FLOPs C", ylabel="final validation loss",
           title=f"loss = a·C^(-k), shared k = {powerlaw['k'].iloc[0]:.3f}")
    ax.legend(fontsize=7, title="implied speedup vs baseline", title_fontsize=7)
    fig.tight_layout()
    return fig



def endpoints(table: pd.DataFrame, best: pd.DataFrame) -> plt.Figure:
    """Final validation loss against the token budget per variant, one panel per size: each seed's run at the
    arm's chosen rate as a point, the mean over seeds as a line (annealed endpoints, each budget its own schedule)."""
    keys = ["size", "variant", "tokens", "lr"]
    runs = table.merge(best[keys], on=keys)
    sizes = list(dict.fromkeys(runs["size"]))
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.4), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        data = runs[runs["size"] == size]
        sns.lineplot(data, x="tokens", y="eval_loss", hue="variant", errorbar=None, marker="o", ax=ax)
        sns.scatterplot(data, x="tokens", y="eval_loss", hue="variant", style="seed", legend=False, ax=ax, s=18)
        ax.set(xscale="log", xlabel="training tokens (budget)", ylabel="final validation loss (nats/token)",
               title=size)
    fig.tight_layout()
    return fig
