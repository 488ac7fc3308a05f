"""Figures every experiment shares, and how a figure is saved and shown: `save` writes PNG and PDF, `show`
also displays the figure inline when running in a notebook kernel (and closes it, so it is shown once).

Each paper's own figures live in its package (`spdf_lib.spdf.plots`, `spdf_lib.primer.plots`,
`spdf_lib.exams.plots`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # headless scripts and tests; notebooks keep their inline backend
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from spdf_lib.jsonio import read_jsonl  # noqa: E402

sns.set_theme(context="paper", style="whitegrid")


def save(fig: plt.Figure, path: str | Path) -> list[Path]:
    """Save `fig` as `<path>.png` and `<path>.pdf` (parent folders created); returns both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in out:
        fig.savefig(p, bbox_inches="tight", dpi=150)
    return out



def show(fig: plt.Figure, path: str | Path | None = None) -> None:
    """Save `fig` (with `path`: as `<path>.png` and `.pdf`), display it inline when in a notebook kernel, and
    close it. Returns None, so that a notebook cell ending with it shows the figure and nothing else."""
    if path is not None:
        save(fig, path)
    if "ipykernel" in sys.modules:
        from IPython.display import display

        display(fig)
    plt.close(fig)


def metrics_frame(run_dir: str | Path) -> pd.DataFrame:
    """A run's metrics.jsonl as a DataFrame."""
    return pd.DataFrame(read_jsonl(Path(run_dir) / "metrics.jsonl"))



def loss_curve(run_dir: str | Path, x: str = "tokens", title: str = "") -> plt.Figure:
    """Training loss (and eval loss where logged) of one run against tokens, FLOPs or seconds."""
    df = metrics_frame(run_dir)
    labels = {"tokens": "tokens seen", "flops": "training FLOPs", "elapsed_s": "training time (s)", "step": "step"}
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(df[x], df["loss"], label="train loss")
    if "eval_loss" in df:
        ev = df.dropna(subset=["eval_loss"])
        ax.plot(ev[x], ev["eval_loss"], "o-", label="validation loss")
    ax.set(xlabel=labels.get(x, x), ylabel="cross-entropy (nats/token)", title=title)
    if x == "flops":
        ax.set_xscale("log")
    ax.legend()
    fig.tight_layout()
    return fig

