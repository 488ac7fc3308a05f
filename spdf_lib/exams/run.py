"""One exam run: select questions, load the model, score, compare with baselines, write the records.

`run_exam(params, run_dir)` is what the notebook, `spdf exam` and sweeps call. It writes into `run_dir`:

- `manifest.json` (with `info`: backend, device, dtype, torch threads, the API's base URL — never its key —, the
  prompt format, the system line and one exact prompt, the selection) and `results.json` (flat metrics:
  accuracy, pass_share, pass_share_<field>, every baseline's accuracy and pass share, letter bias, …);
- tables listed in the manifest and read with `spdf_lib.records.read_table(run_dir, name)`:
  `records` (parquet; one record per question: model, qid, options, exact prompt, choice, correct, letter
  log-probabilities or the reply and its extraction reason, rotations), `certifications` (score and pass per
  certification, plain and CircularEval, and whether it was asked whole), `headline` (pass share overall and
  per field beside the baselines), `letters` (the model's letter distribution beside the keys'), `baselines`
  (the model and every baseline: accuracy beside pass share);
- `records.jsonl` (the records as JSON lines) and `data_report.json` (rows loaded, repaired, excluded by
  reason, flags, what the field rules do not cover, the selection).
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from spdf_lib.atomic import atomic_write_text
from spdf_lib.exams.cloze import cloze_context, reference_counts
from spdf_lib.exams.fields import FieldRules, assign_fields, coverage, load_rules
from spdf_lib.exams.params import ExamParams
from spdf_lib.exams.parse import DATA_FILE, DATASET, DataReport, Question, load_questions
from spdf_lib.exams.price import ExamPlan, plan_requests
from spdf_lib.exams.prompts import SYSTEM, generation_prompt, loglik_prompt
from spdf_lib.exams.resume import Resumable, requests_record
from spdf_lib.exams.scoring import n_answers, score_all
from spdf_lib.exams.tables import (
    baseline_table,
    certification_table,
    headline_table,
    letter_distribution,
    results_dict,
    split_note,
    whole_certifications,
)
from spdf_lib.jsonio import write_json
from spdf_lib.locations import new_run_dir
from spdf_lib.records import Run, read_table
from spdf_lib.run_status import ends_runs_on_error


def read_questions_file(path: str | Path, questions: list[Question]) -> list[Question]:
    """The questions a file names, one data-row index a line (0-based, header not counted; blank lines and
    `#` comments are skipped). A bad file fails with one line naming the file, the line and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"questions_file {path}: no such file (one data-row index a line, e.g. 0 for the first row)")
    chosen: list[Question] = []
    seen: dict[int, int] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        where = f"questions_file {path}, line {lineno}"
        if not text.isdigit():
            raise ValueError(f"{where}: {text!r} is not a row index; write one 0-based data-row number a line")
        row = int(text)
        if row >= len(questions):
            raise ValueError(f"{where}: row {row} is past the last data row ({len(questions) - 1}); rows are "
                             f"0-based and the header is not counted")
        if row in seen:
            raise ValueError(f"{where}: row {row} is listed twice (first on line {seen[row]}); remove one")
        q = questions[row]
        if not q.scored:
            raise ValueError(f"{where}: row {row} cannot be scored ({q.excluded}); remove it (data_report.json "
                             f"lists the excluded rows)")
        seen[row] = lineno
        chosen.append(q)
    if not chosen:
        raise ValueError(f"questions_file {path}: no row indices in it")
    return chosen


def select(questions: list[Question], p: ExamParams, fields: dict[str, str]) -> list[Question]:
    """The scored questions `p` selects: a questions file, a question sample, or whole certifications (see
    `ExamParams`)."""
    if p.questions_file:
        return read_questions_file(p.questions_file, questions)
    by_cert: dict[str, list[Question]] = {}
    for q in questions:
        if q.scored:
            by_cert.setdefault(q.certification, []).append(q)
    names = sorted(by_cert)
    if p.certifications:
        unknown = [c for c in p.certifications if c not in by_cert]
        if unknown:
            raise ValueError(f"certifications: unknown or without scorable questions: {unknown[:3]}")
        names = [c for c in names if c in set(p.certifications)]
    if p.fields:
        known = set(fields.values())
        if bad := [f for f in p.fields if f not in known]:
            raise ValueError(f"fields: unknown field id(s) {bad}; known: {', '.join(sorted(known))}")
        names = [c for c in names if fields[c] in set(p.fields)]
    if p.sample:
        pool = sorted((q for c in names for q in by_cert[c]), key=lambda q: q.qid)
        if p.sample > len(pool):
            raise ValueError(f"sample: {p.sample} questions asked for, but the selection has only {len(pool)} "
                             f"scorable questions; choose sample <= {len(pool)}")
        return sorted(random.Random(p.seed).sample(pool, p.sample), key=lambda q: q.qid)
    random.Random(p.seed).shuffle(names)
    if p.sample_certifications:
        names = names[: p.sample_certifications]
    if p.limit:
        kept, total = [], 0
        for c in names:
            if total + len(by_cert[c]) > p.limit and kept:
                continue
            kept.append(c)
            total += len(by_cert[c])
            if total >= p.limit:
                break
        names = kept
    return [q for c in sorted(names) for q in by_cert[c]]


