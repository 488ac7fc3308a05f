"""From per-question records to the paper's numbers: certification scores, passes, pass shares by field.

The headline (Noever & Ciolino 2023) is the share of certifications passed, overall and by field. Every table puts the
baselines of `spdf_lib.exams.baselines` beside the model, computed on exactly the same questions.

Pass shares are computed over *whole* certifications only: a certification counts when every one of its
scorable questions was asked. A question sample (`sample`, `questions_file`) usually splits certifications; their
questions still count in the accuracies, and `split_note` says how many were left out of the pass shares.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from spdf_lib.exams.baselines import (
    KEYSIZE,
    STRICT,
    baseline_correct,
    definition,
    passes,
    random_correct_probability,
    random_pass_probabilities,
)
from spdf_lib.exams.extract import UNANSWERED
from spdf_lib.exams.fields import FieldRules
from spdf_lib.exams.parse import LETTERS, Question
from spdf_lib.exams.scoring import AnswerCount

ALL = "all"


def whole_certifications(selected: list[Question], all_questions: list[Question]) -> set[str]:
    """Certifications all of whose scorable questions (in `all_questions`) are among `selected`."""
    total = Counter(q.certification for q in all_questions if q.scored)
    chosen = Counter(q.certification for q in selected if q.scored)
    return {c for c, n in chosen.items() if n == total[c]}


def split_note(selected: list[Question], whole: set[str]) -> str | None:
    """One line when the selection splits certifications (None when it does not)."""
    certs = {q.certification for q in selected if q.scored}
    split = certs - whole
    if not split:
        return None
    n_whole_q = sum(q.certification in whole for q in selected if q.scored)

    def n(k: int, word: str) -> str:
        return f"{k} {word}{'' if k == 1 else 's'}"

    return (f"the selection splits {len(split)} of its {n(len(certs), 'certification')}: their questions count in "
            f"the accuracies, but pass shares are over the {n(len(whole), 'whole certification')} only "
            f"({n(n_whole_q, 'question')})" + ("; there are none, so no pass share" if not whole else ""))


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
    out["passed"] = [
        passes(int(c), int(n), threshold, rule) for c, n in zip(out["correct"], out["questions"], strict=True)
    ]
    return out


def _shares(passed: pd.Series, field: pd.Series) -> dict[str, float]:
    out = {ALL: float(passed.mean()) if len(passed) else float("nan")}
    for f, s in passed.groupby(field):
        out[str(f)] = float(s.mean())
    return out


def _qid_table(questions: list[Question], fields: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame([
        {"qid": q.qid, "certification": q.certification, "field": fields.get(q.certification, "")}
        for q in questions if q.scored
    ], columns=["qid", "certification", "field"])


def strategy_pass_shares(
    questions: list[Question], correct: dict[str, bool], fields: dict[str, str], threshold: float, rule: str
) -> dict[str, float]:
    """Pass share (overall and per field) of a strategy given as {qid: correct}, over the certifications of
    `questions` (pass only whole certifications)."""
    t = _qid_table(questions, fields)
    t["correct"] = t["qid"].map(correct).fillna(False)
    certs = certification_table(t.to_dict("records"), "correct", threshold, rule).set_index("certification")
    return _shares(certs["passed"], certs["field"]) if len(certs) else {ALL: float("nan")}


def _whole_only(records: list[dict], questions: list[Question], whole: set[str] | None):
    if whole is None:
        return records, questions
    return ([r for r in records if r["certification"] in whole],
            [q for q in questions if q.certification in whole])


def _passed_shares(records: list[dict], column: str, threshold: float, rule: str,
                   cert_field: pd.Series) -> dict[str, float]:
    """Per field, the share of certifications passed when `column` (e.g. `circular_correct`) marks correctness."""
    table = certification_table(records, column, threshold, rule).set_index("certification")
    return _shares(table["passed"], cert_field)


def _baseline_shares(records: list[dict], scored: list[Question], fields: dict[str, str], threshold: float,
                     rule: str, answer_count: AnswerCount, reference: list[Question] | None,
                     formulation: str) -> dict[str, dict[str, float]]:
    """Baseline name -> per-field pass shares: the letter baselines for `mcf`, the option-text ones otherwise."""
    if not scored:
        return {}
    if formulation == "mcf":
        base_correct = baseline_correct(scored, answer_count, reference)
    else:
        from spdf_lib.exams.cloze import cf_baseline_correct

        base_correct = cf_baseline_correct(scored, {r["qid"]: r["n_answers"] for r in records})
    return {name: strategy_pass_shares(scored, c, fields, threshold, rule) for name, c in base_correct.items()}


def _best_always(group: dict[str, dict[str, float]], f: str, model: dict[str, float]) -> tuple[str | None, float]:
    """(letter, pass share) of the best always-X baseline of `group` in field `f` (ties: the earlier letter)."""
    if not group or f not in model:
        return None, float("nan")
    name = max(group, key=lambda k: (group[k].get(f, 0.0), -ord(k[len("always_")])))
    return name[len("always_")], group[name].get(f, 0.0)


def headline_table(
    records: list[dict],
    questions: list[Question],
    fields: dict[str, str],
    rules: FieldRules | None = None,
    threshold: float = 0.7,
    rule: str = ">",
    answer_count: AnswerCount = "key",
    whole: set[str] | None = None,
    reference: list[Question] | None = None,
    formulation: str = "mcf",
) -> pd.DataFrame:
    """Per field (and `all`): whole certifications, questions, the model's accuracy and pass share, its
    CircularEval and PriDe pass shares (where present), and the pass shares of its formulation's baselines:
    random guessing (exact expectation) and, for `mcf`, the best always-X in both definitions (`best_always_*`:
    as many letters as the key; `best_always_strict_*`: strict single letter), the majority letter, the
    majority letter per certification; for `cf`/`hybrid` the longest, shortest and most-overlapping options
    (`longest_pass_share`, `shortest_pass_share`, `overlap_pass_share`).

    Accuracies are over every asked question; pass shares over the `whole` certifications (all when None);
    `certifications_split` counts the certifications a sample splits. `reference` (all questions of the data)
    gives each certification's majority letter."""
    asked = {r["qid"] for r in records}
    scored = [q for q in questions if q.scored and q.qid in asked]
    w_records, w_scored = _whole_only(records, scored, whole)
    certs = certification_table(w_records, "correct", threshold, rule)
    cert_field = certs.set_index("certification")["field"] if len(certs) else pd.Series(dtype=str)
    model = _shares(certs.set_index("certification")["passed"], cert_field) if len(certs) else {}
    has_circular = bool(records) and records[0].get("circular_correct") is not None
    circ = (
        _passed_shares(w_records, "circular_correct", threshold, rule, cert_field)
        if has_circular and len(certs)
        else {}
    )
    rand = pd.Series(random_pass_probabilities(w_scored, threshold, rule, answer_count), dtype=float)
    rand_share = _shares(rand, cert_field.reindex(rand.index)) if len(rand) else {}
    has_pride = bool(records) and records[0].get("pride_correct") is not None
    pride = _passed_shares(w_records, "pride_correct", threshold, rule, cert_field) if has_pride and len(certs) else {}
    base = _baseline_shares(records, w_scored, fields, threshold, rule, answer_count, reference, formulation)
    keysize = {k: v for k, v in base.items() if k.startswith("always_") and not k.endswith("_strict")}
    strict = {k: v for k, v in base.items() if k.startswith("always_") and k.endswith("_strict")}
    rec = pd.DataFrame(records)
    all_fields = sorted({fields.get(q.certification, "") for q in scored})
    nan = float("nan")
    rows = []
    for f in [ALL, *all_fields]:
        in_f = rec if f == ALL else rec[rec["field"] == f]
        certs_f = {r for r in in_f["certification"]} if len(in_f) else set()
        whole_f = certs_f if whole is None else certs_f & whole
        k_letter, k_share = _best_always(keysize, f, model)
        s_letter, s_share = _best_always(strict, f, model)
        rows.append({
            "field": f,
            "label": "all certifications" if f == ALL else (rules.label(f) if rules else f),
            "certifications": len(whole_f),
            "certifications_split": len(certs_f - whole_f),
            "questions": len(in_f),
            "accuracy": float(in_f["correct"].mean()) if len(in_f) else 0.0,
            "pass_share": model.get(f, nan),
            "circular_pass_share": (circ.get(f, nan) if has_circular else None),
            "pride_pass_share": (pride.get(f, nan) if has_pride else None),
            "random_pass_share": rand_share.get(f, nan),
            "best_always_letter": k_letter,
            "best_always_pass_share": k_share,
            "best_always_strict_letter": s_letter,
            "best_always_strict_pass_share": s_share,
            "majority_pass_share": base.get("majority", {}).get(f, nan),
            "majority_per_cert_pass_share": base.get("majority_per_cert", {}).get(f, nan),
            "majority_per_cert_strict_pass_share": base.get("majority_per_cert_strict", {}).get(f, nan),
            **{f"{b}_pass_share": base.get(b, {}).get(f, nan) for b in ("longest", "shortest", "overlap")},
        })
    return pd.DataFrame(rows)


