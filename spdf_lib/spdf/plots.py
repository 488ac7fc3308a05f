"""SPDF's figures: pre-training FLOP reduction against sparsity and per term, and downstream quality against
pre-training sparsity, total FLOPs and fine-tuning set size."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from spdf_lib import plots  # noqa: F401  (sets the backend and theme)


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




_MODE_STYLE = {"dense": dict(marker="o", ls="-"), "sparse": dict(marker="s", ls="--")}



def quality_vs_sparsity(ft: pd.DataFrame, scratch: pd.DataFrame, beyond: pd.DataFrame,
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



def quality_vs_flops(ft: pd.DataFrame, metric: str = "bleu") -> plt.Figure:
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



def quality_vs_train_size(ft: pd.DataFrame, metric: str = "bleu") -> plt.Figure:
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



CHECK_COLUMNS = {"e2e": ("lex_slot_realisation", "slot_realisation"), "webnlg": ("entity_coverage",),
                 "dart": ("entity_coverage",)}


def _check_column(g: pd.DataFrame, task: str) -> str | None:
    return next((c for c in CHECK_COLUMNS.get(task, ()) if c in g and g[c].notna().any()), None)


def check_vs_sparsity(ft: pd.DataFrame, scratch: pd.DataFrame) -> plt.Figure:
    """The task-level check (E2E slot realisation, WebNLG/DART entity coverage) against pre-training sparsity,
    like `quality_vs_sparsity`; for E2E also `name` realisation."""
    tasks = sorted(ft["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        g = ft[ft["task"] == task]
        col = _check_column(g, task)
        if col is None:
            continue
        cols = [col] + (["name_realisation"] if task == "e2e" and "name_realisation" in g else [])
        for c, ls in zip(cols, ("-", ":"), strict=False):
            for mode, gm in g.groupby("mode"):
                stats = gm.groupby("sparsity")[c].agg(["mean", "std"]).reset_index()
                ax.errorbar(stats["sparsity"], stats["mean"], yerr=stats["std"].fillna(0), capsize=3, ls=ls,
                            marker=_MODE_STYLE.get(mode, {}).get("marker", "^"), label=f"{c}, {mode} FT")
            sc = scratch[scratch["task"] == task][c] if c in scratch else pd.Series(dtype=float)
            if len(sc):
                ax.axhline(sc.mean(), color="grey", lw=1, ls=ls, label=f"{c}, from scratch")
        ax.set(xlabel="pre-training sparsity", ylabel="% of input values in the output", title=task, ylim=(0, 100))
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def convergence(curves: pd.DataFrame) -> plt.Figure:
    """Validation BLEU and task check (greedy outputs on held-out training-split inputs) against fine-tuning
    steps, one line per run, per task (rows) and measure (columns)."""
    tasks = sorted(curves["task"].unique())
    fig, axes = plt.subplots(len(tasks), 2, figsize=(9, 3.0 * len(tasks)), squeeze=False)
    for row, task in zip(axes, tasks, strict=True):
        g = curves[curves["task"] == task]
        for ax, (col, label) in zip(row, (("val_bleu", "validation BLEU"), ("val_check", "validation check (%)")),
                                    strict=True):
            if col not in g:
                continue
            for (mode, s), gm in g.groupby(["mode", "sparsity"]):
                colour = {"dense": "C0", "sparse": "C1", "scratch": "grey"}.get(mode, "C3")
                for i, (_, run) in enumerate(gm.groupby("seed")):
                    ax.plot(run["step"], run[col], color=colour, alpha=0.35 + 0.65 * (s == gm["sparsity"].max()),
                            ls="-" if s == 0 else "--", lw=1,
                            label=(f"{mode}" + ("" if mode == "scratch" else f" s={s:g}")) if i == 0 else None)
            ax.set(xlabel="fine-tuning step", ylabel=label, title=task)
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def pretrain_curves(curves: pd.DataFrame) -> plt.Figure:
    """Pre-training diagnostics, one line per run (colour: sparsity; line style: seed; faint: a rate that was not
    chosen): validation loss and the global gradient norm against steps (issue 22's diagnosis)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for (s, seed, lr), run in curves.groupby(["sparsity", "seed", "lr"]):
        colour = "C0" if s == 0 else "C1"
        style = dict(color=colour, ls=["-", "--", ":", "-."][int(seed) % 4], lw=1,
                     alpha=1.0 if run["chosen"].iloc[0] else 0.25)
        label = f"{'dense' if s == 0 else f'{s:.0%} sparse'} seed {seed}, lr {lr:g}" if run["chosen"].iloc[0] else None
        ev = run.dropna(subset=["eval_loss"])
        axes[0].plot(ev["step"], ev["eval_loss"], label=label, **style)
        if "grad_norm" in run:
            gn = run.dropna(subset=["grad_norm"])
            axes[1].plot(gn["step"], gn["grad_norm"].rolling(8, min_periods=1).mean(), **style)
    lows = curves.groupby(["sparsity", "seed", "lr"])["eval_loss"].min()
    axes[0].set(xlabel="pre-training step", ylabel="validation loss (nats/token)",
                ylim=(lows.min() - 0.1, lows.max() + 0.6), title="validation loss (bold: the chosen rates)")
    axes[0].legend(fontsize=6)
    axes[1].set(xlabel="pre-training step", ylabel="gradient norm (mean of 8 logs)", yscale="log",
                title="global gradient norm")
    fig.tight_layout()
    return fig


def validation_curve(curve: pd.DataFrame, best_step: int | None = None, title: str = "") -> plt.Figure:
    """One run's validation numbers against fine-tuning steps: BLEU and the check (left axis, 0–100), loss
    (right axis); the kept step dotted."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for col, label in (("val_bleu", "BLEU"), ("val_check", "check (%)")):
        if col in curve:
            ax.plot(curve["step"], curve[col], "o-", ms=3, label=label)
    ax.set(xlabel="fine-tuning step", ylabel="validation BLEU / check", title=title)
    handles = ax.get_lines()
    if "val_loss" in curve:
        right = ax.twinx()
        handles += right.plot(curve["step"], curve["val_loss"], "s--", ms=3, color="grey", label="loss (right)")
        right.set_ylabel("validation loss (nats/token)")
        right.grid(False)
    if best_step is not None:
        handles.append(ax.axvline(best_step, color="k", ls=":", lw=1, label="kept"))
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncols=4)
    fig.tight_layout()
    return fig
