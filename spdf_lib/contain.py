"""Folders stay inside their roots: a path the kit builds from a name it was given (a sweep's name, a point id,
a dataset name, a file of an export) must resolve strictly inside the folder it belongs to. `.`, `..`, an
absolute path, a path through `..`, or a symlink that leads out are one-line errors, before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from spdf_lib.errors import RunDirError


def inside(root: str | Path, name: str, what: str) -> Path:
    """`root / name`, checked to lie strictly inside `root` (symlinks followed); a `RunDirError` naming `what`
    (e.g. "sweep name") otherwise."""
    root = Path(root)
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or any(p in (".", "..") for p in parts) or name in (".", ".."):
        raise RunDirError(f"{what} {name!r} must be a plain name inside {root} (not empty, '.', '..' or an "
                          f"absolute path); rename it")
    path = root / name
    real_root, real = root.resolve(), path.resolve()
    if real == real_root or not real.is_relative_to(real_root):
        raise RunDirError(f"{what} {name!r}: {path} leads to {real}, outside {real_root} (a symlink?); nothing "
                          f"was written: remove the link or rename it")
    return path
