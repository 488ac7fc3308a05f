"""SPDF's verdicts: each paper claim decided from the interval of a difference between conditions
(`spdf_lib.stats`), never from a point estimate. A comparison bootstraps the per-example rows of the runs'
`examples` table (BLEU statistics, checks and loss per test input) and adds the task's pooled seed noise.

`comparisons` gives the verdict lines per task (sparse vs dense pre-training, dense vs sparse fine-tuning,
pre-trained vs from scratch); `same_verdicts` says whether two decodings' lines reach the same conclusions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spdf_lib.records import read_table
from spdf_lib.report_document import Report
from spdf_lib.spdf.checks import BLEU_STATS, check_name
from spdf_lib.stats import (
    Interval,
    Margins,
    SeedNoise,
    bleu_from_stats,
    bootstrap_difference,
    mean_of_values,
    pooled_seed_noise,
    share_from_counts,
    verdict,
)

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



def difference(rep: Report, a: pd.DataFrame, b: pd.DataFrame, m: Measure, margins: Margins,
               table: str = "examples", noise: SeedNoise | None = None) -> tuple[Interval, float] | None:
    """The 95% interval of `m`(a) − `m`(b) over the test inputs both conditions share (negated for a loss, so
    positive is better) and the margin the verdicts use for it; None when a run lacks the per-example `table`.
    `noise`: the pooled seed noise of `m` (without it, seeds are resampled)."""
    rows = _examples(rep, a, m.columns, table), _examples(rep, b, m.columns, table)
    if rows[0] is None or rows[1] is None:
        return None
    (ra, ids_a), (rb, ids_b) = rows
    common = sorted(set(ids_a) & set(ids_b))
    ra = [r[np.searchsorted(ids_a, common)] for r in ra]
    rb = [r[np.searchsorted(ids_b, common)] for r in rb]
    sign = 1.0 if m.higher_is_better else -1.0
    stat = (lambda x: sign * m.statistic(x))  # noqa: E731
    interval = bootstrap_difference(ra, rb, stat, n_boot=1000, seed=0, seed_noise=noise)
    reference = float(np.mean([m.statistic(r.sum(0)) for r in rb]))
    return interval, margins.for_metric(m.name, reference)


def compare(rep: Report, a: pd.DataFrame, b: pd.DataFrame, m: Measure, claim: str, margins: Margins,
            table: str = "examples", noise: SeedNoise | None = None) -> str | None:
    """The verdict sentence for measure `m`, condition `a` against `b` (a − b, higher is better), or None; `noise`:
    the pooled seed noise of `m` (without it, seeds are resampled)."""
    if not (learned(a) and learned(b)):
        if _examples(rep, a, m.columns, table) is None or _examples(rep, b, m.columns, table) is None:
            return None
        return (f"{m.label}: no verdict — a model that did not learn its task (BLEU below {LEARNED_BLEU:g} or "
                f"empty outputs) is not a result")
    d = difference(rep, a, b, m, margins, table, noise)
    if d is None:
        return None
    v = verdict(*d, claim)
    sense = "" if m.higher_is_better else " (as a reduction: positive is lower loss)"
    return f"{m.label}{sense}: {v.text}"


def learned(runs: pd.DataFrame) -> bool:
    """Whether every run of a condition learned its task at all: BLEU above `LEARNED_BLEU` and non-empty output."""
    ok = runs["bleu"] >= LEARNED_BLEU
    if "len_ratio" in runs:
        ok &= runs["len_ratio"] > 0.05
    return bool(ok.all())



def select(ft: pd.DataFrame, **where) -> pd.DataFrame:
    """The rows of `ft` whose columns equal `where`'s values (floats compared with `np.isclose`)."""
    g = ft
    for k, v in where.items():
        g = g[np.isclose(g[k], v)] if isinstance(v, float) else g[g[k] == v]
    return g



def task_conditions(runs: pd.DataFrame, scratch: pd.DataFrame) -> list[pd.DataFrame]:
    """The conditions of one task's runs (one frame per fine-tuning mode and pre-training sparsity, plus the
    from-scratch runs): what its seed noise is pooled over."""
    return [c for _, c in runs.groupby(["mode", "sparsity"])] + ([scratch] if len(scratch) else [])


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
        conditions = task_conditions(g, sc)
        noises = {m.name: seed_noise(rep, conditions, m, table) for m in (*measures, LOSS)}
        def cmp(a, b, m, claim, noises=noises):
            return compare(rep, a, b, m, claim, margins, table, noises[m.name])

        dense = g[g["mode"] == "dense"]
        base = select(dense, sparsity=0.0)
        for s in sorted(dense["sparsity"].unique()):
            if s == 0 or base.empty:
                continue
            lines = [cmp(select(dense, sparsity=s), base, m, "no_loss") for m in measures]
            if not any(lines):
                continue
            out.append(f"- **{task}**, dense fine-tuning from {s:.0%} sparse vs dense pre-training — the paper finds "
                       f"no significant loss at 75% (GPT-3 XL): " + "; ".join(x for x in lines if x) + ".")
        for s in sorted(g[g["mode"] == "sparse"]["sparsity"].unique()):
            if s == 0:
                continue
            a, b = select(dense, sparsity=s), select(g[g["mode"] == "sparse"], sparsity=s)
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
        if known and any(verdict_labels(line) for line in out if f"**{task}**" in line):  # said only beside a verdict
            out.append(f"- *{task}: run-to-run sd pooled over its {len(conditions)} conditions* — " + "; ".join(known)
                       + ".")
    return out



def by_comparison(lines: list[str]) -> dict[str, str]:
    """Verdict lines keyed by what they compare (the text before their first measure, BLEU)."""
    return {line[: line.index("BLEU:")]: line for line in lines if "BLEU:" in line}



def same_verdicts(first_line: str, second_line: str) -> bool:
    """Whether a comparison's verdicts (BLEU, check, in that order) are the same on both decodings' lines. Either
    line may end with a test-loss verdict, which the decoding cannot change; only what both lines judge counts."""
    first, second = verdict_labels(first_line), verdict_labels(second_line)
    n = min(len(first), len(second))
    return first[:n] == second[:n]



def verdict_labels(line: str) -> list[str]:
    """The verdict words of a comparison line, in the order they appear."""
    return re.findall(r"\*\*(agrees|disagrees|inconclusive)", line)
