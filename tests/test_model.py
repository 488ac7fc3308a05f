"""The GPT: shapes, init, attention paths, KV-cache generation, save/load, named sizes."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from transformers import AutoConfig, AutoModelForCausalLM

from spdf_lib.modeling_gpt import NAMED_CONFIGS, GPTForCausalLM, gpt_config


def n_params_formula(L: int, d: int, f: int, V: int, T: int) -> int:
    per_layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d  # q,k,v,o + ffn + 2 LayerNorms
    return V * d + T * d + L * per_layer + 2 * d  # tied head, final LayerNorm


def test_named_sizes_match_the_papers():
    for name, (L, d, H, f, T) in {"gpt2-small": (12, 768, 12, 3072, 1024), "gpt2-small-2048": (12, 768, 12, 3072, 2048),
                                  "gpt3-xl": (24, 2048, 16, 8192, 2048)}.items():
        c = gpt_config(name)
        assert (c.n_layer, c.n_embd, c.n_head, c.n_inner, c.n_positions, c.vocab_size) == (L, d, H, f, T, 50257)
    assert {"nano", "micro", "mini", "small"} <= set(NAMED_CONFIGS)


def test_parameter_count_and_tied_head():
    m = tiny_model()
    c = m.config
    assert m.lm_head.weight is m.transformer.wte.weight
    assert sum(p.numel() for p in m.parameters()) == n_params_formula(c.n_layer, c.n_embd, c.n_inner, c.vocab_size,
                                                                       c.n_positions)
    # GPT-2 small is the 124M model
    with torch.device("meta"):
        gpt2 = GPTForCausalLM(gpt_config("gpt2-small"))
    assert sum(p.numel() for p in gpt2.parameters()) == n_params_formula(12, 768, 3072, 50257, 1024) == 124_439_808


def test_init_std_and_scaled_output_projections():
    m = tiny_model(seed=1, n_inner=512)  # enough elements for a tight std estimate
    L = m.config.n_layer
    for block in m.transformer.h:
        assert abs(block.mlp.fc_in.weight.std().item() - 0.02) < 0.002
        assert abs(block.mlp.fc_out.weight.std().item() - 0.02 / (2 * L) ** 0.5) < 0.002
        assert torch.all(block.attn.q_proj.bias == 0)
        assert torch.all(block.ln_1.weight == 1)


def test_sdpa_and_eager_attention_agree():
    m = tiny_model()
    x = torch.randint(2, 97, (3, 20))
    sdpa = m(x).logits
    m.config._attn_implementation = "eager"
    eager = m(x).logits
    torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=1e-5)


def test_output_is_causal():
    m = tiny_model()
    x = torch.randint(2, 97, (1, 16))
    y = x.clone()
    y[0, 10] = (y[0, 10] + 1) % 97
    a, b = m(x).logits, m(y).logits
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def _greedy_by_recompute(m, x, n):
    for _ in range(n):
        x = torch.cat([x, m(x).logits[:, -1].argmax(-1, keepdim=True)], 1)
    return x


def test_generate_with_kv_cache_equals_recomputation():
    m = tiny_model()
    x = torch.randint(2, 97, (2, 7))
    out = m.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=12, do_sample=False, eos_token_id=None)
    assert torch.equal(out, _greedy_by_recompute(m, x, 12))


def test_left_padded_batch_generates_like_single_prompts():
    m = tiny_model()
    prompts = [torch.randint(2, 97, (n,)) for n in (5, 9)]
    single = [m.generate(p[None], attention_mask=torch.ones(1, len(p), dtype=torch.long), max_new_tokens=6,
                         do_sample=False, eos_token_id=None)[0, len(p):] for p in prompts]
    T = max(len(p) for p in prompts)
    ids = torch.full((2, T), 1)
    mask = torch.zeros(2, T, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, T - len(p):], mask[i, T - len(p):] = p, 1
    batched = m.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False, eos_token_id=None)[:, T:]
    for i in range(2):
        assert torch.equal(batched[i], single[i])


def test_save_and_load_through_auto_classes(tmp_path):
    m = tiny_model()
    m.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "spdf_gpt"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(loaded, GPTForCausalLM)
    x = torch.randint(2, 97, (2, 10))
    assert torch.equal(loaded(x).logits, m(x).logits)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight


def test_too_long_input_is_a_clear_error():
    m = tiny_model()
    try:
        m(torch.zeros(1, 65, dtype=torch.long))
    except ValueError as e:
        assert "n_positions=64" in str(e)
    else:
        raise AssertionError("expected a ValueError")


def test_a_saved_model_loads_without_the_kit_through_trust_remote_code(tmp_path):
    """For the ecosystem (lm-eval, `transformers serve`): the folder carries the modeling code."""
    import subprocess
    import sys

    from spdf_lib.sparsity import sparsify

    m = tiny_model(mdha=True)
    sparsify(m, 0.5)
    m.save_pretrained(tmp_path)
    code = ("import sys, torch; sys.modules['spdf_lib'] = None\n"  # importing the kit would fail
            "from transformers import AutoModelForCausalLM\n"
            f"m = AutoModelForCausalLM.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)\n"
            "print(len(m.masks()), m(torch.tensor([[3, 4, 5]])).logits.double().sum().item())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) == 6 * m.config.n_layer
    assert float(out[1]) == pytest.approx(m(torch.tensor([[3, 4, 5]])).logits.double().sum().item(), rel=1e-6)
