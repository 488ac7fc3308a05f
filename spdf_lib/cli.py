"""The `spdf` command line: data, single notebook runs, sweeps, results, FLOP counts, exams and the reproduction.

Every subcommand validates its input before doing any work and reports a problem as one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import get_args

EXAMPLES = """examples:
  spdf run spdf_pretrain --params params/spdf_pretrain/tiny-s75.yaml -p tokens=2e6
  spdf run spdf_finetune -p checkpoint=runs/spdf_pretrain/<stamp>/model -p task=e2e
  spdf sweep params/sweeps/tiny.yaml --workers 2 --dry-run
  spdf sweep params/sweeps/smoke.yaml -p precision=fp32
  spdf results --experiment spdf_finetune
  spdf flops --model gpt3-xl --sparsity 0.75 --tokens 26.3e9
  spdf data prepare pile-uncopyrighted --tokenizer gpt2 --tokens 2.51e9
  spdf plan params/sweeps/tiny.yaml --workers 2
  spdf plan params/sweeps/paper.yaml --gpus 8 --gpu h100
  spdf exam --model smollm2 --limit 40
  spdf reproduce --preset tiny
"""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (`spdf flops: error: ...; see --help`), like the
    kit's other errors, rather than the usage text followed by the error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _cmd_data_list(args: argparse.Namespace) -> int:
    from spdf_lib.data.registry import REGISTRY, is_available

    print(f"{'dataset':<16} {'files':>5} {'available':>9}  license")
    for name, ds in REGISTRY.items():
        avail = sum(is_available(f) for f in ds.files)
        print(f"{name:<16} {len(ds.files):>5} {avail:>4}/{len(ds.files):<4}  {ds.license}")
    return 0


def _cmd_data_fetch(args: argparse.Namespace) -> int:
    from spdf_lib.data.registry import fetch

    if args.name == "curation-corpus" and not args.files:  # the summaries CSV, then the article bodies
        from spdf_lib.data.curation import cmd_fetch

        return cmd_fetch(args)
    for rel, path in fetch(args.name, args.files or None).items():
        print(f"{args.name}/{rel}\t{path}")
    return 0


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from spdf_lib.data.prepare import cmd_prepare

    return cmd_prepare(args)


def _cmd_plan(args: argparse.Namespace) -> int:
    from spdf_lib.params import parse_override
    from spdf_lib.sweep_cost import default_workers, machine_plan, plan_costs

    if args.gpus is not None or args.gpu is not None:
        print("\n".join(plan_costs(args.sweep, args.gpus or 8, args.gpu or "h100", args.mfu)[1]))
        return 0
    from spdf_lib import sweep

    overrides = dict(parse_override(p) for p in args.param)
    plan = sweep.plan_sweep(args.sweep, overrides=overrides)
    print("\n".join(machine_plan(plan, args.workers or default_workers(), recalibrate=args.recalibrate)[2]))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from spdf_lib.notebooks import run_notebook
    from spdf_lib.params import parse_override

    overrides = dict(parse_override(p) for p in args.param)
    out = run_notebook(args.notebook, params_file=args.params, overrides=overrides, run_dir=args.run_dir,
                       overwrite=args.overwrite)
    print(f"run folder (records, executed notebook): {out}")
    return 0


def _cmd_flops(args: argparse.Namespace) -> int:
    from spdf_lib import flops

    if (args.model is None) == (args.config is None):
        raise ValueError("give --model NAME or --config PATH/config.json (one of them); see --help")
    if args.config is not None:
        from spdf_lib.flops import load_config

        args.model = load_config(args.config)
    result = flops.count(args.model, args.tokens, args.sparsity, args.seq_len, args.convention)
    dense = flops.count(args.model, args.tokens, 0.0, args.seq_len, args.convention)["total"]
    args.model = args.config or args.model
    print(f"model {args.model}, sparsity {args.sparsity}, {args.tokens:.4g} tokens, convention {args.convention}")
    for term, v in result.items():
        if term != "total" and v:
            print(f"  {term:<12} {v:.4e}  ({v / result['total']:6.1%})")
    print(f"  {'total':<12} {result['total']:.4e} training FLOPs; {dense / result['total']:.3f}x fewer than dense")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from spdf_lib import results, sweep
    from spdf_lib.params import parse_override
    from spdf_lib.sweep_cost import default_workers

    torchrun = dict(parse_override(item) for item in args.torchrun)
    overrides = dict(parse_override(item) for item in args.param)
    plan = sweep.plan_sweep(args.sweep, root=args.root, stages=args.stage or None, torchrun=torchrun,
                            overrides=overrides)
    if args.dry_run:
        print("\n".join(sweep.format_plan(plan)))
        return 0
    workers = args.workers or default_workers()
    print(f"sweep {plan.name}: {len(plan.points)} points -> {plan.dir} ({workers} worker(s))")
    try:
        statuses = sweep.run_sweep(plan, workers=workers, progress=not args.no_progress)
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
    from spdf_lib.locations import runs_dir

    root = Path(args.root) if args.root else runs_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"runs folder {root} does not exist; pass --root or set $SPDF_RUNS_DIR to the "
                                f"folder your runs went to")
    table = results.load_results(root, sweep=args.sweep, experiment=args.experiment)
    if args.out:  # refused (suffix, a file the kit did not write) before anything is printed
        print(f"{len(table)} runs -> {results.write_results(table, args.out, args.overwrite)}", file=sys.stderr)
    if args.csv:
        print(table.to_csv(index=False), end="")
    else:
        print(results.format_table(table, None if args.all else results.varying_columns(table)))
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from spdf_lib import results, sweep
    from spdf_lib.locations import figures_dir
    from spdf_lib.notebooks import run_notebook
    from spdf_lib.params import PARAMS_DIR, parse_override
    from spdf_lib.report import export_html
    from spdf_lib.sweep_cost import default_workers, machine_plan

    overrides = dict(parse_override(item) for item in args.param)
    plan = sweep.plan_sweep(PARAMS_DIR / "sweeps" / f"{args.preset}.yaml", root=args.root,
                            overrides=overrides)  # validates every point
    workers = args.workers or default_workers()
    done = sum(sweep.point_status(p) == "done" for p in plan.points)
    print(f"reproduce ({args.preset}): {len(plan.points)} runs, {done} already done (re-running resumes); "
          f"records in {plan.dir}", flush=True)
    if not args.no_plan and done < len(plan.points):
        print("\n".join(machine_plan(plan, workers, todo_only=True)[2]), flush=True)
    try:
        statuses = sweep.run_sweep(plan, workers=workers)
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume ({plan.dir})", file=sys.stderr)
        return 130
    table = results.load_results(plan.dir)
    table = table[table["point"].isin({p.id for p in plan.points})]  # not runs left by other sweep files
    table_path = results.write_results(table, plan.dir / results.TABLE_NAME)
    figures = Path(args.figures or figures_dir())
    report_dir = plan.dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    print(f"drawing the report (its output: {report_dir / 'log.txt'}) ...", flush=True)
    with (report_dir / "log.txt").open("w", encoding="utf-8") as log:
        run_notebook("report", run_dir=report_dir, stream=log, overrides={
            "runs_root": str(plan.dir), "results_table": str(table_path), "figures_dir": str(figures)})
    html = export_html(report_dir / "notebook.ipynb", figures / "report.html")
    failed = sorted(pid for pid, st in statuses.items() if st not in ("ok", "done"))
    print(f"figures: {figures}/\nsummary: {figures / 'summary.md'}\nreport (HTML, no Jupyter needed): {html}"
          f"\nresults table: {table_path}\nexecuted report notebook: {report_dir / 'notebook.ipynb'}")
    if failed:
        print(f"{len(failed)} run(s) did not complete ({', '.join(failed[:5])}); see their error.txt and log.txt "
              f"under {plan.dir}", file=sys.stderr)
        return 1
    return 0


def _add_point_options(parser: argparse.ArgumentParser) -> None:
    """`--workers` and `-p KEY=VALUE`, the same for `spdf sweep`, `spdf plan` and `spdf reproduce`."""
    parser.add_argument("--workers", type=int, default=None,
                        help="points run at once, each in its own process (default: the cores this process may use)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="set a parameter in every point that has it, e.g. -p precision=fp32; repeatable")


def _add_data(sub) -> None:
    """`spdf data list|fetch|prepare`: the data registry."""
    from spdf_lib.data.curation import add_fetch_arguments
    from spdf_lib.data.prepare import add_prepare_arguments

    data = sub.add_parser("data", help="the data registry").add_subparsers(dest="data_command", required=True)
    data.add_parser("list", help="datasets, license, how many files are available offline").set_defaults(
        func=_cmd_data_list)
    f = data.add_parser("fetch", help="download (or take from $SPDF_DATA_MIRROR) and verify a dataset")
    f.add_argument("name", help="a dataset of `spdf data list`")
    f.add_argument("files", nargs="*", help="only these files (paths relative to the dataset)")
    f.set_defaults(func=_cmd_data_fetch)
    add_fetch_arguments(f)
    pr = data.add_parser("prepare", help="tokenize a streamed corpus into token shards (parallel, resumable)")
    add_prepare_arguments(pr)
    pr.set_defaults(func=_cmd_data_prepare)


def _add_run(sub) -> None:
    """`spdf run`: one experiment's notebook through papermill."""
    from spdf_lib.experiments import EXPERIMENTS

    r = sub.add_parser("run", help="run one experiment's notebook through papermill into runs/")
    r.add_argument("notebook", help=f"an experiment ({', '.join(EXPERIMENTS)}) or a path to a notebook")
    r.add_argument("--params", help="YAML parameter file (default: the experiment's smoke preset)")
    r.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="override one parameter")
    r.add_argument("--run-dir", help="output folder (default: runs/<experiment>/<timestamp>); the same "
                   "configuration resumes there, another one is refused")
    r.add_argument("--overwrite", action="store_true",
                   help="reuse a --run-dir of another configuration: its contents are moved aside, never deleted")
    r.set_defaults(func=_cmd_run)


