"""`spdf sweep` and `spdf results`: the command-line side of `spdf_lib.sweep` and `spdf_lib.results`.

`register(subparsers)` adds both subcommands to the `spdf` parser; `python -m spdf_lib.sweep_cli` runs them
on their own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_sweep(args: argparse.Namespace) -> int:
    from spdf_lib import results, sweep
    from spdf_lib.params import parse_override

    torchrun = dict(parse_override(item) for item in args.torchrun)
    plan = sweep.plan_sweep(args.sweep, root=args.root, stages=args.stage or None, torchrun=torchrun)
    if args.dry_run:
        print("\n".join(sweep.format_plan(plan)))
        return 0
    print(f"sweep {plan.name}: {len(plan.points)} points -> {plan.dir} ({args.workers} worker(s))")
    try:
        statuses = sweep.run_sweep(plan, workers=args.workers, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"sweep {plan.name}: interrupted; finished points are kept, re-run the same command to resume",
              file=sys.stderr)
        return 130
    table = results.load_results(plan.dir)
    if "point" in table.columns:  # not the points of earlier versions of the file
        table = table[table["point"].isin(list(plan.by_id))]
    out = results.write_results(table, plan.dir / results.TABLE_NAME)
    counts = {s: list(statuses.values()).count(s) for s in dict.fromkeys(statuses.values())}
    print(f"sweep {plan.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f"; table: {out}")
    bad = [pid for pid, s in statuses.items() if s not in ("ok", "done")]
    if bad:
        print(f"sweep {plan.name}: {len(bad)} point(s) did not complete; see {plan.dir}/<point>/error.txt "
              f"and re-run to retry them", file=sys.stderr)
        return 1
    return 0


def _cmd_results(args: argparse.Namespace) -> int:
    from spdf_lib import results
    from spdf_lib.records import runs_dir

    root = Path(args.root) if args.root else runs_dir()
    table = results.load_results(root, sweep=args.sweep, experiment=args.experiment)
    if args.csv:
        print(table.to_csv(index=False), end="")
    else:
        cols = None if args.all else results.varying_columns(table)
        print(results.format_table(table, cols))
    if args.out or (args.sweep is None and args.experiment is None and len(table)):
        out = results.write_results(table, args.out or root / results.TABLE_NAME)
        print(f"{len(table)} runs -> {out}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `sweep` and `results` to the `spdf` command's subparsers."""
    s = subparsers.add_parser("sweep", help="run a sweep file's points (papermill or torchrun), resumable")
    s.add_argument("sweep", help="sweep file, e.g. params/sweeps/smoke.yaml")
    s.add_argument("--workers", type=int, default=1, help="points run at once, each in its own process")
    s.add_argument("--dry-run", action="store_true", help="list the points, their ids and status; run nothing")
    s.add_argument("--stage", action="append", default=[], help="only this stage (and what it needs); repeatable")
    s.add_argument("--root", help="runs folder (default: runs/ or $SPDF_RUNS_DIR)")
    s.add_argument("--torchrun", action="append", default=[], metavar="KEY=VALUE",
                   help="torchrun option for every torchrun stage, e.g. node_rank=1 or nnodes=2; repeatable")
    s.add_argument("--no-progress", action="store_true", help="no progress bar (one line per point remains)")
    s.set_defaults(func=_cmd_sweep)

    r = subparsers.add_parser("results", help="the table of all run records (parameters and metrics)")
    r.add_argument("--root", help="runs folder (default: runs/ or $SPDF_RUNS_DIR)")
    r.add_argument("--sweep", help="only this sweep's points")
    r.add_argument("--experiment", help="only this experiment's runs")
    r.add_argument("--all", action="store_true", help="print every column, not only those that differ")
    r.add_argument("--csv", action="store_true", help="print CSV instead of an aligned table")
    r.add_argument("--out", help="write the table here (.parquet or .csv); default <root>/results.parquet "
                                 "when no filter is given")
    r.set_defaults(func=_cmd_results)


def main(argv: list[str] | None = None) -> int:
    """`python -m spdf_lib.sweep_cli sweep|results ...` (the same as `spdf sweep|results ...`)."""
    parser = argparse.ArgumentParser(prog="spdf")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"spdf {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
