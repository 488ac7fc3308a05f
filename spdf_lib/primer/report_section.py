"""Primer's part of the report: first the study in its regime (`report_regime`: the variants as `spdf_pretrain`
runs in SPDF's recipe, speedups read from annealed endpoints with intervals from the pooled seed noise), then any
runs of the `primer` notebook's quick ablation (intermediate checkpoints of one schedule, power laws over sizes),
beside the paper's numbers (So et al. 2021). There a speedup is claimed only if its 95% interval (bootstrap of the
geometric mean over sizes and seeds, `spdf_lib.stats.bootstrap_ratio`) excludes 1.0."""

from __future__ import annotations

import pandas as pd

from spdf_lib.primer import analysis, plots, report_regime
from spdf_lib.records import read_table
from spdf_lib.report_document import Report, ok_runs
from spdf_lib.stats import bootstrap_ratio, ratio_verdict

PAPER_EZ_SPEEDUP_35M = (1.75, 2.34)  # Primer-EZ at ~35M on LM1B, depending on codebase/hardware
PAPER_MDHA_SPEEDUP_35M = 1.76


def section(results: pd.DataFrame, rep: Report) -> None:
    """Add Primer's findings to `rep`: the regime's (variants as `spdf_pretrain` runs, `report_regime`), then
    those of `primer` ablation runs (the notebook's quick comparison), when there are any."""
    rep.say("## Primer", "")
    regime = report_regime.section(results, rep)
    runs = ok_runs(results, "primer")
    if runs.empty:
        if not regime:
            rep.say("- No Primer runs in the results table yet.", "")
        return
    rep.say("### The `primer` ablation runs (intermediate checkpoints of one schedule per run)", "")
    tables = {name: pd.concat([read_table(rep.run_dir(r), f"primer_{name}") for r in runs["run"]], ignore_index=True)
              for name in ("speedups", "summary", "runs")}
    speedups, summary = tables["speedups"], tables["summary"]
    rep.tables["primer_speedups"], rep.tables["primer_summary"] = speedups, summary
    lines = [f"- {variant}: {speedup_sentence(g['speedup_flops'], 'training FLOPs')}; "
             f"{speedup_sentence(g['speedup_time'], 'wall-clock')} (n = {len(g)} size × seed points)."
             for variant, g in speedups[speedups["variant"] != "baseline"].groupby("variant", sort=False)]
    lo, hi = PAPER_EZ_SPEEDUP_35M
    lines.append(f"- The paper: Primer-EZ {lo}x–{hi}x and MDHA alone {PAPER_MDHA_SPEEDUP_35M}x at about 35M "
                 f"parameters.")
    rep.figure(plots.speedups(speedups), "primer_speedups", "\n".join(lines))
    if summary["size"].nunique() >= 2:
        powerlaw = analysis.powerlaw_table(summary)
        rep.tables["primer_powerlaw"] = powerlaw
        ez = powerlaw.set_index("arch")["constant_speedup"].get("primer-ez")
        text = "Power laws loss = a·C^(−k) with a shared k over the model sizes."
        if ez is not None:
            where = "within" if lo <= ez <= hi else ("below" if ez < lo else "above")
            n = tables["runs"]["n_params"]
            text = (
                f"- Power laws over {summary['size'].nunique()} sizes (shared exponent k = "
                f"{powerlaw['k'].iloc[0]:.3f}): Primer-EZ's implied constant compute saving is **{ez:.2f}x** "
                f"(a fit, without an interval), "
                f"{where} the paper's {lo}x–{hi}x at 35M parameters (the kit's models here: {n.min() / 1e6:.2f}M–"
                f"{n.max() / 1e6:.2f}M parameters, {tables['runs']['tokens'].max():.3g} tokens at most)."
            )
        rep.figure(plots.power_law(summary, powerlaw), "primer_power_law", text)
    rep.say("")


def speedup_sentence(values: pd.Series, what: str) -> str:
    """"speedup in <what> 1.27x [0.98, 1.62]: inconclusive at this noise" (geometric mean, 95% interval)."""
    try:
        iv = bootstrap_ratio(values.tolist())
    except ValueError:
        return f"speedup in {what}: not measured"
    if len(values.dropna()) < 2:
        return f"speedup in {what} {iv.estimate:.2f}x from one point: **no interval, no claim**"
    word = ratio_verdict(iv)
    claim = {"faster": "**faster** (the interval excludes 1.0)", "slower": "**slower** (the interval lies below 1.0)"}
    return f"speedup in {what} {iv.estimate:.2f}x [{iv.lo:.2f}, {iv.hi:.2f}]: {claim.get(word, f'**{word}**')}"
