"""The `spdf` command line: data, single notebook runs, FLOP counts, sweeps, results and the reproduction.

Every subcommand validates its input before doing any work and reports problems as one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spdf_lib import sweep_cli
from spdf_lib.exams.cli import register as register_exam


def _cmd_data_list(args: argparse.Namespace) -> int:
    from spdf_lib.data.registry import REGISTRY, is_available

    print(f"{'dataset':<16} {'files':>5} {'available':>9}  license")
    for name, ds in REGISTRY.items():
        avail = sum(is_available(f) for f in ds.files)
        print(f"{name:<16} {len(ds.files):>5} {avail:>4}/{len(ds.files):<4}  {ds.license}")
    return 0


def _cmd_data_fetch(args: argparse.Namespace) -> int:
    from spdf_lib.data.registry import fetch

    for rel, path in fetch(args.name, args.files or None).items():
        print(f"{args.name}/{rel}\t{path}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from spdf_lib.notebooks import run_notebook
    from spdf_lib.params import parse_override

    overrides = dict(parse_override(p) for p in args.param)
    out = run_notebook(args.notebook, params_file=args.params, overrides=overrides, run_dir=args.run_dir)
    print(f"executed notebook and records: {out}")
    return 0


def _cmd_flops(args: argparse.Namespace) -> int:
    from spdf_lib import flops

    seq_len = args.seq_len
    result = flops.count(args.model, args.tokens, args.sparsity, seq_len, args.convention)
    dense = flops.count(args.model, args.tokens, 0.0, seq_len, args.convention)["total"]
    print(f"model {args.model}, sparsity {args.sparsity}, {args.tokens:.4g} tokens, convention {args.convention}")
    for term, v in result.items():
        if term != "total" and v:
            print(f"  {term:<12} {v:.4e}  ({v / result['total']:6.1%})")
    print(f"  {'total':<12} {result['total']:.4e} training FLOPs; {dense / result['total']:.3f}x fewer than dense")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from spdf_lib import results, sweep
    from spdf_lib.notebooks import run_notebook
    from spdf_lib.params import PARAMS_DIR
    from spdf_lib.records import figures_dir

    plan = sweep.plan_sweep(PARAMS_DIR / "sweeps" / f"{args.preset}.yaml", root=args.root)  # validates every point
    done = sum(sweep.point_status(p) == "done" for p in plan.points)
    print(f"reproduce ({args.preset}): {len(plan.points)} runs, {done} already done (re-running resumes); "
          f"records in {plan.dir}", flush=True)
    try:
        statuses = sweep.run_sweep(plan, workers=args.workers)
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume ({plan.dir})", file=sys.stderr)
        return 130
    table = results.load_results(plan.dir)
    table = table[table["point"].isin({p.id for p in plan.points})]  # not runs left by other sweep files
    table_path = results.write_results(table, plan.dir / results.TABLE_NAME)
    figures = Path(args.figures or figures_dir())
    print("drawing the report ...", flush=True)
    run_notebook("report", run_dir=plan.dir / "report", overrides={
        "runs_root": str(plan.dir), "results_table": str(table_path), "figures_dir": str(figures)})
    failed = sorted(pid for pid, st in statuses.items() if st not in ("ok", "done"))
    print(f"figures: {figures}/\nsummary: {figures / 'summary.md'}\nresults table: {plan.dir / results.TABLE_NAME}"
          f"\nexecuted report notebook: {plan.dir / 'report' / 'notebook.ipynb'}")
    if failed:
        print(f"{len(failed)} run(s) did not complete ({', '.join(failed[:5])}); see their error.txt and log.txt "
              f"under {plan.dir}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spdf", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="the data registry").add_subparsers(dest="data_command", required=True)
    data.add_parser("list", help="datasets, license, how many files are available offline").set_defaults(
        func=_cmd_data_list)
    f = data.add_parser("fetch", help="download (or take from $SPDF_DATA_MIRROR) and verify a dataset")
    f.add_argument("name")
    f.add_argument("files", nargs="*", help="only these files (paths relative to the dataset)")
    f.set_defaults(func=_cmd_data_fetch)

    r = sub.add_parser("run", help="run one notebook through papermill into runs/")
    r.add_argument("notebook", help="notebook name or path, e.g. spdf_pretrain or notebooks/spdf_pretrain.ipynb")
    r.add_argument("--params", help="YAML parameter file (default: the notebook's smoke preset)")
    r.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="override one parameter")
    r.add_argument("--run-dir", help="output folder (default: runs/<notebook>/<timestamp>)")
    r.set_defaults(func=_cmd_run)

    fl = sub.add_parser("flops", help="training FLOPs of a model size at a sparsity and token budget")
    fl.add_argument("--model", required=True, help="size name: nano, micro, mini, small, gpt2-small, gpt3-xl, ...")
    fl.add_argument("--sparsity", type=float, default=0.0)
    fl.add_argument("--tokens", type=float, required=True)
    fl.add_argument("--seq-len", type=int, default=None, help="default: the model's context length")
    fl.add_argument("--convention", default="spdf")
    fl.set_defaults(func=_cmd_flops)

    sweep_cli.register(sub)  # spdf sweep, spdf results
    register_exam(sub)  # spdf exam

    rp = sub.add_parser("reproduce", help="run a preset's whole sweep, then the report (resumes when re-run)")
    rp.add_argument("--preset", default="tiny", help="params/sweeps/<preset>.yaml: smoke, tiny or paper")
    rp.add_argument("--workers", type=int, default=2, help="runs at once, each in its own process")
    rp.add_argument("--root", help="runs folder (default: runs/ or $SPDF_RUNS_DIR)")
    rp.add_argument("--figures", help="figures folder (default: figures/ or $SPDF_FIGURES_DIR)")
    rp.set_defaults(func=_cmd_reproduce)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, FileNotFoundError) as e:  # DataError, ParamsError are among these
        print(f"spdf {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
