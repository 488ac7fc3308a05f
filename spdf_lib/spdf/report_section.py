"""SPDF's part of the report: the pre-training FLOP reduction and downstream quality against pre-training
sparsity, fine-tuning mode and data size, each beside the paper's claim (Thangarasa et al. 2023)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spdf_lib import flops
from spdf_lib.records import read_table
from spdf_lib.reporting import Report, column, mean_sd, ok_runs
from spdf_lib.spdf import plots

PAPER_GPT3XL_REDUCTION_75 = 2.5  # "2.5x fewer pre-training FLOPs" for GPT-3 XL at 75% sparsity
METRIC = "bleu"


def _difference(a: pd.Series, b: pd.Series) -> tuple[float, bool]:
    """mean(a) − mean(b), and whether it lies outside two standard deviations of the seed spread of both."""
    diff = a.mean() - b.mean()
    noise = np.sqrt((a.var(ddof=1) if len(a) > 1 else 0) + (b.var(ddof=1) if len(b) > 1 else 0))
    return float(diff), bool(noise > 0 and abs(diff) > 2 * noise)


def finetune_frame(results: pd.DataFrame) -> pd.DataFrame:
    """One row per finished fine-tuning run: task, mode, arch, pretrain sparsity, training pairs, seed, metrics."""
    ft = ok_runs(results, "spdf_finetune")
    if ft.empty:
        return ft
    out = pd.DataFrame({
        "task": column(ft, "task"), "mode": column(ft, "mode"), "arch": column(ft, "arch"),
        "sparsity": column(ft, "pretrain_sparsity").astype(float), "n_train_pairs": column(ft, "n_train_pairs"),
        "seed": column(ft, "seed"), "total_flops": column(ft, "total_flops"),
    })
    if "finetune_eval_loss" in ft:
        out["finetune_eval_loss"] = ft["finetune_eval_loss"].astype(float)
    for m in ("bleu", "chrfpp", "ter", "rouge_l", "nist", "meteor", "cider"):
        if m in ft:
            out[m] = ft[m].astype(float)
    return out.reset_index(drop=True)


def flops_part(results: pd.DataFrame, rep: Report) -> None:
    r = flops.reduction_factor("gpt3-xl", 0.75, 26.3e9, 2048)
    verdict = "agrees" if abs(r - PAPER_GPT3XL_REDUCTION_75) < 0.1 else "does not agree"
    claim = (f"Pre-training FLOPs, GPT-3 XL at 75% sparsity (26.3e9 tokens, context 2048, SPDF convention): "
             f"**{r:.2f}x** fewer than dense; the paper reports {PAPER_GPT3XL_REDUCTION_75}x — {verdict}. GPT-2 Small "
             f"(context 2048) gains {flops.reduction_factor('gpt2-small-2048', 0.75):.2f}x: dense attention and "
             f"logits weigh more in small models.")
    runs = ok_runs(results, "flops")
    if runs.empty:
        rep.say(f"- {claim}", "")
        return
    run = rep.run_dir(runs["run"].iloc[-1])
    by_size, paper = read_table(run, "flops_by_size"), read_table(run, "flops_paper")
    rep.tables["flops_paper"] = paper
    rep.figure(plots.flops_reduction(by_size), "flops_reduction_vs_sparsity", claim)
    rep.figure(plots.flops_breakdown(by_size, sizes=["mini", "gpt2-small", "gpt3-xl"]), "flops_breakdown",
               "Where the training FLOPs go, per term: the six sparsified matrices shrink with sparsity, attention "
               "scores and logits do not.")
    rep.say("Pre-training FLOPs at the SPDF reference budgets:", "", paper.to_markdown(index=False, floatfmt=".4g"),
            "")


def section(results: pd.DataFrame, rep: Report) -> None:
    """Add SPDF's findings to `rep`."""
    rep.say("## SPDF", "")
    flops_part(results, rep)
    ft = finetune_frame(results)
    if ft.empty:
        rep.say("- No fine-tuning runs in the results table yet.", "")
        return
    rep.tables["finetune"] = ft
    main = ft[(ft["arch"] == "gpt") & (ft["mode"].isin(["dense", "sparse"]))]
    # per task, the main grid is the training-set size most runs use; the other sizes are the dataset-size axis
    main_size = main.groupby("task")["n_train_pairs"].agg(lambda x: x.mode().iloc[0])
    full = main[main["n_train_pairs"] == main["task"].map(main_size)]
    scratch = ft[(ft["mode"] == "scratch") & (ft["arch"] == "gpt")]
    beyond = ft[(ft["arch"] == "primer-ez") & (ft["mode"] == "dense")]
    lines = _comparisons(full, scratch, beyond)
    if len(full):
        rep.figure(plots.quality_vs_sparsity(full, scratch, beyond, METRIC), "spdf_bleu_vs_sparsity",
                   "\n".join(lines["sparsity"] + lines["scratch"] + lines["beyond"]) or "No comparison to draw.")
        same_size = pd.concat([full, scratch, beyond])
        same_size = same_size[same_size["n_train_pairs"] == same_size["task"].map(main_size)]
        rep.figure(plots.quality_vs_flops(same_size, METRIC), "spdf_bleu_vs_total_flops",
                   "\n".join(lines["mode"]) or "Quality against total training FLOPs (pre-training + fine-tuning).")
    sizes = main[(main["task"] == "webnlg") & (main["mode"] == "dense")]
    if sizes["n_train_pairs"].nunique() > 1:
        rep.figure(plots.quality_vs_train_size(sizes, METRIC), "spdf_bleu_vs_train_size",
                   "The paper finds that the effect of sparsity depends on the fine-tuning set size; here, "
                   "WebNLG BLEU after dense fine-tuning, per pre-training sparsity and number of training pairs.")
    rep.say("", f"Downstream {METRIC.upper()} after fine-tuning (mean ± sd over seeds; CPU-scale models):", "",
            "| task | pre-training sparsity | dense fine-tuning (SPDF) | sparse fine-tuning | from scratch |",
            "| --- | --- | --- | --- | --- |",
            *_table_rows(full, scratch), "")


