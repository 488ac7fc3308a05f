"""Issue 31: nothing runs that the user did not ask for, nothing escapes its folder, nothing damaged passes as ok,
one owner at a time, nothing overwritten without --overwrite, memory priced before compute. Real files in temp
folders, real kit code, real processes (two `spdf run`, two `spdf sweep` started together)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from spdf_lib import cli
from spdf_lib.errors import CorruptFileError, RunDirError
from spdf_lib.params import parse_override

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


class _Evil:
    """A pickle that, when unpickled with code allowed, creates the file `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_pickle(path: Path, marker: Path, wrap=lambda x: x) -> None:
    import torch

    torch.save(wrap(_Evil(marker)), path)


# --- 1. no code from data -----------------------------------------------------------------------------------------


def _checkpoint(out: Path):
    import torch

    from spdf_lib.checkpoints import save_checkpoint
    from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config

    model = GPTForCausalLM(gpt_config("nano", n_embd=16, n_head=2, vocab_size=64, n_positions=16))
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(out, model, opt, {"step": 3, "fingerprint": {"a": 1}}, keep=2)
    return model, opt, out / "checkpoints" / "step-00000003"


@pytest.mark.parametrize("name", ["rng.pt", "optimizer.pt"])
def test_a_crafted_pickle_in_a_checkpoint_runs_no_code_and_is_named_unsafe(tmp_path, name):
    from spdf_lib.checkpoints import load_latest

    model, opt, step = _checkpoint(tmp_path)
    (step / "rng.safetensors").unlink(missing_ok=True)  # an earlier version's checkpoint: rng.pt
    if name == "optimizer.pt":
        import torch

        torch.save({"torch": torch.get_rng_state(), "cuda": None}, step / "rng.pt")
    marker = tmp_path / "PWNED"
    _evil_pickle(step / name, marker, wrap=lambda e: {"torch": e, "cuda": None})
    said: list[str] = []
    assert load_latest(tmp_path, model, opt, {"a": 1}, say=said.append) is None
    assert not marker.exists(), "unpickling ran the file's code"
    assert said[0].startswith("checkpoint step-00000003 is damaged: ") and f"{step / name} is unsafe" in said[0]


def test_checkpoint_rng_state_is_safetensors_and_resumes(tmp_path):
    import torch

    from spdf_lib.checkpoints import load_latest

    model, opt, step = _checkpoint(tmp_path)
    assert sorted(p.name for p in step.iterdir()) == ["model.safetensors", "optimizer.pt", "rng.safetensors",
                                                     "state.json"]
    expected = torch.get_rng_state()
    torch.manual_seed(123)
    assert load_latest(tmp_path, model, opt, {"a": 1}, say=lambda _: None)["step"] == 3
    assert torch.equal(torch.get_rng_state(), expected)


def test_a_crafted_pickle_in_the_tokenized_cache_runs_no_code_and_is_named(tmp_path, monkeypatch):
    from spdf_lib import pretrain

    monkeypatch.setenv("SPDF_CACHE", str(tmp_path / "cache"))
    pretrain.tokenized_corpus("shakespeare", 300, seed=0, max_chars=20_000)
    folder = next((tmp_path / "cache" / "tokenized").iterdir())
    marker = tmp_path / "PWNED"
    _evil_pickle(folder / "train.pt", marker)
    sums = json.loads((folder / pretrain.CACHE_SUMS).read_text())  # an attacker rewrites the checksums too
    sums["train.pt"] = pretrain._sha256(folder / "train.pt")
    (folder / pretrain.CACHE_SUMS).write_text(json.dumps(sums))
    with pytest.raises(CorruptFileError, match=r"train\.pt is unsafe or damaged.*delete .* to rebuild it"):
        pretrain.tokenized_corpus("shakespeare", 300, seed=0, max_chars=20_000)
    assert not marker.exists()


def test_model_folders_load_with_remote_code_off(tmp_path):
    from spdf_lib.exams.backends import LocalLM

    marker = tmp_path / "PWNED"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({
        "model_type": "evil_remote", "auto_map": {"AutoConfig": "evil.EvilConfig",
                                                  "AutoModelForCausalLM": "evil.EvilModel"}}))
    (tmp_path / "m" / "evil.py").write_text(f"open({str(marker)!r}, 'w')\n")
    with pytest.raises(ValueError, match="asks to run its own code.*trust_remote_code off"):
        LocalLM.load(str(tmp_path / "m"))
    assert not marker.exists()


# --- 2. folders stay inside their roots ---------------------------------------------------------------------------


def _toy_notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    cell = nbformat.v4.new_code_cell("x = 0\ncounter = ''\nhold = 0.0\nrun_dir = ''")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(textwrap.dedent(body).strip())]
    nbformat.write(nb, str(path))
    return path


# A notebook that keeps real kit records (`Run`): a manifest, results, the run folder's claim.
RECORDED = """
    import time
    from spdf_lib.records import Run
    r = Run(run_dir, "toy", {"x": x, "counter": counter, "hold": hold, "run_dir": run_dir}, seed=0)
    with open(counter, "a") as f:
        f.write(run_dir + "\\n")
    time.sleep(hold)
    r.log({"step": 1, "loss": 1.0})
    r.finish({"loss": 1.0 + x})
"""


@pytest.fixture()
def toy(tmp_path) -> Path:
    _toy_notebook(tmp_path / "toy.ipynb", RECORDED)
    (tmp_path / "toy_schema.py").write_text(
        "from spdf_lib.params import Params\nclass Toy(Params):\n    x: float = 0.0\n    counter: str = ''\n"
        "    hold: float = 0.0\n")
    return tmp_path


def _sweep(toy: Path, name: str, hold: float = 0.0) -> Path:
    path = toy / f"s{abs(hash(name)) % 1000}.yaml"
    path.write_text(textwrap.dedent(f"""
        name: {json.dumps(name)}
        stages:
          toy: {{notebook: {toy}/toy.ipynb, experiment: toy, schema: "toy_schema:Toy",
                 params: {{counter: {toy}/counter.txt, hold: {hold}}}}}
        """))
    return path


@pytest.mark.parametrize("name", [".", "..", "/tmp/abs", "a/../..", "link"])
def test_a_sweep_name_that_leaves_its_root_is_one_line_and_writes_nothing(toy, name, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(toy))
    root = toy / "runs" / "inner"
    root.mkdir(parents=True)
    (root / "link").symlink_to(toy / "elsewhere", target_is_directory=True)
    path = _sweep(toy, name)
    before = sorted(p.name for p in toy.iterdir())
    rc = cli.main(["sweep", str(path), "--root", str(root), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "name" in err, err
    assert sorted(p.name for p in toy.iterdir()) == before and [p.name for p in root.iterdir()] == ["link"]


# --- 4. damaged is a status ---------------------------------------------------------------------------------------


def _run_record(folder: Path, status: str = "ok") -> Path:
    from spdf_lib.records import Run

    run = Run(folder, "spdf_pretrain", {"lr": 0.1, "run_dir": str(folder)}, seed=0)
    run.log({"step": 1, "loss": 2.0})
    run.finish({"loss": 2.0}, status=status)
    return folder


@pytest.mark.parametrize("name", ["manifest.json", "results.json", "metrics.jsonl"])
def test_spdf_results_shows_a_damaged_record_as_damaged_with_one_warning(tmp_path, name, capsys):
    _run_record(tmp_path / "good")
    bad = _run_record(tmp_path / "bad")
    text = (bad / name).read_text()
    (bad / name).write_text(text[: len(text) // 2] if name != "metrics.jsonl" else text + "{not json\n")
    assert cli.main(["results", "--root", str(tmp_path), "--csv"]) == 0
    out, err = capsys.readouterr()
    rows = {r.split(",")[0]: r.split(",")[2] for r in out.splitlines()[1:]}
    assert rows == {"bad": "damaged", "good": "ok"}
    warnings = [ln for ln in err.splitlines() if ln.strip()]
    assert len(warnings) == 1 and str(bad / name) in warnings[0] and "damaged" in warnings[0]


@pytest.mark.parametrize("name", ["manifest.json", "results.json"])
def test_a_sweep_reruns_a_damaged_point_and_never_counts_it_done(toy, name, monkeypatch, capsys):
    from spdf_lib import sweep as S

    monkeypatch.syspath_prepend(str(toy))
    path, root = _sweep(toy, "dmg"), toy / "runs"
    assert cli.main(["sweep", str(path), "--root", str(root), "--no-progress"]) == 0
    (point,) = S.plan_sweep(path, root=root).points
    text = (point.dir / name).read_text()
    (point.dir / name).write_text(text[: len(text) // 2])
    assert S.point_status(point) == "damaged"
    capsys.readouterr()
    assert cli.main(["sweep", str(path), "--root", str(root), "--no-progress"]) == 0, capsys.readouterr().err
    assert S.point_status(point) == "done" and json.loads((point.dir / "point.json").read_text())["status"] == "ok"
    assert len((toy / "counter.txt").read_text().splitlines()) == 2  # it ran again
    assert list(point.dir.glob(f"{name}.damaged-*")) and not (point.dir / "error.txt").exists()


def test_spdf_run_into_a_folder_with_a_damaged_manifest_names_the_file(toy, capsys):
    folder = toy / "r"
    assert cli.main(["run", str(toy / "toy.ipynb"), "-p", f"counter={toy}/c.txt", "--run-dir", str(folder)]) == 0
    (folder / "manifest.json").write_text('{"experiment": "toy", "par')
    capsys.readouterr()
    assert cli.main(["run", str(toy / "toy.ipynb"), "-p", f"counter={toy}/c.txt", "--run-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "manifest.json is damaged" in err and "did not write" not in err


# --- 5. one owner at a time ---------------------------------------------------------------------------------------


def test_two_spdf_run_into_one_folder_started_together_one_is_refused_at_once(toy):
    cmd = [sys.executable, "-m", "spdf_lib.cli", "run", str(toy / "toy.ipynb"), "-p", f"counter={toy}/c.txt",
           "-p", "hold=4", "--run-dir", str(toy / "r")]
    procs = [subprocess.Popen(cmd, env=ENV, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    refused = next(err for rc, err in results if rc == 2)
    assert "is in use by another process (pid " in refused and refused.strip().count("\n") == 0, refused
    assert len((toy / "c.txt").read_text().splitlines()) == 1  # one kernel ran the notebook


def test_two_sweeps_of_one_root_started_together_one_refuses_and_nothing_is_marked_failed(toy):
    path, root = _sweep(toy, "both", hold=3.0), toy / "runs"
    env = {**ENV, "PYTHONPATH": f"{toy}{os.pathsep}{REPO}"}
    cmd = [sys.executable, "-m", "spdf_lib.cli", "sweep", str(path), "--root", str(root), "--no-progress"]
    procs = [subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    refused = next(err for rc, err in results if rc == 2)
    assert "sweep folder" in refused and "in use by another process" in refused and refused.count("\n") == 1
    (point,) = [p for p in (root / "both").iterdir() if p.is_dir()]
    assert json.loads((point / "point.json").read_text())["status"] == "ok"
    assert not (point / "error.txt").exists()


# --- 6. nothing overwritten without --overwrite -------------------------------------------------------------------


def test_results_out_writes_the_format_its_suffix_names_or_refuses(tmp_path, capsys):
    import pandas as pd

    run = _run_record(tmp_path / "runs" / "a")
    manifest = (run / "manifest.json").read_bytes()
    for bad in (tmp_path / "t.txt", run / "manifest.json"):
        assert cli.main(["results", "--root", str(tmp_path / "runs"), "--out", str(bad)]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "t.txt").exists() and (run / "manifest.json").read_bytes() == manifest
    out = tmp_path / "t.csv"
    for _ in range(2):  # the kit's own file is replaced
        assert cli.main(["results", "--root", str(tmp_path / "runs"), "--out", str(out)]) == 0
    assert list(pd.read_csv(out)["status"]) == ["ok"]
    out.write_text("my notes\n")  # edited by the user: refused, then moved aside with --overwrite
    assert cli.main(["results", "--root", str(tmp_path / "runs"), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "my notes\n"
    assert cli.main(["results", "--root", str(tmp_path / "runs"), "--out", str(out), "--overwrite"]) == 0
    (aside,) = tmp_path.glob("t.csv.replaced-*")
    assert aside.read_text() == "my notes\n" and list(pd.read_csv(out)["status"]) == ["ok"]


def test_export_lmeval_never_replaces_a_users_edited_task(tmp_path):
    from spdf_lib.exams.lmeval_export import write_tasks
    from spdf_lib.exams.parse import Question

    qs = [Question("0001", "cert", 1, "Which?", ("a", "b", "c", "d"), frozenset("B"), "B", 1)]
    paths, _ = write_tasks(tmp_path, qs)
    assert write_tasks(tmp_path, qs)[0] == paths  # its own files: rewritten
    task = tmp_path / "spdf_certify_cf.yaml"
    task.write_text(task.read_text() + "# my edit\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(RunDirError, match=r"spdf_certify_cf\.yaml exists and the kit did not write it.*--overwrite"):
        write_tasks(tmp_path, qs)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    write_tasks(tmp_path, qs, overwrite=True)
    (aside,) = tmp_path.glob("spdf_certify_cf.yaml.replaced-*")
    assert aside.read_text().endswith("# my edit\n")


# --- 7. memory priced before compute ------------------------------------------------------------------------------


def test_a_run_that_cannot_fit_in_memory_is_refused_with_its_estimate_before_a_kernel(tmp_path, capsys):
    from spdf_lib.experiments import EXPERIMENTS, load

    p = load("spdf_pretrain", None, {"batch_size": 100000, "max_epochs": 10000})
    with pytest.raises(ValueError, match=r"needs about [\d.]+ GiB at its peak .* GiB available on this machine"):
        EXPERIMENTS["spdf_pretrain"].check(p)
    EXPERIMENTS["spdf_pretrain"].check(load("spdf_pretrain", None, {}))  # the smoke preset fits
    rc = cli.main(["run", "spdf_pretrain", "-p", "batch_size=100000", "-p", "max_epochs=10000",
                   "--run-dir", str(tmp_path / "r")])
    assert rc == 2 and capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "r").exists()


def test_a_sweep_point_that_cannot_fit_is_refused_before_any_point_starts(tmp_path, capsys):
    sweep = tmp_path / "big.yaml"
    sweep.write_text("name: big\nstages:\n  pre:\n    notebook: spdf_pretrain\n    preset: smoke\n"
                     "    grid: {batch_size: [4, 100000]}\n")
    rc = cli.main(["sweep", str(sweep), "--root", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "needs about" in err and "GiB at its peak" in err, err
    assert not list((tmp_path / "runs").glob("big/*/manifest.json"))  # not even the point that fits ran


def test_a_fine_tuning_that_cannot_fit_is_refused_from_its_checkpoint_s_config():
    from spdf_lib.experiments import load
    from spdf_lib.memory import check_finetune

    config = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 256, "vocab_size": 1024}
    check_finetune(load("spdf_finetune", None, {}), config)  # the smoke preset fits
    with pytest.raises(ValueError, match=r"fine-tuning with micro-batches of 10000000 x .* needs about"):
        check_finetune(load("spdf_finetune", None, {"batch_size": 10_000_000}), config)


def test_the_memory_estimate_grows_with_each_dimension():
    from spdf_lib.memory import training_peak_bytes

    base = dict(n_layer=2, n_embd=64, n_head=4, n_inner=256, vocab=512, n_positions=64, seq_len=64, micro_batch=8)
    b0 = training_peak_bytes(**base)
    for key in ("n_layer", "n_embd", "vocab", "seq_len", "micro_batch"):
        assert training_peak_bytes(**{**base, key: base[key] * 2}) > b0, key
    assert training_peak_bytes(**base, bytes_per_value=4) > b0
    assert training_peak_bytes(**{**base, "micro_batch": 64}, activation_checkpointing=True) < training_peak_bytes(
        **{**base, "micro_batch": 64})


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="the CUDA path needs a GPU")
def test_the_cuda_path_prices_against_the_gpus_free_memory():
    import torch

    from spdf_lib.memory import available_bytes, refuse_if_too_big

    free, where = available_bytes("cuda")
    assert 0 < free <= torch.cuda.get_device_properties(0).total_memory and "free on" in where
    refuse_if_too_big(free // 2, "cuda", "x", "y")  # fits
    with pytest.raises(ValueError, match="free on"):
        refuse_if_too_big(free * 2, "cuda", "x", "y")


# --- 9. -p keeps the whole value ----------------------------------------------------------------------------------


def test_a_param_value_keeps_a_hash_after_a_space():
    assert parse_override("title=run #3 of 5") == ("title", "run #3 of 5")
    assert parse_override("note=#tag") == ("note", "#tag")
    assert parse_override("lr=0.5") == ("lr", 0.5) and parse_override("url=a#b") == ("url", "a#b")
