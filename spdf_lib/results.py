"""The one results table: every run record under a runs folder, one row per run.

A run folder is any folder with a `manifest.json` (see `spdf_lib.records`) or, for a sweep point that failed
before its notebook wrote a manifest, a `point.json` (see `spdf_lib.sweep`). Columns, in order:

- `run` (the folder, relative to the root), `experiment`, `status` (a `running` run whose process is gone reads
  as `interrupted`: `spdf_lib.run_status.effective_status`; a run whose records do not parse reads as `damaged`,
  with a warning line naming the file: `spdf_lib.damage`), `sweep`, `stage`, `point`, `seconds`,
  `start`, `end`, `git_commit`, `git_dirty`, `error`, `resolved_precision` (the precision the run computed in:
  `bf16` or `fp32`, what `precision: auto` resolved to on its machine);
- the run's parameters (`manifest.json` "params", less `run_dir`) and a sweep point's vars;
- its metrics (`results.json`).
A parameter or metric whose name is already taken gets a `params.` / `results.` prefix. Values that are not
scalars (lists, mappings) are stored as JSON text, so that the table writes to Parquet.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from spdf_lib.atomic import atomic_write_bytes
from spdf_lib.damage import DAMAGED, damage_line, damaged_file
from spdf_lib.jsonio import read_json
from spdf_lib.locations import runs_dir
from spdf_lib.owned import make_room, write_owned
from spdf_lib.run_status import effective_status

META = ("run", "experiment", "status", "sweep", "stage", "point", "seconds", "start", "end", "git_commit",
        "git_dirty", "error", "resolved_precision")
# A run's arithmetic: the precision training resolved to (`auto` made concrete), or a local exam model's dtype.
_DTYPE_PRECISION = {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16"}
TABLE_NAME = "results.parquet"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True)


def run_folders(root: str | Path) -> list[Path]:
    """Folders under `root` that hold a run record, sorted."""
    root = Path(root)
    found = {p.parent for name in ("manifest.json", "point.json") for p in root.rglob(name)}
    return sorted(d for d in found if _is_run(d))


def _is_run(folder: Path) -> bool:
    if damaged_file(folder) is not None:  # listed, as `damaged`, not left out
        return True
    manifest = _read(folder / "manifest.json") if (folder / "manifest.json").is_file() else {}
    if manifest:
        return "experiment" in manifest and "params" in manifest
    point = _read(folder / "point.json")
    return "id" in point and "status" in point


def record_row(folder: str | Path, root: str | Path | None = None) -> dict[str, Any]:
    """One table row from a run folder's manifest.json, results.json and (sweep points) point.json."""
    return _row(folder, root)[0]


def _row(folder: str | Path, root: str | Path | None) -> tuple[dict[str, Any], list[str], list[str]]:
    """(row, its parameter columns, its metric columns)."""
    folder = Path(folder)
    manifest = _read(folder / "manifest.json")
    point = _read(folder / "point.json")
    results = _read(folder / "results.json")
    git = manifest.get("git") or {}
    info = manifest.get("info") or {}
    status, reason = effective_status(folder, manifest) if manifest else (None, None)  # a dead `running` run
    if point.get("status") in ("failed", "blocked", "interrupted") or not status:  # reads as `interrupted`
        status = point.get("status")
    if damage := damage_line(folder):  # a record that does not parse: never `ok` with blank metrics
        status, reason, point = DAMAGED, damage, {**point, "error": damage}
    sweep_dir = folder.parent.name if point else None
    row: dict[str, Any] = {
        "run": str(folder.relative_to(root)) if root else str(folder),
        "experiment": manifest.get("experiment") or point.get("experiment"),
        "status": status,
        "sweep": sweep_dir,
        "stage": point.get("stage"),
        "point": point.get("id"),
        "seconds": point.get("seconds"),
        "start": manifest.get("start"),
        "end": manifest.get("end"),
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
        "error": (point.get("error") or reason) if status != "ok" else None,
        "resolved_precision": info.get("precision") or _DTYPE_PRECISION.get(info.get("dtype")),
    }
    params = dict(manifest.get("params") or point.get("params") or {})
    params.pop("run_dir", None)
    columns: dict[str, list[str]] = {"params": [], "results": []}
    for source, values in (("params", {**params, **(point.get("vars") or {})}), ("results", results)):
        for key, value in values.items():
            col = f"{source}.{key}" if key in row else key
            row[col] = _scalar(value)
            columns[source].append(col)
    return row, columns["params"], columns["results"]