def _model_columns(records: list[dict]) -> list[tuple[str, str]]:
    """(record column, row name) of the model's own rows: plain, CircularEval and PriDe where present."""
    cols = [("correct", "model")]
    if records and records[0].get("circular_correct") is not None:
        cols.append(("circular_correct", "model, CircularEval"))
    if records and records[0].get("pride_correct") is not None:
        cols.append(("pride_correct", "model, PriDe (debiased)"))
    return cols


def baseline_table(
    records: list[dict],
    questions: list[Question],
    fields: dict[str, str],
    threshold: float = 0.7,
    rule: str = ">",
    answer_count: AnswerCount = "key",
    whole: set[str] | None = None,
    reference: list[Question] | None = None,
    formulation: str = "mcf",
) -> pd.DataFrame:
    """The model and the baselines of its formulation on the same questions, accuracy (every asked question)
    beside pass share (whole certifications), each with a 95% bootstrap interval: over questions for accuracy,
    over certifications for pass share (`intervals`).

    Rows: the model (and its CircularEval and PriDe scores where present), random guessing (expected; the pass
    share is the exact expectation, so it has no interval), then for `mcf` every always-X in both definitions
    ("strict single letter", "as many letters as the key"), the majority letter and the majority letter per
    certification (both definitions; counted over the certification's questions in `reference`, all questions
    of the data, so that a sample is not answered from its own keys); for `cf` and `hybrid` the k longest, the k
    shortest and the k options with most word overlap with the question (`cloze.CF_BASELINES`)."""
    from spdf_lib.exams.cloze import CF_BASELINES, cf_baseline_correct
    from spdf_lib.exams.intervals import accuracy_interval, pass_share_interval

    scored_by_qid = {q.qid: q for q in questions if q.scored}
    asked = [scored_by_qid[r["qid"]] for r in records]
    w_records, w_asked = _whole_only(records, asked, whole)
    cert_of = {q.qid: q.certification for q in asked}
    w_qids = [q.qid for q in w_asked]
    nan = float("nan")
    rows = []

    def add(name: str, label: str, letters: str, every: dict[str, bool], in_whole: dict[str, bool] | None) -> None:
        acc = accuracy_interval([float(every.get(q.qid, False)) for q in asked])
        by_cert: dict[str, list[bool]] = {}
        for qid in w_qids if in_whole is not None else []:
            by_cert.setdefault(cert_of[qid], []).append(bool(in_whole.get(qid, False)))
        ps = pass_share_interval(by_cert, threshold, rule)
        rows.append({"name": name, "baseline": label, "letters": letters, "accuracy": acc.estimate,
                     "accuracy_lo": acc.lo, "accuracy_hi": acc.hi, "pass_share": ps.estimate,
                     "pass_share_lo": ps.lo, "pass_share_hi": ps.hi})

    for column, label in _model_columns(records):
        correct = {r["qid"]: bool(r[column]) for r in records}
        add(column, label, "model", correct, {r["qid"]: correct[r["qid"]] for r in w_records})
    rand = accuracy_interval([random_correct_probability(q, answer_count) for q in asked])
    rand_pass = random_pass_probabilities(w_asked, threshold, rule, answer_count)
    rows.append({"name": "random", "baseline": "random guessing (expected)",
                 "letters": "as many random options as the key", "accuracy": rand.estimate, "accuracy_lo": rand.lo,
                 "accuracy_hi": rand.hi, "pass_share": sum(rand_pass.values()) / len(rand_pass) if rand_pass else nan,
                 "pass_share_lo": nan, "pass_share_hi": nan})
    if formulation != "mcf":
        ks = {r["qid"]: r["n_answers"] for r in records}
        for name, correct in cf_baseline_correct(asked, ks).items():
            add(name, CF_BASELINES[name][0], "k options, k = the key's size", correct, correct)
        return pd.DataFrame(rows)
    whole_correct = baseline_correct(w_asked, answer_count, reference) if w_asked else {}
    every = baseline_correct(asked, answer_count, reference)
    # each constant letter in both definitions side by side: strict single letter, then as many as the key
    order = sorted(every, key=lambda k: (not k.startswith("always_"), k.removesuffix("_strict"),
                                         not k.endswith("_strict")))
    for name in order:
        base = name.removesuffix("_strict")
        label = (f"always {base[len('always_'):]}" if base.startswith("always_")
                 else {"majority": "majority letter", "majority_per_cert": "majority letter per certification"}[base])
        add(name, label, definition(name), every[name], whole_correct.get(name))
    return pd.DataFrame(rows)


