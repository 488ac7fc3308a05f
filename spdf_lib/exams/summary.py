"""The printed summary of an exam run, read back from its records (what `spdf exam` and the notebook show)."""

from __future__ import annotations

from pathlib import Path

from spdf_lib.exams.tables import format_baselines, format_letters, format_table
from spdf_lib.jsonio import read_json
from spdf_lib.records import read_table


def summary_text(run_dir: str | Path, all_letters: bool = True) -> str:
    """Model and prompt, data and selection (with the note when a sample splits certifications), the headline
    table, the letter distribution beside the keys', accuracy beside pass share for the model and every
    baseline, and in generation mode the unanswered replies by reason."""
    run_dir = Path(run_dir)
    manifest = read_json(run_dir / "manifest.json")
    p, info = manifest["params"], manifest.get("info", {})
    results = read_json(run_dir / "results.json")
    report = read_json(run_dir / "data_report.json")
    where = info.get("base_url") or f"{info.get('device')}, {info.get('dtype')}, {info.get('torch_threads')} threads"
    form = info.get("formulation") or "mcf"
    how = {"mcf": "letters", "cf": f"cloze, norm {info.get('norm')}", "hybrid": f"hybrid, norm {info.get('norm')}",
           "best": f"best of mcf and cf (headline: {info.get('best_formulation')}), norm {info.get('norm')}"}[form]
    lines = [
        f"model {p['model']} ({p['backend']}: {where}; {p['mode']}, formulation {form} ({how})"
        + (f", {info.get('prompt_format')} prompt" if p["mode"] == "generate" else "")
        + f"{', CircularEval' if p['circular'] and form != 'cf' else ''}"
        + f"{', PriDe' if info.get('pride') and form != 'cf' and p['mode'] == 'loglik' else ''}), "
        f"pass = score {p['pass_rule']} {p['pass_threshold']:g}",
        f"data: {report['rows_loaded']} rows, {report['rows_scored']} scorable, excluded {report['excluded']}, "
        f"repaired {report['repaired']}",
        f"selected {report['selection']}",
    ]
    if report.get("selection_note"):
        lines.append(f"note: {report['selection_note']}")
    refs = report.get("options_naming_options_selected") or {}
    if refs.get("questions") and form in ("cf", "best"):
        lines.append(f"{refs['questions']} selected questions have an option naming other options "
                     f"({', '.join(f'{k} {v}' for k, v in refs.items() if k != 'questions')}): scored in hybrid")
    lines += ["", format_table(read_table(run_dir, "headline")), "",
              "Answer letters (unrotated order) beside the keys:", format_letters(read_table(run_dir, "letters")), "",
              "Accuracy (every question) beside pass share (whole certifications), same questions:",
              format_baselines(read_table(run_dir, "baselines"), all_letters=all_letters)]
    if p["mode"] == "generate":
        reasons = {k.removeprefix("unanswered_"): v for k, v in results.items()
                   if k.startswith("unanswered_") and k != "unanswered_share"}
        by = ", ".join(f"{k} {v:.1%}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])) or "none"
        lines += ["", f"unanswered replies: {results.get('unanswered_share', 0.0):.1%} of all replies ({by})"]
    if form == "best":
        other = "cf" if info.get("best_formulation") == "mcf" else "mcf"
        lines += ["", f"The other formulation ({other}), same questions:",
                  format_table(read_table(run_dir, f"headline_{other}")), "",
                  format_baselines(read_table(run_dir, f"baselines_{other}"), all_letters=False)]
    if "pride_prior" in manifest.get("artifacts", {}) or "pride_prior_mcf" in manifest.get("artifacts", {}):
        prior = read_table(run_dir, "pride_prior" if "pride_prior" in manifest["artifacts"] else "pride_prior_mcf")
        for n, g in prior.groupby("n_options"):
            lines.append(f"PriDe letter prior, {n} options ({int(g['estimation_questions'].iloc[0])} estimation "
                         f"questions): " + ", ".join(f"{x} {v:.3f}" for x, v in zip(g["letter"], g["prior"],
                                                                                    strict=True)))
    lines += ["", f"{results['questions_per_second']:.2f} questions/s ({results['seconds']:.0f} s of scoring); "
              f"records in {run_dir}"]
    return "\n".join(lines)
