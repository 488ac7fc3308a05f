"""Run folders are owned: one folder holds one configuration.

A run's manifest stores `params_hash`, a hash of its parameters (less the ones that change only where records
go or how progress shows). Before anything is written, `claim(run_dir, experiment, params)` decides:

- a folder that does not exist, or is empty: a new run;
- a folder of a run of the same configuration: resume it (or, when it ended `ok`, it is finished);
- a folder of another configuration, or a non-empty folder the kit did not create: refused, in one line that
  names the difference (`lr: 0.002 → 0.004`) and the ways out: another `--run-dir`, or `--overwrite`, which
  moves the old contents aside (`<folder>.replaced-<UTC time>`) and never deletes them.

Sweep points already live in folders named by a hash of their parameters, so a sweep never meets another
configuration's folder; the files its scheduler writes before the run (`point.json`, `log.txt`,
`params.yaml`) belong to the kit.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spdf_lib.damage import damaged_file
from spdf_lib.errors import RunDirError

# Parameters that do not change what a run computes: where its records go and whether a bar is drawn.
# how a run is carried out, not what it computes (an exam's request pacing and prices among them)
NOT_HASHED = ("run_dir", "progress", "diagnostics", "concurrency", "rpm", "tpm", "retries", "timeout", "price_in",
              "price_out", "plan_tokenizer")
# Parameters added to the kit after runs were made, with the default that those runs trained with: a manifest
# without one matches a configuration that has it at this value (an upgrade does not orphan old run folders).
LATER_DEFAULTS: dict[str, Any] = {"matrix_lr_scale": 1.0}
# Files the kit writes into a run folder before (or around) a run's manifest: a folder holding only these is
# the kit's, not the user's.
KIT_FILES = {"point.json", "log.txt", "params.yaml", "notebook.ipynb", "error.txt", "heartbeat.json", ".owner.lock"}


def hashed_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that define a configuration, as JSON has them (tuples as lists)."""
    return json.loads(json.dumps({k: v for k, v in params.items() if k not in NOT_HASHED}, default=str))


def params_hash(params: dict[str, Any]) -> str:
    """A short, stable hash of a run's parameters (JSON with sorted keys), less `NOT_HASHED`."""
    text = json.dumps(hashed_params(params), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def differences(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> str:
    """`lr: 0.002 → 0.004, seed: 0 → 1` for the parameters that differ (at most `limit`, then a count)."""
    old, new = hashed_params(old), hashed_params(new)
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k, "(unset)") != new.get(k, "(unset)")]
    shown = [f"{k}: {old.get(k, '(unset)')!r} → {new.get(k, '(unset)')!r}".replace("'", "") for k in keys[:limit]]
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(shown) + more


@dataclass(frozen=True)
class Claim:
    """What `claim` found: `new` (nothing there), `resume` (the same configuration, unfinished) or `finished`
    (the same configuration, ended ok); `moved_to` where `--overwrite` put the old contents."""

    state: str
    manifest: dict[str, Any] | None = None
    moved_to: Path | None = None


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "params" in data else None


def check_writable(folder: Path) -> None:
    """A one-line `RunDirError` when `folder` cannot be a run folder: it is a file, lies under a file, or its
    nearest existing parent is not writable (read-only file system, permissions)."""
    if folder.exists() and not folder.is_dir():
        raise RunDirError(f"run folder {folder} is a file, not a folder; pass another --run-dir")
    parent = folder
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RunDirError(f"run folder {folder} lies under {parent}, which is a file; pass another --run-dir")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunDirError(f"run folder {folder}: {parent} is not writable (read-only file system or permissions); "
                          f"pass another --run-dir or set $SPDF_RUNS_DIR")


def claim(run_dir: str | Path, experiment: str, params: dict[str, Any], overwrite: bool = False) -> Claim:
    """Decide whether `run_dir` may hold this run (see the module docstring); writes nothing unless `overwrite`
    moves another run's (or a foreign folder's) contents aside."""
    folder = Path(run_dir)
    check_writable(folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        return Claim("new")
    if (damage := damaged_file(folder)) is not None:
        return _claim_damaged(folder, damage, overwrite)
    manifest = _read_manifest(folder)
    if manifest is not None:
        same_experiment = manifest.get("experiment") == experiment
        stored = manifest.get("params_hash") or params_hash(manifest["params"])
        before = {**{k: v for k, v in LATER_DEFAULTS.items() if k in params}, **manifest["params"]}
        if same_experiment and params_hash(params) in (stored, params_hash(before)):
            return Claim("finished" if manifest.get("status") == "ok" else "resume", manifest)
        what = (f"another configuration ({differences(manifest['params'], params)})" if same_experiment else
                f"a run of {manifest.get('experiment')!r}, not {experiment!r}")
    elif not (names := {p.name for p in folder.iterdir() if not _temp(p.name) and not _sub_run(p)}) - KIT_FILES:
        # only what the kit writes before a manifest (a sweep point, a run that failed early), or runs the kit
        # made inside it first (spdf_finetune's `pretrain/` for `checkpoint: pretrain:<preset>`)
        return Claim("new")
    else:
        shown = sorted(names - KIT_FILES)
        what = f"files the kit did not write ({', '.join(shown[:3])}{', ...' if len(shown) > 3 else ''})"
    if not overwrite:
        raise RunDirError(f"run folder {folder} holds {what}; nothing was written: pass another --run-dir, or "
                          f"--overwrite to move its contents aside (they are kept, not deleted)")
    return Claim("new", moved_to=move_aside(folder))


def _claim_damaged(folder: Path, damage: tuple[Path, str], overwrite: bool) -> Claim:
    """A folder whose records do not all parse (`spdf_lib.damage`). A sweep point's (its `point.json` names the
    folder: the folder's name is the hash of its parameters) is resumed: the experiment goes on from its intact
    checkpoints and writes new records. Any other is refused, naming the damaged file: its configuration cannot
    be checked."""
    path, why = damage
    point = folder / "point.json"
    try:
        same_point = path != point and json.loads(point.read_text(encoding="utf-8")).get("id") == folder.name
    except (OSError, ValueError, AttributeError):
        same_point = False
    if same_point:  # the damaged file is kept aside, so that the resumed run's records parse again
        os.replace(path, path.with_name(f"{path.name}.damaged-{_stamp()}"))
        return Claim("resume")
    if not overwrite:
        raise RunDirError(f"run folder {folder}: {path.name} is damaged ({why}), so whose run it holds cannot be "
                          f"checked; nothing was written: pass another --run-dir, or --overwrite to move its "
                          f"contents aside (kept, not deleted)")
    return Claim("new", moved_to=move_aside(folder))


def _sub_run(path: Path) -> bool:
    """A folder holding a kit run's manifest: a run the kit made inside this one before it (a nested pre-training)."""
    return path.is_dir() and _read_manifest(path) is not None


def _temp(name: str) -> bool:
    """A temp file or folder of one of the kit's atomic writes (`.<name>.<random>.tmp`, `.model.tmp`)."""
    return name.startswith(".") and name.endswith(".tmp")


def move_aside(folder: Path) -> Path:
    """Rename `folder` to `<folder>.replaced-<UTC time>` (never deleting it) and leave an empty `folder`."""
    target = folder.with_name(f"{folder.name}.replaced-{_stamp()}")
    os.replace(folder, target)
    folder.mkdir()
    return target


def _stamp() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S-%f")
