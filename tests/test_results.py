"""The results table: real run records (spdf_lib.records.Run, sweep point.json files) aggregated into one
DataFrame, written to Parquet/CSV and printed by `spdf results`."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest

from spdf_lib.cli import main
from spdf_lib.jsonio import write_json
from spdf_lib.records import Run
from spdf_lib.results import load_results, varying_columns, write_results


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A runs folder: two runs of one experiment, one of another, a sweep with a failed and an ok point, a
    run still going, and files that are not runs."""
    root = tmp_path_factory.mktemp("results") / "runs"
    for sparsity, loss in ((0.5, 2.5), (0.0, 3.0)):
        d = root / "alpha" / f"s{sparsity}"
        run = Run(d, "alpha", {"sparsity": sparsity, "lr": 1e-3, "layers": [2, 2], "run_dir": str(d)}, seed=0)
        run.finish({"loss": loss, "ppl": math.exp(loss)})
    d = root / "beta" / "one"
    # `sparsity` is text here and a number in alpha; a metric shares a parameter's name
    Run(d, "beta", {"task": "e2e", "sparsity": "dense"}, seed=1).finish({"bleu": 40.25, "sparsity": 0.0})
    Run(root / "beta" / "going", "beta", {"task": "dart", "sparsity": "dense"}, seed=1)  # no results yet
    sweep = root / "mysweep"
    Run(sweep / "beta-ok", "beta", {"task": "webnlg", "sparsity": "dense"}, seed=2).finish({"bleu": 30.5})
    write_json(sweep / "beta-ok" / "point.json", {
        "id": "beta-ok", "stage": "finetune", "experiment": "beta", "status": "ok", "seconds": 4.5, "error": None,
        "params": {"task": "webnlg"}, "vars": {"pretrain_sparsity": 0.75}})
    write_json(sweep / "beta-bad" / "point.json", {  # failed before the notebook wrote a manifest
        "id": "beta-bad", "stage": "finetune", "experiment": "beta", "status": "failed", "seconds": 1.0,
        "error": "ValueError: no such task 'x'", "params": {"task": "x", "run_dir": "/elsewhere"},
        "vars": {"pretrain_sparsity": 0.5}})
    write_json(root / "bench" / "2026.json", {"results": []})
    write_json(root / "alpha" / "s0.5" / "model" / "manifest.json", {"format": "not a run"})
    return root


def test_table_has_one_row_per_run_with_params_and_metrics(runs):
    df = load_results(runs)
    assert df["run"].tolist() == ["alpha/s0.0", "alpha/s0.5", "beta/going", "beta/one", "mysweep/beta-bad",
                                  "mysweep/beta-ok"]
    assert df.columns[:3].tolist() == ["run", "experiment", "status"]
    row = df.set_index("run")
    assert row.loc["alpha/s0.5", "loss"] == 2.5 and row.loc["alpha/s0.5", "ppl"] == pytest.approx(math.exp(2.5))
    assert row.loc["alpha/s0.5", "layers"] == "[2, 2]"  # non-scalars as JSON text
    assert "run_dir" not in df.columns
    # mixed kinds become text; a metric named like a parameter is prefixed
    assert row.loc["alpha/s0.5", "sparsity"] == "0.5" and row.loc["beta/one", "sparsity"] == "dense"
    assert row.loc["beta/one", "results.sparsity"] == 0.0
    assert row.loc["beta/going", "status"] == "running" and pd.isna(row.loc["beta/going", "bleu"])
    assert row.loc["mysweep/beta-bad", "status"] == "failed"
    assert row.loc["mysweep/beta-bad", "error"] == "ValueError: no such task 'x'"
    assert row.loc["mysweep/beta-ok", ["sweep", "stage", "point", "seconds", "pretrain_sparsity"]].tolist() == [
        "mysweep", "finetune", "beta-ok", 4.5, 0.75]
    assert row.loc["alpha/s0.0", "git_commit"] and pd.isna(row.loc["alpha/s0.0", "sweep"])
    assert df.attrs["metrics"] == ["loss", "ppl", "bleu", "results.sparsity"]


