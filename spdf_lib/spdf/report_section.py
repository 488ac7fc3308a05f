"""SPDF's part of the report: the pre-training FLOP reduction and downstream quality against pre-training
sparsity and fine-tuning mode, each beside the paper's claim (Thangarasa et al. 2023), every claim decided by
the interval of its difference (`spdf_lib.stats`), never by a point estimate.

What it reads: the results table (one row per run) and, per fine-tuning run, its `examples` table (BLEU
statistics, checks and loss per test input: what the bootstrap resamples) and `validation` table (the
convergence curve).

SPDF makes the most claims of the three papers, so its section is three modules: this one puts the section
together (FLOPs, pre-training, targets, convergence, the decoding check), `verdicts` decides the comparisons and
`report_tables` writes the tables and samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from spdf_lib import flops
from spdf_lib.records import read_table
from spdf_lib.report_document import Report, column, ok_runs
from spdf_lib.spdf import plots
from spdf_lib.spdf.preconditions import Precondition, check_all, spdf_runs, warning
from spdf_lib.spdf.report_tables import (
    added_slots_line,
    curves,
    decoding_line,
    decoding_name,
    finetune_frame,
    mean_sd_text,
    optional_column,
    pretrain_curves,
    reference_line,
    results_table,
    samples,
)
from spdf_lib.spdf.verdicts import by_comparison, comparisons, same_verdicts, select, verdict_labels
from spdf_lib.stats import Margins

PAPER_GPT3XL_REDUCTION_75 = 2.5  # "2.5x fewer pre-training FLOPs" for GPT-3 XL at 75% sparsity
METRIC = "bleu"
# The targets issue 15 set for the tiny preset: E2E, dense fine-tuning of the dense pre-trained model.
E2E_TARGETS = {"name_realisation": 90.0, "bleu": 45.0}


def flops_part(results: pd.DataFrame, rep: Report) -> None:
    r = flops.reduction_factor("gpt3-xl", 0.75, 26.3e9, 2048)
    verdict_word = "agrees" if abs(r - PAPER_GPT3XL_REDUCTION_75) < 0.1 else "does not agree"
    claim = (f"Pre-training FLOPs, GPT-3 XL at 75% sparsity (26.3e9 tokens, context 2048, SPDF convention): "
             f"**{r:.2f}x** fewer than dense; the paper reports {PAPER_GPT3XL_REDUCTION_75}x — {verdict_word}. GPT-2 "
             f"Small (context 2048) gains {flops.reduction_factor('gpt2-small-2048', 0.75):.2f}x: dense attention and "
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



def pretrain_part(results: pd.DataFrame, rep: Report) -> None:
    """The pre-training runs: validation loss per sparsity and learning rate, and which rate each sparsity got."""
    pre = ok_runs(results, "spdf_pretrain")
    if pre.empty:
        return
    table = pd.DataFrame({
        "model_size": optional_column(pre, "model_size", "nano"),
        "sparsity": column(pre, "sparsity").astype(float), "activation": optional_column(pre, "activation", "gelu"),
        "mdha": optional_column(pre, "mdha", False), "lr": column(pre, "lr").astype(float),
        "seed": optional_column(pre, "seed", 0).fillna(0).astype(int),
        "tokens": column(pre, "tokens").astype(float), "max_epochs": optional_column(pre, "max_epochs", np.nan),
        "epochs": optional_column(pre, "epochs", np.nan).astype(float),
        "eval_loss": column(pre, "eval_loss").astype(float), "seconds": optional_column(pre, "train_seconds", np.nan),
    }).sort_values(["model_size", "activation", "mdha", "sparsity", "tokens", "lr", "seed"])
    rep.tables["pretrain"] = table
    # runs whose loss is null (diverged or failed: records hold null, not NaN) cannot be chosen
    gpt = spdf_runs(table)  # Primer's variants, budgets and second size share the table: they have their section
    measured = table[gpt].dropna(subset=["eval_loss"])
    best = measured.loc[measured.groupby(["activation", "mdha", "sparsity", "seed"])["eval_loss"].idxmin()]
    swept = table.groupby(["activation", "mdha", "sparsity"])["lr"].nunique().max() > 1
    lines = ["Pre-training (validation loss at the end of each run; " +
             ("each pre-training seed of each sparsity fine-tunes from its learning rate with the lowest validation "
              "loss, chosen by the fine-tuning runs and recorded in them):" if swept else
              "one learning rate per sparsity):"), "",
             table.to_markdown(index=False, floatfmt=".4g"), ""]
    if swept:
        lines.append("Chosen: " + ", ".join(f"sparsity {r.sparsity:g} seed {r.seed} → lr {r.lr:g} ({r.eval_loss:.3f})"
                                            for r in best.itertuples()) + ".")
    cv = pretrain_curves(rep, table[gpt].assign(run=pre["run"]), best)
    if len(cv):
        rep.tables["pretrain_curves"] = cv
        rep.figure(plots.pretrain_curves(cv), "spdf_pretrain_curves",
                   "Pre-training, one line per run: validation loss and the global gradient norm against steps; "
                   "bold lines are the rates each pre-training seed fine-tunes from.")
    passes = table["epochs"].max()
    if np.isfinite(passes):
        lines.append(
            f"The epoch guard: every budget is at most `max_epochs` = {table['max_epochs'].max():g} passes over "
            f"its corpus (these runs: up to {passes:.2f}); the papers saw each pre-training token once."
        )
    rep.say(*lines, "")



def _targets(full: pd.DataFrame) -> list[str]:
    e2e = select(full[full["mode"] == "dense"], task="e2e", sparsity=0.0)
    if e2e.empty or "name_realisation" not in e2e:
        return []
    got = {k: e2e[k].mean() for k in E2E_TARGETS}
    met = all(got[k] >= v for k, v in E2E_TARGETS.items())
    delex = e2e["delexicalised"].iloc[0]
    how = (
        f" The E2E runs are delexicalised ({delex} → placeholders, put back before scoring, as E2E's TGen baseline "
        f"did): `name` realisation then measures that the model writes the placeholder, and the check column reports "
        f"the slots that were not delexicalised."
        if delex
        else ""
    )
    return [f"- Tiny-preset targets, E2E dense fine-tuning of the dense model (mean of {len(e2e)} seeds): `name` "
            f"realised in {got['name_realisation']:.1f}% of outputs (target ≥ {E2E_TARGETS['name_realisation']:g}%), "
            f"BLEU {got['bleu']:.1f} (target ≥ {E2E_TARGETS['bleu']:g}): **{'met' if met else 'not met'}**.{how}"]



def section(results: pd.DataFrame, rep: Report) -> None:
    """Add SPDF's findings to `rep`."""
    margins = getattr(rep, "margins", None) or Margins()
    rep.say("## SPDF", "")
    flops_part(results, rep)
    pretrain_part(results, rep)
    ft = finetune_frame(results)
    if ft.empty:
        rep.say("- No fine-tuning runs in the results table yet.", "")
        return
    rep.tables["finetune"] = ft
    # per task, one decoding: the one most runs use (a run decoded otherwise is another condition)
    decoded = ft[ft["num_beams"] == ft.groupby("task")["num_beams"].transform(lambda x: x.mode().iloc[0])]
    main = decoded[(decoded["arch"] == "gpt") & (decoded["mode"].isin(["dense", "sparse"]))]
    # per task, the main grid is the training-set size most runs use; the other sizes are the dataset-size axis
    main_size = main.groupby("task")["n_train_pairs"].agg(lambda x: x.mode().iloc[0])
    full = main[main["n_train_pairs"] == main["task"].map(main_size)]
    scratch = decoded[(decoded["mode"] == "scratch") & (decoded["arch"] == "gpt")]
    beyond = decoded[(decoded["arch"] == "primer-ez") & (decoded["mode"] == "dense")]
    rep.say(f"Verdicts use a stated margin: ±{margins.absolute:g} BLEU point, {100 * margins.relative:g}% (relative) "
            f"for slot realisation, entity coverage and loss. A verdict *agrees* only when the 95% interval of the "
            f"difference lies inside the margin (for \"no loss\": above −margin; for a gain: above 0), *disagrees* "
            f"when it lies outside, and is *inconclusive at this noise* otherwise. The interval bootstraps the test "
            f"inputs and adds the fine-tuning seeds' noise as a t-distributed term whose sd is pooled over all runs of "
            f"the task (2–3 seeds per condition cannot measure their own spread; resampling them gave tight intervals "
            f"that contradicted each other across decodings).{_pretraining_noise_caveat(rep)}", "")
    # per task: its verdicts, under the line naming the failed preconditions they rest on (if any)
    verdicts = {task: comparisons(rep, g, scratch[scratch["task"] == task], margins)
                for task, g in full.groupby("task")}
    drawn = any(verdict_labels(line) for lines in verdicts.values() for line in lines)
    conditions = check_all(rep, full, scratch, margins) if drawn else []
    lines = [c.line for c in conditions]
    for task, task_lines in verdicts.items():
        caveat = warning(conditions, task)
        lines += ([caveat] if caveat else []) + task_lines
    lines += _targets(full)
    if len(full):
        table = pd.concat([full, scratch, beyond])
        rep.say(f"Downstream results after fine-tuning to convergence (mean ± sd over seeds; {decoding_line(table)}; "
                "check = E2E slot realisation or WebNLG/DART entity coverage, %; length ratio = hypothesis / closest "
                "reference length, BLEU's brevity penalty reads it; test loss on the evaluated inputs' references):",
                "", results_table(table), "", reference_line(table), "", added_slots_line(rep, table), "")
        rep.figure(plots.quality_vs_sparsity(full, scratch, beyond, METRIC), "spdf_bleu_vs_sparsity",
                   "\n".join(lines) or "No comparison to draw.")
        rep.figure(plots.check_vs_sparsity(full, scratch), "spdf_check_vs_sparsity",
                   "The task-level checks against pre-training sparsity: what the outputs get right about their "
                   "inputs, beside BLEU.")
        same_size = table[table["n_train_pairs"] == table["task"].map(main_size)]
        rep.figure(plots.quality_vs_flops(same_size, METRIC), "spdf_bleu_vs_total_flops",
                   "Quality against total training FLOPs (pre-training + fine-tuning, including the validations "
                   "after the best one).")
    runs = pd.concat([full, scratch])
    cv = curves(rep, runs)
    if len(cv):
        rep.tables["finetune_curves"] = cv
        rep.figure(plots.convergence(cv), "spdf_convergence",
                   "Fine-tuning convergence: BLEU and the task check of greedy outputs on inputs held out from the "
                   "training split, against fine-tuning steps (one line per run). Early stopping keeps each run's best "
                   "model by " + ", ".join(f"{t}: {g['stop_metric'].iloc[0] or 'the last step'}"
                                           for t, g in runs.groupby("task")) + "; the test numbers above come from "
                   "that model. " + _budget_line(runs, cv))
    _decoding_check(rep, full, scratch, margins, conditions)
    sizes = main[(main["task"] == "webnlg") & (main["mode"] == "dense")]
    if sizes["n_train_pairs"].nunique() > 1:
        rep.figure(plots.quality_vs_train_size(sizes, METRIC), "spdf_bleu_vs_train_size",
                   "The paper finds that the effect of sparsity depends on the fine-tuning set size; here, "
                   "WebNLG BLEU after dense fine-tuning, per pre-training sparsity and number of training pairs.")
    if len(full):
        rep.say(samples(rep, pd.concat([full, scratch])), "")



