"""Running a planned sweep: each point in a process of its own, started once the points it needs are done,
`workers` at a time, with the cores split between them; progress shown per point; Ctrl-C and SIGTERM stop the
running points cleanly. A failed point does not take the others down (only the points that need it)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from spdf_lib.atomic import atomic_write_text
from spdf_lib.jsonio import write_json
from spdf_lib.locations import REPO_ROOT
from spdf_lib.notebooks import last_line
from spdf_lib.owner import Owner
from spdf_lib.provenance import now
from spdf_lib.sweep.points import Plan, Point, check_memory, is_complete, point_status, remote_rank
from spdf_lib.sweep.spec import SweepError

INTERRUPT_GRACE_S = 20.0  # how long interrupted points get to shut their kernels down before being killed


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _error_line(point: Point) -> str:
    """One line saying why a point failed: the worker's error.txt, else the first exception line of its log
    (with torchrun, the first rank to fail is the root cause; the others fail because it left)."""
    err = point.dir / "error.txt"
    if err.is_file():
        first = err.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        if first:
            return first[0]
    log = point.dir / "log.txt"
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
    exc = re.compile(r"^(?:\[rank(\d+)\]:\s*)?((?:\w+\.)*\w*(?:Error|Exception|Interrupt)\b:?.*)$")
    for line in lines:
        m = exc.match(line.strip())
        if m and "ChildFailedError" not in line:
            return (f"rank {m.group(1)}: " if m.group(1) else "") + m.group(2)
    return ""


@dataclass
class _Running:
    point: Point
    proc: subprocess.Popen
    log: Any
    started: float
    record: dict[str, Any]


def _start(point: Point, threads: int) -> _Running:
    # An earlier, unfinished attempt (interrupted, failed) keeps its folder: the experiment resumes it from its last
    # checkpoint, as `spdf run` does (`spdf_lib.rundir`); only the sweep's record of that attempt goes.
    (point.dir / "error.txt").unlink(missing_ok=True)
    point.dir.mkdir(parents=True, exist_ok=True)
    if point.launcher != "papermill":  # `-m spdf_lib.experiments ... --params <dir>/params.yaml`
        atomic_write_text(point.dir / "params.yaml", yaml.safe_dump(point.params, sort_keys=False))
    cmd = point.command()
    record = {
        "id": point.id, "stage": point.stage, "experiment": point.experiment, "launcher": point.launcher,
        "notebook": str(point.notebook) if point.notebook else None, "params": point.params, "vars": point.vars,
        "swept": point.swept, "needs": list(point.needs), "command": cmd, "threads": threads,
        "status": "running", "started": now(), "ended": None, "seconds": None, "error": None,
    }
    write_json(point.dir / "point.json", record)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    # Idle OpenMP threads sleep instead of spinning: when the cores are shared (several points, other jobs),
    # spinning threads starve the busy ones; a smoke pre-training took 35 s instead of 1.1 s on 2 loaded cores.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    log = (point.dir / "log.txt").open("w", encoding="utf-8")
    # A session of its own: the terminal's Ctrl-C reaches only the sweep, which then stops the points in order.
    # SIGINT is how the sweep stops a point, so the point must not inherit it ignored (a sweep started in the
    # background by `nohup ... &` or a batch script runs with SIGINT ignored; its points would then be killed).
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_default_sigint)
    return _Running(point, proc, log, time.monotonic(), record)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _finish(run: _Running, interrupted: bool = False) -> dict[str, Any]:
    run.log.close()
    point, rc = run.point, run.proc.returncode
    complete = is_complete(point.dir) or (rc == 0 and remote_rank(point))
    if complete:
        status, error = "ok", None
    elif interrupted or rc in (130, -signal.SIGINT):
        status, error = "interrupted", "interrupted; re-run the sweep to resume this point"
    elif rc == 0:
        status, error = "failed", "finished without results.json and manifest status 'ok' (call Run.finish)"
    else:
        status, error = "failed", _error_line(point) or f"exit code {rc}"
    if status != "ok" and not (point.dir / "error.txt").is_file():
        log = point.dir / "log.txt"
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-80:] if log.is_file() else []
        atomic_write_text(point.dir / "error.txt", "\n".join([error or "", "", *tail]) + "\n")
    run.record.update(status=status, error=error, ended=now(), exit_code=rc,
                      seconds=round(time.monotonic() - run.started, 2))
    write_json(point.dir / "point.json", run.record)
    return run.record


def _block(point: Point, failed: str) -> dict[str, Any]:
    record = {"id": point.id, "stage": point.stage, "experiment": point.experiment, "params": point.params,
              "vars": point.vars, "swept": point.swept, "needs": list(point.needs), "status": "blocked",
              "error": f"needs {failed}, which did not complete", "started": None, "ended": now(), "seconds": 0}
    point.dir.mkdir(parents=True, exist_ok=True)
    write_json(point.dir / "point.json", record)
    return record


def run_sweep(
    plan: Plan,
    workers: int = 1,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Run every point of `plan` not yet done, up to `workers` at a time, each in its own process.

    A point starts once the points it needs are done; a point whose dependency failed is `blocked`. Threads
    (OMP_NUM_THREADS) are split so that the running points share the machine's cores. Returns
    {point id: status} with status `ok` (ran now), `done` (done before), `failed`, `blocked` or
    `interrupted`. On Ctrl-C the running points are interrupted (their records say so), points already done
    stay intact, and `KeyboardInterrupt` is raised again.
    """
    if workers < 1:
        raise SweepError(f"--workers must be at least 1 (got {workers})")
    check_memory(plan)  # a point that cannot fit is refused before any point starts
    # one sweep of a folder at a time: a second is refused here, before it reads or writes a point
    owner = Owner(plan.dir, "sweep folder", "wait for that sweep to end (or stop it), then re-run to resume")
    try:
        return _run_owned(plan, workers, progress, echo)
    finally:
        owner.release()


