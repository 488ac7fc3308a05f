"""The training loop: learning, the schedule, target-only loss, bitwise resume after a kill, DDP equivalence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_model
from safetensors.torch import load_file

from spdf_lib.data.streams import IGNORE, PackedStream, PairData
from spdf_lib.jsonio import read_jsonl
from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
from spdf_lib.train import TrainConfig, evaluate, lr_at, train

WORKER = Path(__file__).with_name("train_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parent.parent)}


def test_pretraining_on_shakespeare_lowers_the_validation_loss(shakespeare_tokens):
    tok, train_ids, val_ids = shakespeare_tokens
    torch.manual_seed(0)
    model = GPTForCausalLM(gpt_config("nano", vocab_size=len(tok), n_positions=64))
    data = PackedStream(train_ids, val_ids, 64, eval_windows=8)
    before = evaluate(model, data, 8, "cpu")
    last = train(model, data, TrainConfig(max_steps=50, batch_size=8, lr=3e-3, progress=False))
    assert last["eval_loss"] < before - 1.0
    assert last["tokens"] == 50 * 8 * 64
    assert last["flops"] > 0


def test_learning_rate_schedule():
    cfg = TrainConfig(max_steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1)  # the floor is reached at the last step that updates the weights
    assert all(lr_at(i, cfg) > lr_at(i + 1, cfg) for i in range(10, 99))


def test_fine_tuning_loss_is_on_the_target_only():
    data = PairData([([5, 6, 7], [8, 9, 0])], [], pad_id=1, max_len=16)
    batch = data.collate([([5, 6, 7], [8, 9, 0]), ([5], [8, 0])])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 0], [5, 8, 0, 1, 1, 1]]
    # targets are shifted: position t predicts token t + 1, and only target tokens carry a loss
    assert batch["targets"].tolist() == [[IGNORE, IGNORE, 8, 9, 0, IGNORE], [8, 0, IGNORE, IGNORE, IGNORE, IGNORE]]
    # after training, the target tokens are predicted and the prompt's own continuations are not learned
    m = tiny_model()
    train(m, PairData([([5, 6, 7], [8, 9, 0])] * 4, [([5, 6, 7], [8, 9, 0])], pad_id=1, max_len=16),
          TrainConfig(max_steps=40, batch_size=4, lr=1e-2, progress=False))
    probs = m(torch.tensor([[5, 6, 7, 8, 9]])).logits.softmax(-1)[0]
    assert min(probs[2, 8], probs[3, 9], probs[4, 0]) > 0.8
    assert max(probs[0, 6], probs[1, 7]) < 0.1


def test_empty_fine_tuning_set_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        PairData([], [], pad_id=1, max_len=8)


def _run_worker(out: Path, steps: int, every: int, precision: str = "auto", dropout: float = 0.1) -> subprocess.Popen:
    # dropout > 0 makes the resumed run depend on the restored RNG state too
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(out), str(steps), str(every), precision, str(dropout)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_resume_after_a_kill_gives_bitwise_the_same_weights(tmp_path, shakespeare_tokens):
    straight = tmp_path / "straight"
    p = _run_worker(straight, 16, 4)
    assert p.wait() == 0, p.stderr.read()
    interrupted = tmp_path / "interrupted"
    p = _run_worker(interrupted, 16, 4)
    ckpt = interrupted / "checkpoints" / "step-00000008"
    while not ckpt.exists() and p.poll() is None:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (interrupted / "final.safetensors").exists(), "the run finished before it could be killed"
    p = _run_worker(interrupted, 16, 4)
    assert p.wait() == 0, p.stderr.read()
    a, b = load_file(straight / "final.safetensors"), load_file(interrupted / "final.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [r["step"] for r in read_jsonl(interrupted / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 16  # no duplicated rows from the killed session
    assert [r["loss"] for r in read_jsonl(interrupted / "metrics.jsonl")] == [
        r["loss"] for r in read_jsonl(straight / "metrics.jsonl")]


def test_resuming_with_another_configuration_is_refused(tmp_path, shakespeare_tokens):
    tok, train_ids, val_ids = shakespeare_tokens
    data = PackedStream(train_ids, val_ids, 32, eval_windows=2)
    model = GPTForCausalLM(gpt_config("nano", vocab_size=len(tok), n_positions=32))
    train(model, data, TrainConfig(max_steps=2, batch_size=2, checkpoint_every=1, progress=False), out_dir=tmp_path)
    other = GPTForCausalLM(gpt_config("nano", n_embd=32, vocab_size=len(tok), n_positions=32))
    with pytest.raises(ValueError, match="another configuration .*n_embd"):
        train(other, data, TrainConfig(max_steps=4, batch_size=2, checkpoint_every=1, progress=False), out_dir=tmp_path)


def test_each_ddp_rank_draws_its_own_dropout_masks(tmp_path, shakespeare_tokens):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(WORKER),
           str(tmp_path), "1", "0", "fp32", "0.5", "probe"]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    m0, m1 = torch.load(tmp_path / "dropout-rank0.pt"), torch.load(tmp_path / "dropout-rank1.pt")
    assert 0.4 < m0.float().mean() < 0.6 and 0.4 < m1.float().mean() < 0.6  # real dropout at p = 0.5
    assert (m0 != m1).float().mean() > 0.3  # independent streams disagree on about half the positions


def test_two_process_ddp_matches_one_process(tmp_path, shakespeare_tokens):
    one = tmp_path / "one"
    p = _run_worker(one, 6, 0, "fp32", dropout=0.0)
    assert p.wait() == 0, p.stderr.read()
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(WORKER),
           str(two), "6", "0", "fp32", "0"]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    l1 = [r["loss"] for r in read_jsonl(one / "metrics.jsonl")]
    l2 = [r["loss"] for r in read_jsonl(two / "metrics.jsonl")]
    assert len(l1) == len(l2) == 6
    torch.testing.assert_close(torch.tensor(l2), torch.tensor(l1), rtol=1e-5, atol=1e-5)
    a, b = load_file(one / "final.safetensors"), load_file(two / "final.safetensors")
    for k in a:  # Adam turns last-bit gradient differences of near-zero gradients into lr-sized steps
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4)


def test_speed_options_compute_the_same_training(tmp_path):
    """Activation checkpointing and a forced attention kernel change how, not what, the loop computes."""
    torch.manual_seed(0)
    ids = torch.randint(2, 97, (5000,))
    weights = []
    for options in ({}, {"activation_checkpointing": True, "sdpa_backend": "math"}):
        model = tiny_model()
        train(model, PackedStream(ids, ids[:500], 32, seed=0, eval_windows=4),
              TrainConfig(max_steps=4, batch_size=4, precision="fp32", progress=False, **options))
        weights.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*weights, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="sdpa_backend must be one of auto, flash, efficient, math"):
        TrainConfig(max_steps=1, sdpa_backend="fast")


def test_matrix_lr_scale_trains_the_blocks_matrices_at_their_own_rate(tmp_path, shakespeare_tokens):
    from spdf_lib.sparsity import target_params
    from spdf_lib.train import make_optimizer

    model = tiny_model(vocab_size=512)
    names = {id(p): n for n, p in model.named_parameters()}
    cfg = TrainConfig(max_steps=3, batch_size=4, lr=1e-2, matrix_lr_scale=0.25, progress=False)
    groups = {g["name"]: g for g in make_optimizer(model, cfg, "cpu").param_groups}
    assert sorted(names[id(p)] for p in groups["matrices"]["params"]) == sorted(target_params(model))
    assert sorted(names[id(p)] for p in groups["embeddings"]["params"]) == ["transformer.wpe.weight",
                                                                             "transformer.wte.weight"]
    assert groups["matrices"]["lr_scale"] == 0.25 and groups["embeddings"]["lr_scale"] == 1.0
    # a single rate keeps the two groups (and the checkpoints) that runs always had
    single = make_optimizer(model, TrainConfig(max_steps=1), "cpu").param_groups
    assert [g["name"] for g in single] == ["matrices", "norms_biases"]

    # the update of each group follows its rate: one step from the same weights, matrices 4x slower
    tok, train_ids, val_ids = shakespeare_tokens
    data = PackedStream(train_ids, val_ids, 32, eval_windows=2)
    moved = {}
    for scale in (1.0, 0.25):
        m = tiny_model(vocab_size=len(tok))
        start = {n: p.detach().clone() for n, p in m.named_parameters()}
        last = train(m, data, TrainConfig(max_steps=1, batch_size=4, lr=1e-3, grad_clip=0, matrix_lr_scale=scale,
                                          progress=False, diagnostics=True, log_every=1))
        moved[scale] = {n: float((p.detach() - start[n]).abs().max()) for n, p in m.named_parameters()}
        assert {"update_ratio.matrices", "update_ratio.norms_biases"} <= set(last)
    q = "transformer.h.0.attn.q_proj.weight"
    # Adam's first step moves each weight by about lr (sign of the gradient)
    assert moved[0.25][q] == pytest.approx(moved[1.0][q] / 4, rel=0.05)
    assert moved[0.25]["transformer.wte.weight"] == pytest.approx(moved[1.0]["transformer.wte.weight"], rel=0.05)


def test_a_run_made_before_matrix_lr_scale_existed_is_the_same_configuration(tmp_path):
    from spdf_lib.jsonio import write_json
    from spdf_lib.rundir import claim, params_hash

    old = {"lr": 0.003, "seed": 0}
    write_json(tmp_path / "manifest.json", {"experiment": "spdf_pretrain", "params": old,
                                            "params_hash": params_hash(old), "status": "ok"})
    assert claim(tmp_path, "spdf_pretrain", {**old, "matrix_lr_scale": 1.0}).state == "finished"
    with pytest.raises(Exception, match="matrix_lr_scale"):
        claim(tmp_path, "spdf_pretrain", {**old, "matrix_lr_scale": 0.25})