def _pretraining_noise_caveat(rep: Report) -> str:
    """Said when each pre-training configuration has a single run: its noise is then in no interval."""
    pre = rep.tables.get("pretrain")
    if pre is None or pre.empty or pre.groupby(["activation", "mdha", "sparsity", "lr"]).size().max() > 1:
        return ""
    return (" Each pre-training configuration here is one run, so pre-training noise (seed, data order) is in no "
            "interval: the verdicts are about these pre-trained models, not about pre-training at this scale in "
            "general.")



def _budget_line(runs: pd.DataFrame, cv: pd.DataFrame) -> str:
    """Whether the fine-tuning budget, not early stopping, ended the runs of a task (the curve still rising)."""
    out = []
    for task, g in runs.groupby("task"):
        stopped = g["stopped_early"]
        c = cv[cv["task"] == task].sort_values("step")
        if c.empty:
            continue
        last, mid = c["step"].max(), c["step"].max() * 0.6
        gain = (c[c["step"] == last]["val_bleu"].mean() - c[c["step"].between(mid - 100, mid + 100)]["val_bleu"].mean())
        if not stopped.any() and gain > 1:
            out.append(f"{task}: no run stopped early and validation BLEU still rose by {gain:.1f} over the last 40% "
                       f"of the steps: the budget ({g['epochs_max'].iloc[0]:g} epochs), not convergence, ended these "
                       f"runs")
        else:
            out.append(f"{task}: {int(stopped.sum())} of {len(g)} runs stopped early")
    return ("; ".join(out) + ".") if out else ""



