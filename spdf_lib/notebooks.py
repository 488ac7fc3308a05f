"""The one notebook executor: `spdf run`, every sweep point and `spdf reproduce` execute notebooks here.

`execute(notebook, output, parameters, stream)` runs a notebook through papermill with the given parameters:

- while it runs, everything the kernel prints (including the text progress bars of `tqdm`, with their rate, ETA
  and last metric) goes to `stream` as it comes, and each section's heading is announced as its first cell
  starts, so a terminal shows the current stage and a live bar; a sweep point's stream is its `log.txt`, whose
  last line the sweep shows (`last_line`);
- the executed notebook is saved clean: progress-bar redraws (carriage returns) are collapsed to the final
  line of each bar, and the file is written atomically.

`run_notebook(...)` is `spdf run`: validate the parameters against the experiment table before a kernel
starts, say where the run directory is, then execute into `<run_dir>/notebook.ipynb`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from spdf_lib.records import REPO_ROOT, atomic_write_text, new_run_dir

# ipykernel warns at every start that its TCP transport is unencrypted (it listens on 127.0.0.1 only).
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def collapse_carriage_returns(text: str) -> str:
    """What a terminal would show of `text`: each line keeps only what follows its last carriage return."""
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))


def clean_outputs(nb) -> None:
    """Collapse progress-bar redraws in every stream output of `nb` (in place), merging adjacent streams."""
    for cell in nb.cells:
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                if outputs and outputs[-1].get("output_type") == "stream" and outputs[-1]["name"] == out["name"]:
                    outputs[-1]["text"] += out["text"]
                    continue
                out["text"] = "".join(out["text"]) if isinstance(out["text"], list) else out["text"]
            outputs.append(out)
        for out in outputs:
            if out.get("output_type") == "stream":
                out["text"] = collapse_carriage_returns(out["text"])
        if "outputs" in cell:
            cell["outputs"] = outputs


def _stage_hook(nb_path: Path, stream: TextIO) -> Callable[..., None]:
    """An nbclient `on_cell_start` hook that writes a section's markdown heading when the section begins."""
    import nbformat

    headings: dict[int, str] = {}
    current = ""
    for i, cell in enumerate(nbformat.read(str(nb_path), as_version=4).cells):
        if cell.cell_type == "markdown" and (m := re.search(r"^#+\s*(.+)$", cell.source, re.MULTILINE)):
            current = m.group(1).strip()
        elif cell.cell_type == "code":
            headings[i] = current
    shown: set[str] = set()

    def hook(cell: Any = None, cell_index: int = 0, **_: Any) -> None:
        heading = headings.get(cell_index)
        if heading and heading not in shown:
            shown.add(heading)
            stream.write(f"\n── {heading}\n")
            stream.flush()

    return hook


def execute(notebook: str | Path, output: str | Path, parameters: dict[str, Any], stream: TextIO | None = None) -> None:
    """Execute `notebook` with `parameters` into `output` (see the module docstring), streaming what the kernel
    prints to `stream` (default: stderr). Raises papermill's execution error when a cell fails; the saved
    notebook then shows where, also cleaned."""
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # see below
    # jsonschema (under nbformat) imports rfc3987_syntax when installed, which compiles a Lark grammar: ~1.7 s
    # of every run, for an "iri" format check that notebook validation never uses.
    import nbformat
    import papermill

    stream = stream or sys.stderr
    output = Path(output)
    # The kernel inherits this: Hugging Face's own bars (loading and saving weights) are noise in a run's stream.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=parameters, cwd=str(REPO_ROOT), kernel_name="python3",
            progress_bar=False, log_output=False, stdout_file=stream, stderr_file=stream,
            on_cell_start=_stage_hook(Path(notebook), stream), extra_arguments=KERNEL_ARGS,
            shutdown_kernel="immediate",  # the records are written by now; a graceful shutdown costs ~1 s
        )
    finally:
        stream.write("\n")
        stream.flush()
        if output.is_file():
            nb = nbformat.read(str(output), as_version=4)
            clean_outputs(nb)
            atomic_write_text(output, nbformat.writes(nb))


def resolve_notebook(notebook: str | Path) -> tuple[str, Path]:
    """(experiment name, notebook path) for an experiment name like `spdf_pretrain` or a path to its .ipynb."""
    from spdf_lib.experiments import get

    path = Path(notebook)
    if path.suffix == ".ipynb":
        if not path.is_file():
            raise FileNotFoundError(f"no notebook {path}")
        return path.stem, path
    return str(notebook), get(str(notebook)).notebook


def run_notebook(
    notebook: str | Path,
    params_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    stream: TextIO | None = None,
) -> Path:
    """Validate the parameters, say where the run goes, execute the notebook into `<run_dir>/notebook.ipynb`
    while streaming its progress to `stream` (default: stderr); returns the run folder."""
    experiment, path = resolve_notebook(notebook)
    from spdf_lib.experiments import load

    values = load(experiment, params_file, overrides).model_dump()
    run_dir = Path(run_dir) if run_dir else new_run_dir(experiment)
    run_dir.mkdir(parents=True, exist_ok=True)
    values["run_dir"] = str(run_dir.resolve())
    stream = stream or sys.stderr
    stream.write(f"{experiment}: run directory {run_dir}\n")
    stream.flush()
    execute(path, run_dir / "notebook.ipynb", values, stream)
    return run_dir


def last_line(log: str | Path, max_bytes: int = 4096) -> str:
    """The last line a streaming log shows (after carriage returns), without colour codes: a point's status."""
    path = Path(log)
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - max_bytes))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [ln for ln in collapse_carriage_returns(_ANSI.sub("", tail)).splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""
