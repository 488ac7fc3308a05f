"""Nothing overwritten without `--overwrite`: a file the kit writes into a folder the user named (an lm-eval
export, a results table) is recorded, with its SHA-256, in that folder's `.spdf-written.json`. Writing there again
replaces only files the record still matches (the kit's own, unedited). Any other existing file (the user's, or
one of the kit's that was edited since) is refused in one line, or with `--overwrite` moved aside as
`<name>.replaced-<UTC time>` (never deleted), as `spdf run --overwrite` does with a run folder.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path

from spdf_lib.atomic import atomic_write_bytes, atomic_write_text
from spdf_lib.errors import RunDirError

RECORD = ".spdf-written.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record(folder: Path) -> dict[str, str]:
    try:
        data = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def make_room(path: str | Path, overwrite: bool = False, flag: str = "--overwrite") -> Path | None:
    """Check that `path` may be (re)written: absent, or a file the kit wrote there and nobody edited. Otherwise a
    one-line `RunDirError`, or with `overwrite` the file is moved aside; returns where it went (None: nothing
    moved)."""
    path = Path(path)
    if path.is_symlink() or path.exists() and not path.is_file():
        raise RunDirError(f"{path} is {'a link' if path.is_symlink() else 'a folder'}, not a file the kit wrote; "
                          f"nothing was written: name another path")
    if not path.exists() or _record(path.parent).get(path.name) == _sha256(path):
        return None
    if not overwrite:
        raise RunDirError(f"{path} exists and the kit did not write it (or it was edited since); nothing was "
                          f"written: name another path, or pass {flag} to move it aside (kept, not deleted)")
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S-%f")
    target = path.with_name(f"{path.name}.replaced-{stamp}")
    os.replace(path, target)
    return target


def write_owned(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically and record it as the kit's (call `make_room` first)."""
    path = Path(path)
    atomic_write_bytes(path, data)
    record = {**_record(path.parent), path.name: hashlib.sha256(data).hexdigest()}
    atomic_write_text(path.parent / RECORD, json.dumps(record, indent=2, sort_keys=True))
