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
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any

from spdf_lib.atomic import atomic_write_bytes, atomic_write_text
from spdf_lib.jsonio import dumps, read_json, write_json
from spdf_lib.provenance import device_info, git_state, now, package_versions
from spdf_lib.run_status import HEARTBEAT_S, OPEN_RUNS, STATUSES, refuse_a_live_run

_SECRET_KEY = re.compile(r"(api[_-]?key|secret|token|password)$", re.IGNORECASE)



def check_no_secrets(params: dict[str, Any]) -> None:
    for k, v in params.items():
        if _SECRET_KEY.search(k) and v:
            raise ValueError(f"parameter {k!r} looks like a secret; pass it through an environment variable instead")



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
        OPEN_RUNS.add(self)

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
        OPEN_RUNS.discard(self)
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



def read_table(run_dir: str | Path, name: str):
    """A table a run wrote with `Run.write_table` (a pandas DataFrame); a clear error when it has none."""
    import pandas as pd

    run_dir = Path(run_dir)
    artifacts = read_json(run_dir / "manifest.json").get("artifacts", {})
    if name not in artifacts:
        raise FileNotFoundError(f"run {run_dir} has no table {name!r}; it has: {', '.join(artifacts) or 'none'}")
    path = run_dir / artifacts[name]
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)

