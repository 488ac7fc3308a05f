"""`spdf plan` and the paper sweep: data preparation first, training waiting for it, costs from the FLOP counter."""

from __future__ import annotations

import pytest

from spdf_lib import flops
from spdf_lib.params import PARAMS_DIR
from spdf_lib.sweep import plan_sweep
from spdf_lib.sweep_cost import plan_costs
from spdf_lib.unit_costs import Calibration

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


# --- on this machine ----------------------------------------------------------------------------------------------

SMOKE = PARAMS_DIR / "sweeps" / "smoke.yaml"


class UnitCosts(Calibration):
    """A calibration whose every unit cost is one second: the plan's arithmetic, without timing anything."""

    def __init__(self, threads: int = 1, precision: str = "auto", recalibrate: bool = False):
        self.threads, self.precision, self.measured, self.conditions = threads, "fp32", 0, None

    def _cached(self, key, measure):
        return 1.0

    def save(self):
        pass


def test_every_smoke_point_is_priced_and_the_work_is_counted(monkeypatch):
    from spdf_lib import unit_costs as cost
    from spdf_lib.sweep_cost import machine_plan

    monkeypatch.setattr(cost, "Calibration", UnitCosts)
    plan = plan_sweep(SMOKE)
    priced, wall, lines = machine_plan(plan, workers=2)
    assert len(priced) == len(plan.points) and all(pp.seconds and pp.seconds > 0 for pp in priced)
    pre = next(pp for pp, p in zip(priced, plan.points, strict=True) if p.experiment == "spdf_pretrain")
    p = next(p for p in plan.points if p.experiment == "spdf_pretrain").params
    steps = -(-int(p["tokens"]) // (p["batch_size"] * p["seq_len"]))
    evals = (steps // p["eval_every"] if p["eval_every"] else 0) + 1
    assert pre.parts == {"start": cost.STARTUP_S["papermill"], "train": steps,
                         "eval": evals * -(-p["eval_windows"] // p["batch_size"])}
    assert pre.seconds == sum(pre.parts.values())
    assert 0 < wall < sum(pp.seconds for pp in priced)  # two workers overlap
    assert any(line.startswith(f"total: {len(plan.points)} points, ") for line in lines)


def test_a_plan_over_the_sweep_files_budget_says_so(monkeypatch, tmp_path):
    from spdf_lib import unit_costs as cost
    from spdf_lib.sweep_cost import machine_plan

    monkeypatch.setattr(cost, "Calibration", UnitCosts)
    sweep = tmp_path / "s.yaml"
    sweep.write_text("budget_minutes: 0.1\nstages:\n  pretrain:\n    notebook: spdf_pretrain\n    preset: smoke\n")
    lines = machine_plan(plan_sweep(sweep), workers=1)[2]
    assert lines[-1].startswith("OVER BUDGET: this plan takes about ") and "more than the 0.1 minutes" in lines[-1]


def test_the_schedule_simulation_waits_for_dependencies():
    from types import SimpleNamespace as NS

    from spdf_lib.unit_costs import simulate

    a, b, c, d = NS(id="a", needs=()), NS(id="b", needs=()), NS(id="c", needs=("a",)), NS(id="d", needs=("b",))
    seconds = {"a": 10.0, "b": 1.0, "c": 5.0, "d": 1.0}
    assert simulate([a, b, c, d], seconds, workers=1) == 17.0
    assert simulate([a, b, c, d], seconds, workers=2) == 15.0  # b, d run while a; then c after a
    assert simulate([a, b, c, d], seconds, workers=4) == 15.0


def test_sweep_overrides_reach_every_point_that_has_the_key_and_change_its_id():
    from spdf_lib.sweep import SweepError

    base = plan_sweep(SMOKE)
    fp32 = plan_sweep(SMOKE, overrides={"precision": "fp32"})
    trained = [p for p in fp32.points if "precision" in p.params]
    assert trained and all(p.params["precision"] == "fp32" for p in trained)
    flops_points = [p for p in fp32.points if p.experiment == "flops"]
    assert [p.id for p in flops_points] == [p.id for p in base.points if p.experiment == "flops"]  # no such key
    assert not {p.id for p in trained} & {p.id for p in base.points}
    with pytest.raises(SweepError, match=r"-p precison: no stage of this sweep has a parameter 'precison'; did you "
                                         r"mean 'precision'\?"):
        plan_sweep(SMOKE, overrides={"precison": "fp32"})
    with pytest.raises(Exception, match="precision"):  # validated against each point's schema
        plan_sweep(SMOKE, overrides={"precision": "fp16"})


def test_a_bad_override_is_one_line_before_any_calibration():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "spdf_lib.cli", "plan", str(SMOKE), "-p", "precision=fp16"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("spdf plan: error: ")
    assert "precision" in res.stderr and "fp16" in res.stderr


def test_a_plan_calibrated_on_busy_cores_says_so_in_one_line(monkeypatch, tmp_path):
    """An injected busy calibration: the cached unit costs carry the conditions they were measured under."""
    import json

    from spdf_lib.machine_load import LoadMeter, busy_line
    from spdf_lib.sweep_cost import default_workers, machine_plan
    from spdf_lib.unit_costs import Calibration

    monkeypatch.setenv("SPDF_CACHE", str(tmp_path))
    quiet = {"others": 0.02, "steal": 0.0, "loadavg": 0.3, "cores": 2, "seconds": 4.0}
    busy = {"others": 0.61, "steal": 0.01, "loadavg": 2.4, "cores": 2, "seconds": 4.0}
    assert busy_line(quiet) is None and busy_line({**quiet, "steal": 0.2})
    sweep = tmp_path / "s.yaml"
    sweep.write_text("stages:\n  flops:\n    notebook: flops\n    preset: smoke\n")  # priced at its start-up alone
    plan = plan_sweep(sweep)
    cal = Calibration(default_workers(), "auto")  # the calibration the plan of one point at one worker reads
    for conditions, warned in ((busy, True), (quiet, False)):
        cal.path.parent.mkdir(parents=True, exist_ok=True)
        cal.path.write_text(json.dumps({"_conditions": conditions}))
        lines = machine_plan(plan, workers=1)[2]
        said = [line for line in lines if line.startswith("BUSY CORES")]
        assert len(said) == (1 if warned else 0), lines
        if warned:
            assert "61% of the 2 core(s)" in said[0] and "spdf plan --recalibrate" in said[0]
    cal.path.write_text(json.dumps({"_conditions": busy}))
    # --recalibrate forgets the busy session
    assert Calibration(default_workers(), "auto", recalibrate=True).conditions is None
    with LoadMeter() as load:  # and the meter itself reads this machine
        sum(i * i for i in range(200_000))
    assert load.conditions["cores"] >= 1 and 0.0 <= load.conditions["others"] <= 1.0


def test_the_exam_stage_is_priced_from_what_the_scorer_does():
    """Tokens through the model as the scorer sends them: cloze packs each context with its options once;
    letters are asked once a question, under every rotation with CircularEval or for PriDe's sample."""
    from spdf_lib.exams.cloze import cloze_context, continuations
    from spdf_lib.exams.cost import CHARS_PER_TOKEN, scorer_work
    from spdf_lib.exams.parse import Question
    from spdf_lib.exams.prompts import loglik_prompt

    qs = [Question(qid=str(i), certification="c", number=i, stem=f"What is {i} + {i}?" * (i + 1),
                   options=("one", "two", "three", "four"), key=frozenset("B"), raw_key="B", n_stated=1)
          for i in range(40)]
    chars = sum(len(cloze_context(q)) + sum(map(len, continuations(q))) for q in qs)
    cf = scorer_work({}, qs, "cf", kit_model=False)
    assert cf["tokens"] == pytest.approx(chars / CHARS_PER_TOKEN["smollm2"])
    assert scorer_work({}, qs, "cf", kit_model=True)["calls"] == 2 * len(qs)  # KV-cache path: context, options
    letters = sum(len(loglik_prompt(q)) for q in qs) / CHARS_PER_TOKEN["smollm2"]
    assert scorer_work({"circular": False, "pride": False}, qs, "mcf", False)["tokens"] == pytest.approx(letters)
    assert scorer_work({"circular": True}, qs, "mcf", False)["calls"] == 4 * len(qs)
    pride = scorer_work({"pride": True, "pride_share": 0.05}, qs, "mcf", False)["calls"]
    assert pride == len(qs) + 3 * 2  # 5% of 40 questions asked under their 3 other rotations too
    best = scorer_work({}, qs, "best", False)["tokens"]
    assert best == pytest.approx(cf["tokens"] + letters)
