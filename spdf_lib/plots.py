"""Figures shared by the notebooks and the report: one function per figure, saved as PNG and PDF."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # headless scripts and tests; notebooks keep their inline backend
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from spdf_lib.records import read_jsonl  # noqa: E402

sns.set_theme(context="paper", style="whitegrid")


def save(fig: plt.Figure, path: str | Path) -> list[Path]:
    """Save `fig` as `<path>.png` and `<path>.pdf` (parent folders created); returns both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in out:
        fig.savefig(p, bbox_inches="tight", dpi=150)
    return out


def metrics_frame(run_dir: str | Path) -> pd.DataFrame:
    """A run's metrics.jsonl as a DataFrame."""
    return pd.DataFrame(read_jsonl(Path(run_dir) / "metrics.jsonl"))


def loss_curve(run_dir: str | Path, x: str = "tokens", title: str = "") -> plt.Figure:
    """Training loss (and eval loss where logged) of one run against tokens, FLOPs or seconds."""
    df = metrics_frame(run_dir)
    labels = {"tokens": "tokens seen", "flops": "training FLOPs", "elapsed_s": "training time (s)", "step": "step"}
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(df[x], df["loss"], label="train loss")
    if "eval_loss" in df:
        ev = df.dropna(subset=["eval_loss"])
        ax.plot(ev[x], ev["eval_loss"], "o-", label="validation loss")
    ax.set(xlabel=labels.get(x, x), ylabel="cross-entropy (nats/token)", title=title)
    if x == "flops":
        ax.set_xscale("log")
    ax.legend()
    fig.tight_layout()
    return fig


def flops_reduction(by_size: pd.DataFrame) -> plt.Figure:
    """Pre-training FLOP reduction vs dense against sparsity, one line per model size."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    sns.lineplot(by_size, x="sparsity", y="reduction_vs_dense", hue="model", marker="o", ax=ax)
    top = by_size["sparsity"].max()
    ax.plot([0, top], [1, 1 / (1 - top)], "k:", lw=1, label="ideal 1/(1-s)")
    ax.set(xlabel="static sparsity s of the six SPDF matrices", ylabel="training FLOPs: dense / sparse (x)",
           title="Why small models gain less: dense attention and logits")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def flops_breakdown(by_size: pd.DataFrame, sizes: list[str] | None = None) -> plt.Figure:
    """Stacked share of training FLOPs per term (projections, FFN, attention, logits, ...) per size and sparsity."""
    df = by_size if sizes is None else by_size[by_size["model"].isin(sizes)]
    shares = [c for c in df.columns if c.startswith("share_") and df[c].any()]
    labels = [f"{m}\ns={s:g}" for m, s in zip(df["model"], df["sparsity"], strict=True)]
    fig, ax = plt.subplots(figsize=(max(5, 0.55 * len(df)), 3.8))
    bottom = None
    for c in shares:
        vals = df[c].to_numpy()
        ax.bar(labels, vals, bottom=bottom, label=c.removeprefix("share_"))
        bottom = vals if bottom is None else bottom + vals
    ax.set(ylabel="share of training FLOPs", title="FLOPs per term (SPDF convention, one context-length sequence)")
    ax.tick_params(axis="x", labelsize=6, labelrotation=60)
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return fig


def primer_curves(curves: dict, x: str = "flops", size: str | None = None) -> plt.Figure:
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


def primer_speedups(speedups: pd.DataFrame) -> plt.Figure:
    """The paper's speedup factor per variant and size, in FLOPs and in wall-clock time (mean ± sd over seeds)."""
    long = speedups.melt(id_vars=["size", "variant", "seed"], value_vars=["speedup_flops", "speedup_time"],
                         var_name="compute", value_name="speedup")
    long["compute"] = long["compute"].map({"speedup_flops": "training FLOPs", "speedup_time": "wall-clock"})
    g = sns.catplot(long, x="variant", y="speedup", hue="size", col="compute", kind="bar", errorbar="sd",
                    height=3.2, aspect=1.2)
    for ax in g.axes.flat:
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.set(xlabel="", ylabel="speedup over the baseline (x)")
    return g.figure


