"""The exam study's part of the report: certification pass shares beside the chance and letter-bias baselines
that must always be read with them, and the paper's headline numbers (Noever & Ciolino 2023)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from spdf_lib.exams import plots
from spdf_lib.exams.tables import letter_tvd
from spdf_lib.records import read_table
from spdf_lib.report_document import Report, column

PAPER_GPT3_PASS_SHARE = 0.39  # GPT-3 passed 39% of 1,149 certifications
PAPER_TURBO_OSCP = 1.0  # "Turbo GPT-3.5" scored 100% on the OSCP set


def model_label(model: str) -> str:
    """`smollm2`, or `kit-<arch>-s<sparsity>` for a kit checkpoint folder."""
    config = Path(model) / "config.json"
    if config.is_file():
        from spdf_lib.modeling_gpt import architecture_name

        c = json.loads(config.read_text())
        return f"kit-{architecture_name(c)}-s{c.get('sparsity', 0.0):g}"
    return Path(model).name


def _top_choice(choices: pd.Series) -> str:
    """The model's most frequent answer and its share, e.g. "'A' for 86 of 86 questions" (the letter-bias check)."""
    counts = choices.astype(str).value_counts()
    return f"'{counts.index[0]}' for {counts.iloc[0]} of {len(choices)} questions" if len(counts) else "nothing"


def _oscp_sentence(score: str, keys: set[str]) -> str:
    """The paper's OSCP result (100% for Turbo GPT-3.5) read beside this subset's answer keys."""
    if not keys:
        return "OSCP (the paper: 100% for Turbo GPT-3.5) is not in this subset."
    said = (f"all '{next(iter(keys))}', so always answering that letter scores 100% too" if len(keys) == 1
            else f"{len(keys)} different letters")
    return f"OSCP (the paper: 100% for Turbo GPT-3.5) scores {score} here; its answer keys are {said}."


def section(results: pd.DataFrame, rep: Report) -> None:
    """Add the exam study's findings to `rep`."""
    runs = rep.open_section("Professional-certification exams", results, "exams")
    if runs.empty:
        return
    rows = []
    for r in runs.itertuples():
        folder = rep.run_dir(r.run)
        records = read_table(folder, "records")
        oscp_keys = set(records.loc[records["certification"].str.contains("OSCP", regex=False), "key"])
        headline = read_table(folder, "headline")
        certs = read_table(folder, "certifications")
        label = model_label(str(column(runs, "model").loc[r.Index]))
        top = headline[headline["field"] == "all"].iloc[0]
        oscp = certs[certs["certification"].str.contains("OSCP", regex=False)]
        letters = read_table(folder, "letters")
        row = {"model": label, "certifications": top["certifications"], "questions": top["questions"],
               "accuracy": top["accuracy"], "pass_share": top["pass_share"],
               "circular_pass_share": top["circular_pass_share"], "random": top["random_pass_share"],
               "always_letter_strict": f"{top['best_always_strict_letter']} {top['best_always_strict_pass_share']:.2f}",
               "always_letter_as_key": f"{top['best_always_letter']} {top['best_always_pass_share']:.2f}",
               "majority_per_cert": top["majority_per_cert_pass_share"], "letter_tvd": letter_tvd(letters),
               "oscp": f"{oscp['correct'].iloc[0]}/{oscp['questions'].iloc[0]}" if len(oscp) else "—"}
        rows.append(row)
        beats = row["pass_share"] > max(row["random"], row["majority_per_cert"])
        rep.figure(
            plots.pass_share_by_field(headline, title=label),
            f"exams_pass_share_{label}",
            f"- {label}: {row['pass_share']:.0%} passed ({row['circular_pass_share']:.0%} under CircularEval) "
            f"against {row['random']:.0%} expected from random guessing, "
            f"{top['best_always_strict_pass_share']:.0%} from always answering "
            f"'{top['best_always_strict_letter']}' (strict single letter; "
            f"{top['best_always_pass_share']:.0%} with as many letters as the key) and "
            f"{row['majority_per_cert']:.0%} from each certification's majority letter — "
            f"{'above' if beats else 'not above'} the letter baselines; it answered {_top_choice(records['choice'])} "
            f"(distance of its letters from the keys': {row['letter_tvd']:.2f}). The paper's GPT-3 passed "
            f"{PAPER_GPT3_PASS_SHARE:.0%} of 1,149 certifications; " + _oscp_sentence(row["oscp"], oscp_keys),
        )
    table = pd.DataFrame(rows)
    rep.tables["exams"] = table
    rep.say("Share of the selected certifications passed (score over 70%), beside the baselines that must "
            "always be read with it:", "", table.to_markdown(index=False, floatfmt=".3f"), "")