def letter_distribution(records: list[dict]) -> pd.DataFrame:
    """Each letter's count and share among the model's answers and among the keys, over the single-answer
    questions the model answered (unrotated order); a model that answers by position shows up as a spike that
    the keys do not have."""
    single = [r for r in records if r["n_answers"] == 1 and r["choice"]]
    chosen = Counter(r["choice"] for r in single)
    keys = Counter(r["key"] for r in single)
    n_max = max((r["n_options"] for r in single), default=0)
    n = max(1, len(single))
    rows = [{"letter": x, "model_count": chosen[x], "model_share": chosen[x] / n, "key_count": keys[x],
             "key_share": keys[x] / n} for x in LETTERS[:n_max]]
    return pd.DataFrame(rows, columns=["letter", "model_count", "model_share", "key_count", "key_share"])


def letter_tvd(letters: pd.DataFrame) -> float:
    """Total variation distance between the model's letter distribution and the keys' (0 = same, 1 = disjoint)."""
    return float(0.5 * (letters["model_share"] - letters["key_share"]).abs().sum()) if len(letters) else 0.0


def letter_summary(letters: pd.DataFrame) -> str:
    """One line: the model's most frequent letter, its count, and the total variation distance to the keys."""
    if not len(letters) or letters["model_count"].sum() == 0:
        return "no single-answer question was answered"
    top = letters.loc[letters["model_count"].idxmax()]
    total = int(letters["model_count"].sum())
    return (f"the model answered {top['letter']} on {int(top['model_count'])} of {total} single-answer questions "
            f"(the keys: {int(top['key_count'])}); total variation distance to the key distribution "
            f"{letter_tvd(letters):.3f}")


