"""The report: every figure of the study from the one results table, each beside the paper's claim.

`build_report(results, root, figures_dir)` runs each paper's `report_section.section` (SPDF, Primer, exams)
over the results table (`spdf_lib.results`) and the records of the runs it lists (`records.read_table`), draws
their figures into `figures_dir` (PNG and PDF) and writes `figures_dir/summary.md`. Nothing in the summary is
typed in by hand except the papers' own numbers, which each section holds. `report.ipynb` shows the same
report inline; `spdf reproduce` also exports it as `figures_dir/report.html`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spdf_lib.exams import report_section as exams_section
from spdf_lib.primer import report_section as primer_section
from spdf_lib.report_document import Report
from spdf_lib.spdf import report_section as spdf_section
from spdf_lib.spdf.report_curation import section as curation_section
from spdf_lib.stats import Margins

SECTIONS = (spdf_section.section, curation_section, primer_section.section, exams_section.section)


def build_report(results: pd.DataFrame, root: str | Path, figures_dir: str | Path,
                 margins: Margins | None = None) -> Report:
    """Draw every figure the results (runs under `root`) allow into `figures_dir` and write `summary.md` there;
    `margins`: what the verdicts count as no difference (default 1 BLEU point, 2% relative)."""
    figures = Path(figures_dir)
    figures.mkdir(parents=True, exist_ok=True)
    rep = Report(Path(root), figures, margins=margins or Margins())
    rep.say("# spdf-kit results summary", "",
            f"Runs: {len(results)} in the results table; every number below comes from those records.",
            precision_line(results), "")
    for section in SECTIONS:
        section(results, rep)
    rep.write("summary.md")
    return rep


def precision_line(results: pd.DataFrame) -> str:
    """Which arithmetic the runs computed in (`resolved_precision`: what `precision: auto` became on each
    machine), e.g. "Precision: fp32 (24 runs), bf16 (2 runs); 1 run records none (no training or local model)"."""
    col = results["resolved_precision"] if "resolved_precision" in results else pd.Series([None] * len(results))
    counts = col.dropna().value_counts()
    parts = [f"{name} ({n} run{'s' if n != 1 else ''})" for name, n in counts.items()]
    missing = int(col.isna().sum())
    tail = (f"; {missing} run{'s record' if missing != 1 else ' records'} none (no training or local model)"
            if missing else "")
    return f"Precision: {', '.join(parts) or 'none recorded'}{tail}."


def export_html(notebook: str | Path, out: str | Path) -> Path:
    """An executed notebook as one self-contained HTML file (figures embedded), written atomically."""
    from nbconvert import HTMLExporter

    from spdf_lib.atomic import atomic_write_text

    body, _ = HTMLExporter(exclude_input=True).from_filename(str(notebook))
    atomic_write_text(out, body)
    return Path(out)