def primer_power_law(summary: pd.DataFrame, powerlaw: pd.DataFrame) -> plt.Figure:
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


_MODE_STYLE = {"dense": dict(marker="o", ls="-"), "sparse": dict(marker="s", ls="--")}


def spdf_quality_vs_sparsity(ft: pd.DataFrame, scratch: pd.DataFrame, beyond: pd.DataFrame,
                             metric: str = "bleu") -> plt.Figure:
    """Downstream metric against pre-training sparsity, one panel per task: dense (SPDF) and sparse fine-tuning
    lines with the seed spread as error bars; from-scratch as a band; Primer-EZ pre-trained at 75% sparsity and
    densely fine-tuned as a star."""
    tasks = sorted(ft["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        g = ft[ft["task"] == task]
        for mode, gm in g.groupby("mode"):
            stats = gm.groupby("sparsity")[metric].agg(["mean", "std"]).reset_index()
            ax.errorbar(stats["sparsity"], stats["mean"], yerr=stats["std"].fillna(0), capsize=3,
                        label=f"{mode} fine-tuning", **_MODE_STYLE.get(mode, {}))
        sc = scratch[scratch["task"] == task][metric]
        if len(sc):
            m, s = sc.mean(), sc.std() if len(sc) > 1 else 0.0
            ax.axhspan(m - s, m + s, color="grey", alpha=0.2)
            ax.axhline(m, color="grey", lw=1, label="from scratch")
        be = beyond[beyond["task"] == task]
        if len(be):
            ax.errorbar(be["sparsity"].mean(), be[metric].mean(), yerr=be[metric].std() if len(be) > 1 else 0,
                        marker="*", ms=12, color="C3", ls="none", label="Primer-EZ, dense fine-tuning")
        ax.set(xlabel="pre-training sparsity", ylabel=f"{metric.upper()} (test, %)", title=task)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def spdf_quality_vs_flops(ft: pd.DataFrame, metric: str = "bleu") -> plt.Figure:
    """Downstream metric against total training FLOPs (pre-training + fine-tuning), per task and mode."""
    tasks = sorted(ft["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        g = ft[ft["task"] == task]
        stats = g.groupby(["mode", "arch", "sparsity", "n_train_pairs"]).agg(
            flops=("total_flops", "mean"), m=(metric, "mean"), sd=(metric, "std")).reset_index()
        for (mode, arch), gm in stats.groupby(["mode", "arch"]):
            ax.errorbar(gm["flops"], gm["m"], yerr=gm["sd"].fillna(0), capsize=3, ls="none",
                        label=f"{mode}" + ("" if arch == "gpt" else f" ({arch})"), **{
                            k: v for k, v in _MODE_STYLE.get(mode, {"marker": "^"}).items() if k == "marker"})
            for r in gm.itertuples():
                ax.annotate(f"s={r.sparsity:g}", (r.flops, r.m), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set(xscale="log", xlabel="total training FLOPs (pre-training + fine-tuning)",
               ylabel=f"{metric.upper()} (test, %)", title=task)
        # ticks at 1, 2 and 5 per decade, all labelled: the runs span about one decade
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}".replace("e+", "e")))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def spdf_quality_vs_train_size(ft: pd.DataFrame, metric: str = "bleu") -> plt.Figure:
    """Downstream metric against the fine-tuning set size (WebNLG training pairs), one line per pre-training
    sparsity (dense fine-tuning): the paper's sparsity × dataset-size relation."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for s, g in ft.groupby("sparsity"):
        stats = g.groupby("n_train_pairs")[metric].agg(["mean", "std"]).reset_index()
        ax.errorbar(stats["n_train_pairs"], stats["mean"], yerr=stats["std"].fillna(0), capsize=3, marker="o",
                    label=f"sparsity {s:g}")
    ax.set(xscale="log", xlabel="fine-tuning pairs (WebNLG train subset)", ylabel=f"{metric.upper()} (test, %)",
           title="Dense fine-tuning: quality vs data size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
