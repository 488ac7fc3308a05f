"""SPDF under torchrun: two gloo processes keep the zeros and end with the same masks (issue 32)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent


def test_two_torchrun_processes_keep_the_zeros_and_the_same_masks(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(HERE / "hf_ddp_worker.py"), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert len(r0["masks"]) == 14 and r0["masks"].keys() == r1["masks"].keys()
    assert all(torch.equal(r0["masks"][k], r1["masks"][k]) for k in r0["masks"])
    assert r0["revived"] == r1["revived"] == 0
    for k, v in r0["state"].items():  # DDP kept the replicas equal, zeros included
        torch.testing.assert_close(r1["state"][k], v)
    w = r0["state"]["model.layers.0.mlp.up_proj.weight"]
    assert int((w != 0).sum()) == w.numel() // 4