def _table_rows(full: pd.DataFrame, scratch: pd.DataFrame) -> list[str]:
    rows = []
    for task, g in full.groupby("task"):
        sc = scratch[scratch["task"] == task][METRIC]
        for s, gs in g.groupby("sparsity"):
            d, sp = gs[gs["mode"] == "dense"][METRIC], gs[gs["mode"] == "sparse"][METRIC]
            rows.append(f"| {task} | {s:g} | {mean_sd(d) if len(d) else '—'} | "
                        f"{mean_sd(sp) if len(sp) else '—'} | {mean_sd(sc) if len(sc) else '—'} |")
    return rows


def _comparisons(full: pd.DataFrame, scratch: pd.DataFrame, beyond: pd.DataFrame) -> dict[str, list[str]]:
    """The paper-vs-kit sentences: sparse vs dense pre-training, pre-trained vs scratch, dense vs sparse FT."""
    out: dict[str, list[str]] = {"sparsity": [], "scratch": [], "mode": [], "beyond": []}
    for task, g in full[full["mode"] == "dense"].groupby("task"):
        base = g[g["sparsity"] == 0]
        sc = scratch[scratch["task"] == task]
        for s, gs in g[g["sparsity"] > 0].groupby("sparsity"):
            diff, clear = _difference(gs[METRIC], base[METRIC])
            out["sparsity"].append(
                f"- {task}, dense fine-tuning from {s:g} sparse vs dense pre-training: {diff:+.2f} {METRIC.upper()} "
                f"({'outside' if clear else 'within'} two standard deviations of the seed spread). The paper finds no "
                f"significant loss at 75% for GPT-3 XL; " + ("this run agrees." if not clear or diff >= 0 else
                                                             "this run does not: a CPU-scale model loses quality."))
        if len(sc) and len(base):
            diff, clear = _difference(base[METRIC], sc[METRIC])
            line = (f"- {task}: dense pre-trained (s=0) minus from-scratch = {diff:+.2f} {METRIC.upper()} "
                    f"({mean_sd(base[METRIC])} vs {mean_sd(sc[METRIC])}): "
                    + ("a clear margin (outside two standard deviations)" if clear and diff > 0 else
                       "**not a clear margin** (within two standard deviations of the seed spread)"))
            if "finetune_eval_loss" in g:
                loss_diff, loss_clear = _difference(base["finetune_eval_loss"], sc["finetune_eval_loss"])
                line += (f"; fine-tuning eval loss {loss_diff:+.3f} nats/token "
                         f"({mean_sd(base['finetune_eval_loss'])} vs {mean_sd(sc['finetune_eval_loss'])}, "
                         f"{'outside' if loss_clear else 'within'} two standard deviations)")
            out["scratch"].append(line + ".")
        sp = full[(full["task"] == task) & (full["mode"] == "sparse")]
        for s, gs in sp[sp["sparsity"] > 0].groupby("sparsity"):
            diff, clear = _difference(g[g["sparsity"] == s][METRIC], gs[METRIC])
            verdict = ("agrees" if diff > 0 else "disagrees") if clear else "neither agrees nor disagrees at this noise"
            out["mode"].append(f"- {task}, sparsity {s:g}: dense minus sparse fine-tuning = {diff:+.2f} "
                               f"{METRIC.upper()} ({'outside' if clear else 'within'} two standard deviations); the "
                               f"paper finds dense fine-tuning recovers what sparse fine-tuning loses — this run "
                               f"{verdict}.")
    for task, g in beyond.groupby("task"):
        out["beyond"].append(f"- Beyond the papers: Primer-EZ pre-trained at 75% sparsity, then densely fine-tuned, "
                             f"{task}: {mean_sd(g[METRIC])} {METRIC.upper()}.")
    return out
