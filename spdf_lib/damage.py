"""Damaged is a status: a run folder whose record files cannot be read is `damaged`, named, never `ok`.

`damaged_file(folder)` is the first of a run's records (`manifest.json`, `results.json`, `point.json`,
`metrics.jsonl`) that exists and does not parse (truncated, not JSON, not a mapping), with why; None when all
that exist are intact. `spdf results` shows such a run as `damaged` with one warning line naming the file, a
sweep re-runs its point (the experiment resumes from its intact checkpoints) and never counts it as done.
"""

from __future__ import annotations

import json
from pathlib import Path

RECORDS = ("manifest.json", "results.json", "point.json")
DAMAGED = "damaged"


def damaged_file(folder: str | Path) -> tuple[Path, str] | None:
    """(the damaged record file, why) of a run folder, or None when every record it holds parses."""
    folder = Path(folder)
    for name in RECORDS:
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            return path, f"not JSON ({str(e).splitlines()[0][:60]})"
        if not isinstance(data, dict):
            return path, f"not a JSON object ({type(data).__name__})"
    path = folder / "metrics.jsonl"
    if path.is_file():
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for i, line in enumerate(lines, 1):
            try:
                json.loads(line) if line.strip() else None
            except ValueError:
                return path, f"line {i} is not JSON"
    return None


def damage_line(folder: str | Path) -> str | None:
    """`<file> is damaged (why)`, or None."""
    found = damaged_file(folder)
    return f"{found[0]} is damaged ({found[1]})" if found else None
