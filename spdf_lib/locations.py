"""Where the kit keeps things: the repository, run folders (`$SPDF_RUNS_DIR`, default `runs/`) and the report's
figures (`$SPDF_FIGURES_DIR`, default `figures/`)."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

RUNS_ENV = "SPDF_RUNS_DIR"

FIGURES_ENV = "SPDF_FIGURES_DIR"



def figures_dir() -> Path:
    """Where the report's figures go: `$SPDF_FIGURES_DIR`, default `figures/` in the repository."""
    return Path(os.environ.get(FIGURES_ENV) or REPO_ROOT / "figures")



def runs_dir() -> Path:
    """Where run folders go: `$SPDF_RUNS_DIR`, default `runs/` in the repository."""
    return Path(os.environ.get(RUNS_ENV) or REPO_ROOT / "runs")



def new_run_dir(experiment: str) -> Path:
    """A fresh `runs/<experiment>/<UTC timestamp>` folder name (not created)."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S-%f")
    return runs_dir() / experiment / stamp

