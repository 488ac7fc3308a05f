"""Primer-EZ on Hugging Face models (issue 32): squared ReLU from the config (ReLU²-GLU for gated FFNs) and
multi-dconv-head attention that is causal, equal with and without the KV cache and in `generate()`, and saved
and loaded with the model."""

from __future__ import annotations

import pytest
import torch
import transformers as tr
from hf_fixtures import tiny_hf

from spdf_lib.hf import from_pretrained, primer_ez
from spdf_lib.sparsity import get_masks, sparsify


def _primer(arch: str):
    m = primer_ez(tiny_hf(arch)).eval()
    with torch.no_grad():  # away from the init, so that every tap matters
        for n, p in m.named_parameters():
            if n.endswith("dconv.weight"):
                p.add_(0.3 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox"])
def test_mdha_is_causal_and_cached_decoding_equals_a_full_forward(arch):
    torch.manual_seed(1)
    m = _primer(arch)
    x = torch.randint(3, 90, (2, 12))
    with torch.no_grad():
        full = m(x, use_cache=False).logits
        # causality: logits at t unchanged when the tokens after t change
        y = x.clone()
        y[:, 7:] = torch.randint(3, 90, (2, 5))
        torch.testing.assert_close(m(y, use_cache=False).logits[:, :7], full[:, :7], rtol=0, atol=0)
        # the convolution is really there: the same weights without it give other logits
        plain = tiny_hf(arch)
        plain.load_state_dict(m.state_dict(), strict=False)
        plain.config.hidden_act = plain.config.activation_function = "relu2"
        assert not torch.allclose(primer_ez(plain, mdha=False).eval()(x).logits, full, atol=1e-4)
        # a prefill of 5 tokens, then one token at a time through the cache
        out = m(x[:, :5], use_cache=True)
        logits, cache = [out.logits], out.past_key_values
        for t in range(5, 12):
            out = m(x[:, t:t + 1], cache=cache, use_cache=True)
            logits.append(out.logits)
            cache = out.past_key_values
    torch.testing.assert_close(torch.cat(logits, 1), full, rtol=1e-5, atol=1e-5)
    a = m.generate(x[:, :4], max_new_tokens=12, do_sample=False, use_cache=True, pad_token_id=0)
    b = m.generate(x[:, :4], max_new_tokens=12, do_sample=False, use_cache=False, pad_token_id=0)
    assert torch.equal(a, b) and a.shape[1] == 16


def test_relu2_from_the_config_and_relu2_glu_for_gated_ffns(tmp_path):
    x = torch.randint(3, 90, (1, 6))
    for arch, key in (("gpt2", "activation_function"), ("gpt_neox", "hidden_act"), ("llama", "hidden_act")):
        m = primer_ez(tiny_hf(arch), mdha=False).eval()
        assert getattr(m.config, key) == "relu2" and m.config.primer_ez["relu2"]
        m.save_pretrained(tmp_path / arch)
        plain = tr.AutoModelForCausalLM.from_pretrained(tmp_path / arch)  # stock loading rebuilds relu2
        torch.testing.assert_close(plain(x).logits, m(x).logits)
    mlp = m.model.layers[0].mlp  # Llama: down(relu(gate·x)² ⊙ up·x)
    h = torch.randn(3, 32)
    torch.testing.assert_close(mlp(h), mlp.down_proj(torch.relu(mlp.gate_proj(h)) ** 2 * mlp.up_proj(h)))


def test_primer_ez_sparse_model_saved_and_loaded_with_the_kit(tmp_path):
    m = _primer("llama")
    masks = sparsify(m, 0.75)
    m.save_pretrained(tmp_path)
    back = from_pretrained(tmp_path).eval()
    x = torch.randint(3, 90, (2, 9))
    assert all(torch.equal(back.state_dict()[k], v) for k, v in m.state_dict().items())
    torch.testing.assert_close(back(x).logits, m(x).logits)  # (sdpa there, eager here: rounding differs)
    assert back.config.primer_ez == {"relu2": True, "mdha": True, "mdha_kernel": 3}
    assert all(torch.equal(get_masks(back)[k], v) for k, v in masks.items())
    dense = from_pretrained(tmp_path, masks=False)
    assert get_masks(dense) == {}
    with pytest.raises(ValueError, match="Primer-EZ from its config"):
        from conftest import tiny_model

        primer_ez(tiny_model())