def _add_sweep(sub) -> None:
    """`spdf sweep`: a sweep file's points."""
    s = sub.add_parser("sweep", help="run a sweep file's points (papermill or torchrun), resumable")
    s.add_argument("sweep", help="sweep file, e.g. params/sweeps/smoke.yaml")
    _add_point_options(s)
    s.add_argument("--dry-run", action="store_true", help="list the points, their ids and status; run nothing")
    s.add_argument("--stage", action="append", default=[], help="only this stage (and what it needs); repeatable")
    s.add_argument("--root", help="runs folder (default: runs/ or $SPDF_RUNS_DIR)")
    s.add_argument("--torchrun", action="append", default=[], metavar="KEY=VALUE",
                   help="torchrun option for every torchrun stage, e.g. node_rank=1 or nnodes=2; repeatable")
    s.add_argument("--no-progress", action="store_true", help="no progress bar (one line per point remains)")
    s.set_defaults(func=_cmd_sweep)


def _add_results(sub) -> None:
    """`spdf results`: the table of run records."""
    from spdf_lib.experiments import EXPERIMENTS

    rs = sub.add_parser("results", help="print the table of all run records (parameters and metrics)")
    rs.add_argument("--root", help="runs folder (default: runs/ or $SPDF_RUNS_DIR)")
    rs.add_argument("--sweep", help="only this sweep's points")
    rs.add_argument("--experiment", choices=list(EXPERIMENTS), help="only this experiment's runs")
    rs.add_argument("--all", action="store_true", help="print every column, not only those that differ")
    rs.add_argument("--csv", action="store_true", help="print CSV instead of an aligned table")
    rs.add_argument("--out", help="also write the table here (.parquet or .csv, by its suffix)")
    rs.add_argument("--overwrite", action="store_true",
                    help="--out may replace a file the kit did not write: it is moved aside, never deleted")
    rs.set_defaults(func=_cmd_results)