def _run_owned(plan: Plan, workers: int, progress: bool, echo: Callable[[str], None] | None) -> dict[str, str]:
    from tqdm.auto import tqdm

    statuses = {p.id: "done" for p in plan.points if point_status(p) == "done"}
    todo = [p for p in plan.points if p.id not in statuses]
    bar = tqdm(total=len(todo), unit="point", desc=plan.name, disable=not progress or not todo, leave=False,
               dynamic_ncols=True)
    say = echo or bar.write
    running: dict[str, _Running] = {}
    finished = 0
    total = len(todo)
    shown = 0.0
    slots = max(1, min(workers, total))  # points that run at once share the cores

    def report(record: dict[str, Any]) -> None:
        nonlocal finished
        finished += 1
        statuses[record["id"]] = record["status"]
        error = f"  {record['error']}" if record["status"] != "ok" else ""
        point = plan.by_id[record["id"]]
        say(f"[{finished}/{total}] {record['status']:<11} {point.id}  {point.stage}  {point.label}  "
            f"{record['seconds'] or 0:.1f}s{error}")
        bar.update(1)

    # A scheduler's SIGTERM (job cancelled) stops the points like Ctrl-C does, rather than orphaning them.
    in_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None
    old_term = signal.SIG_DFL if in_main and old_term is None else old_term
    try:
        while todo or running:
            for pid, run in list(running.items()):
                if run.proc.poll() is not None:
                    del running[pid]
                    report(_finish(run))
            for p in list(todo):  # blocked: a dependency ended without completing
                bad = next((n for n in p.needs if statuses.get(n) in ("failed", "blocked", "interrupted")), None)
                if bad:
                    todo.remove(p)
                    report(_block(p, bad))
            ready = [p for p in todo if all(statuses.get(n) in ("ok", "done") for n in p.needs)]
            for p in ready[: workers - len(running)]:
                todo.remove(p)
                running[p.id] = _start(p, threads=max(1, _cores() // (slots * p.nproc)))
            if running:
                time.sleep(0.2)
                if progress and time.monotonic() - shown >= 1.0:  # what each running point is doing now
                    shown = time.monotonic()
                    bar.set_postfix_str("  ".join(f"[{pid[-6:]}] {last_line(r.point.dir / 'log.txt')[:70]}"
                                                  for pid, r in running.items()), refresh=True)
            elif todo:  # cannot happen with a valid plan; guards against a silent hang
                raise SweepError(f"points wait on points outside the plan: {todo[0].id} needs {todo[0].needs}")
    except KeyboardInterrupt:
        _interrupt(running, report)
        raise
    finally:
        bar.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return statuses


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _interrupt(running: dict[str, _Running], report: Callable[[dict[str, Any]], None]) -> None:
    """Ctrl-C: ask each running point to stop (SIGINT: papermill shuts its kernel down), kill stragglers."""
    for run in running.values():
        with _quiet():
            os.killpg(run.proc.pid, signal.SIGINT)
    deadline = time.monotonic() + INTERRUPT_GRACE_S
    for run in running.values():
        try:
            run.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with _quiet():
                os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()
        report(_finish(run, interrupted=True))
    running.clear()


class _quiet:
    """Ignore a process that is already gone."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc_type is not None and issubclass(exc_type, ProcessLookupError | PermissionError)
