"""Run the benchmarks: `python -m bench [substring ...]`.

Each module `bench/bench_<name>.py` defines `run() -> list[Result]`; one that sets `ON_REQUEST = True` (the
hour-long `reproduce`) runs only when named. A `Result` holds both sides measured in the
same run (baseline and candidate), the unit, which direction is better, and an optional target ratio. The
runner prints one table with each pair and their ratio, and writes it to `runs/bench/<timestamp>.json`.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

from bench.common import Result
from spdf_lib.jsonio import write_json
from spdf_lib.locations import runs_dir
from spdf_lib.provenance import now


def discover() -> list[str]:
    return sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: python -m bench [substring ...]\nbenchmarks: {', '.join(discover())}")
        return 0
    names = [n for n in discover() if any(a in n for a in argv) or (
        not argv and not getattr(importlib.import_module(f"bench.{n}"), "ON_REQUEST", False))]
    if not names:
        print(f"error: no benchmark matches {argv}; choose from {', '.join(discover())}", file=sys.stderr)
        return 2
    results: list[Result] = []
    for name in names:
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        results += importlib.import_module(f"bench.{name}").run()
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    print()
    print(f"{'benchmark':<44} {'baseline':>22} {'candidate':>22} {'ratio':>7}  target")
    for r in results:
        print(r.line())
    out = runs_dir() / "bench" / f"{now().replace(':', '')}.json"
    write_json(out, [r.as_dict() for r in results])
    print(f"\nwritten to {out}")
    return 0 if all(r.meets_target() in (True, None) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
