"""Primer-EZ options: squared ReLU and multi-dconv-head attention (So et al. 2021, §3)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from transformers import AutoModelForCausalLM

from spdf_lib.modeling_gpt import MultiDConvHead, SquaredReLU
from spdf_lib.sparsity import sparsify, target_params


def test_squared_relu():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    assert torch.equal(SquaredReLU()(x), torch.tensor([0.0, 0.0, 0.0, 0.25, 9.0]))
    m = tiny_model(activation="relu2")
    assert isinstance(m.transformer.h[0].mlp.act, SquaredReLU)
    assert m.transformer.h[0].mlp.fc_in.out_features == 4 * m.config.n_embd  # FFN width unchanged


def test_mdha_adds_three_depthwise_kernels_per_layer():
    for k in (3, 5):
        base, mdha = tiny_model(), tiny_model(mdha=True, mdha_kernel=k)
        d, L = base.config.n_embd, base.config.n_layer
        added = sum(p.numel() for p in mdha.parameters()) - sum(p.numel() for p in base.parameters())
        assert added == L * 3 * k * d  # 9·d per layer for k = 3, as the paper says


def test_mdha_official_init():
    conv = tiny_model(mdha=True).transformer.h[0].attn.mdha
    assert conv.weight.shape == (3 * 32, 1, 3)  # one kernel per channel of Q, K and V
    assert torch.all(conv.weight[..., -1] == 0.5)
    torch.testing.assert_close(conv.weight[..., :-1], torch.full_like(conv.weight[..., :-1], 0.5 / 3))


def test_dconv_is_a_causal_depthwise_convolution():
    conv = MultiDConvHead(channels=2, kernel=3)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[1.0, 10.0, 100.0]], [[2.0, 0.0, 0.0]]]))
    x = torch.arange(1.0, 6.0)[None, :, None].repeat(1, 1, 2)  # (B=1, T=5, C=2), values 1..5
    y = conv(x)
    # channel 0 at t: 100·x[t] + 10·x[t-1] + 1·x[t-2], zeros before the start
    assert y[0, :, 0].tolist() == [100.0, 210.0, 321.0, 432.0, 543.0]
    assert y[0, :, 1].tolist() == [0.0, 0.0, 2.0, 4.0, 6.0]  # channel 1 sees only t-2


def test_changing_a_future_token_never_changes_the_past_on_any_path():
    m = tiny_model(mdha=True)
    C = m.config.n_embd
    for block in m.transformer.h:  # random kernels, so that every tap matters
        torch.nn.init.normal_(block.attn.mdha.weight)
    captured: dict[str, torch.Tensor] = {}

    def capture(mod, inp, out):  # the convolved Q, K and V of the last layer
        captured.update(zip("qkv", out.split(C, dim=-1), strict=True))

    hooks = [m.transformer.h[1].attn.mdha.register_forward_hook(capture)]
    x = torch.randint(2, 97, (1, 12))
    for t in range(11):
        m(x)
        before = {p: v.clone() for p, v in captured.items()}
        logits_before = m(x).logits
        y = x.clone()
        y[0, t + 1] = (y[0, t + 1] + 7) % 97
        logits_after = m(y).logits
        for p in "qkv":  # each of the Q, K and V paths, at the last layer
            torch.testing.assert_close(captured[p][:, : t + 1], before[p][:, : t + 1], rtol=0, atol=0)
            assert not torch.equal(captured[p][:, t + 1], before[p][:, t + 1])
        torch.testing.assert_close(logits_after[:, : t + 1], logits_before[:, : t + 1], rtol=0, atol=0)
    for h in hooks:
        h.remove()


def test_generate_with_cached_convolution_state_equals_recomputation():
    for k in (3, 4):
        m = tiny_model(mdha=True, mdha_kernel=k, activation="relu2")
        for block in m.transformer.h:
            torch.nn.init.normal_(block.attn.mdha.weight, std=0.5)
        x = torch.randint(2, 97, (2, 6))
        out = m.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=15, do_sample=False, eos_token_id=None)
        ref = x
        for _ in range(15):  # full recomputation at every step
            ref = torch.cat([ref, m(ref).logits[:, -1].argmax(-1, keepdim=True)], 1)
        assert torch.equal(out, ref)


def test_primer_save_load_round_trip(tmp_path):
    m = tiny_model(mdha=True, mdha_kernel=5, activation="relu2")
    m.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert (loaded.config.mdha, loaded.config.mdha_kernel, loaded.config.activation) == (True, 5, "relu2")
    x = torch.randint(2, 97, (2, 9))
    assert torch.equal(loaded(x).logits, m(x).logits)


def test_static_masks_apply_to_primer_models_but_not_to_the_kernels():
    m = tiny_model(mdha=True, activation="relu2")
    sparsify(m, 0.75)
    names = set(m.config.sparse_params)
    assert names == set(target_params(m)) and len(names) == 6 * m.config.n_layer
    assert not any("mdha" in n for n in names)
    for name, mask in m.masks().items():
        w = m.get_parameter(name)
        assert torch.all(w[~mask] == 0)
    assert all(torch.count_nonzero(b.attn.mdha.weight) == b.attn.mdha.weight.numel() for b in m.transformer.h)


def test_a_width_one_kernel_keeps_no_past_in_the_cache():
    """MDHA with kernel 1 mixes no past positions, so its cache holds none (and decoding is unchanged)."""
    model = tiny_model(activation="relu2", mdha=True, mdha_kernel=1)
    with torch.no_grad():  # kernels away from their init, so the test sees the convolution's effect
        for kernel in (m.weight for m in model.modules() if isinstance(m, MultiDConvHead)):
            kernel.mul_(torch.linspace(0.5, 2.0, kernel.numel()).view_as(kernel))
    ids = torch.randint(2, 97, (2, 10))
    full = model(ids).logits
    out = model(ids[:, :6], use_cache=True)
    step = model(ids[:, 6:], cache=out.past_key_values, use_cache=True).logits
    assert len(out.past_key_values.layers) == model.config.n_layer  # keys and values only, no convolution layers
    torch.testing.assert_close(step, full[:, 6:], rtol=1e-4, atol=1e-4)


def test_compute_to_reach_a_target_loss():
    from spdf_lib.primer.analysis import compute_to_reach

    x, loss = [0, 10, 20, 30], [5.0, 4.0, 3.0, 2.5]
    assert compute_to_reach(x, loss, 3.5) == pytest.approx(15.0)
    assert compute_to_reach(x, loss, 5.0) == 0.0
    assert compute_to_reach(x, loss, 2.0) is None
