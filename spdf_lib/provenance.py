"""What a run records of where it ran (`manifest.json`): the time, the git commit, exact package versions, the
platform and device."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from spdf_lib.locations import REPO_ROOT

# Packages whose versions go into every manifest (all installed distributions go in too, under "all").
KEY_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "sacrebleu", "numpy", "pandas", "papermill")



def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")



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
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    torch = sys.modules.get("torch")  # only if the run uses it: importing torch here would cost seconds
    if torch is not None:
        from spdf_lib.precision import describe

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["precision"] = describe("auto")
    return info