def describe_selection(p: ExamParams, chosen: list[Question]) -> str:
    """How the questions were chosen, in words (for the manifest and the printed summary)."""
    n_certs = len({q.certification for q in chosen})
    if p.questions_file:
        how = f"the rows listed in {p.questions_file}"
    elif p.sample:
        how = f"a random sample (seed {p.seed}) of questions"
    else:
        how = "whole certifications" + (f" (seed {p.seed}, limit {p.limit})" if p.limit else "")
    return f"{len(chosen)} questions in {n_certs} certifications: {how}"


def load_model(p: ExamParams):
    """The `LocalLM` or `ApiLM` that `p` names."""
    from spdf_lib.exams.api import ApiLM
    from spdf_lib.exams.backends import LocalLM

    if p.backend in ("api", "completions"):
        from spdf_lib.exams.completions import CompletionsLM
        from spdf_lib.exams.pool import RequestPolicy

        policy = RequestPolicy(concurrency=p.concurrency, rpm=p.rpm or None, tpm=p.tpm or None, retries=p.retries,
                               timeout=p.timeout)
        return (ApiLM if p.backend == "api" else CompletionsLM)(p.model, policy=policy)
    return LocalLM.load(p.model, dtype=p.dtype, threads=p.threads or None)


def resolve_prompt_format(p: ExamParams, lm) -> str:
    """`chat` or `plain` for this model: `auto` is chat when the model has a chat template (every API model)."""
    if p.prompt_format != "auto":
        if p.prompt_format == "chat" and not lm.has_chat_template:
            raise ValueError(f"model {p.model!r} has no chat template: set prompt_format=plain (or auto)")
        return p.prompt_format
    return "chat" if lm.has_chat_template else "plain"


def _tables(p: ExamParams, records: list[dict], chosen: list[Question], questions: list[Question],
            fields: dict[str, str], rules: FieldRules, whole: set[str], formulation: str) -> dict[str, Any]:
    """The run's tables for one formulation's records (and its flat results)."""
    table = headline_table(records, chosen, fields, rules, p.pass_threshold, p.pass_rule, p.answer_count, whole,
                           reference=questions, formulation=formulation)
    letters = letter_distribution(records)
    baselines = baseline_table(records, chosen, fields, p.pass_threshold, p.pass_rule, p.answer_count, whole,
                               reference=questions, formulation=formulation)
    certs = certification_table(records, "correct", p.pass_threshold, p.pass_rule)
    for column in ("circular_correct", "pride_correct"):
        if records and records[0].get(column) is not None:
            extra = certification_table(records, column, p.pass_threshold, p.pass_rule)
            certs[column], certs[column.replace("correct", "passed")] = extra["correct"], extra["passed"]
    certs["whole"] = certs["certification"].isin(whole)
    results = results_dict(records, chosen, table, letters, fields, p.pass_threshold, p.pass_rule, p.answer_count,
                           baselines)
    results["hybrid_questions"] = float(sum(r.get("scored_as") == "hybrid" for r in records))
    out: dict[str, Any] = {"records": pd.DataFrame(records), "certifications": certs, "headline": table,
                           "letters": letters, "baselines": baselines, "results": results}
    if records and records[0].get("pride_prior") is not None:
        from spdf_lib.exams.pride import prior_table

        priors = {r["n_options"]: r["pride_prior"] for r in records if r["pride_prior"] is not None}
        counts = {r["n_options"]: r["pride_prior_questions"] for r in records}
        out["pride_prior"] = pd.DataFrame(prior_table(priors, counts))
        results |= {f"pride_prior_{n}_{row['letter']}": row["prior"] for row in prior_table(priors, counts)
                    for n in [row["n_options"]]}
    return out


def plan_exam(p: ExamParams, latency: float = 1.0) -> ExamPlan:
    """The plan (`spdf_lib.exams.price`) of the questions `p` selects; nothing is sent."""
    questions, _, _, fields = prepare(p)
    return plan_requests(p, select(questions, p, fields), fields, latency)


def prepare(p: ExamParams) -> tuple[list[Question], DataReport, FieldRules, dict[str, str]]:
    """Load and parse the data, assign fields (fails on a bad rules file before any model is loaded)."""
    questions, report = load_questions(p.data_file or None)
    rules = load_rules(p.fields_file or None)
    fields = assign_fields({q.certification for q in questions}, rules)
    return questions, report, rules, fields


