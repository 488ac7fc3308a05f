"""`spdf reproduce --preset smoke`: the whole pipeline of `make reproduce` on seconds-sized presets — every stage
through papermill, the results table, the report's figures and summary — and a re-run that resumes."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd

from spdf_lib.results import TABLE_NAME


def test_smoke_reproduction_end_to_end_and_resume(tmp_path):
    root, figures = tmp_path / "runs", tmp_path / "figures"
    cmd = [sys.executable, "-m", "spdf_lib.cli", "reproduce", "--preset", "smoke", "--workers", "2",
           "--root", str(root), "--figures", str(figures)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"summary: {figures / 'summary.md'}" in first.stdout
    table = pd.read_parquet(root / "smoke" / TABLE_NAME)
    assert set(table["experiment"]) >= {"flops", "spdf_pretrain", "spdf_finetune", "primer", "exams"}
    assert (table["status"] == "ok").all()
    for name in ("flops_reduction_vs_sparsity", "flops_breakdown", "spdf_bleu_vs_sparsity", "spdf_bleu_vs_total_flops",
                 "spdf_bleu_vs_train_size", "primer_speedups"):
        assert (figures / f"{name}.png").is_file() and (figures / f"{name}.pdf").is_file(), name
    assert list(figures.glob("exams_pass_share_*.png"))
    summary = (figures / "summary.md").read_text()
    for section in ("## SPDF", "## Primer", "## Professional-certification exams", "2.49x"):
        assert section in summary
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    planned, done = map(int, re.search(r"(\d+) runs, (\d+) already done", second.stdout).groups())
    assert planned == done > 0  # every point was kept and skipped
