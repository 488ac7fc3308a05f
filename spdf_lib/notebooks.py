"""The one notebook executor: `spdf run`, every sweep point and `spdf reproduce` execute notebooks here.

`execute(notebook, output, parameters, stream)` runs a notebook through papermill with the given parameters:

- while it runs, everything the kernel prints (including the text progress bars of `tqdm`, with their rate, ETA
  and last metric) goes to `stream` as it comes, and each section's heading is announced as its first cell
  starts, so a terminal shows the current stage and a live bar; a sweep point's stream is its `log.txt`, whose
  last line the sweep shows (`last_line`);
- the executed notebook is saved clean: progress-bar redraws (carriage returns) are collapsed to the final
  line of each bar, and the file is written atomically.

`run_notebook(...)` is `spdf run`: validate the parameters against the experiment table and claim the run
folder before a kernel starts, say where the run directory is, then execute into `<run_dir>/notebook.ipynb`;
an error raised inside the notebook comes back as the same one line the CLI prints for it outside one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from spdf_lib.atomic import atomic_write_text
from spdf_lib.locations import REPO_ROOT, new_run_dir
from spdf_lib.provenance import now
from spdf_lib.run_status import refuse_a_live_run
from spdf_lib.scrub import scrub

# ipykernel warns at every start that its TCP transport is unencrypted (it listens on 127.0.0.1 only).
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _DeadKernelNoise(logging.Filter):
    """Drops the two log records a dead kernel leaves (Ctrl-C reaches the kernel too, or it was killed):
    nbclient's "Kernel died while waiting for execute reply." and asyncio's "Task exception was never
    retrieved" for its `DeadKernelError`. `run_notebook` reports either case in its own one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "Kernel died" in str(record.msg):
            return False
        error = record.exc_info[1] if record.exc_info else None  # asyncio logs the task's exception as exc_info
        return not ("never retrieved" in str(record.msg) and type(error).__name__ == "DeadKernelError")


_QUIET = _DeadKernelNoise()


def _quiet_dead_kernels() -> None:
    """Install `_DeadKernelNoise` on papermill's and asyncio's loggers (once)."""
    for name in ("papermill", "asyncio"):
        logger = logging.getLogger(name)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)


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
    _quiet_dead_kernels()
    # The kernel inherits this: Hugging Face's own bars (loading and saving weights) are noise in a run's stream.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=parameters, cwd=str(REPO_ROOT), kernel_name="python3",
            language="python",  # a notebook without a kernelspec (written by a script) runs too
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
    """(name, notebook path) for an experiment name like `spdf_pretrain` or a path to any .ipynb (its name is
    the file's stem: an experiment's name when it is one of the kit's notebooks)."""
    from spdf_lib.experiments import get

    path = Path(notebook)
    if path.suffix == ".ipynb":
        if not path.is_file():
            raise FileNotFoundError(f"no notebook {path}")
        return path.stem, path
    return str(notebook), get(str(notebook)).notebook


