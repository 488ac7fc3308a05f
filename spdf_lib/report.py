"""The report: every figure of the study from the one results table, and a summary beside the papers' numbers.

`build_report(root, figures_dir)` reads the run records under `root` (`spdf_lib.results.load_results`), draws
each figure whose runs exist into `figures_dir` (PNG and PDF), and writes `figures_dir/summary.md`, which sets
the kit's CPU-scale numbers beside the papers' headline numbers and says where they agree and where they don't.
Nothing in the summary is typed in by hand except the papers' own numbers (`PAPER`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spdf_lib import plots
from spdf_lib.records import atomic_write_text

# The papers' headline numbers (../shared/docs/papers.md).
PAPER = {
    "spdf_gpt3xl_reduction_75": 2.5,  # "2.5x fewer pre-training FLOPs" for GPT-3 XL at 75% sparsity
    "primer_ez_speedup_35m": (1.75, 2.34),  # Primer-EZ at ~35M on LM1B, depending on codebase/hardware
    "primer_mdha_speedup_35m": 1.76,
    "vocational_gpt3_pass_share": 0.39,  # GPT-3 passed 39% of 1,149 certifications
    "vocational_turbo_oscp": 1.0,  # "Turbo GPT-3.5" scored 100% on the OSCP set
}
METRIC = "bleu"


@dataclass
class Report:
    root: Path  # the folder the results table's `run` paths are relative to
    figures: list[Path] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def folder(self, run: str) -> Path:
        return self.root / run

    def save(self, fig, path: Path) -> None:
        self.figures += plots.save(fig, path)
        plots.plt.close(fig)


def _ok(df: pd.DataFrame, experiment: str) -> pd.DataFrame:
    if df.empty or "experiment" not in df:
        return df.iloc[0:0]
    return df[(df["experiment"] == experiment) & (df["status"] == "ok")].copy()


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    """A parameter or metric column, whichever prefix the table gave it on a name collision."""
    for c in (name, f"results.{name}", f"params.{name}"):
        if c in df:
            return df[c]
    raise KeyError(name)


def _mean_sd(x: pd.Series) -> str:
    return f"{x.mean():.2f} ± {x.std(ddof=1):.2f} (n={len(x)})" if len(x) > 1 else f"{x.mean():.2f} (n=1)"


def _difference(a: pd.Series, b: pd.Series) -> tuple[float, bool]:
    """mean(a) − mean(b), and whether it lies outside two standard deviations of the seed spread of both."""
    diff = a.mean() - b.mean()
    noise = np.sqrt((a.var(ddof=1) if len(a) > 1 else 0) + (b.var(ddof=1) if len(b) > 1 else 0))
    return float(diff), bool(noise > 0 and abs(diff) > 2 * noise)


# --- SPDF --------------------------------------------------------------------------------------------------


def finetune_frame(results: pd.DataFrame) -> pd.DataFrame:
    """One row per finished fine-tuning run: task, mode, arch, pretrain sparsity, fraction, seed, metrics."""
    ft = _ok(results, "spdf_finetune")
    if ft.empty:
        return ft
    out = pd.DataFrame({
        "task": _col(ft, "task"), "mode": _col(ft, "mode"), "arch": _col(ft, "arch"),
        "sparsity": _col(ft, "pretrain_sparsity").astype(float), "n_train_pairs": _col(ft, "n_train_pairs"), "seed": _col(ft, "seed"), "total_flops": _col(ft, "total_flops"),
    })
    if "finetune_eval_loss" in ft:
        out["finetune_eval_loss"] = ft["finetune_eval_loss"].astype(float)
    for m in ("bleu", "chrfpp", "ter", "rouge_l", "nist", "meteor", "cider"):
        if m in ft:
            out[m] = ft[m].astype(float)
    return out.reset_index(drop=True)


def spdf_section(results: pd.DataFrame, figures: Path, rep: Report) -> None:
    from spdf_lib import flops

    r = flops.reduction_factor("gpt3-xl", 0.75, 26.3e9, 2048)
    verdict = "agrees" if abs(r - PAPER["spdf_gpt3xl_reduction_75"]) < 0.1 else "does not agree"
    rep.summary += ["## SPDF", "",
                    f"- Pre-training FLOPs, GPT-3 XL at 75% sparsity (26.3e9 tokens, context 2048, SPDF convention): "
                    f"**{r:.2f}x** fewer than dense; the paper reports {PAPER['spdf_gpt3xl_reduction_75']}x — "
                    f"{verdict}. GPT-2 Small (context 2048) gains {flops.reduction_factor('gpt2-small-2048', 0.75):.2f}x: "
                    f"dense attention and logits weigh more in small models."]
    ft = finetune_frame(results)
    if ft.empty:
        rep.summary += ["- No fine-tuning runs in the results table yet.", ""]
        return
    rep.tables["finetune"] = ft
    main = ft[(ft["arch"] == "gpt") & (ft["mode"].isin(["dense", "sparse"]))]
    # per task, the main grid is the training-set size most runs use; the other sizes are the dataset-size axis
    main_size = main.groupby("task")["n_train_pairs"].agg(lambda x: x.mode().iloc[0])
    full = main[main["n_train_pairs"] == main["task"].map(main_size)]
    scratch = ft[(ft["mode"] == "scratch") & (ft["arch"] == "gpt")]
    beyond = ft[(ft["arch"] == "primer-ez") & (ft["mode"] == "dense")]
    if len(full):
        rep.save(plots.spdf_quality_vs_sparsity(full, scratch, beyond, METRIC), figures / "spdf_bleu_vs_sparsity")
        # the main training-set size only: the dataset-size runs have a figure of their own
        same_size = pd.concat([full, scratch, beyond])
        same_size = same_size[same_size["n_train_pairs"] == same_size["task"].map(main_size)]
        rep.save(plots.spdf_quality_vs_flops(same_size, METRIC), figures / "spdf_bleu_vs_total_flops")
    sizes = main[(main["task"] == "webnlg") & (main["mode"] == "dense")]
    if sizes["n_train_pairs"].nunique() > 1:
        rep.save(plots.spdf_quality_vs_train_size(sizes, METRIC), figures / "spdf_bleu_vs_train_size")
    rep.summary += ["", f"Downstream {METRIC.upper()} after fine-tuning (mean ± sd over seeds; CPU-scale models):", "",
                    "| task | pre-training sparsity | dense fine-tuning (SPDF) | sparse fine-tuning | from scratch |",
                    "| --- | --- | --- | --- | --- |"]
    for task, g in full.groupby("task"):
        sc = scratch[scratch["task"] == task][METRIC]
        for s, gs in g.groupby("sparsity"):
            d, sp = gs[gs["mode"] == "dense"][METRIC], gs[gs["mode"] == "sparse"][METRIC]
            rep.summary.append(f"| {task} | {s:g} | {_mean_sd(d) if len(d) else '—'} | "
                               f"{_mean_sd(sp) if len(sp) else '—'} | {_mean_sd(sc) if len(sc) else '—'} |")
    rep.summary += [""]
    for task, g in full[full["mode"] == "dense"].groupby("task"):
        base = g[g["sparsity"] == 0]
        sc = scratch[scratch["task"] == task]
        for s, gs in g[g["sparsity"] > 0].groupby("sparsity"):
            diff, clear = _difference(gs[METRIC], base[METRIC])
            rep.summary.append(
                f"- {task}, dense fine-tuning from {s:g} sparse vs dense pre-training: {diff:+.2f} {METRIC.upper()} "
                f"({'outside' if clear else 'within'} two standard deviations of the seed spread). The paper finds no "
                f"significant loss at 75% for GPT-3 XL; " + ("this run agrees." if not clear or diff >= 0 else
                                                             "this run does not: a CPU-scale model loses quality."))
        if len(sc) and len(base):
            diff, clear = _difference(base[METRIC], sc[METRIC])
            line = (f"- {task}: dense pre-trained (s=0) minus from-scratch = {diff:+.2f} {METRIC.upper()} "
                    f"({_mean_sd(base[METRIC])} vs {_mean_sd(sc[METRIC])}): "
                    + ("a clear margin (outside two standard deviations)" if clear and diff > 0 else
                       "**not a clear margin** (within two standard deviations of the seed spread)"))
            if "finetune_eval_loss" in g:
                loss_diff, loss_clear = _difference(base["finetune_eval_loss"], sc["finetune_eval_loss"])
                line += (f"; fine-tuning eval loss {loss_diff:+.3f} nats/token "
                         f"({_mean_sd(base['finetune_eval_loss'])} vs {_mean_sd(sc['finetune_eval_loss'])}, "
                         f"{'outside' if loss_clear else 'within'} two standard deviations)")
            rep.summary.append(line + ".")
        sp = full[(full["task"] == task) & (full["mode"] == "sparse")]
        for s, gs in sp[sp["sparsity"] > 0].groupby("sparsity"):
            diff, clear = _difference(g[g["sparsity"] == s][METRIC], gs[METRIC])
            verdict = ("agrees" if diff > 0 else "disagrees") if clear else "neither agrees nor disagrees at this noise"
            rep.summary.append(f"- {task}, sparsity {s:g}: dense minus sparse fine-tuning = {diff:+.2f} "
                               f"{METRIC.upper()} ({'outside' if clear else 'within'} two standard deviations); the "
                               f"paper finds dense fine-tuning recovers what sparse fine-tuning loses — this run "
                               f"{verdict}.")
    if len(beyond):
        for task, g in beyond.groupby("task"):
            rep.summary.append(f"- Beyond the papers: Primer-EZ pre-trained at 75% sparsity, then densely fine-tuned, "
                               f"{task}: {_mean_sd(g[METRIC])} {METRIC.upper()}.")
    rep.summary.append("")


# --- FLOPs -------------------------------------------------------------------------------------------------


def flops_section(results: pd.DataFrame, figures: Path, rep: Report) -> None:
    runs = _ok(results, "flops")
    if runs.empty:
        return
    folder = rep.folder(runs["run"].iloc[-1])
    by_size = pd.read_csv(folder / "flops_by_size.csv")
    rep.tables["flops_paper"] = pd.read_csv(folder / "flops_paper.csv")
    rep.save(plots.flops_reduction(by_size), figures / "flops_reduction_vs_sparsity")
    rep.save(plots.flops_breakdown(by_size, sizes=["mini", "gpt2-small", "gpt3-xl"]), figures / "flops_breakdown")
    rep.summary += ["Pre-training FLOPs at the SPDF reference budgets:", "",
                    rep.tables["flops_paper"].to_markdown(index=False, floatfmt=".4g"), ""]


# --- Primer ------------------------------------------------------------------------------------------------


def primer_section(results: pd.DataFrame, figures: Path, rep: Report) -> None:
    from spdf_lib import primer

    runs = _ok(results, "primer")
    rep.summary += ["## Primer", ""]
    if runs.empty:
        rep.summary += ["- No Primer runs in the results table yet.", ""]
        return
    tables = {name: pd.concat([pd.read_csv(rep.folder(r) / f"primer_{name}.csv") for r in runs["run"]],
                              ignore_index=True) for name in ("speedups", "summary", "runs")}
    speedups, summary = tables["speedups"], tables["summary"]
    rep.tables["primer_speedups"], rep.tables["primer_summary"] = speedups, summary
    rep.save(plots.primer_speedups(speedups), figures / "primer_speedups")
    for variant, g in speedups[speedups["variant"] != "baseline"].groupby("variant", sort=False):
        rep.summary.append(f"- {variant}: speedup in training FLOPs {_mean_sd(g['speedup_flops'])}, in wall-clock "
                           f"{_mean_sd(g['speedup_time'])} (all sizes and seeds).")
    if summary["size"].nunique() >= 2:
        powerlaw = primer.powerlaw_table(summary)
        k = powerlaw["k"].iloc[0]
        rep.tables["primer_powerlaw"] = powerlaw
        rep.save(plots.primer_power_law(summary, powerlaw), figures / "primer_power_law")
        ez = powerlaw.set_index("arch")["constant_speedup"].get("primer-ez")
        lo, hi = PAPER["primer_ez_speedup_35m"]
        if ez is not None:
            where = "within" if lo <= ez <= hi else ("below" if ez < lo else "above")
            rep.summary.append(f"- Power laws over {summary['size'].nunique()} sizes (shared exponent k = {k:.3f}): "
                               f"Primer-EZ's implied constant compute saving is **{ez:.2f}x**, {where} the paper's "
                               f"{lo}x–{hi}x at 35M parameters (the kit's models here: "
                               f"{tables['runs']['n_params'].min() / 1e6:.2f}M–{tables['runs']['n_params'].max() / 1e6:.2f}M "
                               f"parameters, {tables['runs']['tokens'].max():.3g} tokens at most).")
    rep.summary.append("")


# --- exams -------------------------------------------------------------------------------------------------


def _model_label(model: str) -> str:
    """`smollm2`, or `kit <arch> s=<sparsity>` for a kit checkpoint folder."""
    import json

    config = Path(model) / "config.json"
    if config.is_file():
        c = json.loads(config.read_text())
        from spdf_lib.experiments import architecture_name

        return f"kit-{architecture_name(c)}-s{c.get('sparsity', 0.0):g}"
    return Path(model).name


def exams_section(results: pd.DataFrame, figures: Path, rep: Report) -> None:
    from spdf_lib.exams import plots as exam_plots

    runs = _ok(results, "exams")
    rep.summary += ["## Professional-certification exams", ""]
    if runs.empty:
        rep.summary += ["- No exam runs in the results table yet.", ""]
        return
    rows, oscp_keys = [], set()
    for r in runs.itertuples():
        folder = rep.folder(r.run)
        records = pd.read_parquet(folder / "records.parquet", columns=["certification", "key", "choice"])
        oscp_keys |= set(records.loc[records["certification"].str.contains("OSCP", regex=False), "key"])
        headline = pd.read_csv(folder / "headline.csv")
        label = _model_label(str(_col(runs, "model").loc[r.Index]))
        rep.save(exam_plots.pass_share_by_field(headline, title=label), figures / f"exams_pass_share_{label}")
        top = headline[headline["field"] == "all"].iloc[0]
        certs = pd.read_csv(folder / "certifications.csv")
        oscp = certs[certs["certification"].str.contains("OSCP", regex=False)]
        rows.append({"model": label, "certifications": top["certifications"], "questions": top["questions"],
                     "accuracy": top["accuracy"], "pass_share": top["pass_share"],
                     "circular_pass_share": top["circular_pass_share"], "random": top["random_pass_share"],
                     "best_always_letter": f"{top['best_always_letter']} {top['best_always_pass_share']:.2f}",
                     "majority_per_cert": top["majority_per_cert_pass_share"],
                     "oscp": f"{oscp['correct'].iloc[0]}/{oscp['questions'].iloc[0]}" if len(oscp) else "—",
                     "top_choice": _top_choice(records["choice"])})
    table = pd.DataFrame(rows).drop(columns="top_choice")
    rep.tables["exams"] = table
    rep.summary += ["Share of the selected certifications passed (score over 70%), beside the baselines that must "
                    "always be read with it:", "", table.to_markdown(index=False, floatfmt=".3f"), ""]
    for row in rows:
        beats = row["pass_share"] > max(row["random"], row["majority_per_cert"])
        rep.summary.append(
            f"- {row['model']}: {row['pass_share']:.0%} passed ({row['circular_pass_share']:.0%} under CircularEval) "
            f"against {row['random']:.0%} expected from random guessing and {row['majority_per_cert']:.0%} from always "
            f"answering each certification's majority letter — {'above' if beats else 'not above'} the letter "
            f"baselines; it answered {row['top_choice']}. The paper's GPT-3 passed {PAPER['vocational_gpt3_pass_share']:.0%} of 1,149 certifications; "
            + _oscp_sentence(row["oscp"], oscp_keys))
    rep.summary.append("")


def _top_choice(choices: pd.Series) -> str:
    """The model's most frequent answer and its share, e.g. "'A' for 86 of 86 questions" (the letter-bias check)."""
    counts = choices.astype(str).value_counts()
    return f"'{counts.index[0]}' for {counts.iloc[0]} of {len(choices)} questions" if len(counts) else "nothing"


def _oscp_sentence(score: str, keys: set[str]) -> str:
    """The paper's OSCP result (100% for Turbo GPT-3.5) read beside this subset's answer keys."""
    if not keys:
        return "OSCP (the paper: 100% for Turbo GPT-3.5) is not in this subset."
    said = (f"all '{next(iter(keys))}', so always answering that letter scores 100% too" if len(keys) == 1
            else f"{len(keys)} different letters")
    return f"OSCP (the paper: 100% for Turbo GPT-3.5) scores {score} here; its answer keys are {said}."


def build_report(results: pd.DataFrame, root: str | Path, figures_dir: str | Path) -> Report:
    """Draw every figure the results (loaded from `root`) allow into `figures_dir` and write `summary.md` there."""
    figures = Path(figures_dir)
    figures.mkdir(parents=True, exist_ok=True)
    rep = Report(Path(root))
    rep.summary += ["# spdf-kit results summary", "",
                    f"Runs: {len(results)} in the results table; every number below comes from those records.", ""]
    spdf_section(results, figures, rep)
    flops_section(results, figures, rep)
    primer_section(results, figures, rep)
    exams_section(results, figures, rep)
    atomic_write_text(figures / "summary.md", "\n".join(rep.summary) + "\n")
    return rep
