"""Run records: the one results format every experiment writes.

A run directory holds
- `manifest.json`: what is needed to reproduce the run — git commit (and whether the tree was dirty), exact
  package versions, parameters, data checksums, device, seed, start and end time, status;
- `metrics.jsonl`: one JSON object per logged training/eval step;
- `results.json`: the run's final metrics (flat `{name: number}`), which `spdf results` aggregates;
- tables the run writes through `Run.write_table(name, frame)`, listed by name under "artifacts" in the
  manifest and read back with `read_table(run_dir, name)` (the report reads runs only through these);
- whatever else the experiment writes (generations, checkpoints, figures).

All whole-file writes are atomic (temp file + rename), so an interrupted run never leaves a torn record.
Secrets never enter a record: parameter values whose key looks like a credential are refused.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

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


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


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


class Run:
    """Records of one run in `run_dir`: start writes the manifest, `log` appends metrics, `finish` the results."""

    def __init__(self, run_dir: str | Path, experiment: str, params: dict[str, Any], seed: int):
        check_no_secrets(params)
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.manifest: dict[str, Any] = {
            "experiment": experiment,
            "params": params,
            "seed": seed,
            "git": git_state(),
            "packages": package_versions(),
            "device": device_info(),
            "data": {},
            "start": now(),
            "end": None,
            "status": "running",
        }
        write_json(self.dir / "manifest.json", self.manifest)

    def add_data(self, checksums: dict[str, str]) -> None:
        """Record the checksums of the data files this run read."""
        self.manifest["data"].update(checksums)
        write_json(self.dir / "manifest.json", self.manifest)

    def describe(self, **info: Any) -> None:
        """Add facts about how the run ran (backend, dtype, endpoint, ...) to the manifest, under "info"."""
        check_no_secrets(info)
        self.manifest.setdefault("info", {}).update(info)
        self.manifest["device"] = device_info()  # torch may have been imported since the run started
        write_json(self.dir / "manifest.json", self.manifest)

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
        write_json(self.dir / "manifest.json", self.manifest)
        return path

    def log(self, row: dict[str, Any], name: str = "metrics.jsonl") -> None:
        with (self.dir / name).open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=_jsonable) + "\n")

    def finish(self, results: dict[str, Any], status: str = "ok") -> None:
        write_json(self.dir / "results.json", results)
        self.manifest.update(end=now(), status=status)
        write_json(self.dir / "manifest.json", self.manifest)


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

