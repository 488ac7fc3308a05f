"""`spdf exam`: evaluate a model on the certification exams and print the headline table."""

from __future__ import annotations

import argparse
import sys


def _cmd_exam(args: argparse.Namespace) -> int:
    from spdf_lib import params as P
    from spdf_lib.experiments import load
    from spdf_lib.locations import new_run_dir

    if args.sample is not None and args.sample < 1:  # 0 would silently mean "no sample": the preset's questions
        raise P.ParamsError(f"--sample {args.sample}: must be at least 1 (leave --sample out to use the preset's "
                            f"selection)")
    overrides = dict(P.parse_override(x) for x in args.param)
    for key in ("model", "backend", "mode", "limit", "dtype", "sample", "seed", "threads", "prompt_format",
                "formulation", "norm", "timeout", "retries", "concurrency", "rpm", "tpm", "price_in", "price_out",
                "plan_tokenizer"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.questions is not None:
        overrides["questions_file"] = args.questions
    if (args.questions is not None or args.sample) and args.limit is None:
        overrides.setdefault("limit", 0)  # a question selection replaces the preset's whole-certification limit
    if args.no_circular:
        overrides["circular"] = False
    if args.export_lmeval and args.limit is None and not args.sample and args.questions is None:
        overrides["limit"] = 0  # an export is of the whole data unless a selection is asked for
    if args.no_pride:
        overrides["pride"] = False
    p = load("exams", args.params, overrides)  # validated before any data or model is touched
    if args.export_lmeval:
        from spdf_lib.exams.lmeval_export import export_lmeval

        for path in export_lmeval(args.export_lmeval, p, args.overwrite):
            print(path)
        return 0

    if args.plan:
        from spdf_lib.exams.run import plan_exam

        print("\n".join(plan_exam(p, args.latency).lines(p, args.latency)))
        return 0
    from spdf_lib.exams.run import run_exam
    from spdf_lib.exams.summary import summary_text

    run_dir = args.run_dir or p.run_dir or str(new_run_dir("exams"))
    print(f"run folder: {run_dir} (replies are kept as they arrive: re-run with --run-dir {run_dir} to resume)",
          file=sys.stderr, flush=True)
    run_exam(p, run_dir)
    print(summary_text(run_dir))
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `exam` subcommand to the `spdf` parser."""
    e = subparsers.add_parser("exam", help="certification exams (vocational-skills paper): pass share by field")
    e.add_argument("--model", help="smollm2, a save_pretrained folder, or the served model's name (--backend api)")
    e.add_argument("--backend", choices=["local", "api", "completions"],
                   help="api: chat (generation); completions: log-likelihood (echo+logprobs); both at "
                        "$OPENAI_BASE_URL with $OPENAI_API_KEY")
    e.add_argument("--mode", choices=["loglik", "generate"])
    e.add_argument("--formulation", choices=["auto", "mcf", "cf", "hybrid", "best"],
                   help="mcf: letters; cf: cloze (option text after 'Question: ... Answer:'); hybrid: options shown, "
                        "text scored; best: mcf and cf, headline the better; auto (default): cf for local "
                        "log-likelihood, mcf for generation and APIs")
    e.add_argument("--norm", choices=["none", "char", "token", "pmi"],
                   help="cf/hybrid option score: summed log-likelihood, per character (default), per token, or "
                        "minus log P(option | 'Answer:')")
    e.add_argument("--no-pride", action="store_true", help="mcf log-likelihood: skip PriDe letter-prior debiasing")
    e.add_argument("--export-lmeval", metavar="DIR",
                   help="write an lm-evaluation-harness task (cf and mcf YAML + the selected questions as JSONL) "
                        "into DIR and exit")
    e.add_argument("--overwrite", action="store_true",
                   help="--export-lmeval may replace files in DIR the kit did not write: moved aside, never deleted")
    e.add_argument("--prompt-format", dest="prompt_format", choices=["auto", "chat", "plain"],
                   help="generation prompt: chat template + system line, plain (base models), auto (default)")
    e.add_argument("--limit", type=int,
                   help="at most N questions, whole certifications (default: the preset's; smoke: 8); 0 = all")
    e.add_argument("--questions", metavar="FILE",
                   help="score exactly these questions: one 0-based data-row index a line (header not counted)")
    e.add_argument("--sample", type=int, metavar="N", help="score a random sample of N questions (see --seed)")
    e.add_argument("--seed", type=int, help="seed of --sample and of the certification order (default 0)")
    e.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"],
                   help="local model's dtype (default auto: bfloat16 where the CPU/GPU computes it natively)")
    e.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    e.add_argument("--no-circular", action="store_true", help="skip the rotated re-asks (CircularEval)")
    e.add_argument("--timeout", type=float, help="served models: seconds per request (default 60)")
    e.add_argument("--retries", type=int, help="served models: tries after a 429, 5xx or timeout (default 3)")
    e.add_argument("--concurrency", type=int, help="served models: requests at once (default 4)")
    e.add_argument("--rpm", type=float, help="served models: at most this many requests a minute")
    e.add_argument("--tpm", type=float, help="served models: at most this many tokens a minute")
    e.add_argument("--plan", action="store_true",
                   help="print the requests, tokens, wall time and cost the exam would take, and exit")
    e.add_argument("--price-in", dest="price_in", type=float, help="plan: $ per million prompt tokens")
    e.add_argument("--price-out", dest="price_out", type=float, help="plan: $ per million completion tokens")
    e.add_argument("--plan-tokenizer", dest="plan_tokenizer",
                   help="plan: count a served model's tokens with this tokenizer (smollm2 or a folder)")
    e.add_argument("--latency", type=float, default=1.0, help="plan: seconds a reply takes (default 1)")
    e.add_argument("--params", help="YAML parameter file (default: params/exams/smoke.yaml)")
    e.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="override one parameter")
    e.add_argument("--run-dir", help="output folder (default: runs/exams/<timestamp>)")
    e.set_defaults(func=_cmd_exam)
    return e