def test_filters_and_printed_columns(runs):
    beta = load_results(runs, experiment="beta")
    assert set(beta["experiment"]) == {"beta"} and len(beta) == 4
    assert "loss" not in beta.columns  # columns no row of the selection has are dropped
    sweep = load_results(runs, sweep="mysweep")
    assert sweep["point"].tolist() == ["beta-bad", "beta-ok"]
    # printed: what tells the rows apart, every metric, and the error column when a run has one
    assert varying_columns(sweep) == ["run", "experiment", "status", "task", "pretrain_sparsity", "sparsity", "bleu",
                                      "error"]
    assert load_results(runs / "nothing-here").empty


@pytest.mark.parametrize("name", ["table.parquet", "table.csv"])
def test_table_round_trips_through_files(runs, tmp_path, name):
    df = load_results(runs)
    out = write_results(df, tmp_path / name)
    back = pd.read_parquet(out) if name.endswith(".parquet") else pd.read_csv(out)
    assert back["run"].tolist() == df["run"].tolist() and back.columns.tolist() == df.columns.tolist()
    for metric in df.attrs["metrics"]:
        pd.testing.assert_series_equal(back[metric], df[metric])
    if name.endswith(".parquet"):
        pd.testing.assert_frame_equal(back, df)
    assert not list(tmp_path.glob(f".{name}.*"))  # no temp file left behind


def test_results_command_prints_the_table_and_writes_only_when_asked(runs, capsys, tmp_path):
    before = sorted(p.relative_to(runs) for p in runs.rglob("*"))
    assert main(["results", "--root", str(runs)]) == 0
    out, err = capsys.readouterr()
    header = out.splitlines()[0].split()
    assert header[:3] == ["run", "experiment", "status"] and "bleu" in header and "git_commit" not in header
    assert len(out.splitlines()) == 7 and "40.25" in out
    assert sorted(p.relative_to(runs) for p in runs.rglob("*")) == before and not err  # a read has no side effects

    assert main(["results", "--root", str(runs), "--sweep", "mysweep", "--csv"]) == 0
    csv = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert csv["point"].tolist() == ["beta-bad", "beta-ok"] and "git_commit" in csv.columns

    assert main(["results", "--root", str(runs), "--out", str(tmp_path / "t.parquet")]) == 0
    assert pd.read_parquet(tmp_path / "t.parquet")["run"].tolist()[0] == "alpha/s0.0"
    assert capsys.readouterr().err.strip().endswith(f"6 runs -> {tmp_path / 't.parquet'}")


def test_results_command_names_a_missing_runs_folder(tmp_path, capsys):
    assert main(["results", "--root", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"spdf results: error: runs folder {tmp_path / 'nope'} does not exist; pass --root or set "
                   f"$SPDF_RUNS_DIR to the folder your runs went to")


def test_help_shows_examples_and_flops_flags_explain_themselves(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "examples:\n  spdf run spdf_pretrain" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["flops", "--help"])
    text = capsys.readouterr().out
    for flag in ("--model", "--sparsity", "--tokens", "--seq-len", "--convention"):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(flag))
        assert len(line.split(maxsplit=2)) > 1, f"{flag} has no help text"
    assert "{nano,micro,mini,small,gpt2-small,gpt2-small-2048,gpt3-xl}" in text and "kaplan" in text
    with pytest.raises(SystemExit):
        main(["flops", "--model", "gpt5", "--tokens", "1e9"])
    assert "invalid choice: 'gpt5'" in capsys.readouterr().err


def test_the_report_says_which_precision_the_runs_computed_in():
    from spdf_lib.report import precision_line

    table = pd.DataFrame({"resolved_precision": ["fp32", "fp32", "bf16", None]})
    assert (
        precision_line(table)
        == "Precision: fp32 (2 runs), bf16 (1 run); 1 run records none (no training or local model)."
    )
    assert precision_line(pd.DataFrame({"run": ["a"]})).startswith("Precision: none recorded; 1 run records none")
