"""Run records: the one results format every experiment writes.

A run directory holds
- `manifest.json`: what is needed to reproduce the run — git commit (and whether the tree was dirty), exact
  package versions, parameters and their hash (`spdf_lib.rundir`: a folder holds one configuration), data
  checksums, device, seed, start and end time (a resumed run keeps its start and lists when it resumed), the
  process (pid, host) and its status: `running`, `ok`, `failed`, `interrupted` or `diverged`, with a reason
  and the last step;
- `heartbeat.json`: rewritten every `HEARTBEAT_S` seconds while the run lives, so that a `running` manifest
  whose process is gone reads as `interrupted` (`effective_status`);
- `metrics.jsonl`: one JSON object per logged training/eval step;
- `results.json`: the run's final metrics (flat `{name: number}`), which `spdf results` aggregates;
- tables the run writes through `Run.write_table(name, frame)`, listed by name under "artifacts" in the
  manifest and read back with `read_table(run_dir, name)` (the report reads runs only through these);
- whatever else the experiment writes (generations, checkpoints, figures).

All whole-file writes are atomic (temp file + rename), so an interrupted run never leaves a torn record; records
are strict JSON (a non-finite number is written as `null`, never as `NaN`). Secrets never enter a record:
parameter values whose key looks like a credential are refused.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from spdf_lib.atomic import atomic_write_bytes, atomic_write_text

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

# Packages whose versions go into every manifest (all installed distributions go in too, under "all").
KEY_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "sacrebleu", "numpy", "pandas", "papermill")
_SECRET_KEY = re.compile(r"(api[_-]?key|secret|token|password)$", re.IGNORECASE)


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _jsonable(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item") and callable(x.item):  # numpy / torch scalars
        return x.item()
    if hasattr(x, "model_dump"):
        return x.model_dump()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def strict(obj: Any) -> Any:
    """`obj` with every non-finite float (NaN, ±inf) replaced by None: what strict JSON can hold."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and not isinstance(obj, str | bytes):
        return strict(obj.item())
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON (`allow_nan=False`; non-finite numbers become null)."""
    return json.dumps(strict(obj), default=_jsonable, allow_nan=False, **kwargs)


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def git_state(repo: Path = REPO_ROOT) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, Any]:
    dists = {d.metadata["Name"].lower(): d.version for d in metadata.distributions() if d.metadata["Name"]}
    return {"key": {p: dists.get(p) for p in KEY_PACKAGES}, "all": dict(sorted(dists.items()))}


def device_info() -> dict[str, Any]:
    """Platform, CPUs and, when the run uses torch, its threads, GPUs and the precision facts of the device
    (CPU model, torch capability, bf16 flags, the probe's figures: `spdf_lib.precision.describe`)."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    torch = sys.modules.get("torch")  # only if the run uses it: importing torch here would cost seconds
    if torch is not None:
        from spdf_lib.precision import describe

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["precision"] = describe("auto")
    return info


def check_no_secrets(params: dict[str, Any]) -> None:
    for k, v in params.items():
        if _SECRET_KEY.search(k) and v:
            raise ValueError(f"parameter {k!r} looks like a secret; pass it through an environment variable instead")


HEARTBEAT_S = 30.0  # how often a live run rewrites heartbeat.json
STALE_S = 5 * HEARTBEAT_S  # a run on another host whose heartbeat is older than this is taken as gone
STATUSES = ("running", "ok", "failed", "interrupted", "diverged")
_OPEN: weakref.WeakSet[Run] = weakref.WeakSet()  # runs of this process that have not ended yet


class Run:
    """Records of one run in `run_dir`: start writes the manifest, `log` appends metrics, `finish` the results,
    `end` another status (`failed`, `interrupted`, `diverged`) with its reason.

    The folder must be free for this configuration (`spdf_lib.rundir.claim`): a folder of the same
    configuration is resumed (its start time kept, the resumption listed under "resumed"), another
    configuration's folder is refused before anything is written. `step` is the last completed training step,
    which the training loop sets and the status and heartbeat report."""

    def __init__(self, run_dir: str | Path, experiment: str, params: dict[str, Any], seed: int):
        from spdf_lib.rundir import claim, params_hash

        check_no_secrets(params)
        self.dir = Path(run_dir)
        found = claim(self.dir, experiment, params)  # refuses another configuration's folder, writing nothing
        refuse_a_live_run(self.dir, found.manifest or {})
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_temp_leftovers(self.dir)
        old = found.manifest or {}
        self.step: int | None = old.get("last_step")
        self.manifest: dict[str, Any] = {
            "experiment": experiment,
            "params": params,
            "params_hash": params_hash(params),
            "seed": seed,
            "git": git_state(),
            "packages": package_versions(),
            "device": device_info(),
            "data": old.get("data", {}),
            "start": old.get("start") or now(),
            "resumed": [*old.get("resumed", []), now()] if found.manifest else [],
            "end": None,
            "status": "running",
            "reason": None,
            "last_step": self.step,
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        if old.get("artifacts"):
            self.manifest["artifacts"] = old["artifacts"]
        self._lock = threading.Lock()
        self._write_manifest()
        self._stop = threading.Event()
        self._beat()
        threading.Thread(target=self._heartbeat, name=f"heartbeat {self.dir.name}", daemon=True).start()
        _OPEN.add(self)

    def _write_manifest(self) -> None:
        with self._lock:
            self.manifest["last_step"] = self.step
            write_json(self.dir / "manifest.json", self.manifest)

    def _beat(self) -> None:
        # a full disk must not kill the run from its heartbeat thread; the main thread will meet it
        with contextlib.suppress(OSError):
            write_json(self.dir / "heartbeat.json", {"time": now(), "pid": os.getpid(), "step": self.step})

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self._beat()

    def add_data(self, checksums: dict[str, str]) -> None:
        """Record the checksums of the data files this run read."""
        self.manifest["data"].update(checksums)
        self._write_manifest()

    def describe(self, **info: Any) -> None:
        """Add facts about how the run ran (backend, dtype, endpoint, ...) to the manifest, under "info"."""
        check_no_secrets(info)
        self.manifest.setdefault("info", {}).update(info)
        self.manifest["device"] = device_info()  # torch may have been imported since the run started
        self._write_manifest()

    def write_table(self, name: str, frame: Any, fmt: str = "csv") -> Path:
        """Write a pandas table atomically as `<name>.csv` (or `.parquet`) and list it in the manifest, so that
        `read_table(run_dir, name)` finds it without knowing the file name."""
        if fmt not in ("csv", "parquet"):
            raise ValueError(f"table format must be 'csv' or 'parquet', got {fmt!r}")
        path = self.dir / f"{name}.{fmt}"
        if fmt == "csv":
            atomic_write_text(path, frame.to_csv(index=False))
        else:
            import io

            buf = io.BytesIO()
            frame.to_parquet(buf, index=False)
            atomic_write_bytes(path, buf.getvalue())
        self.manifest.setdefault("artifacts", {})[name] = path.name
        self._write_manifest()
        return path

    def log(self, row: dict[str, Any], name: str = "metrics.jsonl") -> None:
        with (self.dir / name).open("a", encoding="utf-8") as f:
            f.write(dumps(row) + "\n")
        if isinstance(row.get("step"), int):
            self.step = row["step"]

    def finish(self, results: dict[str, Any], status: str = "ok") -> None:
        write_json(self.dir / "results.json", results)
        self.end(status)

    def end(self, status: str, reason: str | None = None) -> None:
        """Write the final status (one of `STATUSES`) with its reason and stop the heartbeat."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        self._stop.set()
        _OPEN.discard(self)
        from spdf_lib.scrub import scrub  # a reason quotes errors, which may quote a key

        self.manifest.update(end=now(), status=status, reason=None if reason is None else scrub(reason))
        self._write_manifest()


def remove_temp_leftovers(run_dir: Path) -> None:
    """Remove what killed writes left in a run folder: atomic-write temp files (`.<name>.<random>.tmp`) and
    the temp folder of a model save (`.model.tmp`); a live write of this run cannot be under way yet."""
    import shutil

    for leftover in run_dir.glob(".*.tmp"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def end_open_runs(error: BaseException) -> int | None:
    """Give every run of this process that has not ended the status `error` means (called where an exception
    leaves an experiment): `interrupted` (Ctrl-C, SIGTERM), `diverged` (a non-finite loss) or `failed`.
    Returns the last step of those runs (what "interrupted at step N" says)."""
    from spdf_lib.errors import DivergedError

    steps = []
    for run in list(_OPEN):
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


def read_table(run_dir: str | Path, name: str):
    """A table a run wrote with `Run.write_table` (a pandas DataFrame); a clear error when it has none."""
    import pandas as pd

    run_dir = Path(run_dir)
    artifacts = read_json(run_dir / "manifest.json").get("artifacts", {})
    if name not in artifacts:
        raise FileNotFoundError(f"run {run_dir} has no table {name!r}; it has: {', '.join(artifacts) or 'none'}")
    path = run_dir / artifacts[name]
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