def unanswered_by_reason(records: list[dict]) -> dict[str, float]:
    """Generation mode: share of all replies (every rotation) that are not an answer, by extraction reason."""
    reasons: list[str] = []
    for r in records:
        reasons += r.get("rotation_extractions") or [r.get("extraction")]
    reasons = [x for x in reasons if x is not None]
    counts = Counter(reasons)
    return {reason: counts[reason] / len(reasons) for reason in UNANSWERED if counts[reason]} if reasons else {}


def results_dict(
    records: list[dict], questions: list[Question], table: pd.DataFrame, letters: pd.DataFrame,
    fields: dict[str, str] | None = None, threshold: float = 0.7, rule: str = ">", answer_count: AnswerCount = "key",
    baselines: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Flat {metric: number} for results.json: accuracy, pass shares overall and per field, CircularEval, every
    baseline's accuracy and pass share (`baseline_<name>_accuracy|pass_share`; `_strict` = strict single
    letter), letter bias, and in generation mode the unanswered share by reason. Pass shares that cannot be
    computed (no whole certification) are left out."""
    all_row = table[table["field"] == ALL].iloc[0]
    out: dict[str, float] = {
        "questions": float(len(records)),
        "certifications": float(all_row["certifications"]),
        "certifications_split": float(all_row["certifications_split"]),
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
    if baselines is not None:
        for b in baselines[baselines["letters"] != "model"].itertuples():
            out[f"baseline_{b.name}_accuracy"] = float(b.accuracy)
            out[f"baseline_{b.name}_pass_share"] = float(b.pass_share)
        prefix = {"correct": "", "circular_correct": "circular_", "pride_correct": "pride_"}
        for b in baselines[baselines["letters"] == "model"].itertuples():
            for m in ("accuracy", "pass_share"):
                out[f"{prefix[b.name]}{m}"] = float(getattr(b, m))
                if "accuracy_lo" in baselines:
                    out[f"{prefix[b.name]}{m}_lo"] = float(getattr(b, f"{m}_lo"))
                    out[f"{prefix[b.name]}{m}_hi"] = float(getattr(b, f"{m}_hi"))
    if all_row["circular_pass_share"] is not None and not pd.isna(all_row["circular_pass_share"]):
        out["circular_pass_share"] = float(all_row["circular_pass_share"])
    if records and records[0].get("circular_correct") is not None:
        out["circular_accuracy"] = sum(bool(r["circular_correct"]) for r in records) / max(1, len(records))
    if records and records[0]["mode"] == "generate":
        unanswered = unanswered_by_reason(records)
        out["unanswered_share"] = sum(unanswered.values())
        out["unparsed_reply_rate"] = out["unanswered_share"]  # the name earlier runs used
        out |= {f"unanswered_{k}": v for k, v in unanswered.items()}
    for _, row in table[table["field"] != ALL].iterrows():
        out[f"pass_share_{row['field']}"] = float(row["pass_share"])
        out[f"certifications_{row['field']}"] = float(row["certifications"])
    if len(letters):
        out["letter_bias_tvd"] = letter_tvd(letters)
    return {k: v for k, v in out.items() if not pd.isna(v)}


def is_cloze(table: pd.DataFrame) -> bool:
    """Whether a headline table carries the cloze baselines (a `cf`/`hybrid` run) rather than the letter ones."""
    return "longest_pass_share" in table and bool(table["longest_pass_share"].notna().any())


def format_table(table: pd.DataFrame) -> str:
    """The headline table as aligned text for the terminal, with its formulation's baselines and a legend."""
    t = table.copy()

    def best(share: str, letter: str) -> list[str]:
        return [f"{s:.3f} {x}" if isinstance(x, str) and x else "—"
                for s, x in zip(t[share], t[letter], strict=True)]

    cloze = is_cloze(t)
    if cloze:
        cols = ["label", "certifications", "questions", "accuracy", "pass_share", "random_pass_share",
                "longest_pass_share", "shortest_pass_share", "overlap_pass_share"]
        legend = ("pass shares over whole certifications; baselines: random guessing (expected), the k longest, "
                  "k shortest, k options with most word overlap with the question (k = the key's size)")
    else:
        t["always_keysize"] = best("best_always_pass_share", "best_always_letter")
        t["always_strict"] = best("best_always_strict_pass_share", "best_always_strict_letter")
        cols = ["label", "certifications", "questions", "accuracy", "pass_share", "circular_pass_share",
                "pride_pass_share", "random_pass_share", "always_strict", "always_keysize",
                "majority_per_cert_pass_share"]
        legend = ("pass shares over whole certifications; always-X(1): best constant letter, "
                  f"{STRICT}; always-X(k): best constant letter, {KEYSIZE}; majority/cert: each certification's "
                  f"most frequent key letter(s), {KEYSIZE}")
    if "certifications_split" in t and t["certifications_split"].any():
        cols.insert(2, "certifications_split")
    t = t[[c for c in cols if c in t.columns]]
    for c in ("circular_pass_share", "pride_pass_share"):
        if c in t and t[c].isna().all():
            t = t.drop(columns=[c])
    t = t.rename(columns={
        "label": "field", "certifications": "certs", "certifications_split": "split", "pass_share": "pass",
        "circular_pass_share": "pass(circ)", "pride_pass_share": "pass(PriDe)", "random_pass_share": "random",
        "always_strict": "always-X(1)", "always_keysize": "always-X(k)",
        "majority_per_cert_pass_share": "majority/cert", "accuracy": "acc", "longest_pass_share": "longest",
        "shortest_pass_share": "shortest", "overlap_pass_share": "overlap",
    })
    text = t.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="—")
    return text + "\n" + legend


