"""Sweeps: planning (ids, templates, validation), real papermill points, dependencies, resume, failures,
Ctrl-C, and torchrun points at 2 CPU processes — with toy notebooks and schemas written into a temp dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from spdf_lib import sweep as S
from spdf_lib.jsonio import read_json
from spdf_lib.locations import REPO_ROOT
from spdf_lib.params import ParamsError
from spdf_lib.results import load_results
from spdf_lib.sweep.scheduler import _cores

SCHEMAS = '''
from pydantic import Field
from spdf_lib.params import Params

class Pre(Params):
    sparsity: float = Field(0.0, ge=0, lt=1)
    counter: str = ""   # file the notebook appends its run_dir to (counts executions)
    fail_if: str = ""   # the notebook fails while this file exists
    sleep: float = 0.0
    hold: str = ""   # after starting, the notebook waits while this file exists

class Fine(Params):
    checkpoint: str = ""
    task: str = "a"
'''

PRE_NOTEBOOK = '''
import os, pathlib, time
from spdf_lib.records import Run
if counter:
    with open(counter, "a") as f:
        f.write(run_dir + "\\n")
if fail_if and os.path.exists(fail_if):
    raise RuntimeError("asked to fail")
run = Run(run_dir, "toy_pre", {"sparsity": sparsity}, seed)
with open(os.path.join(run_dir, "attempts.txt"), "a") as f:  # what a resumed run finds of its earlier attempts
    f.write("started\\n")
time.sleep(sleep)
while hold and os.path.exists(hold):
    time.sleep(0.05)
pathlib.Path(run_dir, "model").mkdir()
pathlib.Path(run_dir, "model", "w.txt").write_text(str(sparsity))
run.finish({"loss": 1 - sparsity})
'''

FINE_NOTEBOOK = '''
import pathlib
from spdf_lib.records import Run
w = float(pathlib.Path(checkpoint, "w.txt").read_text())
Run(run_dir, "toy_fine", {"checkpoint": checkpoint, "task": task}, seed).finish({"score": w + seed})
'''

# A torchrun target honouring the launcher's contract: `-m <module> <experiment> --params FILE --run-dir DIR`.
DDP_MODULE = '''
import argparse, os
import torch, torch.distributed as dist, yaml
from spdf_lib.records import Run

ap = argparse.ArgumentParser()
ap.add_argument("experiment")
ap.add_argument("--params")
ap.add_argument("--run-dir")
a = ap.parse_args()
params = yaml.safe_load(open(a.params))
dist.init_process_group("gloo")
rank = dist.get_rank()
if params["sparsity"] > 0.6 and rank == 1:
    raise ValueError("rank 1 refuses sparsity > 0.6")
t = torch.tensor([float(rank + 1)])
dist.all_reduce(t)
if rank == 0:
    Run(a.run_dir, a.experiment, params, params["seed"]).finish(
        {"world_size": dist.get_world_size(), "rank_sum": t.item(), "threads": torch.get_num_threads(),
         "passive_wait": int(os.environ.get("OMP_WAIT_POLICY") == "PASSIVE")})
dist.destroy_process_group()
'''


def _notebook(path: Path, parameters: str, body: str) -> None:
    nb = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# toy"), cell, nbformat.v4.new_code_cell(body.strip())]
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """A folder with the toy schemas (module sweep_toy_schemas), notebooks and torchrun module."""
    d = tmp_path_factory.mktemp("toy")
    (d / "sweep_toy_schemas.py").write_text(SCHEMAS)
    (d / "sweep_toy_ddp.py").write_text(DDP_MODULE)
    _notebook(
        d / "pre.ipynb",
        "sparsity = 0.0\ncounter = ''\nfail_if = ''\nsleep = 0.0\nhold = ''\nseed = 0\nrun_dir = ''",
        PRE_NOTEBOOK,
    )
    _notebook(d / "fine.ipynb", "checkpoint = ''\ntask = 'a'\nseed = 0\nrun_dir = ''", FINE_NOTEBOOK)
    sys.path.insert(0, str(d))
    yield d
    sys.path.remove(str(d))


def _sweep_file(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def _main_sweep(toy: Path, tmp: Path) -> Path:
    """pretrain at two sparsities (0.5 fails while a flag file exists); four finetune points need sparsity 0;
    one probe point needs sparsity 0.5."""
    return _sweep_file(tmp / "main.yaml", f"""
        stages:
          pretrain:
            notebook: {toy}/pre.ipynb
            schema: sweep_toy_schemas:Pre
            params: {{counter: {tmp}/counter.txt, fail_if: "{tmp}/fail-{{sparsity}}"}}
            grid: {{sparsity: [0.0, 0.5]}}
          finetune:
            notebook: {toy}/fine.ipynb
            schema: sweep_toy_schemas:Fine
            params: {{checkpoint: "{{pretrain[sparsity={{sparsity}}]}}/model"}}
            vars: {{sparsity: [0.0]}}
            grid: {{task: [a, b], seed: [0, 1]}}
          probe:
            notebook: {toy}/fine.ipynb
            schema: sweep_toy_schemas:Fine
            params: {{checkpoint: "{{pretrain[sparsity=0.5]}}/model", task: probe}}
        """)


def test_dry_run_lists_points_with_stable_ids(toy, tmp_path, capsys):
    from spdf_lib.cli import main

    path = _main_sweep(toy, tmp_path)
    plan = S.plan_sweep(path, root=tmp_path / "runs")
    again = S.plan_sweep(path, root=tmp_path / "elsewhere")
    assert [p.id for p in plan.points] == [p.id for p in again.points]  # ids do not depend on the runs folder
    assert len({p.id for p in plan.points}) == len(plan.points) == 7
    pre = {p.params["sparsity"]: p for p in plan.points if p.stage == "pretrain"}
    fine = [p for p in plan.points if p.stage == "finetune"]
    assert [p.stage for p in plan.points] == ["pretrain"] * 2 + ["finetune"] * 4 + ["probe"]
    assert all(p.needs == (pre[0.0].id,) for p in fine)
    assert {p.params["checkpoint"] for p in fine} == {str(pre[0.0].dir / "model")}
    assert pre[0.5].params["fail_if"] == f"{tmp_path}/fail-0.5"
    assert plan.points[-1].needs == (pre[0.5].id,)
    assert pre[0.0].dir == (tmp_path / "runs" / "main" / pre[0.0].id).resolve()
    # a changed parameter changes the id of its point and of the points that need it, nothing else
    _sweep_file(tmp_path / "main.yaml", path.read_text().replace("[0.0, 0.5]", "[0.0, 0.25]").replace(
        "sparsity=0.5", "sparsity=0.25"))
    changed = S.plan_sweep(tmp_path / "main.yaml", root=tmp_path / "runs")
    assert [p.id == q.id for p, q in zip(plan.points, changed.points, strict=True)] == [True, False] + [True] * 4 + [
        False]
    _sweep_file(tmp_path / "main.yaml", path.read_text().replace("0.25", "0.5"))

    assert main(["sweep", str(path), "--root", str(tmp_path / "runs"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("sweep main (") and "7 points in 3 stage(s)" in out[0]
    assert out[1].strip() == "7 todo"
    rows = [line.split() for line in out[3:]]
    assert [r[1] for r in rows] == [p.id for p in plan.points]
    assert rows[2][:5] == ["finetune", fine[0].id, "todo", "papermill", "sparsity=0.0"]
    assert rows[2][-2:] == ["needs", pre[0.0].id]
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


@pytest.mark.parametrize(("edit", "message"), [
    (("[0.0, 0.5]", "[0.0, 1.5]"), "stage 'pretrain' (sparsity=1.5): sparsity: must be less than 1"),
    (("grid: {task", "grid: {tsak"), "stage 'finetune' (sparsity=0.0 tsak=a seed=0): unknown key 'tsak'"),
    (("sparsity=0.5", "sparsity=0.9"), "{pretrain[sparsity=0.9]} matches no point of stage 'pretrain'"),
    (("sparsity=0.5", "seed=0"), "{pretrain[seed=0]}: stage 'pretrain' sets no parameter 'seed'"),
    (("{pretrain[sparsity=0.5]}", "{pretrain}"), "{pretrain} matches 2 points"),
    (("task: probe", "task: '{taks}'"), "template {taks} names no parameter or stage"),
    (("schema: sweep_toy_schemas:Fine\n    params: {checkpoint: \"{pretrain[",
      "schema: sweep_toy_schemas:Fine\n    params: {checkpoint: \"{finetune["), "stages refer to each other"),
    (("vars: {sparsity", "vars: {task"), "'task' is under vars and is also a parameter"),
    (("    schema: sweep_toy_schemas:Pre", "    shema: sweep_toy_schemas:Pre"), "unknown key 'shema'"),
    (("sweep_toy_schemas:Pre", "sweep_toy_schemas:Nope"), "cannot load the parameter schema"),
    (("grid: {sparsity: [0.0, 0.5]}", "grid: {sparsity: 0.5}"), "grid.sparsity must be a non-empty list"),
])
def test_bad_sweep_fails_with_one_line_before_running(toy, tmp_path, capsys, edit, message):
    from spdf_lib.cli import main

    text = _main_sweep(toy, tmp_path).read_text()
    assert edit[0] in text
    bad = _sweep_file(tmp_path / "bad.yaml", text.replace(edit[0], edit[1], 1))
    with pytest.raises((S.SweepError, ParamsError)) as err:
        S.plan_sweep(bad, root=tmp_path / "runs")
    assert message in str(err.value) and str(bad) in str(err.value) and "\n" not in str(err.value)
    assert main(["sweep", str(bad), "--root", str(tmp_path / "runs"), "--workers", "2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_include_unions_sweeps_and_rejects_conflicts(toy, tmp_path):
    a = _sweep_file(tmp_path / "a.yaml", f"""
        stages:
          pre: {{notebook: {toy}/pre.ipynb, schema: "sweep_toy_schemas:Pre", grid: {{sparsity: [0.0, 0.5]}}}}
        """)
    _sweep_file(tmp_path / "b.yaml", f"""
        include: [a.yaml]
        stages:
          fine: {{notebook: {toy}/fine.ipynb, schema: "sweep_toy_schemas:Fine",
                 params: {{checkpoint: "{{pre[sparsity=0.5]}}/model"}}}}
        """)
    union = _sweep_file(tmp_path / "all.yaml", "name: everything\ninclude: [a.yaml, b.yaml]\n")
    plan = S.plan_sweep(union, root=tmp_path / "runs")
    assert plan.name == "everything" and plan.stages == ["pre", "fine"] and len(plan.points) == 3
    assert [p.id for p in plan.points[:2]] == [p.id for p in S.plan_sweep(a, root=tmp_path).points]
    assert plan.dir == (tmp_path / "runs" / "everything").resolve()
    only = S.plan_sweep(union, root=tmp_path / "runs", stages=["fine"])  # a stage brings the points it needs
    assert [p.stage for p in only.points] == ["pre", "fine"] and only.points[1].needs == (only.points[0].id,)

    _sweep_file(tmp_path / "c.yaml", f"stages:\n  pre: {{notebook: {toy}/pre.ipynb, experiment: x}}\n")
    clash = _sweep_file(tmp_path / "clash.yaml", "include: [a.yaml, c.yaml]\n")
    with pytest.raises(S.SweepError, match="stage 'pre' is also defined, differently"):
        S.plan_sweep(clash)
    _sweep_file(tmp_path / "loop.yaml", "include: [loop2.yaml]\n")
    _sweep_file(tmp_path / "loop2.yaml", "include: [loop.yaml]\n")
    with pytest.raises(S.SweepError, match="which includes it back"):
        S.plan_sweep(tmp_path / "loop.yaml")


def test_torchrun_arguments_pass_through():
    assert S.torchrun_args({"nproc_per_node": 2}) == ["--standalone", "--nproc-per-node=2"]
    multi = {"nnodes": 2, "nproc_per_node": 8, "node_rank": 1, "master_addr": "10.0.0.1", "master_port": 29500}
    assert S.torchrun_args(multi) == ["--nnodes=2", "--nproc-per-node=8", "--node-rank=1",
                                      "--master-addr=10.0.0.1", "--master-port=29500"]
    assert S.torchrun_args({"rdzv_backend": "c10d", "rdzv_endpoint": "h:29400", "rdzv_id": "job", "nnodes": "1:4",
                            "standalone": False}) == [
        "--rdzv-backend=c10d", "--rdzv-endpoint=h:29400", "--rdzv-id=job", "--nnodes=1:4"]


def test_sweep_runs_needed_points_once_records_failures_and_resumes(toy, tmp_path):
    path = _main_sweep(toy, tmp_path)
    (tmp_path / "fail-0.5").touch()
    plan = S.plan_sweep(path, root=tmp_path / "runs")
    pre0, pre5, *fine, probe = plan.points
    lines: list[str] = []
    statuses = S.run_sweep(plan, workers=2, progress=False, echo=lines.append)

    assert statuses == {pre0.id: "ok", pre5.id: "failed", **{p.id: "ok" for p in fine}, probe.id: "blocked"}
    assert len(lines) == 7 and all(line.startswith(f"[{i + 1}/7] ") for i, line in enumerate(lines))
    runs = (tmp_path / "counter.txt").read_text().splitlines()
    assert sorted(runs) == sorted([str(pre0.dir), str(pre5.dir)])  # the shared pretrain point ran once
    for p in fine:  # each finetune point read its pretrain point's model and recorded what it read
        assert S.is_complete(p.dir) and (p.dir / "notebook.ipynb").is_file()
        assert read_json(p.dir / "manifest.json")["params"]["checkpoint"] == str(pre0.dir / "model")
        assert read_json(p.dir / "results.json") == {"score": p.params["seed"]}
    failed = read_json(pre5.dir / "point.json")
    assert failed["status"] == "failed" and failed["error"].startswith("RuntimeError: asked to fail")
    assert (pre5.dir / "error.txt").read_text().startswith("RuntimeError: asked to fail")
    assert read_json(probe.dir / "point.json")["error"] == f"needs {pre5.id}, which did not complete"
    assert S.point_status(probe) == "blocked" and S.point_status(pre0) == "done"

    table = load_results(tmp_path / "runs", sweep="main").set_index("point")
    assert len(table) == 7 and table.loc[probe.id, "status"] == "blocked"
    assert table.loc[[p.id for p in fine], "score"].tolist() == [p.params["seed"] for p in fine]
    assert set(table.loc[[p.id for p in fine], "sparsity"]) == {0.0}  # a vars value is a column too

    # Re-run: done points are skipped (their records untouched), the failed one is retried and now passes.
    (tmp_path / "fail-0.5").unlink()
    stamps = {p.id: (p.dir / "results.json").stat().st_mtime_ns for p in [pre0, *fine]}
    statuses = S.run_sweep(S.plan_sweep(path, root=tmp_path / "runs", stages=["pretrain"]), progress=False,
                           echo=lines.append)
    assert statuses == {pre0.id: "done", pre5.id: "ok"}
    assert (tmp_path / "counter.txt").read_text().splitlines().count(str(pre0.dir)) == 1
    assert stamps == {p.id: (p.dir / "results.json").stat().st_mtime_ns for p in [pre0, *fine]}
    assert not (pre5.dir / "error.txt").exists() and S.is_complete(pre5.dir)
    listing = "\n".join(S.format_plan(S.plan_sweep(path, root=tmp_path / "runs")))
    assert "6 done, 1 blocked" in listing


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm-in-background"])
def test_ctrl_c_keeps_finished_points_and_marks_the_running_one(toy, tmp_path, how):
    """Ctrl-C, or SIGTERM to a sweep started in the background (`nohup ... &` starts it with SIGINT ignored, which
    its points must not inherit: the sweep stops them with SIGINT, and would otherwise kill them)."""
    path = _sweep_file(
        tmp_path / "slow.yaml",
        f"""
        stages:
          fast: {{notebook: {toy}/pre.ipynb, schema: "sweep_toy_schemas:Pre", params: {{sparsity: 0.1}}}}
          slow: {{notebook: {toy}/pre.ipynb, schema: "sweep_toy_schemas:Pre",
                 params: {{sparsity: 0.2, hold: {tmp_path}/hold}}}}
        """,
    )
    (tmp_path / "hold").touch()
    fast, slow = S.plan_sweep(path, root=tmp_path / "runs").points
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(toy), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spdf_lib.cli",
            "sweep",
            str(path),
            "--workers",
            "2",
            "--root",
            str(tmp_path / "runs"),
            "--no-progress",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if how != "ctrl-c" else None,
    )
    try:
        deadline = time.monotonic() + 90
        while not (S.is_complete(fast.dir) and (slow.dir / "manifest.json").is_file()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted; finished points are kept" in err
    assert S.is_complete(fast.dir) and read_json(fast.dir / "point.json")["status"] == "ok"
    assert read_json(slow.dir / "point.json")["status"] == "interrupted"
    assert read_json(slow.dir / "point.json")["exit_code"] != -signal.SIGKILL  # it stopped, it was not killed
    assert not (slow.dir / "results.json").exists()
    assert [S.point_status(p) for p in (fast, slow)] == ["done", "interrupted"]

    # Re-run: the interrupted point resumes in its folder (what it wrote, e.g. its checkpoints, is kept)
    (tmp_path / "hold").unlink()
    assert S.run_sweep(S.plan_sweep(path, root=tmp_path / "runs"), progress=False, echo=lambda _: None) == {
        fast.id: "done", slow.id: "ok"}
    assert (slow.dir / "attempts.txt").read_text().splitlines() == ["started", "started"]


def test_torchrun_points_run_two_processes_each(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(toy), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    path = _sweep_file(tmp_path / "ddp.yaml", """
        stages:
          train:
            experiment: toy_pre
            schema: sweep_toy_schemas:Pre
            launcher: torchrun
            module: sweep_toy_ddp
            torchrun: {nproc_per_node: 2}
            grid: {sparsity: [0.5, 0.7]}
        """)
    plan = S.plan_sweep(path, root=tmp_path / "runs")
    ok, bad = plan.points
    assert ok.command()[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                                "-m", "sweep_toy_ddp", "toy_pre", "--params", str(ok.dir / "params.yaml"),
                                "--run-dir", str(ok.dir)]
    # options given on the command line (one node of a multi-node job) override the file's
    node1 = S.plan_sweep(path, root=tmp_path / "runs", torchrun={"nnodes": 2, "node_rank": 1, "master_addr": "h"})
    assert node1.points[0].command()[3:8] == ["--nproc-per-node=2", "--nnodes=2", "--node-rank=1",
                                              "--master-addr=h", "-m"]
    with pytest.raises(S.SweepError, match="unknown torchrun option 'nodes'"):
        S.plan_sweep(path, torchrun={"nodes": 2})

    statuses = S.run_sweep(plan, workers=2, progress=False, echo=lambda line: None)
    assert statuses == {ok.id: "ok", bad.id: "failed"}
    # 1 + 2 summed over gloo; the cores are shared out (2 points at once, 2 processes each), idle threads sleep
    threads = max(1, _cores() // 4)
    assert read_json(ok.dir / "results.json") == {"world_size": 2, "rank_sum": 3.0, "threads": threads,
                                                  "passive_wait": 1}
    assert read_json(ok.dir / "point.json")["threads"] == threads
    assert read_json(ok.dir / "manifest.json")["params"]["sparsity"] == 0.5
    # the first rank to fail is the root cause named in the record
    assert read_json(bad.dir / "point.json")["error"] == "rank 1: ValueError: rank 1 refuses sparsity > 0.6"


@pytest.mark.parametrize("name", ["smoke", "tiny", "paper"])
def test_shipped_sweep_files_plan(name, tmp_path):
    """Every shipped sweep validates all its points; fine-tuning waits for its pre-trained checkpoint."""
    plan = S.plan_sweep(REPO_ROOT / "params" / "sweeps" / f"{name}.yaml", root=tmp_path)
    assert {"pretrain", "finetune"} <= set(plan.stages)
    assert all(p.needs for p in plan.points if p.stage == "finetune")
