"""What Primer's speedup verdicts presuppose (issue 34), checked per model size before any verdict is read:

1. **each arm tuned**: every variant at every budget has a grid of at least `MIN_RATES` learning rates, each rate
   run with every seed of the arm: a speedup of an untuned variant over a tuned baseline (or the reverse) measures
   the tuning;
2. **each chosen rate inside its grid** (as for SPDF, `spdf_lib.preconditions.grid_position`): a rate at an edge
   may not be the arm's best;
3. **the baseline's seeds as tight as Primer's**: at each budget, the baseline's chosen rate has at least as many
   seeds as each variant's: the baseline's endpoint must be measured as precisely as the variant's;
4. **one recipe**: every run of the size shares the recipe, data and evaluation windows (`grid.RECIPE`), so the
   SPDF sweep's dense runs may serve as the baseline only when they match.

A failed precondition does not hide the verdicts: they are printed under `warning`'s line.
"""

from __future__ import annotations

import json

import pandas as pd

from spdf_lib import preconditions as core
from spdf_lib.preconditions import FAILED, MET, UNCHECKED, Precondition, grid_position
from spdf_lib.primer.grid import RECIPE

MIN_RATES = 3


def _arms(best: pd.DataFrame, size: str) -> pd.DataFrame:
    return best[best["size"] == size].sort_values(["variant", "tokens"])


def _label(r) -> str:
    return f"{r.variant} at {r.tokens / 1e6:.3g}M tokens"


def arms_tuned(best: pd.DataFrame, size: str) -> Precondition:
    """Precondition 1: >= MIN_RATES rates per arm and budget, every rate with the arm's full set of seeds."""
    what = f"every arm tuned ({size}: >= {MIN_RATES} rates per variant and budget, each with every seed)"
    arms = _arms(best, size)
    if arms.empty:
        return Precondition(what, UNCHECKED, "no runs of this size")
    short = [f"{_label(r)}: {len(r.grid)} rate(s)" for r in arms.itertuples() if len(r.grid) < MIN_RATES]
    ragged = [f"{_label(r)}: seeds per rate {r.seeds_per_rate}" for r in arms.itertuples()
              if len(set(r.seeds_per_rate)) > 1 or len(r.seeds_per_rate) < len(r.grid)]
    detail = "; ".join(short + ragged) or ", ".join(f"{_label(r)}: {len(r.grid)} rates × {r.n} seeds"
                                                     for r in arms.itertuples())
    if not short and not ragged:
        return Precondition(what, MET, detail)
    return Precondition(what, FAILED, detail, meaning=(
        "an arm with fewer rates, or a rate missing a seed, is not tuned as the others are, so its speedup may "
        "measure the tuning, not the architecture"))


def rates_inside_grid(best: pd.DataFrame, size: str) -> Precondition:
    """Precondition 2: each arm's chosen rate at each budget lies strictly inside its grid."""
    what = f"every chosen learning rate inside its grid ({size})"
    arms = _arms(best, size)
    if arms.empty:
        return Precondition(what, UNCHECKED, "no runs of this size")
    where = [(r, grid_position(r.lr, r.grid)) for r in arms.itertuples()]
    detail = "; ".join(f"{_label(r)}: {r.lr:g} of [{', '.join(f'{x:g}' for x in r.grid)}], {at}" for r, at in where)
    edges = [_label(r) for r, at in where if at != "inside"]
    if not edges:
        return Precondition(what, MET, detail)
    return Precondition(what, FAILED, detail, meaning=(
        f"the best rate of {', '.join(edges)} may lie outside its grid (add the rate beyond that edge), so a "
        f"speedup may compare a tuned arm with an untuned one"))


def baseline_as_tight(best: pd.DataFrame, size: str) -> Precondition:
    """Precondition 3: at each budget, the baseline's chosen rate has at least as many seeds as each variant's."""
    what = f"the baseline's seeds as tight as Primer's ({size})"
    arms = _arms(best, size)
    base = arms[arms["variant"] == "baseline"].set_index("tokens")
    if base.empty or (arms["variant"] != "baseline").sum() == 0:
        return Precondition(what, UNCHECKED, "the baseline or every variant has no runs of this size")
    loose = []
    for r in arms[arms["variant"] != "baseline"].itertuples():
        n_base = int(base.loc[r.tokens, "n"]) if r.tokens in base.index else 0
        if n_base < r.n:
            loose.append(f"{_label(r)}: {r.n} seeds, baseline {n_base}")
    if not loose:
        return Precondition(what, MET, ", ".join(f"baseline at {t / 1e6:.3g}M tokens: {int(b.n)} seeds"
                                                 for t, b in base.iterrows()))
    return Precondition(what, FAILED, "; ".join(loose), meaning=(
        "the baseline's endpoint is measured less precisely than the variant's, so an interval understates its "
        "noise where the pooled sd does not hold"))


def same_recipe(table: pd.DataFrame, size: str) -> Precondition:
    """Precondition 4: every run of `size` has the same recipe, data and evaluation (`grid.RECIPE`)."""
    what = f"one recipe, data and evaluation for every run ({size})"
    runs = table[table["size"] == size]
    if runs.empty:
        return Precondition(what, UNCHECKED, "no runs of this size")
    differ = {}
    for key in RECIPE:
        if key in runs and runs[key].notna().any():
            values = {json.dumps(v, default=str) for v in runs[key].dropna()}
            if len(values) > 1 or runs[key].isna().any():
                differ[key] = sorted(values) + (["(missing)"] if runs[key].isna().any() else [])
    if not differ:
        return Precondition(what, MET, f"{len(runs)} runs share {', '.join(k for k in RECIPE if k in runs)}")
    return Precondition(what, FAILED, "; ".join(f"{k}: {', '.join(v)}" for k, v in differ.items()), meaning=(
        "the arms differ in more than their architecture, so a speedup mixes in the difference of recipe or "
        "evaluation (run the baseline beside Primer in the same recipe)"))


def check_size(table: pd.DataFrame, best: pd.DataFrame, size: str) -> list[Precondition]:
    """Every precondition of one size's speedup verdicts."""
    return [same_recipe(table, size), arms_tuned(best, size), rates_inside_grid(best, size),
            baseline_as_tight(best, size)]


def warning(conditions: list[Precondition]) -> str:
    """The line the speedup verdicts of a size are printed under when a precondition failed ('' if none did)."""
    return core.warning(conditions, "Primer")


__all__ = ["FAILED", "MET", "UNCHECKED", "Precondition", "check_size", "warning"]
