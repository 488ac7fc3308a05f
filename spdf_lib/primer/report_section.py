"""Primer's part of the report: the speedups of squared ReLU, MDHA and Primer-EZ, and the power laws over
model sizes, beside the paper's numbers (So et al. 2021)."""

from __future__ import annotations

import pandas as pd

from spdf_lib.primer import analysis, plots
from spdf_lib.records import read_table
from spdf_lib.reporting import Report, mean_sd

PAPER_EZ_SPEEDUP_35M = (1.75, 2.34)  # Primer-EZ at ~35M on LM1B, depending on codebase/hardware
PAPER_MDHA_SPEEDUP_35M = 1.76


def section(results: pd.DataFrame, rep: Report) -> None:
    """Add Primer's findings to `rep`."""
    runs = rep.open_section("Primer", results, "primer")
    if runs.empty:
        return
    tables = {name: pd.concat([read_table(rep.run_dir(r), f"primer_{name}") for r in runs["run"]], ignore_index=True)
              for name in ("speedups", "summary", "runs")}
    speedups, summary = tables["speedups"], tables["summary"]
    rep.tables["primer_speedups"], rep.tables["primer_summary"] = speedups, summary
    lines = [f"- {variant}: speedup in training FLOPs {mean_sd(g['speedup_flops'])}, in wall-clock "
             f"{mean_sd(g['speedup_time'])} (all sizes and seeds)."
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
            text = (f"- Power laws over {summary['size'].nunique()} sizes (shared exponent k = "
                    f"{powerlaw['k'].iloc[0]:.3f}): Primer-EZ's implied constant compute saving is **{ez:.2f}x**, "
                    f"{where} the paper's {lo}x–{hi}x at 35M parameters (the kit's models here: {n.min() / 1e6:.2f}M–"
                    f"{n.max() / 1e6:.2f}M parameters, {tables['runs']['tokens'].max():.3g} tokens at most).")
        rep.figure(plots.power_law(summary, powerlaw), "primer_power_law", text)
    rep.say("")
