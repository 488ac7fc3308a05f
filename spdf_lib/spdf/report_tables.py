"""SPDF's report tables: the fine-tuning runs as one frame (condition, seed, metrics, checks), the results table
per condition (mean ± sd over seeds), what human references score on the same checks, E2E's added slots, sample
outputs, the validation curves and how each task was decoded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spdf_lib.plots import metrics_frame
from spdf_lib.records import read_table
from spdf_lib.report_document import Report, column, ok_runs
from spdf_lib.spdf.delex import added_slots
from spdf_lib.spdf.verdicts import check_measure

CONDITION = ["task", "mode", "arch", "sparsity", "n_train_pairs", "delexicalised", "num_beams"]



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
    out["delexicalised"] = optional_column(ft, "delexicalised", "").fillna("").astype(str)
    out["num_beams"] = optional_column(ft, "num_beams", 1).astype(int)
    out["second_num_beams"] = optional_column(ft, "second_num_beams", 0).fillna(0).astype(int)
    out["stop_metric"] = optional_column(ft, "stop_metric", "").fillna("").astype(str)
    out["epochs_max"] = optional_column(ft, "epochs", np.nan).astype(float)
    out["stopped_early"] = optional_column(ft, "stopped_early", False).fillna(False).astype(bool)
    for m in ("bleu", "chrfpp", "rouge_l", "nist", "finetune_eval_loss", "len_ratio", "slot_realisation",
              "name_realisation", "lex_slot_realisation", "entity_coverage", "best_epoch", "epochs_trained",
              "pretrain_lr", "pretrain_eval_loss", "second_bleu", "reference_lex_slot_realisation",
              "reference_slot_realisation", "reference_entity_coverage", "reference_name_realisation"):
        if m in ft or f"results.{m}" in ft:
            out[m] = column(ft, m).astype(float)
    return out.reset_index(drop=True)



def optional_column(df: pd.DataFrame, name: str, default) -> pd.Series:
    """The column `name` (`report_document.column`), or `default` in every row where the results table lacks it."""
    try:
        return column(df, name)
    except KeyError:
        return pd.Series(default, index=df.index)



def mean_sd_text(x: pd.Series, digits: int = 1) -> str:
    """"mean ± sd" over seeds (the mean alone for one run, "—" for none)."""
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
        name = mean_sd_text(g["name_realisation"]) if task == "e2e" and "name_realisation" in g else "—"
        rows.append(
            f"| {task} | {'—' if mode == 'scratch' else f'{s:g}'} | {mode} | {len(g)} | {mean_sd_text(g['bleu'])} | "
            f"{mean_sd_text(g[check]) if check in g else '—'} | {name} | "
            f"{mean_sd_text(g.get('len_ratio', pd.Series()), 2)} | "
            f"{mean_sd_text(g.get('finetune_eval_loss', pd.Series()), 3)} | "
            f"{mean_sd_text(g.get('best_epoch', pd.Series()), 1)} |"
        )
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
        parts.append(f"{mode if mode == 'scratch' else f'{mode} s={s:g}'} {mean_sd_text(pd.Series(shares))}%")
    return ("E2E outputs that add a slot the input lacks (a placeholder left unfilled, which the check column does not "
            "count): " + ", ".join(parts) + ".") if parts else ""



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



def pretrain_curves(rep: Report, pre: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """The metrics rows (step, eval_loss, grad_norm) of the pre-training runs `pre` (run, sparsity, seed, lr
    columns), with `chosen`: whether the run's rate is the one its (sparsity, seed) fine-tunes from."""
    picked = {(r.sparsity, r.seed, r.lr) for r in chosen.itertuples()}
    frames = []
    for r in pre.itertuples():
        try:
            m = metrics_frame(rep.run_dir(r.run))
        except FileNotFoundError:
            continue
        cols = [c for c in ("step", "eval_loss", "grad_norm") if c in m]
        frames.append(m[cols].assign(sparsity=r.sparsity, seed=r.seed, lr=r.lr,
                                     chosen=(r.sparsity, r.seed, r.lr) in picked))
    frames = [f for f in frames if "eval_loss" in f]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def decoding_name(num_beams: int) -> str:
    """"greedy" or "beam N"."""
    return "greedy" if num_beams == 1 else f"beam {num_beams}"



def decoding_line(runs: pd.DataFrame) -> str:
    """How each task's test inputs were decoded, e.g. "decoding: e2e beam 4, webnlg beam 4"."""
    return "decoding: " + ", ".join(f"{task} {decoding_name(int(g['num_beams'].iloc[0]))}"
                                    for task, g in runs.groupby("task"))
