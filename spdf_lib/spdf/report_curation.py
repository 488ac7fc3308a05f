"""SPDF's summarisation part of the report: Curation Corpus fine-tuning runs (`task: curation`), each condition's
ROUGE-1/2/L, length ratio, entity coverage and support and test-summary perplexity beside the lead-3 baseline's,
the paper's claim ("no significant loss" on downstream tasks after dense fine-tuning of a sparse pre-trained
model) decided by the interval of the difference (`spdf_lib.stats`: test inputs bootstrapped per run, seeds as
runs), and a figure of ROUGE-L and perplexity against pre-training sparsity.

What it reads: the results table and, per run, its `examples` table (per test input: ROUGE F1 `rouge*_f`, the
summary's summed loss and token count, entity counts). When there are no curation runs it says so in one line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spdf_lib.records import read_table
from spdf_lib.report_document import Report, column, mean_sd, ok_runs
from spdf_lib.stats import Margins, bootstrap_difference, mean_of_values, verdict

SCORES = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "len_ratio": "length ratio",
          "entity_coverage": "entity coverage", "entity_support": "entity support", "test_perplexity": "perplexity"}
CLAIM = ("SPDF (Thangarasa et al. 2023): dense fine-tuning of a sparse pre-trained GPT loses no significant quality "
         "on its downstream tasks, Curation Corpus summarisation among them")


def curation_frame(results: pd.DataFrame) -> pd.DataFrame:
    """The finished curation fine-tuning runs: one row each, with condition columns `arch`, `sparsity`, `mode`."""
    runs = ok_runs(results, "spdf_finetune")
    if runs.empty or "task" not in runs and "params.task" not in runs:
        return runs.iloc[0:0]
    runs = runs[column(runs, "task") == "curation"]
    if runs.empty or "test_perplexity" not in runs:
        return runs.iloc[0:0]
    return runs.assign(arch=column(runs, "arch"), sparsity=column(runs, "pretrain_sparsity").astype(float),
                       mode=column(runs, "mode"))


def _table(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (arch, s, mode), g in runs.groupby(["arch", "sparsity", "mode"], sort=True):
        row = {"arch": arch, "pre-training sparsity": f"{s:.0%}", "fine-tuning": mode}
        for k, label in SCORES.items():
            if k in g and g[k].notna().any():
                row[label] = mean_sd(g[k].dropna())
                if f"lead3_{k}" in g and k != "test_perplexity":
                    row[f"lead-3 {label}"] = f"{g[f'lead3_{k}'].mean():.2f}"
        rows.append(row)
    return pd.DataFrame(rows)


def _examples(rep: Report, runs: pd.DataFrame) -> list[pd.DataFrame]:
    return [read_table(rep.run_dir(r), "examples") for r in runs["run"]]


def _verdicts(rep: Report, runs: pd.DataFrame, margins: Margins) -> list[str]:
    """Per architecture and sparsity s > 0: dense fine-tuning from s vs from dense pre-training, on ROUGE-L
    (absolute margin) and test perplexity (relative margin; compared as its negative, higher is better)."""
    out = []
    dense = runs[runs["mode"] == "dense"]
    for arch, g in dense.groupby("arch"):
        base = g[g["sparsity"] == 0.0]
        if base.empty:
            continue
        eb = _examples(rep, base)
        for s, cond in g[g["sparsity"] > 0].groupby("sparsity"):
            ec = _examples(rep, cond)
            if {len(x) for x in [*ec, *eb]} != {len(eb[0])}:
                out.append(f"- **{arch}**, {s:.0%} vs 0%: the runs decoded different test sets; no verdict.")
                continue
            rouge = bootstrap_difference([x[["rougeL_f"]].assign(n=1).to_numpy() for x in ec],
                                         [x[["rougeL_f"]].assign(n=1).to_numpy() for x in eb], mean_of_values)
            ppl = lambda t: -np.exp(t[..., 0] / np.maximum(t[..., 1], 1))  # noqa: E731
            loss = bootstrap_difference([x[["loss_sum", "loss_tokens"]].to_numpy() for x in ec],
                                        [x[["loss_sum", "loss_tokens"]].to_numpy() for x in eb], ppl)
            ref_ppl = float(base["test_perplexity"].mean())
            out.append(f"- **{arch}**, dense fine-tuning from {s:.0%} sparse vs dense pre-training "
                       f"({len(cond)} vs {len(base)} seeds) — the paper finds no significant loss: ROUGE-L "
                       f"{verdict(rouge, margins.absolute).text}; test perplexity (as its negative) "
                       f"{verdict(loss, margins.relative * ref_ppl).text}.")
    return out


def _figure(runs: pd.DataFrame):
    from spdf_lib import plots

    fig, axes = plots.plt.subplots(1, 2, figsize=(9, 3.4))
    for (arch, mode), g in runs.groupby(["arch", "mode"]):
        m = g.groupby("sparsity")[["rougeL", "test_perplexity"]].mean()
        axes[0].plot(100 * m.index, m["rougeL"], "o-", label=f"{arch} {mode}")
        axes[1].plot(100 * m.index, m["test_perplexity"], "o-", label=f"{arch} {mode}")
    axes[0].axhline(runs["lead3_rougeL"].mean(), color="grey", ls="--", label="lead-3")
    axes[0].set(xlabel="pre-training sparsity (%)", ylabel="ROUGE-L F1", title="Curation Corpus: ROUGE-L")
    axes[1].set(xlabel="pre-training sparsity (%)", ylabel="test-summary perplexity", title="perplexity")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def section(results: pd.DataFrame, rep: Report) -> None:
    """Add the summarisation rows, verdicts and figure to `rep` (one line when there are no curation runs)."""
    runs = curation_frame(results)
    rep.say("## SPDF: Curation Corpus summarisation", "")
    if runs.empty:
        rep.say("- No curation runs in the results table yet: the article bodies come from the web (`spdf data "
                "fetch curation-corpus`), then the paper sweep's `finetune_curation` stages run.", "")
        return
    margins = getattr(rep, "margins", None) or Margins()
    table = _table(runs)
    rep.tables["curation"] = table
    n_eval = sorted({int(x) for x in runs["n_eval"]})
    rep.say(f"Mean ± sd over seeds on {', '.join(map(str, n_eval))} test articles (split by a hash of the URL); "
            f"ROUGE F1 (rouge-score, stemmed), length ratio = output / reference length, entity coverage = the "
            f"article's names that the reference summary names and the output too, support = the output's names "
            f"the article has (%); the lead-3 baseline (the article's first three sentences) beside each.", "",
            table.to_markdown(index=False), "")
    lines = _verdicts(rep, runs, margins)
    rep.say(f"The paper's claim: {CLAIM}.", "", *(lines or ["- No verdict: no sparse/dense pair of dense "
                                                             "fine-tuning runs of one architecture yet."]), "")
    rep.figure(_figure(runs), "curation_rouge_perplexity",
               f"ROUGE-L and test-summary perplexity against pre-training sparsity, lead-3 dashed. {CLAIM}.")