def load_results(root: str | Path | None = None, sweep: str | None = None,
                 experiment: str | None = None) -> pd.DataFrame:
    """The results table of every run under `root` (default: `runs/` or `$SPDF_RUNS_DIR`), one row per run.

    `sweep` / `experiment`: only the runs of that sweep / experiment.
    """
    root = Path(root) if root is not None else runs_dir()
    rows, params, metrics = [], {}, {}
    for folder in run_folders(root) if root.is_dir() else []:
        row, p_cols, m_cols = _row(folder, root)
        if row["status"] == DAMAGED:
            print(f"warning: run {folder}: {row['error']}; it shows as damaged (a sweep re-runs it)",
                  file=sys.stderr)
        if (sweep is None or row["sweep"] == sweep) and (experiment is None or row["experiment"] == experiment):
            rows.append(row)
            params.update(dict.fromkeys(p_cols))
            metrics.update(dict.fromkeys(m_cols))
    df = pd.DataFrame(rows, columns=list(dict.fromkeys([*META, *params, *metrics])))
    df = df[[c for c in df.columns if c in ("run", "experiment", "status") or df[c].notna().any()]]
    df = _arrow_safe(df)
    # Which columns are parameters and which metrics (for printing); attrs do not travel into files.
    df.attrs = {"params": [c for c in params if c in df.columns], "metrics": [c for c in metrics if c in df.columns]}
    return df


def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Columns that mix types (a parameter that is a number in one experiment, text in another) become text."""
    for col in df.columns:
        if df[col].dtype == object:
            kinds = {type(v) for v in df[col] if v is not None and not (isinstance(v, float) and pd.isna(v))}
            if len(kinds) > 1:
                df[col] = df[col].map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v))
                                      else str(v))
    return df


TABLE_SUFFIXES = (".parquet", ".csv")


def write_results(df: pd.DataFrame, path: str | Path, overwrite: bool | None = None) -> Path:
    """Write the table atomically in the format its suffix names: Parquet (`.parquet`) or CSV (`.csv`); any other
    suffix is refused. `overwrite` (`spdf results --out`): an existing file the kit did not write there is refused
    (False) or moved aside (True), see `spdf_lib.owned`; None (the sweep's own table) replaces it."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"--out {path}: name a .parquet or .csv file (the suffix says the format); nothing was "
                         f"written")
    if overwrite is not None:
        make_room(path, overwrite)
    if path.suffix.lower() == ".csv":
        data = df.to_csv(index=False).encode("utf-8")
    else:
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        data = buf.getvalue()
    if overwrite is None:
        atomic_write_bytes(path, data)
    else:
        write_owned(path, data)
    return path


def read_results(path: str | Path) -> pd.DataFrame:
    """A table written by `write_results` (Parquet, or CSV by its suffix)."""
    path = Path(path)
    return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)


def varying_columns(df: pd.DataFrame) -> list[str]:
    """The columns worth printing: run, experiment, status, the parameters that differ between rows, every
    metric, and error when some run has one."""
    params = df.attrs.get("params", [])
    metrics = df.attrs.get("metrics", [])
    varying = [c for c in params if df[c].astype(str).nunique(dropna=False) > 1]
    error = ["error"] if "error" in df.columns and df["error"].notna().any() else []
    return ["run", "experiment", "status", *varying, *metrics, *error]


def format_table(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """The table as aligned text (floats to 4 significant digits)."""
    if df.empty:
        return "(no runs)"
    view = df[columns] if columns else df
    return view.to_string(index=False, max_colwidth=48, float_format=lambda x: f"{x:.4g}", na_rep="")
