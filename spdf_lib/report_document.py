"""The report's building blocks: a `Report` collects, section by section, the figures of the study with the
sentence that sets each beside its paper, plus tables; it writes `summary.md` (readable without Jupyter) and
shows itself in a notebook.

Each paper's package has a `report_section.section(results, report)` that reads the one results table
(`spdf_lib.results`) and, for a run's own tables, `spdf_lib.records.read_table` — never files by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from spdf_lib import plots
from spdf_lib.atomic import atomic_write_text
from spdf_lib.stats import Margins


@dataclass
class Block:
    """One piece of the report: markdown text, or a figure (its PNG, with a title and the sentence beside it)."""

    text: str
    figure: Path | None = None


@dataclass
class Report:
    root: Path  # the folder the results table's `run` paths are relative to
    figures_dir: Path
    blocks: list[Block] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    margins: Margins = field(default_factory=Margins)  # what the verdicts count as no difference (spdf_lib.stats)

    def run_dir(self, run: str) -> Path:
        """The folder of a results-table row's `run`."""
        return self.root / run

    def open_section(self, title: str, results: pd.DataFrame, experiment: str) -> pd.DataFrame:
        """Start a section `## title` and return the finished runs of `experiment`; when there are none, the
        section says so (and the caller has nothing more to add)."""
        self.say(f"## {title}", "")
        runs = ok_runs(results, experiment)
        if runs.empty:
            self.say(f"- No {experiment} runs in the results table yet.", "")
        return runs

    def say(self, *lines: str) -> None:
        """Markdown lines of the summary (a blank line between paragraphs is the caller's)."""
        self.blocks.append(Block("\n".join(lines)))

    def figure(self, fig, name: str, caption: str) -> Path:
        """Save `fig` as `<figures_dir>/<name>.png|pdf` and put it in the report with `caption` beside it (the
        sentence that reads it against the paper). Closes the figure; returns the PNG path."""
        png = plots.save(fig, self.figures_dir / name)[0]
        plots.plt.close(fig)
        self.blocks.append(Block(caption, png))
        return png

    @property
    def figures(self) -> list[Path]:
        return [b.figure for b in self.blocks if b.figure is not None]

    def markdown(self) -> str:
        """The whole report as markdown; figures as images relative to `figures_dir`."""
        parts = []
        for b in self.blocks:
            if b.figure is not None:
                parts.append(f"![{b.figure.stem}]({b.figure.name})\n\n{b.text}\n")
            else:
                parts.append(b.text + "\n")
        return "\n".join(parts)

    def write(self, name: str = "summary.md") -> Path:
        path = self.figures_dir / name
        atomic_write_text(path, self.markdown())
        return path

    def show(self) -> None:
        """Display the report in a notebook: each figure inline, with its sentence beside it."""
        from IPython.display import Image, Markdown, display

        for b in self.blocks:
            display(Markdown(b.text))
            if b.figure is not None:
                display(Image(filename=str(b.figure)))


def ok_runs(results: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The finished (status ok) runs of `experiment` in a results table."""
    if results.empty or "experiment" not in results:
        return results.iloc[0:0]
    return results[(results["experiment"] == experiment) & (results["status"] == "ok")].copy()


def column(df: pd.DataFrame, name: str) -> pd.Series:
    """A parameter or metric column, whichever prefix the results table gave it on a name collision."""
    for c in (name, f"results.{name}", f"params.{name}"):
        if c in df:
            return df[c]
    raise KeyError(name)


def mean_sd(x: pd.Series) -> str:
    """"m ± sd (n=k)" over seeds."""
    return f"{x.mean():.2f} ± {x.std(ddof=1):.2f} (n={len(x)})" if len(x) > 1 else f"{x.mean():.2f} (n=1)"
