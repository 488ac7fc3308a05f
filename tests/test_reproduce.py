"""`spdf reproduce --preset smoke`: the whole pipeline of `make reproduce` on seconds-sized presets — every stage
through papermill, the results table, the report's figures and summary — and a re-run that resumes."""

from __future__ import annotations

import re
import subprocess
import sys

import nbformat
import pandas as pd
from transformers import AutoModelForCausalLM, AutoTokenizer

from spdf_lib.results import TABLE_NAME


def test_smoke_reproduction_end_to_end_and_resume(tmp_path):
    root, figures = tmp_path / "runs", tmp_path / "figures"
    cmd = [sys.executable, "-m", "spdf_lib.cli", "reproduce", "--preset", "smoke", "--workers", "2",
           "--root", str(root), "--figures", str(figures)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"summary: {figures / 'summary.md'}" in first.stdout
    assert f"report (HTML, no Jupyter needed): {figures / 'report.html'}" in first.stdout
    _check_the_plan_it_printed(first.stdout, root / "smoke")
    table = pd.read_parquet(root / "smoke" / TABLE_NAME)
    assert set(table["experiment"]) >= {"flops", "spdf_pretrain", "spdf_finetune", "primer", "exams"}
    assert (table["status"] == "ok").all()
    for name in ("flops_reduction_vs_sparsity", "flops_breakdown", "spdf_bleu_vs_sparsity", "spdf_bleu_vs_total_flops",
                 "spdf_check_vs_sparsity", "spdf_convergence", "primer_speedups"):
        assert (figures / f"{name}.png").is_file() and (figures / f"{name}.pdf").is_file(), name
    assert list(figures.glob("exams_pass_share_*.png"))
    summary = (figures / "summary.md").read_text()
    for section in ("## SPDF", "## Primer", "## Professional-certification exams", "2.49x"):
        assert section in summary
    assert "Greedy vs beam 2 (" in summary  # every fine-tuned model decoded twice: the decoding check
    # the executed report shows every figure of the study inline, one image per figure file
    report = nbformat.read(str(root / "smoke" / "report" / "notebook.ipynb"), as_version=4)
    images = [o for c in report.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == len(list(figures.glob("*.png"))) > 0
    assert (figures / "report.html").read_text().count("data:image/png;base64") >= len(images)
    # the fine-tuned models are saved beside their records and load like the pre-trained ones
    ft = table[table["experiment"] == "spdf_finetune"]["run"].iloc[0]
    # as a user outside the kit loads them: the folder ships modeling_gpt.py (no spdf_lib import registers it)
    model = AutoModelForCausalLM.from_pretrained(root / "smoke" / ft / "model", trust_remote_code=True)
    tok = AutoTokenizer.from_pretrained(root / "smoke" / ft / "model")
    assert model.generate(**tok("name[A] <|sep|>", return_tensors="pt"), max_new_tokens=3).shape[1] > 0
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    planned, done = map(int, re.search(r"(\d+) runs, (\d+) already done", second.stdout).groups())
    assert planned == done > 0  # every point was kept and skipped


def _check_the_plan_it_printed(stdout: str, sweep_dir) -> None:
    """`spdf reproduce` prints the plan before it runs; the points then take about what it said. Loose (a factor
    of 3: this is a shared, noisy machine); the tight check (±25%) is `python -m bench reproduce`."""
    import json

    assert re.search(r"^plan smoke on this machine: .+ computing in (fp32|bf16)", stdout, re.MULTILINE), stdout[:2000]
    planned_total = float(re.search(r"^total: 13 points, ([\d,]+) worker-seconds", stdout, re.MULTILINE)
                          .group(1).replace(",", ""))
    planned_pretrain = float(re.search(r"^pretrain\s+4\s+([\d,]+) ", stdout, re.MULTILINE).group(1).replace(",", ""))
    records = [json.loads(p.read_text()) for p in sweep_dir.glob("*/point.json")]
    actual_total = sum(r["seconds"] for r in records)
    actual_pretrain = sum(r["seconds"] for r in records if r["stage"] == "pretrain")
    assert 1 / 3 < actual_total / planned_total < 3, (planned_total, actual_total)
    assert 1 / 3 < actual_pretrain / planned_pretrain < 3, (planned_pretrain, actual_pretrain)


def test_paper_sweep_launches_training_with_torchrun():
    from spdf_lib.params import PARAMS_DIR
    from spdf_lib.sweep import plan_sweep

    plan = plan_sweep(PARAMS_DIR / "sweeps" / "paper.yaml", torchrun={"nnodes": 2, "node_rank": 1,
                                                                       "master_addr": "10.0.0.1"})
    training = [p for p in plan.points if p.experiment in ("spdf_pretrain", "spdf_finetune")]
    assert training and all(p.launcher == "torchrun" for p in training)
    assert all(p.torchrun["nnodes"] == 2 and p.torchrun["node_rank"] == 1 for p in training)
    assert {p.params["sparsity"] for p in training if p.experiment == "spdf_pretrain"} == {0.0, 0.5, 0.75}


def test_torchrun_training_point_at_two_cpu_processes(tmp_path):
    """The paper sweep's launch path (torchrun -m spdf_lib.experiments), at 2 CPU processes on the smoke preset."""
    sweep = tmp_path / "ddp.yaml"
    sweep.write_text("stages:\n  pretrain:\n    notebook: spdf_pretrain\n    preset: smoke\n    launcher: torchrun\n"
                     "    torchrun: {nproc_per_node: 2}\n    params: {progress: false}\n")
    res = subprocess.run([sys.executable, "-m", "spdf_lib.cli", "sweep", str(sweep), "--root", str(tmp_path / "runs"),
                          "--no-progress"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    table = pd.read_parquet(tmp_path / "runs" / "ddp" / TABLE_NAME)
    assert list(table["status"]) == ["ok"] and table["eval_loss"].iloc[0] < 6.0
