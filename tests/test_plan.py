"""`spdf plan` and the paper sweep: data preparation first, training waiting for it, costs from the FLOP counter."""

from __future__ import annotations

import pytest

from spdf_lib import flops
from spdf_lib.params import PARAMS_DIR
from spdf_lib.plan import plan_costs
from spdf_lib.sweep import plan_sweep

PAPER = PARAMS_DIR / "sweeps" / "paper.yaml"


def test_the_paper_sweep_prepares_its_shards_first():
    plan = plan_sweep(PAPER)
    assert [p.experiment for p in plan.points[:2]] == ["data_prepare", "data_prepare"]
    data = {p.params["corpus"]: p for p in plan.points[:2]}
    assert all(p.launcher == "process" for p in data.values())
    for p in plan.points:
        if p.experiment == "spdf_pretrain":
            assert p.needs == (data["pile-uncopyrighted"].id,) and p.params["corpus"] == "pile-uncopyrighted"
            assert p.params["shards"] == str(data["pile-uncopyrighted"].dir / "shards")
            assert p.params["tokenizer"] == "gpt2" and p.params["max_epochs"] == 1
        if p.experiment == "primer":
            assert p.needs == (data["fineweb-edu-10bt"].id,)
    xl = [p for p in plan.points if p.stage == "pretrain_xl"]
    assert {p.params["model_size"] for p in xl} == {"gpt3-xl"} and {p.params["tokens"] for p in xl} == {26.3e9}


def test_plan_costs_come_from_the_flop_counter():
    costs, lines = plan_costs(PAPER, gpus=8, gpu="h100", mfu=0.5)
    xl = {c.what: c for c in costs if c.stage == "pretrain_xl"}
    dense, s75 = xl["gpt3-xl s=0"], xl["gpt3-xl s=0.75"]
    assert dense.train_flops / s75.train_flops == pytest.approx(2.49, abs=0.01)  # the paper's 2.5x
    assert dense.dense_flops == s75.dense_flops == dense.train_flops  # a GPU runs masked weights densely
    assert dense.train_flops == pytest.approx(flops.count("gpt3-xl", dense.tokens)["total"], rel=1e-3)
    pile = next(c for c in costs if c.what == "pile-uncopyrighted shards")
    assert pile.shard_bytes == pytest.approx(2 * (26.4e9 + 10e6))  # uint16 tokens, train + validation
    assert "MFU 50% (given)" in lines[0] and lines[-2].startswith("total: ")
    hours = dense.dense_flops / (989e12 * 0.5 * 3600)
    assert any(f"{hours:.1f}" in line and "gpt3-xl s=0 " in line for line in lines)
    with pytest.raises(ValueError, match="unknown GPU 'tpu'"):
        plan_costs(PAPER, gpus=8, gpu="tpu")