def format_letters(letters: pd.DataFrame) -> str:
    """The model's letter distribution beside the keys' as text, with the total variation distance."""
    t = pd.DataFrame({
        "letter": letters["letter"],
        "model": [f"{c} ({s:.1%})" for c, s in zip(letters["model_count"], letters["model_share"], strict=True)],
        "keys": [f"{c} ({s:.1%})" for c, s in zip(letters["key_count"], letters["key_share"], strict=True)],
    })
    return t.to_string(index=False) + "\n" + letter_summary(letters)


def format_baselines(baselines: pd.DataFrame, all_letters: bool = False) -> str:
    """Accuracy beside pass share, each with its 95% bootstrap interval, for the model and the baselines: every
    always-X letter that is right at least once (`all_letters`), or only the best always-X of each definition."""
    b = baselines.drop(columns="name")
    b = b[~(b["baseline"].str.startswith("always ") & (b["accuracy"] == 0))]
    if not all_letters:
        always = b["baseline"].str.startswith("always ")
        keep = ~always
        for d in (STRICT, KEYSIZE):
            sub = b[always & (b["letters"] == d)]
            if len(sub):
                keep[sub["accuracy"].idxmax()] = True
        b = b[keep]
    b = b.copy()
    for m in ("accuracy", "pass_share"):
        if f"{m}_lo" in b:
            b[m] = [f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if pd.notna(lo) else "") if pd.notna(v) else "—"
                    for v, lo, hi in zip(b[m], b[f"{m}_lo"], b[f"{m}_hi"], strict=True)]
            b = b.drop(columns=[f"{m}_lo", f"{m}_hi"])
    return b.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="—")