def _decoding_check(rep: Report, full: pd.DataFrame, scratch: pd.DataFrame, margins: Margins,
                    conditions: Sequence[Precondition] = ()) -> None:
    """The same comparisons on a second decoding of the same models (runs with `second_num_beams`, e.g. greedy
    beside beam search): does the decoding change a conclusion? Each task's verdicts are printed under the line of
    the failed `conditions` they rest on, as the first decoding's are."""
    runs = pd.concat([full, scratch])
    if "second_bleu" not in runs:
        return
    for task, g in runs[runs["second_bleu"].notna()].groupby("task"):
        first, second = decoding_name(int(g["num_beams"].iloc[0])), decoding_name(int(g["second_num_beams"].iloc[0]))
        fb, sb = g[g["mode"] != "scratch"], g[g["mode"] == "scratch"]  # the runs decoded both ways
        main = comparisons(rep, fb, sb, margins)
        other = comparisons(rep, fb, sb, margins, table="examples_second")
        paired = by_comparison(main), by_comparison(other)
        same = [same_verdicts(line, paired[1][k]) for k, line in paired[0].items()
                if k in paired[1] and verdict_labels(line)]
        models = f"{len(g)} fine-tuned model{'s' if len(g) != 1 else ''}"
        head = (f"{first.capitalize()} vs {second} ({task}: {models} decoded both ways; BLEU "
                f"{mean_sd_text(g['bleu'])} {first}, {mean_sd_text(g['second_bleu'])} {second}).")
        if not same:  # e.g. models that did not learn their task: no verdict on either decoding
            rep.say(
                head + f" No verdict was drawn on {task}, so there is no conclusion for the decoding to change.", ""
            )
            continue
        head += f" The verdicts on {second} outputs — {sum(same)} of {len(same)} the same as on {first} outputs:"
        tail = (f"The decoding changes {len(same) - sum(same)} of these {len(same)} conclusions on {task}: there, a "
                f"verdict above is a conclusion only where {second} outputs give the same one." if not all(same)
                else f"The decoding changes none of the {len(same)} conclusions on {task}.")
        caveat = warning(conditions, task)
        rep.say(head, "", *([caveat] if caveat else []), *other, "", tail, "")