def _add_flops(sub) -> None:
    """`spdf flops`: training FLOPs of one model."""
    from spdf_lib.flops import CONVENTIONS
    from spdf_lib.model_sizes import ModelSize

    fl = sub.add_parser("flops", help="training FLOPs of a model size at a sparsity and token budget")
    fl.add_argument("--model", choices=get_args(ModelSize), help="a named model size")
    fl.add_argument("--config", help="a Hugging Face config.json (GPT-2, Llama-family, GPT-NeoX) instead of --model")
    fl.add_argument("--sparsity", type=float, default=0.0,
                    help="static sparsity of the six SPDF matrices, in [0, 1) (default 0: dense)")
    fl.add_argument("--tokens", type=float, required=True, help="training tokens, e.g. 26.3e9")
    fl.add_argument("--seq-len", type=int, default=None, help="context length (default: the model's)")
    fl.add_argument("--convention", default="spdf", choices=list(CONVENTIONS),
                    help="which published FLOP formula (default: SPDF's; see spdf_lib.flops)")
    fl.set_defaults(func=_cmd_flops)


def _add_plan(sub) -> None:
    """`spdf plan`: what a sweep will cost."""
    from spdf_lib.sweep_cost import PEAK_BF16

    pl = sub.add_parser("plan", help="what a sweep will cost: wall time on this machine, or GPU-hours on GPUs")
    pl.add_argument("sweep", help="sweep file, e.g. params/sweeps/tiny.yaml")
    _add_point_options(pl)
    pl.add_argument("--gpus", type=int, default=None, help="plan for this many GPUs instead (default with --gpu: 8)")
    pl.add_argument(
        "--gpu", default=None, choices=list(PEAK_BF16), help="plan for this GPU type (default with --gpus: h100)"
    )
    pl.add_argument("--mfu", type=float, default=None,
                    help="model FLOPs utilisation (default: the measured one for that GPU, else an assumption)")
    pl.add_argument("--recalibrate", action="store_true",
                    help="measure this machine's unit costs again (on quiet cores) instead of using the cached ones")
    pl.set_defaults(func=_cmd_plan)


