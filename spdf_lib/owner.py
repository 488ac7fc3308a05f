"""One owner at a time: a process that writes into a run folder or a sweep folder first holds its lock,
`<folder>/.owner.lock` (an exclusive `flock`, with the holder's pid, host and start time written inside). A second
`spdf run` into the same folder, or a second sweep of the same root, is refused at once in one line naming the
holder, before a kernel or a point starts. The kernel frees the lock when the process ends, however it ends
(killed included), so there is no stale lock to clean up.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from spdf_lib.errors import RunDirError

LOCK = ".owner.lock"


class Owner:
    """The lock on `folder` held by this process until `release()` (or its end)."""

    def __init__(self, folder: str | Path, what: str, fix: str):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = _holder(self._fd)
            self.release()
            raise RunDirError(f"{what} {self.folder} is in use by another process ({held}); {fix}") from None
        import datetime as _dt

        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                        "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing frees the flock
            self._fd = None

    def __enter__(self) -> Owner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {data.get('pid')} on {data.get('host')} since {data.get('since')}"
    except (OSError, ValueError):
        return "its holder is starting"
