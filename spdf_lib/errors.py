"""User errors as one line: what every entry point (the `spdf` CLI, `python -m spdf_lib.experiments`, the sweep
worker) wraps its work in. Below the CLI and the experiment table, so that both can use it without importing
each other.

Exit codes: 0 done; 2 a user error (bad parameters, data, run folder, a missing or corrupt file, a full or
read-only disk); 3 training diverged (a non-finite loss); 130 interrupted (Ctrl-C or SIGTERM; re-running the
same command resumes). Anything else is a bug and keeps its traceback (exit code 1).
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable

from spdf_lib.scrub import scrub

EXIT_USER, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130


class RunDirError(ValueError):
    """A run folder that cannot be used: another configuration's, not the kit's, a file, not writable."""


class DivergedError(RuntimeError):
    """Training met a non-finite loss; `step` is the optimizer step it happened at (1-based, as logged)."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class CorruptFileError(ValueError):
    """A file the kit wrote (a checkpoint, a cached corpus) is truncated or damaged; the message names it."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same handlers write the run's status."""


# A user error: bad parameters, data, sweep file, run folder, a missing file (ParamsError, DataError and
# SweepError are ValueErrors or RuntimeErrors). OSErrors are user errors only for the errnos below (a full,
# read-only or missing disk location); another OSError is a bug and keeps its traceback.
USER_ERRORS = (ValueError, RuntimeError, FileNotFoundError)
USER_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system",
               errno.ENOTDIR: "a path component is a file, not a folder", errno.EACCES: "permission denied",
               errno.EDQUOT: "disk quota exceeded", errno.EISDIR: "is a folder, not a file",
               errno.ENOENT: "no such file or folder", errno.EEXIST: "already exists"}
# The same errors by name, as they arrive from inside an executed notebook (papermill gives the name only).
USER_ERROR_NAMES = {"ParamsError", "DataError", "SweepError", "RunDirError", "CorruptFileError", "ValueError",
                    "FileNotFoundError", "NotADirectoryError", "IsADirectoryError", "PermissionError",
                    "SafetensorError", "OSError", "HFValidationError"}


def os_error_line(e: OSError) -> str:
    """One line for an OSError of the disk: what happened, where, and what to do."""
    where = f" {e.filename}" if e.filename else ""
    what = USER_ERRNOS.get(e.errno or 0, e.strerror or str(e))
    fix = {errno.ENOSPC: "free some space or pass another --run-dir / $SPDF_RUNS_DIR",
           errno.EDQUOT: "free some space or pass another --run-dir / $SPDF_RUNS_DIR",
           errno.EROFS: "pass a writable --run-dir or set $SPDF_RUNS_DIR",
           errno.EACCES: "pass a writable --run-dir or set $SPDF_RUNS_DIR",
           errno.ENOTDIR: "pass a --run-dir whose parents are folders"}.get(e.errno or 0)
    return f"cannot write or read{where}: {what}" + (f"; {fix}" if fix else "")


def is_user_os_error(e: BaseException) -> bool:
    return isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and e.errno in USER_ERRNOS


def report_errors(prog: str, func: Callable[[], int]) -> int:
    """Run a command; a user error becomes one line on stderr (`prog: error: ...`) and exit code 2, a diverged
    run exit code 3, Ctrl-C or SIGTERM one line and exit code 130, instead of a traceback."""
    try:
        return func()
    except DivergedError as e:
        print(f"{prog}: error: {scrub(e)}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt as e:
        step = getattr(e, "step", None)
        at = f" at step {step}" if step is not None else ""
        print(f"{prog}: interrupted{at}; re-run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        if not is_user_os_error(e) and not isinstance(e, FileNotFoundError):
            raise
        line = str(e) if isinstance(e, FileNotFoundError) and not e.errno else os_error_line(e)
        print(f"{prog}: error: {scrub(line)}", file=sys.stderr)
        return EXIT_USER
    except USER_ERRORS as e:
        print(f"{prog}: error: {scrub(e)}", file=sys.stderr)
        return getattr(e, "exit_code", EXIT_USER)
