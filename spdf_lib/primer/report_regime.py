"""Primer's part of the report in its regime (issue 34): the Primer variants as `spdf_pretrain` runs in SPDF's
recipe, read from annealed endpoints (`speedup`), per size: the preconditions, then each variant's speedup with its
interval in tokens, FLOPs and wall time, the gap cross-check, the old first-crossing figure labelled biased, the
verdict and the paper's number; the loss-against-tokens figure; the grid of every run."""

from __future__ import annotations

import pandas as pd

from spdf_lib.plots import metrics_frame
from spdf_lib.primer import grid, plots, study
from spdf_lib.primer.preconditions import check_size, warning
from spdf_lib.report_document import Report


def section(results: pd.DataFrame, rep: Report) -> bool:
    """Add the regime's findings to `rep`; False (nothing added) when the results hold no Primer variant run as
    an `spdf_pretrain` point."""
    table = grid.runs_table(results)
    if table.empty or (table["variant"] == "baseline").all():
        return False
    best = grid.chosen(table)
    rep.tables["primer_grid"] = table[["size", "variant", "tokens", "lr", "seed", "eval_loss", "train_seconds"]]
    rep.tables["primer_chosen"] = best.drop(columns=["seeds_per_rate"])
    rep.say("### Primer in SPDF's pre-training recipe (annealed endpoints)", "")
    rep.figure(plots.endpoints(table, best), "primer_endpoints",
               "Final validation loss against each token budget (each budget its own full schedule), per variant at "
               "its chosen rate; points are seeds, lines their mean.")
    rows = []
    for size in sorted(table["size"].unique(), key=list(grid.SIZES_ORDER).index):
        conditions = check_size(table, best, size)
        rep.say(f"**{size}**", "", *[c.line for c in conditions], warning(conditions), "")
        sp = study.size_speedups(table, size)
        if sp.empty:
            rep.say(f"- {size}: no speedup: the baseline needs >= 2 budgets and some condition >= 2 seeds.", "")
            continue
        sp["first_crossing_biased"] = [biased(rep, table, best, size, v) for v in sp["variant"]]
        rows.append(sp)
        noise = sp.iloc[0]
        rep.say(f"Run-to-run sd of the final loss, pooled over every condition of {size}: {noise['sd']:.4f} nats "
                f"(df {int(noise['df'])}). Verdict: the token speedup's 95% interval above 1 (agrees), below "
                f"{study.MARGIN}x (disagrees), else inconclusive at this noise.", "",
                sp[["variant", "tokens", "flops", "wall", "gap_crosscheck", "first_crossing_biased", "verdict",
                    "paper"]].to_markdown(index=False), "")
    if rows:
        rep.tables["primer_regime_speedups"] = pd.concat(rows, ignore_index=True)
    rep.say("- Columns: `tokens`, `flops` (× the per-token FLOP ratio), `wall` (× the measured seconds per step on "
            "this machine) are read from annealed endpoints; `gap_crosscheck` is 2^(loss gap / the baseline's slope "
            "per doubling); `first_crossing_biased` is the old reading at the first crossing of one run's "
            "intermediate checkpoints (FLOPs), **biased toward 1**, shown only beside the new one.",
            "- No law is fitted over sizes: two sizes at one fixed budget are not compute-optimal points, and two "
            "points determine any line; each size's speedup stands with its own interval.", "")
    return True


def biased(rep: Report, table: pd.DataFrame, best: pd.DataFrame, size: str, variant: str) -> str:
    """The old first-crossing speedup in FLOPs, from the largest budget's runs at the chosen rates, paired by seed."""
    top = table[table["size"] == size]["tokens"].max()

    def runs(v: str) -> dict[int, pd.DataFrame]:
        r = best[(best["size"] == size) & (best["variant"] == v) & (best["tokens"] == top)]
        if r.empty:
            return {}
        g = table[(table["size"] == size) & (table["variant"] == v) & (table["tokens"] == top)
                  & (table["lr"] == r["lr"].iloc[0])]
        return {int(x.seed): metrics_frame(rep.run_dir(x.run)) for x in g.itertuples()}

    try:
        base, var = runs("baseline"), runs(variant)
        seeds = sorted(set(base) & set(var))
        value = study.first_crossing([base[s] for s in seeds], [var[s] for s in seeds])
    except (OSError, KeyError, ValueError):
        return "n/a"
    return f"{value:.2f}x (biased)"
