"""The sparse-aware FLOP counter on Hugging Face configs (issue 32): exact against torch's FlopCounterMode on
eager attention at 0% sparsity, density × dense for the masked matmuls, and `spdf flops --config`."""

from __future__ import annotations

import pytest
import torch
from hf_fixtures import tiny_config, tiny_hf
from torch.utils.flop_counter import FlopCounterMode

from spdf_lib import flops
from spdf_lib.cli import main
from spdf_lib.flops import load_config, shape_from_hf_config
from spdf_lib.hf import primer_ez
from spdf_lib.sparsity import sparsify

T = 19
VARIANTS = {  # name -> (architecture, config overrides): GQA, gated FFN, rotary/learned, tied/untied, head_dim
    "gpt2 (learned positions, tied)": ("gpt2", {}),
    "llama (GQA, SwiGLU, rotary, untied)": ("llama", {}),
    "llama (tied, head_dim 16)": ("llama", {"tie_word_embeddings": True, "head_dim": 16}),
    "qwen2": ("qwen2", {}),
    "mistral": ("mistral", {}),
    "gpt_neox (partial rotary, fused per head)": ("gpt_neox", {}),
}


def measured(model) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.arange(T)[None] % 90 + 3, use_cache=False)
    return counter.get_total_flops()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_counter_matches_flopcountermode_at_zero_sparsity(variant):
    arch, overrides = VARIANTS[variant]
    model = tiny_hf(arch, **overrides)
    ours = sum(flops.forward_flops(shape_from_hf_config(model.config), T).values())
    assert ours == pytest.approx(measured(model), rel=1e-6)
    assert sum(flops.forward_flops(flops.shape_from_model(model), T).values()) == ours  # no masks: dense
    primer_ez(model)  # MDHA's depthwise convolutions (over q + 2·kv channels with GQA) counted too
    ours = sum(flops.forward_flops(shape_from_hf_config(model.config), T).values())
    assert ours == pytest.approx(measured(model), rel=1e-6)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
def test_sparse_count_is_density_times_dense_for_the_masked_matmuls(arch):
    model = tiny_hf(arch)
    dense = flops.forward_flops(flops.shape_from_model(model), T)
    sparsify(model, 0.75)
    sparse = flops.forward_flops(flops.shape_from_model(model), T)
    for term in ("qkv", "attn_out", "ffn"):
        assert sparse[term] == 0.25 * dense[term]
    for term in ("attn_scores", "attn_values", "logits"):
        assert sparse[term] == dense[term]
    assert sparse == flops.forward_flops(shape_from_hf_config(model.config, 0.75), T)


def test_spdf_flops_cli_on_a_config_json(tmp_path, capsys):
    tiny_config("llama").save_pretrained(tmp_path)
    assert main(["flops", "--config", str(tmp_path / "config.json"), "--sparsity", "0.75", "--tokens", "1e6",
                 "--seq-len", "64"]) == 0
    out = capsys.readouterr().out
    cfg = load_config(tmp_path)
    want = flops.count(cfg, 1e6, 0.0, 64)["total"] / flops.count(cfg, 1e6, 0.75, 64)["total"]
    assert f"{want:.3f}x fewer than dense" in out and "ffn" in out
    assert main(["flops", "--config", str(tmp_path / "missing.json"), "--tokens", "1"]) == 2
    assert "no such config.json" in capsys.readouterr().err
    import transformers as tr

    tr.OPTConfig().save_pretrained(tmp_path / "opt")
    assert main(["flops", "--config", str(tmp_path / "opt"), "--tokens", "1"]) == 2
    assert "no SPDF adapter for architecture 'opt'" in capsys.readouterr().err
