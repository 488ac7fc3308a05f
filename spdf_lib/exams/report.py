"""From per-question records to the paper's numbers: certification scores, passes, pass shares by field.

The headline (papers.md §3) is the share of certifications passed, overall and by field. Every table puts the
baselines of `spdf_lib.exams.baselines` beside the model, computed on exactly the same questions.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from spdf_lib.exams.baselines import (
    baseline_correct,
    passes,
    random_correct_probability,
    random_pass_probabilities,
)
from spdf_lib.exams.fields import FieldRules
from spdf_lib.exams.parse import LETTERS, Question
from spdf_lib.exams.scoring import AnswerCount

ALL = "all"


def certification_table(
    records: list[dict], correct: str = "correct", threshold: float = 0.7, rule: str = ">"
) -> pd.DataFrame:
    """One row per certification: field, questions scored, correct, score and whether it passes.

    `correct` names the record column that decides a question (`correct` or `circular_correct`)."""
    df = pd.DataFrame(records)
    if df.empty:
        return pd.DataFrame(columns=["certification", "field", "questions", "correct", "score", "passed"])
    g = df.groupby("certification", sort=True)
    out = pd.DataFrame({
        "field": g["field"].first(),
        "questions": g.size(),
        "correct": g[correct].apply(lambda s: int(s.fillna(False).astype(bool).sum())),
    }).reset_index()
    out["score"] = out["correct"] / out["questions"]
    out["passed"] = [passes(int(c), int(n), threshold, rule) for c, n in zip(out["correct"], out["questions"], strict=True)]
    return out


def _shares(passed: pd.Series, field: pd.Series) -> dict[str, float]:
    out = {ALL: float(passed.mean()) if len(passed) else 0.0}
    for f, s in passed.groupby(field):
        out[str(f)] = float(s.mean())
    return out


def _qid_table(questions: list[Question], fields: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame([
        {"qid": q.qid, "certification": q.certification, "field": fields.get(q.certification, "")}
        for q in questions if q.scored
    ])


def strategy_pass_shares(
    questions: list[Question], correct: dict[str, bool], fields: dict[str, str], threshold: float, rule: str
) -> dict[str, float]:
    """Pass share (overall and per field) of a strategy given as {qid: correct}."""
    t = _qid_table(questions, fields)
    t["correct"] = t["qid"].map(correct).fillna(False)
    certs = certification_table(t.to_dict("records"), "correct", threshold, rule).set_index("certification")
    return _shares(certs["passed"], certs["field"])


def headline_table(
    records: list[dict],
    questions: list[Question],
    fields: dict[str, str],
    rules: FieldRules | None = None,
    threshold: float = 0.7,
    rule: str = ">",
    answer_count: AnswerCount = "key",
) -> pd.DataFrame:
    """Per field (and `all`): certifications, questions, the model's accuracy and pass share, its CircularEval
    pass share, and the baselines' pass shares (random: exact expectation; always-X: the best letter; majority;
    majority per certification)."""
    scored = [q for q in questions if q.scored and q.qid in {r["qid"] for r in records}]
    certs = certification_table(records, "correct", threshold, rule)
    cert_field = certs.set_index("certification")["field"]
    model = _shares(certs.set_index("certification")["passed"], cert_field)
    has_circular = bool(records) and records[0].get("circular_correct") is not None
    circ = {}
    if has_circular:
        cc = certification_table(records, "circular_correct", threshold, rule).set_index("certification")
        circ = _shares(cc["passed"], cert_field)
    rand = pd.Series(random_pass_probabilities(scored, threshold, rule, answer_count))
    rand_share = _shares(rand, cert_field.reindex(rand.index))
    base = {name: strategy_pass_shares(scored, c, fields, threshold, rule)
            for name, c in baseline_correct(scored, answer_count).items()}
    always = {k: v for k, v in base.items() if k.startswith("always_")}
    rec = pd.DataFrame(records)
    rows = []
    for f in [ALL, *sorted(set(cert_field))]:
        in_f = rec if f == ALL else rec[rec["field"] == f]
        best_letter = max(always, key=lambda k: (always[k].get(f, 0.0), -ord(k[-1]))) if always else None
        rows.append({
            "field": f,
            "label": "all certifications" if f == ALL else (rules.label(f) if rules else f),
            "certifications": int((certs["field"] == f).sum()) if f != ALL else len(certs),
            "questions": len(in_f),
            "accuracy": float(in_f["correct"].mean()) if len(in_f) else 0.0,
            "pass_share": model.get(f, 0.0),
            "circular_pass_share": circ.get(f) if has_circular else None,
            "random_pass_share": rand_share.get(f, 0.0),
            "best_always_letter": best_letter[-1] if best_letter else None,
            "best_always_pass_share": always[best_letter].get(f, 0.0) if best_letter else None,
            "majority_pass_share": base["majority"].get(f, 0.0),
            "majority_per_cert_pass_share": base["majority_per_cert"].get(f, 0.0),
        })
    return pd.DataFrame(rows)


def letter_distribution(records: list[dict]) -> pd.DataFrame:
    """Share of each letter among the model's (unrotated) choices and among the keys, single-answer questions
    only; a model that answers by position shows up as a spike that the keys do not have."""
    single = [r for r in records if r["n_answers"] == 1]
    chosen = Counter(r["choice"] for r in single if r["choice"])
    keys = Counter(r["key"] for r in single)
    n_max = max((r["n_options"] for r in single), default=0)
    rows = []
    for x in LETTERS[:n_max]:
        rows.append({
            "letter": x,
            "model_share": chosen[x] / max(1, len(single)),
            "key_share": keys[x] / max(1, len(single)),
        })
    return pd.DataFrame(rows, columns=["letter", "model_share", "key_share"])


def results_dict(
    records: list[dict], questions: list[Question], table: pd.DataFrame, letters: pd.DataFrame,
    fields: dict[str, str] | None = None, threshold: float = 0.7, rule: str = ">", answer_count: AnswerCount = "key",
) -> dict[str, float]:
    """Flat {metric: number} for results.json: accuracy, pass shares overall and per field, baselines (random,
    every always-X letter, majority), CircularEval and letter bias."""
    all_row = table[table["field"] == ALL].iloc[0]
    out: dict[str, float] = {
        "questions": float(len(records)),
        "certifications": float(all_row["certifications"]),
        "accuracy": float(all_row["accuracy"]),
        "pass_share": float(all_row["pass_share"]),
        "baseline_random_pass_share": float(all_row["random_pass_share"]),
        "baseline_majority_pass_share": float(all_row["majority_pass_share"]),
        "baseline_majority_per_cert_pass_share": float(all_row["majority_per_cert_pass_share"]),
    }
    scored = {q.qid: q for q in questions if q.scored}
    out["baseline_random_accuracy"] = (
        sum(random_correct_probability(scored[r["qid"]], answer_count) for r in records) / max(1, len(records))
    )
    asked = [scored[r["qid"]] for r in records]
    cert_field = fields if fields is not None else {r["certification"]: r["field"] for r in records}
    for name, correct in baseline_correct(asked, answer_count).items():
        if name.startswith("always_"):
            out[f"baseline_{name}_accuracy"] = sum(correct.values()) / max(1, len(correct))
            out[f"baseline_{name}_pass_share"] = strategy_pass_shares(asked, correct, cert_field, threshold, rule)[ALL]
    if all_row["circular_pass_share"] is not None and pd.notna(all_row["circular_pass_share"]):
        out["circular_pass_share"] = float(all_row["circular_pass_share"])
        out["circular_accuracy"] = sum(bool(r["circular_correct"]) for r in records) / max(1, len(records))
    if records and records[0]["mode"] == "generate":
        out["unparsed_reply_rate"] = sum(r["choice"] is None for r in records) / len(records)
    for _, row in table[table["field"] != ALL].iterrows():
        out[f"pass_share_{row['field']}"] = float(row["pass_share"])
        out[f"certifications_{row['field']}"] = float(row["certifications"])
    if len(letters):
        # total variation distance between the model's letter distribution and the keys' (0 = same, 1 = disjoint)
        out["letter_bias_tvd"] = float(0.5 * (letters["model_share"] - letters["key_share"]).abs().sum())
    return out


def format_table(table: pd.DataFrame) -> str:
    """The headline table as aligned text for the terminal."""
    cols = ["label", "certifications", "questions", "accuracy", "pass_share", "circular_pass_share",
            "random_pass_share", "best_always_pass_share", "best_always_letter", "majority_per_cert_pass_share"]
    t = table[[c for c in cols if c in table.columns]].copy()
    if t["circular_pass_share"].isna().all():
        t = t.drop(columns=["circular_pass_share"])
    t = t.rename(columns={
        "label": "field", "certifications": "certs", "pass_share": "pass", "circular_pass_share": "pass(circ)",
        "random_pass_share": "random", "best_always_pass_share": "always-X", "best_always_letter": "X",
        "majority_per_cert_pass_share": "majority/cert", "accuracy": "acc",
    })
    return t.to_string(index=False, float_format=lambda v: f"{v:.3f}")
