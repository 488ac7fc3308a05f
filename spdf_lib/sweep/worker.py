"""A sweep's papermill point: `python -m spdf_lib.sweep.worker <point dir>` executes the notebook named in the
point's `point.json` with its parameters, through the kit's one notebook executor, streaming the kernel's output
(progress bars included) to this process's output, which the scheduler writes to the point's `log.txt`."""

from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path

from spdf_lib.atomic import atomic_write_text
from spdf_lib.jsonio import read_json
from spdf_lib.scrub import scrub

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run_point(point_dir: str | Path) -> int:
    """Execute the notebook of the papermill point in `point_dir` (its point.json); 0 on success. On failure
    the reason goes to `error.txt` (first line: the error) and the exit code is 1; Ctrl-C gives 130."""
    from papermill.exceptions import PapermillExecutionError

    from spdf_lib.notebooks import execute, settle

    point_dir = Path(point_dir)
    spec = read_json(point_dir / "point.json")
    try:
        execute(spec["notebook"], point_dir / "notebook.ipynb", spec["params"], stream=sys.stdout)
        return 0
    except KeyboardInterrupt:  # the kernel (a session of its own) is gone: its manifest may still say running
        settle(point_dir, "interrupted", "interrupted (the sweep was stopped)")
        return 130
    except PapermillExecutionError as e:
        line = f"{e.ename}: {e.evalue} (notebook cell {e.exec_count})"
        detail = _ANSI.sub("", "\n".join(e.traceback))
    except Exception as e:  # the point fails, with its reason on record; the sweep goes on
        line = f"{type(e).__name__}: {e}".splitlines()[0]
        detail = traceback.format_exc()
    line, detail = scrub(line), scrub(detail)  # error texts may quote a key
    settle(point_dir, "failed", line)
    atomic_write_text(point_dir / "error.txt", f"{line}\n\n{detail}\n")
    print(line, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(run_point(sys.argv[1]))
