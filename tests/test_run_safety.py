"""Runs that never lie and never lose: run folders are owned, status is honest, errors are one line, damaged
files are named and survived. Real runs of the smoke presets (fp32) in temp folders."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spdf_lib import cli
from spdf_lib.errors import DivergedError, RunDirError
from spdf_lib.experiments import load, run
from spdf_lib.jsonio import read_json, write_json
from spdf_lib.records import Run
from spdf_lib.run_status import effective_status
from spdf_lib.rundir import claim

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
FAST = {"precision": "fp32", "progress": False}


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished smoke pre-training run (lr 0.002)."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    run("spdf_pretrain", load("spdf_pretrain", None, FAST), folder)
    return folder


def _stderr_lines(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


# --- 1. run folders are owned ------------------------------------------------------------------------------------


def test_a_rerun_with_other_parameters_is_refused_and_leaves_the_folder_byte_identical(finished, capsys):
    before = tree_digest(finished)
    rc = cli.main(["run", "spdf_pretrain", "-p", "precision=fp32", "-p", "progress=false", "-p", "lr=0.004",
                   "--run-dir", str(finished)])
    lines = _stderr_lines(capsys)
    assert rc == 2 and len(lines) == 1
    assert "lr: 0.002 → 0.004" in lines[0] and "--run-dir" in lines[0] and "--overwrite" in lines[0]
    assert tree_digest(finished) == before


def test_the_same_configuration_finished_says_so_and_writes_nothing(finished, capsys):
    before = tree_digest(finished)
    rc = cli.main(["run", "spdf_pretrain", "-p", "precision=fp32", "-p", "progress=false",
                   "--run-dir", str(finished)])
    assert rc == 0 and "is finished (status ok)" in capsys.readouterr().err
    assert tree_digest(finished) == before


def test_a_folder_the_kit_did_not_write_is_refused(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "notes.txt").write_text("mine")
    (tmp_path / "results.json").write_text("{}")
    rc = cli.main(["run", "spdf_pretrain", "--run-dir", str(tmp_path)])
    lines = _stderr_lines(capsys)
    assert rc == 2 and len(lines) == 1 and "files the kit did not write (model, results.json)" in lines[0]
    assert (tmp_path / "model" / "notes.txt").read_text() == "mine" and (tmp_path / "results.json").read_text() == "{}"


def test_a_run_the_kit_made_inside_a_folder_is_the_kits(finished, tmp_path):
    """spdf_finetune with `checkpoint: pretrain:<preset>` pre-trains into its own `pretrain/` first."""
    folder = tmp_path / "finetune"
    shutil.copytree(finished, folder / "pretrain")
    params = load("spdf_finetune", None, FAST).model_dump()
    assert claim(folder, "spdf_finetune", params).state == "new"
    (folder / "notes").mkdir()  # a plain folder of the user's is not a run
    with pytest.raises(RunDirError, match=r"did not write \(notes\)"):
        claim(folder, "spdf_finetune", params)


def test_overwrite_moves_the_old_contents_aside(finished, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    before = tree_digest(folder)
    params = load("spdf_pretrain", None, {**FAST, "lr": 0.004}).model_dump()
    found = claim(folder, "spdf_pretrain", params, overwrite=True)
    assert found.state == "new" and list(folder.iterdir()) == []
    assert found.moved_to.parent == tmp_path and tree_digest(found.moved_to) == before


def test_spdf_run_overwrite_runs_the_new_configuration_beside_the_old_one(finished, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    before = tree_digest(folder)
    rc = cli.main(["run", "spdf_pretrain", "-p", "precision=fp32", "-p", "progress=false", "-p", "lr=0.004",
                   "--run-dir", str(folder), "--overwrite"])
    assert rc == 0 and f"moved the old contents of {folder} to" in capsys.readouterr().err
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert tree_digest(aside) == before
    manifest = read_json(folder / "manifest.json")
    assert manifest["status"] == "ok" and manifest["params"]["lr"] == 0.004


def test_run_folders_that_cannot_be_one_are_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for target, says in ((tmp_path / "file", "is a file"), (tmp_path / "file" / "sub", "which is a file")):
        assert cli.main(["run", "spdf_pretrain", "--run-dir", str(target)]) == 2
        lines = _stderr_lines(capsys)
        assert len(lines) == 1 and says in lines[0]


# --- 2. honest status -------------------------------------------------------------------------------------------


def test_an_injected_nan_loss_stops_the_run_as_diverged(tmp_path, monkeypatch):
    from spdf_lib import pretrain

    build = pretrain.build_model

    def poisoned(p, tok):
        model = build(p, tok)
        model.transformer.wte.weight.data[:, 0] = float("nan")
        return model

    monkeypatch.setattr(pretrain, "build_model", poisoned)
    with pytest.raises(DivergedError, match="diverged at step 1"):
        run("spdf_pretrain", load("spdf_pretrain", None, FAST), tmp_path)
    manifest = read_json(tmp_path / "manifest.json")
    assert manifest["status"] == "diverged" and "step 1" in manifest["reason"] and manifest["last_step"] is None
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "model").exists()
    assert "NaN" not in (tmp_path / "manifest.json").read_text()


def test_a_huge_learning_rate_diverges_with_exit_code_3_and_one_line(tmp_path):
    cmd = [sys.executable, "-m", "spdf_lib.experiments", "spdf_pretrain", "--params",
           str(REPO / "params/spdf_pretrain/smoke.yaml"), "-p", "precision=fp32", "-p", "progress=false",
           "-p", "lr=1e6", "--run-dir", str(tmp_path)]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 3 and lines == [lines[0]] and "training diverged at step" in lines[0], res.stderr
    assert read_json(tmp_path / "manifest.json")["status"] == "diverged"


def test_a_diverged_notebook_run_under_spdf_run_is_recorded_diverged_with_its_last_step(tmp_path, capsys):
    # the notebook calls its runner directly (not experiments.run): the kernel must still write `diverged`
    assert cli.main(["run", "spdf_pretrain", "-p", "lr=1e6", "-p", "precision=fp32", "-p", "progress=false",
                     "--run-dir", str(tmp_path)]) == 3
    assert "training diverged at step 3" in _stderr_lines(capsys)[-1]
    manifest = read_json(tmp_path / "manifest.json")
    assert manifest["status"] == "diverged" and manifest["last_step"] == 2
    assert manifest["reason"].startswith("training diverged at step 3") and "None" not in manifest["reason"]


def test_infinite_or_bool_numbers_are_refused_before_any_compute(tmp_path, capsys):
    for override, says in (("lr=inf", "lr: must be a finite number"), ("tokens=true", "tokens: must be a number"),
                           ("lr=.nan", "lr: must be a finite number")):
        assert cli.main(["run", "spdf_pretrain", "-p", override, "--run-dir", str(tmp_path / "x")]) == 2
        lines = _stderr_lines(capsys)
        assert len(lines) == 1 and says in lines[0]
    assert not (tmp_path / "x").exists()


def test_records_are_strict_json(tmp_path):
    write_json(tmp_path / "r.json", {"a": float("nan"), "b": [float("inf"), 1.5], "c": 2})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": None, "b": [None, 1.5], "c": 2}


def _start(run_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "spdf_lib.experiments", "spdf_pretrain", "--params",
           str(REPO / "params/spdf_pretrain/smoke.yaml"), "-p", "precision=fp32", "-p", "progress=false",
           "-p", "tokens=40000", "-p", "checkpoint_every=10", "-p", "log_every=5", "--run-dir", str(run_dir), *extra]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(run_dir: Path, proc: subprocess.Popen, step: int) -> None:
    """Until the run has logged `step` (polling its metrics file; no timing in the assertion)."""
    metrics = run_dir / "metrics.jsonl"
    while proc.poll() is None:
        rows = metrics.read_text().splitlines() if metrics.is_file() else []
        if rows and json.loads(rows[-1])["step"] >= step:
            return
        time.sleep(0.2)
    raise AssertionError(f"the run ended before step {step}: {proc.stderr.read()[-2000:]}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_run_reads_interrupted_and_the_rerun_resumes_to_ok(tmp_path, sig, capsys):
    proc = _start(tmp_path)
    _wait_for_step(tmp_path, proc, 25)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    manifest = read_json(tmp_path / "manifest.json")
    status, reason = effective_status(tmp_path)
    assert status == "interrupted", (manifest, reason)
    if sig == signal.SIGKILL:  # nothing could be written: the dead pid tells
        assert manifest["status"] == "running" and "is gone" in reason
    else:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert proc.returncode == 130 and lines[-1].startswith("spdf_pretrain: interrupted at step ")
        assert lines[-1].endswith("; re-run the same command to resume")
        assert manifest["status"] == "interrupted" and manifest["last_step"] >= 25
    assert cli.main(["results", "--root", str(tmp_path), "--csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith(".,spdf_pretrain,interrupted,")
    if sig == signal.SIGTERM:  # it ends like SIGINT; the resume is the same as after SIGINT
        return
    newest = max(int(p.name[5:]) for p in (tmp_path / "checkpoints").glob("step-*"))
    proc = _start(tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert f"resuming from step {newest} (step-{newest:08d})" in err
    final = read_json(tmp_path / "manifest.json")
    assert final["status"] == "ok" and final["start"] == manifest["start"] and len(final["resumed"]) == 1
    steps = [json.loads(r)["step"] for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert (
        steps == sorted(set(steps)) and steps[-1] == final["last_step"] == read_json(tmp_path / "results.json")["steps"]
    )


# --- 4. one line from anywhere ------------------------------------------------------------------------------------


def test_a_missing_or_truncated_checkpoint_under_spdf_run_is_exactly_one_line(finished, tmp_path, capsys):
    rc = cli.main(["run", "spdf_finetune", "-p", f"checkpoint={tmp_path / 'nope'}", "--run-dir", str(tmp_path / "r")])
    assert rc == 2 and capsys.readouterr().err.count("\n") == 1
    model = tmp_path / "model"
    shutil.copytree(finished / "model", model)
    data = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) // 2])
    rc = cli.main(["run", "spdf_finetune", "-p", f"checkpoint={model}", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and f"{model / 'model.safetensors'} is truncated" in err
    assert not (tmp_path / "r").exists()


def test_a_user_error_inside_any_notebook_is_the_same_one_line(tmp_path, capsys):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from spdf_lib.params import ParamsError\n"
                                          "raise ParamsError(f'x must be small, got {x}')")]
    path = tmp_path / "mine.ipynb"
    nbformat.write(nb, str(path))
    rc = cli.main(["run", str(path), "-p", "x=5", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert rc == 2 and "Traceback" not in err
    assert last == f"spdf run: error: x must be small, got 5 (full traceback: {tmp_path / 'r' / 'notebook.ipynb'})"
    assert "ParamsError" in (tmp_path / "r" / "notebook.ipynb").read_text()


# --- 5. damaged files are named and survived ---------------------------------------------------------------------


def test_a_truncated_latest_checkpoint_falls_back_to_the_same_weights(tmp_path, shakespeare_tokens, capsys):
    import torch
    from safetensors.torch import load_file

    from spdf_lib.checkpoints import unique_state_dict
    from spdf_lib.data.streams import PackedStream
    from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
    from spdf_lib.train import TrainConfig, train

    tok, train_ids, val_ids = shakespeare_tokens
    data = PackedStream(train_ids, val_ids, 32, eval_windows=2)
    cfg = TrainConfig(max_steps=6, batch_size=2, checkpoint_every=2, keep_checkpoints=3, precision="fp32",
                      progress=False)

    def model():
        torch.manual_seed(0)
        return GPTForCausalLM(gpt_config("nano", vocab_size=len(tok), n_positions=32, dropout=0.1))

    damaged, clean = tmp_path / "damaged", tmp_path / "clean"
    train(model(), data, cfg, out_dir=damaged)
    shutil.rmtree(damaged / "checkpoints" / "step-00000006")  # killed before its last save
    shutil.copytree(damaged, clean)
    shutil.rmtree(clean / "checkpoints" / "step-00000004")  # the run from step 2, uninterrupted
    weights = damaged / "checkpoints" / "step-00000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    a, b = model(), model()
    capsys.readouterr()
    train(a, data, cfg, out_dir=damaged)
    out = capsys.readouterr().err
    assert f"checkpoint step-00000004 is damaged: {weights} is truncated" in out
    assert "resuming from step 2 (step-00000002) (passed over damaged step-00000004)" in out
    train(b, data, cfg, out_dir=clean)
    for k, v in unique_state_dict(b).items():
        assert torch.equal(unique_state_dict(a)[k], v), k
    saved = load_file(damaged / "checkpoints" / "step-00000006" / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in unique_state_dict(b).items())


# --- 3 and 6. parameter files -----------------------------------------------------------------------------------


def test_empty_and_malformed_parameter_files_are_one_line(tmp_path, capsys):
    empty, bad = tmp_path / "empty.yaml", tmp_path / "bad.yaml"
    empty.write_text("")
    bad.write_text("lr: 0.1\nsparsity: [0.5,\n")
    assert cli.main(["run", "spdf_pretrain", "--params", str(empty)]) == 2
    assert "the parameter file is empty" in capsys.readouterr().err
    assert cli.main(["run", "spdf_pretrain", "--params", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}:3:1: not valid YAML" in err


def test_exam_sample_zero_is_an_error(capsys):
    assert cli.main(["exam", "--sample", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--sample" in err


def test_a_damaged_tokenized_cache_is_rebuilt_and_dead_temp_folders_go(tmp_path, monkeypatch, capsys):
    import torch

    from spdf_lib.pretrain import tokenized_corpus

    monkeypatch.setenv("SPDF_CACHE", str(tmp_path))
    _, train_ids, val_ids, _ = tokenized_corpus("shakespeare", 300, seed=0, max_chars=20_000)
    folder = tmp_path / "tokenized" / "shakespeare-v300-s0-c20000"
    dead = folder.with_name(".shakespeare-v300-s0-c20000.999999999")  # a killed build's temp folder
    dead.mkdir()
    data = (folder / "train.pt").read_bytes()
    (folder / "train.pt").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    _, again, val_again, _ = tokenized_corpus("shakespeare", 300, seed=0, max_chars=20_000)
    assert f"cached corpus {folder} is damaged (train.pt does not match its checksum); rebuilding" in \
        capsys.readouterr().err
    assert torch.equal(again, train_ids) and torch.equal(val_again, val_ids) and not dead.exists()


def test_a_mirror_folder_that_does_not_exist_is_named(monkeypatch, tmp_path):
    from spdf_lib.data.download import DataError
    from spdf_lib.data.registry import REGISTRY, fetch_file

    monkeypatch.setenv("SPDF_DATA_MIRROR", str(tmp_path / "nope"))
    f = next(f for ds in REGISTRY.values() for f in ds.files if not f.from_pypi)
    with pytest.raises(DataError, match="the mirror folder .* does not exist"):
        fetch_file(f)


def test_a_folder_of_a_live_run_of_the_same_configuration_is_refused(finished, tmp_path):
    # the same command started twice: the second must not train into the first one's folder
    import datetime as dt
    import subprocess as sp

    import psutil

    folder = tmp_path / "live"
    shutil.copytree(finished, folder)
    sleeper = sp.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        manifest = read_json(folder / "manifest.json")
        started = psutil.Process(sleeper.pid).create_time()
        start = dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds")
        manifest.update(status="running", pid=sleeper.pid, start=start, resumed=[], end=None)
        write_json(folder / "manifest.json", manifest)
        before = tree_digest(folder)
        with pytest.raises(RunDirError, match="in use by a live run"):
            Run(folder, "spdf_pretrain", manifest["params"], 0)
        assert tree_digest(folder) == before
    finally:
        sleeper.kill()
        sleeper.wait()
    assert claim(folder, "spdf_pretrain", manifest["params"]).state == "resume"  # its process is gone


def test_a_dead_kernel_leaves_no_log_noise_after_the_one_line(caplog):
    # Ctrl-C reaches the kernel too; nbclient and asyncio then log a dead kernel in 8 lines after ours
    import logging

    from nbclient.exceptions import DeadKernelError

    from spdf_lib import notebooks

    notebooks._quiet_dead_kernels()
    with caplog.at_level(logging.INFO):
        logging.getLogger("papermill").error("Kernel died while waiting for execute reply.")
        err = DeadKernelError("Kernel died")
        logging.getLogger("asyncio").error("Task exception was never retrieved\nfuture: <Task>",
                                           exc_info=(type(err), err, None))
        logging.getLogger("asyncio").error(
            "Task exception was never retrieved", exc_info=(ValueError, ValueError(), None)
        )
    assert [r.getMessage() for r in caplog.records] == ["Task exception was never retrieved"]


def test_the_resume_line_of_a_killed_run_names_its_last_step(finished, tmp_path):
    from spdf_lib.notebooks import last_step

    folder = tmp_path / "killed"
    shutil.copytree(finished, folder)
    manifest = read_json(folder / "manifest.json")
    manifest.update(status="running", last_step=None, pid=2**22 + 12345)  # no such process
    write_json(folder / "manifest.json", manifest)
    write_json(folder / "heartbeat.json", {"pid": manifest["pid"], "step": 30, "time": manifest["start"]})
    assert last_step(folder, manifest) == 40  # the metrics' last row is later than the heartbeat
    assert effective_status(folder, manifest)[0] == "interrupted"