class NotebookError(RuntimeError):
    """An error raised inside an executed notebook, as one line that says where the full traceback is;
    `exit_code` is the CLI's (2 for a user error, 3 for a diverged run, 1 for anything else: a bug)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def notebook_error(e: Exception, executed: Path, stream: TextIO) -> BaseException:
    """The one-line error for papermill's `PapermillExecutionError` `e`: a user error (by its name, see
    `spdf_lib.errors.USER_ERROR_NAMES`) keeps its own message, as the CLI prints it outside a notebook; an
    interrupted kernel is a KeyboardInterrupt; anything else (a bug) also gets its traceback on `stream`."""
    from spdf_lib.errors import EXIT_DIVERGED, EXIT_USER, USER_ERROR_NAMES

    ename, evalue = getattr(e, "ename", type(e).__name__), scrub(getattr(e, "evalue", e)).strip()
    if ename == "KeyboardInterrupt" or ename == "Interrupted":
        return KeyboardInterrupt()
    where = f"(full traceback: {executed})"
    if ename == "DivergedError":
        return NotebookError(f"{evalue} {where}", EXIT_DIVERGED)
    if ename in USER_ERROR_NAMES or ename.endswith("Error") and ename.startswith(("Params", "Data", "RunDir")):
        return NotebookError(f"{evalue} {where}", EXIT_USER)
    stream.write(scrub(_ANSI.sub("", "\n".join(getattr(e, "traceback", []) or []))) + "\n")
    return NotebookError(f"{ename}: {evalue} {where}", 1)


def last_step(run_dir: Path, manifest: dict[str, Any]) -> int | None:
    """The last step a run reported: in its manifest, heartbeat or metrics, whichever is latest (a killed run
    never wrote its manifest's `last_step`)."""
    from spdf_lib.jsonio import read_json, read_jsonl

    steps = [manifest.get("last_step")]
    with contextlib.suppress(OSError, ValueError):
        steps.append(read_json(run_dir / "heartbeat.json").get("step"))
    with contextlib.suppress(OSError, ValueError):
        steps += [r.get("step") for r in read_jsonl(run_dir / "metrics.jsonl")[-1:]]
    return max((s for s in steps if isinstance(s, int)), default=None)


def settle(run_dir: Path, status: str, reason: str) -> int | None:
    """After a kernel is gone: a manifest it left as `running` gets `status` (it could not write it itself:
    killed, or Ctrl-C reached only this process). Returns the last step the run reported."""
    from spdf_lib.jsonio import read_json, strict, write_json

    path = run_dir / "manifest.json"
    try:
        manifest = read_json(path)
    except (OSError, ValueError):
        return None
    step = last_step(run_dir, manifest)
    if manifest.get("status") == "running":
        # no step reported yet (e.g. stopped before its first log): no "after step None"
        after = f" after step {step}" if step is not None else ""
        manifest.update(status=status, reason=scrub(reason + after), last_step=step, end=now())
        with contextlib.suppress(OSError):
            write_json(path, strict(manifest))
    return step


def run_notebook(
    notebook: str | Path,
    params_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    stream: TextIO | None = None,
    overwrite: bool = False,
) -> Path:
    """Validate the parameters, claim the run folder (`spdf_lib.rundir.claim`: another configuration's folder
    is refused before anything is written; the same configuration's resumes, or is reported finished), say
    where the run goes, execute the notebook into `<run_dir>/notebook.ipynb` while streaming its progress to
    `stream` (default: stderr); returns the run folder. An error inside the notebook arrives as one line
    (`NotebookError`), Ctrl-C as KeyboardInterrupt with the run's last step (`.step`)."""
    from spdf_lib.experiments import EXPERIMENTS, load
    from spdf_lib.owner import Owner
    from spdf_lib.params import read_yaml
    from spdf_lib.rundir import claim

    name, path = resolve_notebook(notebook)
    experiment = EXPERIMENTS.get(name) if path.resolve() == (EXPERIMENTS[name].notebook.resolve()
                                                              if name in EXPERIMENTS else None) else None
    if experiment is not None:
        params = load(name, params_file, overrides)
        experiment.check(params)  # e.g. a fine-tuning checkpoint that is missing or damaged: before a kernel starts
        values = params.model_dump()
    else:  # any other notebook: its parameters as given (papermill injects them), nothing to validate against
        values = {**(read_yaml(params_file) if params_file else {}), **(overrides or {})}
    run_dir = Path(run_dir) if run_dir else new_run_dir(name)
    stream = stream or sys.stderr
    owner = None
    if experiment is None or experiment.runner_ref is not None:  # the report keeps no run records to guard
        found = claim(run_dir, name, values, overwrite=overwrite)  # refuses another's folder, writing nothing
        refuse_a_live_run(run_dir, found.manifest or {})
        if found.state == "finished":
            stream.write(f"{name}: {run_dir} is finished (status ok); nothing to run. For a new run pass another "
                         f"--run-dir\n")
            return run_dir
        # one owner: a second `spdf run` into this folder, even one started in the same instant, stops here
        owner = Owner(run_dir, "run folder", "wait for that run to end, stop it, or pass another --run-dir")
        if found.moved_to:
            stream.write(f"{name}: moved the old contents of {run_dir} to {found.moved_to}\n")
        if found.state == "resume":
            from spdf_lib.run_status import effective_status

            # a killed run's manifest still says `running` with no last step: say what it is (its pid is gone)
            old = found.manifest or {}
            step, (status, _) = last_step(run_dir, old), effective_status(run_dir, old)
            stream.write(f"{name}: resuming the run in {run_dir} (it stopped after step {step}, status "
                         f"{status})\n")
    run_dir.mkdir(parents=True, exist_ok=True)
    values["run_dir"] = str(run_dir.resolve())
    stream.write(f"{name}: run directory {run_dir}\n")
    stream.flush()
    try:
        _execute_run(path, run_dir, values, stream)
    finally:
        if owner is not None:
            owner.release()
    return run_dir


def _execute_run(path: Path, run_dir: Path, values: dict[str, Any], stream: TextIO) -> None:
    """Execute a claimed run's notebook; a failure arrives as one line, its manifest settled."""
    executed = run_dir / "notebook.ipynb"
    from papermill.exceptions import PapermillExecutionError

    try:
        execute(path, executed, values, stream)
    except PapermillExecutionError as e:
        error = notebook_error(e, executed, stream)
        if isinstance(error, KeyboardInterrupt):
            error.step = settle(run_dir, "interrupted", "interrupted")  # type: ignore[attr-defined]
        else:
            settle(run_dir, "failed", str(error).split(" (full traceback")[0])
        raise error from None
    except KeyboardInterrupt as e:
        e.step = settle(run_dir, "interrupted", "interrupted (Ctrl-C)")  # type: ignore[attr-defined]
        raise
    except Exception as e:  # the kernel died (killed, out of memory) or could not start
        settle(run_dir, "failed", f"{type(e).__name__}: {e}".splitlines()[0])
        raise


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
