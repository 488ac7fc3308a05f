"""`spdf exam`: evaluate a model on the certification exams and print the headline table."""

from __future__ import annotations

import argparse


def _cmd_exam(args: argparse.Namespace) -> int:
    from spdf_lib import params as P
    from spdf_lib.exams.report import format_table
    from spdf_lib.records import new_run_dir, read_json

    overrides = dict(P.parse_override(x) for x in args.param)
    for key in ("model", "backend", "mode", "limit", "dtype"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.no_circular:
        overrides["circular"] = False
    p = P.load("exams", args.params, overrides)  # validated before any data or model is touched

    from spdf_lib.exams.run import run_exam

    run_dir = args.run_dir or p.run_dir or str(new_run_dir("exams"))
    results = run_exam(p, run_dir)
    import pandas as pd

    table = pd.read_csv(f"{run_dir}/headline.csv")
    report = read_json(f"{run_dir}/data_report.json")
    print(f"model {p.model} ({p.backend}, {p.mode}{', CircularEval' if p.circular else ''}), "
          f"pass = score {p.pass_rule} {p.pass_threshold:g}")
    print(f"data: {report['rows_loaded']} rows, {report['rows_scored']} scorable, "
          f"excluded {report['excluded']}; selected {report['selected_questions']} questions in "
          f"{report['selected_certifications']} certifications")
    print(format_table(table.where(table.notna(), None)))
    print(f"{results['questions'] / max(results['seconds'], 1e-9):.2f} questions/s; records in {run_dir}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `exam` subcommand to the `spdf` parser."""
    e = subparsers.add_parser("exam", help="certification exams (vocational-skills paper): pass share by field")
    e.add_argument("--model", help="smollm2, a save_pretrained folder, or the served model's name (--backend api)")
    e.add_argument("--backend", choices=["local", "api"], help="api: $OPENAI_BASE_URL / $OPENAI_API_KEY")
    e.add_argument("--mode", choices=["loglik", "generate"])
    e.add_argument("--limit", type=int,
                   help="at most N questions, whole certifications (default: the preset's; smoke: 8); 0 = all")
    e.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    e.add_argument("--no-circular", action="store_true", help="skip the rotated re-asks (CircularEval)")
    e.add_argument("--params", help="YAML parameter file (default: params/exams/smoke.yaml)")
    e.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="override one parameter")
    e.add_argument("--run-dir", help="output folder (default: runs/exams/<timestamp>)")
    e.set_defaults(func=_cmd_exam)
    return e
