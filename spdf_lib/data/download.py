"""Resumable, verified HTTP downloads (the registry's transport).

A download streams into a `.part` file under `$SPDF_CACHE/partial/` (outside the data cache, so the cache only
ever holds complete, verified files). An interrupted download - a killed process, a dropped connection, a
server that went away - leaves its `.part` behind, and the next attempt asks the server for the rest with an
HTTP `Range: bytes=N-` request, so a 2 GB file that stopped at 1.5 GB costs 0.5 GB more, not 2 GB. A server
that ignores the range (HTTP 200 instead of 206) gets the file from the start. The bytes already on disk are
hashed again from disk (no network), the rest while it streams; the complete file is checked against its
expected size and checksum and only then renamed into the cache (one `os.replace`). A file that does not verify
is deleted, `.part` included: resuming cannot repair wrong bytes.

Resuming needs no `If-Range` validator because every registry URL is pinned to an immutable revision, and the
final checksum catches anything else. A lock file serialises concurrent downloads of the same file (several DDP
ranks, two notebooks).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 20
MIRROR_ENV = "SPDF_DATA_MIRROR"


class DataError(RuntimeError):
    """A data file cannot be obtained or does not verify; the message says which file and how to fix it.

    (Defined here, the lowest layer, and re-exported by `spdf_lib.data.registry`, where callers import it.)"""


@dataclass(frozen=True)
class Expected:
    """What the downloaded bytes must be; `None` fields are not checked."""

    size: int | None = None
    sha256: str | None = None
    git_blob: str | None = None
    source: str = "the registry"  # where the checksum comes from, for error messages


@dataclass(frozen=True)
class Downloaded:
    """A verified download: its SHA-256 and size, and how many bytes this call fetched (resume: fewer)."""

    sha256: str
    size: int
    fetched: int


class Hasher:
    """SHA-256 (always) and git blob id (needs the total size up front, as git hashes `blob <size>\\0` first)."""

    def __init__(self, total: int | None):
        self.sha256 = hashlib.sha256()
        self.git = hashlib.sha1(f"blob {total}\0".encode()) if total is not None else None
        self.n = 0

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        if self.git is not None:
            self.git.update(chunk)
        self.n += len(chunk)


def hash_file(path: Path, total: int | None = None) -> Hasher:
    """A `Hasher` fed with the file at `path` (its git blob id uses the file's own size)."""
    h = Hasher(path.stat().st_size if total is None else total)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h


def check(label: str, h: Hasher, expected: Expected, where: str) -> None:
    """Raise `DataError` unless the bytes hashed into `h` are what `expected` says."""
    if expected.size is not None and h.n != expected.size:
        raise DataError(f"{label} from {where}: size {h.n} bytes, expected {expected.size}; the copy is "
                            f"truncated or wrong")
    if expected.sha256 and h.sha256.hexdigest() != expected.sha256:
        raise DataError(f"{label} from {where}: SHA-256 {h.sha256.hexdigest()} does not match "
                            f"{expected.source}'s {expected.sha256}")
    if expected.git_blob:
        git = h.git.hexdigest() if h.git is not None else None
        if git != expected.git_blob:
            raise DataError(f"{label} from {where}: git blob id {git} does not match {expected.source}'s "
                                f"{expected.git_blob}")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created) while the block runs: one process at a time per file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _open(url: str, offset: int, timeout: float):
    """The HTTP response for `url` from byte `offset` on (a Range request when offset > 0)."""
    headers = {"User-Agent": "spdf-kit"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)  # noqa: S310


def _offline_hint() -> str:
    return (f"offline? set {MIRROR_ENV} to a folder laid out like shared/data or to a base URL that serves it; "
            f"run again to resume")


def download(url: str, dest: Path, part: Path, expected: Expected, label: str, timeout: float = 60.0,
             progress: bool = True) -> Downloaded:
    """Download `url` into `dest`, resuming from `part`; verify against `expected`; rename atomically.

    `label` names the file in messages (its registry path). Raises `DataError` with one line that says what
    happened and how to go on; an interrupted transfer keeps `part` for the next call to resume.
    """
    with locked(part.with_name(part.name + ".lock")):
        if dest.is_file():  # another process finished it while this one waited for the lock
            h = hash_file(dest, expected.size)
            check(label, h, expected, str(dest))
            return Downloaded(h.sha256.hexdigest(), h.n, 0)
        # The (empty) lock file stays: unlinking it would let a third process lock a new inode meanwhile.
        return _download_locked(url, dest, part, expected, label, timeout, progress)


def _download_locked(url: str, dest: Path, part: Path, expected: Expected, label: str, timeout: float,
                     progress: bool) -> Downloaded:
    part.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    if expected.size is not None and offset > expected.size:
        part.unlink()
        offset = 0
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset and offset == expected.size:
            resp = None  # the .part already holds every byte: only verification is left
        elif e.code == 416:
            part.unlink(missing_ok=True)  # the .part is longer than the file: start again
            return _download_locked(url, dest, part, expected, label, timeout, progress)
        else:
            raise DataError(f"{label}: HTTP {e.code} from {url}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DataError(f"cannot download {label} from {url} ({getattr(e, 'reason', e)}); "
                            f"{_offline_hint()}") from None

    total = expected.size
    fetched = 0
    if resp is not None:
        with resp:
            if offset and resp.status != 206:  # the server ignored the range: take the whole file again
                offset = 0
            if offset:
                m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != offset:
                    raise DataError(f"{label}: {url} answered the range request for bytes {offset}- with "
                                        f"Content-Range {resp.headers.get('Content-Range')!r}")
                if m.group(2) != "*":
                    total = int(m.group(2))
            elif resp.headers.get("Content-Length"):
                total = int(resp.headers["Content-Length"])
            fetched = _stream(resp, part, offset, total, label, url, progress)
    h = hash_file(part, total if total is not None else part.stat().st_size)
    try:
        check(label, h, expected, url)
    except DataError:
        part.unlink(missing_ok=True)  # wrong bytes cannot be repaired by resuming
        raise
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, dest)
    return Downloaded(h.sha256.hexdigest(), h.n, fetched)


def _stream(resp, part: Path, offset: int, total: int | None, label: str, url: str, progress: bool) -> int:
    """Append the response body to `part` (truncating it first when `offset` is 0); returns the bytes read."""
    n = 0
    bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
               disable=None if progress else True, leave=False)
    try:
        with open(part, "ab" if offset else "wb") as out:
            while True:
                try:
                    chunk = resp.read1(CHUNK)  # what has arrived, up to CHUNK: a kill loses little
                except (OSError, ValueError, urllib.error.URLError) as e:  # reset, timeout, incomplete read
                    out.flush()
                    raise DataError(f"download of {label} from {url} stopped after {offset + n} of "
                                        f"{total if total is not None else '?'} bytes ({e}); run again to resume "
                                        f"from there") from None
                if not chunk:
                    break
                out.write(chunk)
                n += len(chunk)
                bar.update(len(chunk))
    finally:
        bar.close()
    if total is not None and offset + n < total:
        # http.client returns b"" when the server closes early: the connection dropped before the end.
        raise DataError(f"download of {label} from {url} stopped after {offset + n} of {total} bytes (the "
                            f"connection closed); run again to resume from there")
    return n


def remote_size(url: str, timeout: float = 20.0) -> int | None:
    """The size the server announces for `url` (a HEAD request), or None when it cannot be asked."""
    try:
        req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "spdf-kit"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            length = resp.headers.get("Content-Length")
            return int(length) if length else None
    except (urllib.error.URLError, OSError, ValueError):
        return None
