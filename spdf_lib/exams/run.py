"""One exam run: select questions, load the model, score, compare with baselines, write the records.

`run_exam(params, run_dir)` is what the notebook, `spdf exam` and sweeps call. It writes into `run_dir`:

- `manifest.json`, `results.json` (flat metrics: accuracy, pass_share, pass_share_<field>, baselines, …);
- `records.parquet` and `records.jsonl`: one record per question (model, qid, options, choice, correct, letter
  log-probabilities or the reply, rotations);
- `certifications.csv`: score and pass per certification (plain and CircularEval);
- `headline.csv`: pass share overall and per field with counts, beside the baselines;
- `letters.csv`: the model's chosen-letter distribution against the keys';
- `data_report.json`: rows loaded, repaired, excluded by reason, flags, and what the field rules do not cover.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pandas as pd

from spdf_lib.exams.fields import FieldRules, assign_fields, coverage, load_rules
from spdf_lib.exams.params import ExamParams
from spdf_lib.exams.parse import DATA_FILE, DATASET, DataReport, Question, load_questions
from spdf_lib.exams.report import certification_table, headline_table, letter_distribution, results_dict
from spdf_lib.exams.scoring import score
from spdf_lib.records import Run, atomic_write_text, new_run_dir, write_json


def select(questions: list[Question], p: ExamParams, fields: dict[str, str]) -> list[Question]:
    """The scored questions of the certifications `p` selects (whole certifications; see `ExamParams`)."""
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


def load_model(p: ExamParams):
    """The `LocalLM` or `ApiLM` that `p` names."""
    from spdf_lib.exams.backends import ApiLM, LocalLM

    if p.backend == "api":
        return ApiLM(p.model)
    return LocalLM.load(p.model, dtype=p.dtype, threads=p.threads or None)


def prepare(p: ExamParams) -> tuple[list[Question], DataReport, FieldRules, dict[str, str]]:
    """Load and parse the data, assign fields (fails on a bad rules file before any model is loaded)."""
    questions, report = load_questions(p.data_file or None)
    rules = load_rules(p.fields_file or None)
    fields = assign_fields({q.certification for q in questions}, rules)
    return questions, report, rules, fields


def run_exam(p: ExamParams, run_dir: str | Path | None = None, lm=None) -> dict[str, Any]:
    """Evaluate the model of `p` and write the records into `run_dir`; returns results.json's dict.

    `lm` may pass an already loaded model (the notebook reuses one across cells)."""
    run_dir = Path(run_dir or p.run_dir or new_run_dir("exams"))
    questions, report, rules, fields = prepare(p)
    chosen = select(questions, p, fields)
    if not chosen:
        raise ValueError("no questions selected; check certifications/fields/limit")
    run = Run(run_dir, "exams", p.model_dump(), p.seed)
    if not p.data_file:
        from spdf_lib.data.registry import checksums, fetch

        run.add_data(checksums(fetch(DATASET, [DATA_FILE]), DATASET))
    lm = lm if lm is not None else load_model(p)
    t0 = time.perf_counter()
    records = score(lm, chosen, mode=p.mode, circular=p.circular, answer_count=p.answer_count,
                    batch_tokens=p.batch_tokens, max_new_tokens=p.max_new_tokens, fields=fields)
    seconds = time.perf_counter() - t0

    table = headline_table(records, chosen, fields, rules, p.pass_threshold, p.pass_rule, p.answer_count)
    letters = letter_distribution(records)
    certs = certification_table(records, "correct", p.pass_threshold, p.pass_rule)
    if p.circular:
        circ = certification_table(records, "circular_correct", p.pass_threshold, p.pass_rule)
        certs["circular_correct"], certs["circular_passed"] = circ["correct"], circ["passed"]
    results = results_dict(records, chosen, table, letters, fields, p.pass_threshold, p.pass_rule, p.answer_count)
    results.update(seconds=seconds, questions_per_second=len(records) / seconds if seconds else 0.0)

    run.write_table("records", pd.DataFrame(records), fmt="parquet")
    atomic_write_text(run_dir / "records.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    run.write_table("certifications", certs)
    run.write_table("headline", table)
    run.write_table("letters", letters)
    write_json(run_dir / "data_report.json", {
        **report.as_dict(),
        "selected_questions": len(chosen),
        "selected_certifications": len({q.certification for q in chosen}),
        "fields": coverage({q.certification for q in questions}, rules),
        "fields_file": rules.source,
    })
    run.finish(results)
    return results
