"""The one training step (`spdf_lib.train_step`): the fast path computes what the eager one does, resumes bitwise
from its checkpoints, and falls back to eager in one line when compiling fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spdf_lib.data.streams import PackedStream
from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
from spdf_lib.sparsity import sparsify
from spdf_lib.train import TrainConfig, _fingerprint, autocast_factory, make_optimizer, train
from spdf_lib.train_step import ENV, TrainStep, choose_fast

V, T, B = 64, 16, 4


def _model(sparse: bool = False) -> GPTForCausalLM:
    torch.manual_seed(0)
    model = GPTForCausalLM(gpt_config("nano", vocab_size=V, n_positions=T, n_embd=32, n_head=2))
    if sparse:
        sparsify(model, 0.75, seed=0)
    return model


def _losses(fast: bool, sparse: bool = False, steps: int = 3) -> tuple[list[float], GPTForCausalLM]:
    model = _model(sparse)
    cfg = TrainConfig(max_steps=steps, lr=1e-2, matrix_lr_scale=0.25, fast_step=fast)
    stepper = TrainStep(model, make_optimizer(model, cfg, "cpu"), autocast_factory("cpu", "fp32"), fast=fast)
    ids = torch.randint(0, V, (B, T + 1), generator=torch.Generator().manual_seed(1))
    batches = [{"input_ids": ids[:2, :-1], "targets": ids[:2, 1:]}, {"input_ids": ids[2:, :-1], "targets": ids[2:, 1:]}]
    losses = [stepper.step(batches, 1.0 / (B * T)).loss_sum / (B * T) for _ in range(steps + 1)]
    assert stepper.describe()["compiled"] is fast, stepper.describe()
    return losses, model


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "75% sparse"])
def test_fast_step_gives_the_eager_losses_after_3_steps(sparse):
    eager, _ = _losses(False, sparse)
    fast, model = _losses(True, sparse)
    assert eager[0] == pytest.approx(fast[0], abs=1e-5)  # the same weights, the same batch
    assert max(abs(a - b) for a, b in zip(eager, fast, strict=True)) < 1e-5, (eager, fast)
    assert eager[-1] < eager[0] - 0.05  # and it learns (the steps did update)
    if sparse:  # the masks still hold under the compiled step
        for name, mask in model.masks().items():
            assert not model.get_parameter(name)[~mask].any(), name


def test_fast_step_resumes_bitwise_from_its_checkpoints(tmp_path, shakespeare_tokens):
    tok, train_ids, val_ids = shakespeare_tokens
    data = PackedStream(train_ids, val_ids, T, eval_windows=2)
    cfg = TrainConfig(max_steps=6, batch_size=B, lr=3e-3, checkpoint_every=3, keep_checkpoints=3, precision="fp32",
                      progress=False, fast_step=True)

    def fresh() -> GPTForCausalLM:
        torch.manual_seed(0)
        return GPTForCausalLM(gpt_config("nano", vocab_size=len(tok), n_positions=T, n_embd=32, n_head=2))

    straight = fresh()
    train(straight, data, cfg, out_dir=tmp_path / "straight")
    train(fresh(), data, cfg, out_dir=tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step-00000006")  # as if killed after step 3's checkpoint
    resumed = fresh()
    train(resumed, data, cfg, out_dir=tmp_path / "resumed")
    a, b = straight.state_dict(), resumed.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_compile_failure_falls_back_to_eager_in_one_line(tmp_path):
    """A real failure: inductor pointed at a C++ compiler that does not exist, with an empty kernel cache."""
    script = (
        "import json, torch\n"
        "from spdf_lib.train import TrainConfig, autocast_factory, make_optimizer\n"
        "from spdf_lib.train_step import TrainStep\n"
        "from test_train_step import B, T, V, _model\n"
        "out = {}\n"
        "for fast in (False, True):\n"
        "    m = _model()\n"
        "    s = TrainStep(m, make_optimizer(m, TrainConfig(max_steps=3, fast_step=fast), 'cpu'),\n"
        "                  autocast_factory('cpu', 'fp32'), fast=fast)\n"
        "    ids = torch.randint(0, V, (B, T + 1), generator=torch.Generator().manual_seed(1))\n"
        "    b = [{'input_ids': ids[:, :-1], 'targets': ids[:, 1:]}]\n"
        "    out[fast] = [s.step(b, 1 / (B * T)).loss_sum for _ in range(3)] + [s.describe()]\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "SPDF_CACHE": str(tmp_path / "cache"),
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    said = [line for line in done.stderr.splitlines() if "torch.compile failed" in line]
    assert len(said) == 1 and "eager step instead" in said[0] and "C++ compiler" in said[0], done.stderr[-2000:]
    assert out["true"][:3] == out["false"][:3]  # the eager step, with the same (fused) AdamW, from the same state
    assert out["true"][3]["compiled"] is False and out["true"][3]["compile_failed"]


def test_the_step_path_is_a_speed_choice(monkeypatch):
    """Where the fast path is taken, and that it never enters a run's fingerprint (old checkpoints resume)."""
    monkeypatch.delenv(ENV, raising=False)
    assert choose_fast(None, "cpu", 4883) and not choose_fast(None, "cpu", 50)
    assert not choose_fast(None, "cuda:0", 4883) and choose_fast(None, "cuda:0", 10, compile_requested=True)
    assert not choose_fast(False, "cpu", 4883)
    monkeypatch.setenv(ENV, "eager")
    assert not choose_fast(True, "cpu", 4883)
    monkeypatch.setenv(ENV, "quick")
    with pytest.raises(ValueError, match="SPDF_TRAIN_STEP"):
        choose_fast(None, "cpu", 10)
    model = _model()
    fast, eager = TrainConfig(max_steps=9, fast_step=True), TrainConfig(max_steps=9)
    assert _fingerprint(model, fast) == _fingerprint(model, eager)