def _add_reproduce(sub) -> None:
    """`spdf reproduce`: a preset's whole sweep, then the report."""
    rp = sub.add_parser("reproduce", help="run a preset's whole sweep, then the report (resumes when re-run)")
    rp.add_argument("--preset", default="tiny", choices=["smoke", "tiny", "paper"],
                    help="params/sweeps/<preset>.yaml (default: tiny, the CPU study)")
    _add_point_options(rp)
    rp.add_argument("--no-plan", action="store_true", help="do not print the plan (and skip its calibration)")
    rp.add_argument("--root", help="runs folder (default: runs/ or $SPDF_RUNS_DIR)")
    rp.add_argument("--figures", help="figures folder (default: figures/ or $SPDF_FIGURES_DIR)")
    rp.set_defaults(func=_cmd_reproduce)


def build_parser() -> argparse.ArgumentParser:
    """The `spdf` parser: one builder per subcommand, in the order `spdf --help` lists them."""
    from spdf_lib.exams.cli import register as _add_exam  # spdf exam

    p = Parser(prog="spdf", description=__doc__.splitlines()[0], epilog=EXAMPLES,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_data, _add_run, _add_sweep, _add_results, _add_flops, _add_exam, _add_plan, _add_reproduce):
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from spdf_lib.errors import report_errors

    return report_errors(f"spdf {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
