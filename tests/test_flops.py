"""The FLOP counter: exact against torch's FlopCounterMode, sparse-aware, the published conventions, the paper."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import tiny_model
from torch.utils.flop_counter import FlopCounterMode

from spdf_lib import flops
from spdf_lib.modeling_gpt import gpt_config
from spdf_lib.sparsity import sparsify


def _counted(model, x, backward: bool) -> dict[str, int]:
    with FlopCounterMode(display=False) as fc:
        out = model(x).logits
        if backward:
            out.sum().backward()
    return {str(op): n for op, n in fc.get_flop_counts()["Global"].items()}


@pytest.mark.parametrize("mdha", [False, True])
def test_dense_forward_and_training_match_flop_counter_mode_exactly(mdha):
    m = tiny_model(mdha=mdha, activation="relu2" if mdha else "gelu")
    m.config._attn_implementation = "eager"  # FlopCounterMode reports 0 for SDPA on CPU in torch 2.13
    B, T, C = 3, 24, m.config.n_embd
    x = torch.randint(2, 97, (B, T))
    shape = flops.shape_from_model(m)
    ours = flops.forward_flops(shape, T)
    assert (ours["mdha_conv"] > 0) == mdha
    assert sum(_counted(m, x, backward=False).values()) == B * sum(ours.values())
    counted = _counted(m, x, backward=True)
    conv_fwd = counted.pop("aten.convolution", 0)
    conv_bwd = counted.pop("aten.convolution_backward", 0)
    assert conv_fwd == B * ours["mdha_conv"]
    training = flops.training_flops_per_sequence(shape, T)
    assert sum(counted.values()) + conv_fwd == B * (training - 2 * ours["mdha_conv"])
    # The true backward of a depthwise convolution is 2 x its forward (input and weight gradients). torch 2.13's
    # FlopCounterMode counts the weight gradient of a grouped convolution as if it were dense (groups ignored),
    # 3C times too many for MDHA's 3C channels, so it reports (1 + 3C) x forward. We keep 2 x; this pins down
    # the difference.
    assert conv_bwd == (1 + 3 * C) * conv_fwd


def test_sparse_count_equals_mask_nonzeros():
    m = tiny_model()
    masks = sparsify(m, 0.75, seed=4)
    T = 32
    ours = flops.forward_flops(flops.shape_from_model(m), T)
    independent = sum(2 * int(mask.sum()) * T for mask in masks.values())
    assert ours["qkv"] + ours["attn_out"] + ours["ffn"] == independent
    dense = flops.forward_flops(flops.shape_from_model(tiny_model()), T)
    for term in ("attn_scores", "attn_values", "logits"):  # attention and the LM head stay dense
        assert ours[term] == dense[term]


def test_nominal_sparsity_on_paper_equals_a_real_model():
    m = tiny_model()
    sparsify(m, 0.5)
    assert flops.shape_from_model(m).nnz == flops.shape_from_config(m.config, 0.5).nnz


def test_published_formulas():
    cfg = gpt_config("gpt2-small")
    L, d, V, T, H = cfg.n_layer, cfg.n_embd, cfg.vocab_size, cfg.n_positions, cfg.n_head
    N = 12 * L * d * d  # non-embedding matmul weights with FFN = 4d
    tokens = 1e9
    assert flops.count(cfg, tokens, convention="kaplan")["total"] == pytest.approx(6 * N * tokens, rel=1e-12)
    palm = (6 * (N + V * d) + 12 * L * H * (d // H) * T) * tokens
    assert flops.count(cfg, tokens, convention="palm")["total"] == pytest.approx(palm, rel=1e-12)
    B = tokens / T
    megatron = 96 * B * T * L * d**2 * (1 + T / (6 * d) + V / (16 * L * d))
    assert flops.count(cfg, tokens, convention="megatron")["total"] == pytest.approx(megatron, rel=1e-12)
    fwd = 2 * T * V * d + L * (2 * T * 3 * d * d + 2 * T * T * d + 3 * H * T * T + 2 * T * T * d + 2 * T * d * d
                               + 2 * T * 2 * d * 4 * d) + 2 * T * d * V  # Chinchilla App. F, per sequence
    assert flops.count(cfg, tokens, convention="chinchilla")["total"] == pytest.approx(3 * fwd * B, rel=1e-12)
    halved = flops.Convention("halved", causal_halving=True)
    f = flops.forward_flops(flops.shape_from_config(cfg), T, halved)
    assert f["attn_scores"] == 2 * L * d * T * (T + 1) / 2


def test_spdf_headline_gpt3_xl_at_75_percent_is_about_2_5x():
    r = flops.reduction_factor("gpt3-xl", 0.75, 26.3e9, 2048)
    assert 2.45 < r < 2.55  # the paper: "2.5x fewer pre-training FLOPs"
    small = flops.reduction_factor("gpt2-small-2048", 0.75, 2.505e9, 2048)
    assert small < r  # small models gain less: dense attention and logits dominate
    table = flops.breakdown_table({"gpt3-xl": ("gpt3-xl", 26.3e9, 2048)})
    assert list(table["sparsity"]) == [0.0, 0.5, 0.75] and table["reduction_vs_dense"].iloc[0] == 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="unknown model size"):
        flops.count("gpt5", 1e9)
    with pytest.raises(ValueError, match="non-negative"):
        flops.count("gpt3-xl", -1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        flops.count("gpt3-xl", 1e9, sparsity=1.2)
    with pytest.raises(ValueError, match="unknown FLOP convention"):
        flops.count("gpt3-xl", 1e9, convention="mine")


def test_command_line():
    res = subprocess.run([sys.executable, "-m", "spdf_lib.cli", "flops", "--model", "gpt3-xl", "--sparsity", "0.75",
                          "--tokens", "26.3e9"], capture_output=True, text=True, check=True)
    assert "total" in res.stdout and "2.494x fewer than dense" in res.stdout
    bad = subprocess.run([sys.executable, "-m", "spdf_lib.cli", "flops", "--model", "gpt9", "--tokens", "1"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "invalid choice: 'gpt9'" in bad.stderr