@ends_runs_on_error
def run_exam(p: ExamParams, run_dir: str | Path | None = None, lm=None, progress: bool = True) -> dict[str, Any]:
    """Evaluate the model of `p` and write the records into `run_dir`; returns results.json's dict.

    `lm` may pass an already loaded model (the notebook reuses one across cells); `progress` shows a tqdm bar
    over the questions while scoring."""
    run_dir = Path(run_dir or p.run_dir or new_run_dir("exams"))
    questions, report, rules, fields = prepare(p)
    chosen = select(questions, p, fields)  # a bad selection fails here, before the model loads
    if not chosen:
        raise ValueError("no questions selected; check certifications/fields/limit")
    whole = whole_certifications(chosen, questions)
    note = split_note(chosen, whole)
    run = Run(run_dir, "exams", p.model_dump(), p.seed)
    if not p.data_file:
        from spdf_lib.data.registry import checksums, fetch

        run.add_data(checksums(fetch(DATASET, [DATA_FILE]), DATASET))
    lm = Resumable(lm if lm is not None else load_model(p), run_dir)  # replies kept as they arrive, reused
    formulation = p.resolved_formulation
    fmt = resolve_prompt_format(p, lm) if p.mode == "generate" else "loglik"
    first = chosen[0]
    if p.mode == "generate":
        example = lm.render(generation_prompt(first, n_answers(first, p.answer_count), fmt))
    else:
        example = cloze_context(first) if formulation == "cf" else loglik_prompt(first)
    run.describe(**lm.describe(), mode=p.mode, prompt_format=fmt, formulation=formulation,
                 norm=p.norm if formulation != "mcf" else None, pride=p.pride and formulation != "cf",
                 system_prompt=SYSTEM if fmt == "chat" else None,
                 prompt_example={"qid": first.qid, "prompt": example},
                 selection=describe_selection(p, chosen), whole_certifications=len(whole),
                 split_certifications=len({q.certification for q in chosen} - whole), selection_note=note)
    if p.backend != "local":  # a served model: what it will cost, before the first request
        plan = plan_requests(p, chosen, fields)
        print("\n".join(plan.lines(p, 1.0)), file=sys.stderr, flush=True)
        run.describe(plan={"requests": plan.requests, "prompt_tokens": plan.prompt_tokens,
                           "completion_tokens": plan.completion_tokens, "tokens": plan.counted})
    t0 = time.perf_counter()
    by_form = score_all(p, lm, chosen, fields, fmt, progress)
    seconds = time.perf_counter() - t0
    run.describe(**requests_record(lm))

    results: dict[str, Any] = {}
    for i, (form, records) in enumerate(by_form.items()):
        tables = _tables(p, records, chosen, questions, fields, rules, whole, "mcf" if form == "mcf" else "cf")
        suffix = "" if len(by_form) == 1 else f"_{form}"
        for name, table in tables.items():
            if name != "results":
                run.write_table(name + suffix, table, fmt="parquet" if name == "records" else "csv")
        if suffix:
            results |= {f"{k}{suffix}": v for k, v in tables["results"].items()}
        if i == 0 or not suffix:
            results |= tables["results"]
    if formulation == "best":
        best = max(("mcf", "cf"), key=lambda f: (results[f"accuracy_{f}"], f == "cf"))
        results |= {k.removesuffix(f"_{best}"): v for k, v in results.items() if k.endswith(f"_{best}")}
        for name in ("records", "certifications", "headline", "letters", "baselines"):
            src = run_dir / f"{name}_{best}.{'parquet' if name == 'records' else 'csv'}"
            if src.is_file():
                run.write_table(name, read_table(run_dir, f"{name}_{best}"),
                                fmt="parquet" if name == "records" else "csv")
        run.describe(best_formulation=best)
        results["best_formulation_is_cf"] = float(best == "cf")
    records = by_form[best if formulation == "best" else formulation]
    results.update(seconds=seconds, questions_per_second=len(chosen) * len(by_form) / seconds if seconds else 0.0)
    atomic_write_text(run_dir / "records.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    write_json(run_dir / "data_report.json", {
        **report.as_dict(),
        "options_naming_options": reference_counts(questions),
        "options_naming_options_selected": reference_counts(chosen),
        "selected_questions": len(chosen),
        "selected_certifications": len({q.certification for q in chosen}),
        "whole_certifications": len(whole),
        "selection": describe_selection(p, chosen),
        "selection_note": note,
        "fields": coverage({q.certification for q in questions}, rules),
        "fields_file": rules.source,
    })
    run.finish(results)
    return results
