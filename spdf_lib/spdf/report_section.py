"""SPDF's part of the report: the pre-training FLOP reduction and downstream quality against pre-training
sparsity and fine-tuning mode, each beside the paper's claim (Thangarasa et al. 2023), every claim decided by
the interval of its difference (`spdf_lib.stats`), never by a point estimate.

What it reads: the results table (one row per run) and, per fine-tuning run, its `examples` table (BLEU
statistics, checks and loss per test input: what the bootstrap resamples) and `validation` table (the
convergence curve).

It is the longest report section (~440 lines) because SPDF makes the most claims: FLOPs, pre-training, three
comparisons per task with their checks, targets, samples, convergence and the decoding check. Each is one
function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spdf_lib import flops
from spdf_lib.records import read_table
from spdf_lib.reporting import Report, column, ok_runs
from spdf_lib.spdf import plots
from spdf_lib.spdf.checks import BLEU_STATS, check_name
from spdf_lib.spdf.delex import added_slots
from spdf_lib.stats import (
    Margins,
    SeedNoise,
    bleu_from_stats,
    bootstrap_difference,
    mean_of_values,
    pooled_seed_noise,
    share_from_counts,
    verdict,
)

PAPER_GPT3XL_REDUCTION_75 = 2.5  # "2.5x fewer pre-training FLOPs" for GPT-3 XL at 75% sparsity
METRIC = "bleu"
# The targets issue 15 set for the tiny preset: E2E, dense fine-tuning of the dense pre-trained model.
E2E_TARGETS = {"name_realisation": 90.0, "bleu": 45.0}
CONDITION = ["task", "mode", "arch", "sparsity", "n_train_pairs", "delexicalised", "num_beams"]
# A condition whose outputs score below this BLEU (or are empty) did not learn its task: its numbers are no result,
# and no verdict is drawn from them.
LEARNED_BLEU = 1.0


@dataclass(frozen=True)
class Measure:
    """A number compared between conditions: its results-table column, the per-example columns it is computed
    from, how, and whether higher is better (a loss is compared as its negative)."""

    name: str
    label: str
    columns: tuple[str, ...]
    statistic: object
    higher_is_better: bool = True


BLEU = Measure("bleu", "BLEU", tuple(BLEU_STATS), bleu_from_stats)
LOSS = Measure("finetune_eval_loss", "test loss (nats/token)", ("loss_sum", "loss_tokens"), mean_of_values, False)


CHECKS = {  # the task-level checks (`checks.check_name`): label and per-example counts
    "lex_slot_realisation": ("slot realisation (not delexicalised slots, %)", ("lex_realised", "lex_total")),
    "slot_realisation": ("slot realisation (%)", ("slots_realised", "slots_total")),
    "entity_coverage": ("entity coverage (%)", ("entities_covered", "entities_total")),
}


def check_measure(task: str, delexicalised: bool) -> Measure:
    """The task-level check: slot realisation of the E2E values that were not delexicalised (all values when
    none were), or WebNLG/DART entity coverage; the same one validation records as `val_check`."""
    name = check_name(task, delexicalised)
    label, columns = CHECKS[name]
    return Measure(name, label, columns, share_from_counts)


def finetune_frame(results: pd.DataFrame) -> pd.DataFrame:
    """One row per finished fine-tuning run: its condition, seed, run folder, metrics and checks."""
    ft = ok_runs(results, "spdf_finetune")
    if ft.empty:
        return ft
    out = pd.DataFrame({
        "run": ft["run"], "task": column(ft, "task"), "mode": column(ft, "mode"), "arch": column(ft, "arch"),
        "sparsity": column(ft, "pretrain_sparsity").astype(float), "n_train_pairs": column(ft, "n_train_pairs"),
        "seed": column(ft, "seed"), "total_flops": column(ft, "total_flops"),
    })
    out["delexicalised"] = _optional(ft, "delexicalised", "").fillna("").astype(str)
    out["num_beams"] = _optional(ft, "num_beams", 1).astype(int)
    out["second_num_beams"] = _optional(ft, "second_num_beams", 0).fillna(0).astype(int)
    out["stop_metric"] = _optional(ft, "stop_metric", "").fillna("").astype(str)
    out["epochs_max"] = _optional(ft, "epochs", np.nan).astype(float)
    out["stopped_early"] = _optional(ft, "stopped_early", False).fillna(False).astype(bool)
    for m in ("bleu", "chrfpp", "rouge_l", "nist", "finetune_eval_loss", "len_ratio", "slot_realisation",
              "name_realisation", "lex_slot_realisation", "entity_coverage", "best_epoch", "epochs_trained",
              "pretrain_lr", "pretrain_eval_loss", "second_bleu", "reference_lex_slot_realisation",
              "reference_slot_realisation", "reference_entity_coverage", "reference_name_realisation"):
        if m in ft or f"results.{m}" in ft:
            out[m] = column(ft, m).astype(float)
    return out.reset_index(drop=True)


def _optional(df: pd.DataFrame, name: str, default) -> pd.Series:
    try:
        return column(df, name)
    except KeyError:
        return pd.Series(default, index=df.index)


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
        "sparsity": column(pre, "sparsity").astype(float), "activation": _optional(pre, "activation", "gelu"),
        "mdha": _optional(pre, "mdha", False), "lr": column(pre, "lr").astype(float),
        "tokens": column(pre, "tokens").astype(float), "max_epochs": _optional(pre, "max_epochs", np.nan),
        "epochs": _optional(pre, "epochs", np.nan).astype(float),
        "eval_loss": column(pre, "eval_loss").astype(float), "seconds": _optional(pre, "train_seconds", np.nan),
    }).sort_values(["activation", "mdha", "sparsity", "lr"])
    rep.tables["pretrain"] = table
    best = table.loc[table.groupby(["activation", "mdha", "sparsity"])["eval_loss"].idxmin()]
    swept = table.groupby(["activation", "mdha", "sparsity"])["lr"].nunique().max() > 1
    lines = ["Pre-training (validation loss at the end of each run; " +
             ("each sparsity fine-tunes from the learning rate with the lowest validation loss, chosen by the "
              "fine-tuning runs and recorded in them):" if swept else "one learning rate per sparsity):"), "",
             table.to_markdown(index=False, floatfmt=".4g"), ""]
    if swept:
        lines.append("Chosen: " + ", ".join(f"sparsity {r.sparsity:g} → lr {r.lr:g} ({r.eval_loss:.3f})"
                                            for r in best.itertuples()) + ".")
    passes = table["epochs"].max()
    if np.isfinite(passes):
        lines.append(f"The epoch guard: every budget is at most `max_epochs` = {table['max_epochs'].max():g} passes over "
                     f"its corpus (these runs: up to {passes:.2f}); the papers saw each pre-training token once.")
    rep.say(*lines, "")


def _examples(rep: Report, runs: pd.DataFrame, columns: tuple[str, ...],
              table: str = "examples") -> tuple[list[np.ndarray], list[str]] | None:
    """Per-example rows of `columns` for each run (aligned on the test inputs they share), or None if a run has
    no such `table` (`examples`: the outputs of the run's decoding; `examples_second`: of its second decoding)."""
    frames = []
    for run in runs["run"]:
        try:
            frames.append(read_table(rep.run_dir(run), table).set_index("id"))
        except FileNotFoundError:
            return None
    ids = sorted(set.intersection(*(set(f.index) for f in frames)))
    if not ids or any(c not in frames[0] for c in columns):
        return None
    return [f.loc[ids, list(columns)].to_numpy(dtype=np.float64) for f in frames], ids


def seed_noise(rep: Report, conditions: list[pd.DataFrame], m: Measure, table: str = "examples") -> SeedNoise | None:
    """The run-to-run sd of `m`, pooled over `conditions` (each the seed runs of one condition of a task): the seed
    term of every interval of that task (`spdf_lib.stats`: 2–3 seeds cannot measure their own spread)."""
    groups = []
    for runs in conditions:
        rows = _examples(rep, runs, m.columns, table)
        if rows is not None:
            groups.append([float(m.statistic(r.sum(0))) for r in rows[0]])
    return pooled_seed_noise(groups)


def compare(rep: Report, a: pd.DataFrame, b: pd.DataFrame, m: Measure, claim: str, margins: Margins,
            table: str = "examples", noise: SeedNoise | None = None) -> str | None:
    """The verdict sentence for measure `m`, condition `a` against `b` (a − b, higher is better), or None; `noise`:
    the pooled seed noise of `m` (without it, seeds are resampled)."""
    rows = _examples(rep, a, m.columns, table), _examples(rep, b, m.columns, table)
    if rows[0] is None or rows[1] is None:
        return None
    unlearned = [g for g in (a, b) if not learned(g)]
    if unlearned:
        return (f"{m.label}: no verdict — a model that did not learn its task (BLEU below {LEARNED_BLEU:g} or "
                f"empty outputs) is not a result")
    (ra, ids_a), (rb, ids_b) = rows
    common = sorted(set(ids_a) & set(ids_b))
    ra = [r[np.searchsorted(ids_a, common)] for r in ra]
    rb = [r[np.searchsorted(ids_b, common)] for r in rb]
    sign = 1.0 if m.higher_is_better else -1.0
    stat = (lambda x: sign * m.statistic(x))  # noqa: E731
    interval = bootstrap_difference(ra, rb, stat, n_boot=1000, seed=0, seed_noise=noise)
    reference = float(np.mean([m.statistic(r.sum(0)) for r in rb]))
    margin = margins.for_metric(m.name, reference)
    v = verdict(interval, margin, claim)
    sense = "" if m.higher_is_better else " (as a reduction: positive is lower loss)"
    return f"{m.label}{sense}: {v.text}"


def learned(runs: pd.DataFrame) -> bool:
    """Whether every run of a condition learned its task at all: BLEU above `LEARNED_BLEU` and non-empty output."""
    ok = runs["bleu"] >= LEARNED_BLEU
    if "len_ratio" in runs:
        ok &= runs["len_ratio"] > 0.05
    return bool(ok.all())


def _group(ft: pd.DataFrame, **where) -> pd.DataFrame:
    g = ft
    for k, v in where.items():
        g = g[np.isclose(g[k], v)] if isinstance(v, float) else g[g[k] == v]
    return g


def comparisons(rep: Report, full: pd.DataFrame, scratch: pd.DataFrame, margins: Margins,
                table: str = "examples") -> list[str]:
    """The paper-vs-kit verdicts per task: sparse vs dense pre-training (SPDF's "no significant loss"), dense vs
    sparse fine-tuning, pre-trained vs from scratch (`table`: the outputs they are computed on). The last line per
    task gives the pooled seed noise the intervals used."""
    out = []
    for task, g in full.groupby("task"):
        delex = bool(g["delexicalised"].iloc[0])
        measures = [BLEU, check_measure(task, delex)]
        sc = scratch[scratch["task"] == task]
        conditions = [c for _, c in g.groupby(["mode", "sparsity"])] + ([sc] if len(sc) else [])
        noises = {m.name: seed_noise(rep, conditions, m, table) for m in (*measures, LOSS)}
        def cmp(a, b, m, claim, noises=noises):
            return compare(rep, a, b, m, claim, margins, table, noises[m.name])

        dense = g[g["mode"] == "dense"]
        base = _group(dense, sparsity=0.0)
        for s in sorted(dense["sparsity"].unique()):
            if s == 0 or base.empty:
                continue
            lines = [cmp(_group(dense, sparsity=s), base, m, "no_loss") for m in measures]
            if not any(lines):
                continue
            out.append(f"- **{task}**, dense fine-tuning from {s:.0%} sparse vs dense pre-training — the paper finds "
                       f"no significant loss at 75% (GPT-3 XL): " + "; ".join(x for x in lines if x) + ".")
        for s in sorted(g[g["mode"] == "sparse"]["sparsity"].unique()):
            if s == 0:
                continue
            a, b = _group(dense, sparsity=s), _group(g[g["mode"] == "sparse"], sparsity=s)
            lines = [cmp(a, b, m, "gain") for m in measures]
            if not any(lines):
                continue
            out.append(f"- **{task}**, {s:.0%} sparse pre-training, dense minus sparse fine-tuning — the paper finds "
                       f"that dense fine-tuning recovers what sparse fine-tuning loses: "
                       + "; ".join(x for x in lines if x) + ".")
        if len(sc) and len(base):
            lines = [cmp(base, sc, m, "gain") for m in (*measures, LOSS)]
            if any(lines):
                out.append(f"- **{task}**, dense pre-trained minus from scratch (same architecture, same fine-tuning "
                           f"rule): " + "; ".join(x for x in lines if x) + ".")
        known = [f"{m.label} {noises[m.name].sd:.3g} (df {noises[m.name].df})" for m in (*measures, LOSS)
                 if noises[m.name] is not None]
        if known and any(_labels(line) for line in out if f"**{task}**" in line):  # said only beside a verdict
            out.append(f"- *{task}: run-to-run sd pooled over its {len(conditions)} conditions* — " + "; ".join(known)
                       + ".")
    return out


def _fmt(x: pd.Series, digits: int = 1) -> str:
    x = x.dropna()
    if x.empty:
        return "—"
    return f"{x.mean():.{digits}f} ± {x.std(ddof=1):.{digits}f}" if len(x) > 1 else f"{x.mean():.{digits}f}"


def results_table(ft: pd.DataFrame) -> str:
    """Markdown: per task, pre-training sparsity and mode, mean ± sd over seeds of BLEU, the check, `name`
    realisation (E2E), length ratio, test loss and the epoch early stopping kept."""
    rows = ["| task | sparsity | fine-tuning | n | BLEU | check | name (E2E) | length ratio | test loss | best epoch |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (task, s, mode), g in ft.groupby(["task", "sparsity", "mode"], sort=True):
        check = check_measure(task, bool(g["delexicalised"].iloc[0])).name
        name = _fmt(g["name_realisation"]) if task == "e2e" and "name_realisation" in g else "—"
        rows.append(f"| {task} | {'—' if mode == 'scratch' else f'{s:g}'} | {mode} | {len(g)} | {_fmt(g['bleu'])} | "
                    f"{_fmt(g[check]) if check in g else '—'} | {name} | {_fmt(g.get('len_ratio', pd.Series()), 2)} | "
                    f"{_fmt(g.get('finetune_eval_loss', pd.Series()), 3)} | {_fmt(g.get('best_epoch', pd.Series()), 1)} |")
    return "\n".join(rows)


def reference_line(ft: pd.DataFrame) -> str:
    """What each task's first human reference scores on the same checks (the ceiling the patterns allow)."""
    parts = []
    for task, g in ft.groupby("task"):
        check = check_measure(task, bool(g["delexicalised"].iloc[0])).name
        col = f"reference_{check}"
        if col in g and g[col].notna().any():
            parts.append(f"{task} {g[col].mean():.1f}%")
    return ("The same check on each input's first human reference (what the patterns credit to a human): "
            + ", ".join(parts) + ".") if parts else ""


def added_slots_line(rep: Report, ft: pd.DataFrame) -> str:
    """Delexicalised E2E: per condition, the share of outputs (%, mean ± sd over seeds) that add a slot the input
    lacks, i.e. keep a placeholder no input value fills; slot realisation, which looks only at the input's slots,
    does not see these errors."""
    e2e = ft[(ft["task"] == "e2e") & (ft["delexicalised"] != "")]
    parts = []
    for (s, mode), g in e2e.groupby(["sparsity", "mode"]):
        shares = [100 * (read_table(rep.run_dir(run), "examples")["hypothesis"].fillna("").map(added_slots) > 0).mean()
                  for run in g["run"]]
        parts.append(f"{mode if mode == 'scratch' else f'{mode} s={s:g}'} {_fmt(pd.Series(shares))}%")
    return ("E2E outputs that add a slot the input lacks (a placeholder left unfilled, which the check column does not "
            "count): " + ", ".join(parts) + ".") if parts else ""


def _targets(full: pd.DataFrame) -> list[str]:
    e2e = _group(full[full["mode"] == "dense"], task="e2e", sparsity=0.0)
    if e2e.empty or "name_realisation" not in e2e:
        return []
    got = {k: e2e[k].mean() for k in E2E_TARGETS}
    met = all(got[k] >= v for k, v in E2E_TARGETS.items())
    delex = e2e["delexicalised"].iloc[0]
    how = (f" The E2E runs are delexicalised ({delex} → placeholders, put back before scoring, as E2E's TGen baseline "
           f"did): `name` realisation then measures that the model writes the placeholder, and the check column reports "
           f"the slots that were not delexicalised." if delex else "")
    return [f"- Tiny-preset targets, E2E dense fine-tuning of the dense model (mean of {len(e2e)} seeds): `name` "
            f"realised in {got['name_realisation']:.1f}% of outputs (target ≥ {E2E_TARGETS['name_realisation']:g}%), "
            f"BLEU {got['bleu']:.1f} (target ≥ {E2E_TARGETS['bleu']:g}): **{'met' if met else 'not met'}**.{how}"]


def samples(rep: Report, ft: pd.DataFrame, per_mode: int = 2) -> str:
    """Markdown: a few test inputs per task with each mode's output (seed 0, dense pre-training for dense and
    sparse fine-tuning at the highest sparsity) beside a reference."""
    lines = []
    for task, g in ft.groupby("task"):
        picks = []
        for (mode, s), gm in g.groupby(["mode", "sparsity"]):
            picks.append((f"{mode}" + ("" if mode == "scratch" else f" s={s:g}"), gm.sort_values("seed").iloc[0]))
        tables = {label: read_table(rep.run_dir(r["run"]), "examples").fillna({"hypothesis": ""}).set_index("id")
                  for label, r in picks}
        first = next(iter(tables.values()))
        if "hypothesis" not in first:
            continue
        ids = list(first.index[:: max(1, len(first) // per_mode)][:per_mode])
        lines += [f"Sample outputs, {task} (seed 0):", "", "| input | run | output |", "| --- | --- | --- |"]
        for i in ids:
            src = str(first.loc[i, "source"]).replace("|", "\\|")
            lines.append(f"| {src} | reference | {str(first.loc[i, 'reference']).replace('|', '/')} |")
            for label, t in tables.items():
                if i in t.index:
                    out = str(t.loc[i, "hypothesis"]).replace("|", "/") or "*(empty)*"
                    lines.append(f"|  | {label} | {out} |")
        lines.append("")
    return "\n".join(lines)


def curves(rep: Report, ft: pd.DataFrame) -> pd.DataFrame:
    """The validation curves of the runs (step, val BLEU, val check, val loss, condition columns)."""
    frames = []
    for r in ft.itertuples():
        try:
            v = read_table(rep.run_dir(r.run), "validation")
        except FileNotFoundError:
            continue
        frames.append(v.assign(task=r.task, mode=r.mode, sparsity=r.sparsity, seed=r.seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
            f"difference lies inside the margin (for \"no loss\": above −margin; for a gain: above 0), *disagrees* when it "
            f"lies outside, and is *inconclusive at this noise* otherwise. The interval bootstraps the test inputs and "
            f"adds the fine-tuning seeds' noise as a t-distributed term whose sd is pooled over all runs of the task "
            f"(2–3 seeds per condition cannot measure their own spread; resampling them gave tight intervals that "
            f"contradicted each other across decodings).{_pretraining_noise_caveat(rep)}", "")
    lines = comparisons(rep, full, scratch, margins) + _targets(full)
    if len(full):
        table = pd.concat([full, scratch, beyond])
        rep.say(f"Downstream results after fine-tuning to convergence (mean ± sd over seeds; {decoding_line(table)}; check = "
                "E2E slot realisation or WebNLG/DART entity coverage, %; length ratio = hypothesis / closest reference "
                "length, BLEU's brevity penalty reads it; test loss on the evaluated inputs' references):", "",
                results_table(table), "", reference_line(table), "", added_slots_line(rep, table), "")
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
    _decoding_check(rep, full, scratch, margins)
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


def decoding_name(num_beams: int) -> str:
    return "greedy" if num_beams == 1 else f"beam {num_beams}"


def decoding_line(runs: pd.DataFrame) -> str:
    """How each task's test inputs were decoded, e.g. "decoding: e2e beam 4, webnlg beam 4"."""
    return "decoding: " + ", ".join(f"{task} {decoding_name(int(g['num_beams'].iloc[0]))}"
                                    for task, g in runs.groupby("task"))


def _decoding_check(rep: Report, full: pd.DataFrame, scratch: pd.DataFrame, margins: Margins) -> None:
    """The same comparisons on a second decoding of the same models (runs with `second_num_beams`, e.g. greedy
    beside beam search): does the decoding change a conclusion?"""
    runs = pd.concat([full, scratch])
    if "second_bleu" not in runs:
        return
    for task, g in runs[runs["second_bleu"].notna()].groupby("task"):
        first, second = decoding_name(int(g["num_beams"].iloc[0])), decoding_name(int(g["second_num_beams"].iloc[0]))
        fb, sb = g[g["mode"] != "scratch"], g[g["mode"] == "scratch"]  # the runs decoded both ways
        main = comparisons(rep, fb, sb, margins)
        other = comparisons(rep, fb, sb, margins, table="examples_second")
        paired = _by_comparison(main), _by_comparison(other)
        same = [same_verdicts(line, paired[1][k]) for k, line in paired[0].items()
                if k in paired[1] and _labels(line)]
        models = f"{len(g)} fine-tuned model{'s' if len(g) != 1 else ''}"
        head = (f"{first.capitalize()} vs {second} ({task}: {models} decoded both ways; BLEU "
                f"{_fmt(g['bleu'])} {first}, {_fmt(g['second_bleu'])} {second}).")
        if not same:  # e.g. models that did not learn their task: no verdict on either decoding
            rep.say(head + f" No verdict was drawn on {task}, so there is no conclusion for the decoding to change.", "")
            continue
        head += f" The verdicts on {second} outputs — {sum(same)} of {len(same)} the same as on {first} outputs:"
        tail = (f"The decoding changes {len(same) - sum(same)} of these {len(same)} conclusions on {task}: there, a "
                f"verdict above is a conclusion only where {second} outputs give the same one." if not all(same)
                else f"The decoding changes none of the {len(same)} conclusions on {task}.")
        rep.say(head, "", *other, "", tail, "")


def _by_comparison(lines: list[str]) -> dict[str, str]:
    """Verdict lines keyed by what they compare (the text before their first measure, BLEU)."""
    return {line[: line.index("BLEU:")]: line for line in lines if "BLEU:" in line}


def same_verdicts(first_line: str, second_line: str) -> bool:
    """Whether a comparison's verdicts (BLEU, check, in that order) are the same on both decodings' lines. Either
    line may end with a test-loss verdict, which the decoding cannot change; only what both lines judge counts."""
    first, second = _labels(first_line), _labels(second_line)
    n = min(len(first), len(second))
    return first[:n] == second[:n]


def _labels(line: str) -> list[str]:
    """The verdict words of a comparison line, in the order they appear."""
    return re.findall(r"\*\*(agrees|disagrees|inconclusive)", line)
