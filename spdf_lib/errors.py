"""User errors as one line: what every entry point (the `spdf` CLI, `python -m spdf_lib.experiments`, the sweep
worker) wraps its work in. Below the CLI and the experiment table, so that both can use it without importing
each other."""

from __future__ import annotations

import sys
from collections.abc import Callable

# A user error: bad parameters, data, sweep file, run folder, a missing file (ParamsError, DataError and
# SweepError are ValueErrors). Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, RuntimeError, FileNotFoundError)


def report_errors(prog: str, func: Callable[[], int]) -> int:
    """Run a command; a user error becomes one line on stderr (`prog: error: ...`) and exit code 2, instead of a
    traceback."""
    try:
        return func()
    except USER_ERRORS as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
