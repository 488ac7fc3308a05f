"""A run's status as it stands, and how runs end on an error.

A live run rewrites `heartbeat.json` every `HEARTBEAT_S` seconds; a `running` manifest whose process is gone
reads as `interrupted` (`effective_status`). The runs of this process that have not ended are registered in
`OPEN_RUNS`; whatever exception leaves an experiment's runner ends them with the status it means
(`ends_runs_on_error`, the one error handler of runs).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import os
import socket
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from spdf_lib.jsonio import read_json

HEARTBEAT_S = 30.0  # how often a live run rewrites heartbeat.json

STALE_S = 5 * HEARTBEAT_S  # a run on another host whose heartbeat is older than this is taken as gone

STATUSES = ("running", "ok", "failed", "interrupted", "diverged")

OPEN_RUNS: weakref.WeakSet = weakref.WeakSet()  # runs (`records.Run`) of this process that have not ended yet


def end_open_runs(error: BaseException) -> int | None:
    """Give every run of this process that has not ended the status `error` means (called where an exception
    leaves an experiment): `interrupted` (Ctrl-C, SIGTERM), `diverged` (a non-finite loss) or `failed`.
    Returns the last step of those runs (what "interrupted at step N" says)."""
    from spdf_lib.errors import DivergedError

    steps = []
    for run in list(OPEN_RUNS):
        steps.append(run.step)
        if isinstance(error, KeyboardInterrupt):
            status, reason = "interrupted", f"interrupted ({type(error).__name__}) after step {run.step}"
        elif isinstance(error, DivergedError):
            status, reason = "diverged", str(error)
        else:
            status, reason = "failed", f"{type(error).__name__}: {error}".splitlines()[0]
        # e.g. a full disk: the manifest keeps `running`, and its dead pid reads as interrupted
        with contextlib.suppress(OSError):
            run.end(status, reason)
    return max((s for s in steps if s is not None), default=None)



_P = ParamSpec("_P")



_R = TypeVar("_R")



def ends_runs_on_error(runner: Callable[_P, _R]) -> Callable[_P, _R]:
    """An experiment's runner that, whatever exception leaves it, first ends its open runs with the status that
    exception means (`end_open_runs`). The notebooks call their runner directly, not through
    `experiments.run`, so without this a diverged run in a kernel stayed `running` and the parent could only
    settle it as `failed`, not knowing the step it reached."""

    @functools.wraps(runner)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return runner(*args, **kwargs)
        except BaseException as e:
            step = end_open_runs(e)
            if isinstance(e, KeyboardInterrupt) and step is not None:  # "interrupted at step N": the runs that
                e.step = step  # type: ignore[attr-defined]  # knew it are ended by now, so tell it here
            raise

    return wrapper



def _process_alive(pid: int, started: str | None) -> bool:
    """Whether process `pid` of this host lives and is the one that started at `started` (not a reused pid)."""
    import psutil

    try:
        created = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False
    if started is None:
        return True
    try:
        return created <= _dt.datetime.fromisoformat(started).timestamp() + 2
    except ValueError:
        return True



def effective_status(run_dir: str | Path, manifest: dict[str, Any] | None = None) -> tuple[str | None, str | None]:
    """(status, reason) of a run folder as it stands: a `running` manifest whose process is gone (its pid dead
    on this host, or, from another host, no heartbeat for `STALE_S`) is `interrupted`."""
    run_dir = Path(run_dir)
    if manifest is None:
        try:
            manifest = read_json(run_dir / "manifest.json")
        except (OSError, ValueError):
            return None, None
    status, reason = manifest.get("status"), manifest.get("reason")
    if status != "running" or "pid" not in manifest:
        return status, reason
    beat: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        beat = read_json(run_dir / "heartbeat.json")
    step = beat.get("step", manifest.get("last_step"))
    if manifest.get("host") == socket.gethostname():
        started = (manifest.get("resumed") or [manifest.get("start")])[-1]
        if _process_alive(int(manifest["pid"]), started):
            return status, reason
        return "interrupted", f"its process ({manifest['pid']}) is gone; last step {step}"
    try:
        age = _dt.datetime.now(_dt.UTC).timestamp() - _dt.datetime.fromisoformat(beat["time"]).timestamp()
    except (KeyError, ValueError):
        return status, reason
    if age > STALE_S:
        return "interrupted", f"no heartbeat from {manifest.get('host')} for {age:.0f} s; last step {step}"
    return status, reason



def refuse_a_live_run(folder: Path, manifest: dict[str, Any]) -> None:
    """The same command started twice: two processes would train into one folder and overwrite each other's
    checkpoints and records, so a run whose process still lives (`effective_status` says `running`; not this
    process's own) is refused in one line. Called after `rundir.claim` (which cannot import this module)."""
    from spdf_lib.errors import RunDirError

    if manifest.get("status") != "running" or manifest.get("pid") == os.getpid():
        return
    if effective_status(folder, manifest)[0] == "running":
        raise RunDirError(f"run folder {folder} is in use by a live run (pid {manifest.get('pid')} on "
                          f"{manifest.get('host')}); wait for it to end, stop it, or pass another --run-dir")

