"""Static unstructured sparsity (SPDF §3): masks, training invariants, densify, save/load, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_model
from torch.nn.utils import prune
from transformers import AutoModelForCausalLM

from spdf_lib.sparsity import densify, layer_densities, sparsify, sparsity_report, target_params
from spdf_lib.train import TrainConfig, make_optimizer

SIX = {"attn.q_proj.weight", "attn.k_proj.weight", "attn.v_proj.weight", "attn.o_proj.weight",
       "mlp.fc_in.weight", "mlp.fc_out.weight"}


def test_default_targets_are_exactly_the_six_matrices_of_every_block():
    m = tiny_model()
    names = target_params(m)
    assert len(names) == 6 * m.config.n_layer
    assert {n.split(".", 3)[3] for n in names} == SIX


@pytest.mark.parametrize("s", [0.5, 0.75, 0.9])
def test_every_matrix_has_the_same_sparsity_to_the_element(s):
    m = tiny_model()
    masks = sparsify(m, s)
    for name, mask in masks.items():
        n = mask.numel()
        assert int(mask.sum()) == math.floor((1 - s) * n + 0.5), name
        assert mask.dtype == torch.bool
        assert int(torch.count_nonzero(m.get_parameter(name))) <= int(mask.sum())
    dense = [n for n, _ in m.named_parameters() if n not in masks]
    assert all(torch.count_nonzero(m.get_parameter(n)) > 0 for n in dense if not n.endswith("bias"))
    report = sparsity_report(m)
    assert report.iloc[-1]["name"] == "overall" and abs(report.iloc[-1]["mask_sparsity"] - s) < 1e-3


def test_random_masks_depend_on_the_seed_only():
    a, b, c = tiny_model(seed=0), tiny_model(seed=5), tiny_model(seed=0)
    ma, mb, mc = sparsify(a, 0.75, seed=1), sparsify(b, 0.75, seed=1), sparsify(c, 0.75, seed=2)
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    assert not all(torch.equal(ma[k], mc[k]) for k in ma)


def test_topk_keeps_the_largest_magnitudes():
    m = tiny_model()
    w = m.transformer.h[0].mlp.fc_in.weight.detach().abs().clone()
    mask = sparsify(m, 0.75, init="topk")["transformer.h.0.mlp.fc_in.weight"]
    assert w[mask].min() >= w[~mask].max()


def test_erk_keeps_the_total_budget_and_favours_small_matrices():
    shapes = {"a": (32, 32), "b": (128, 32), "c": (32, 128)}
    dens = layer_densities(shapes, 0.8, "erk")
    total = sum(math.prod(s) for s in shapes.values())
    assert abs(sum(dens[k] * math.prod(s) for k, s in shapes.items()) - 0.2 * total) < 1e-6
    assert dens["a"] > dens["b"] == pytest.approx(dens["c"])
    m = tiny_model()
    sparsify(m, 0.8, distribution="erk")
    assert abs(sparsity_report(m).iloc[-1]["mask_sparsity"] - 0.8) < 0.01


def test_forward_and_backward_match_torch_prune():
    ours, ref = tiny_model(seed=3), tiny_model(seed=3)
    masks = sparsify(ours, 0.75, seed=9)
    for name, mask in masks.items():
        mod_name, _, _ = name.rpartition(".")
        prune.custom_from_mask(ref.get_submodule(mod_name), "weight", mask)
    x = torch.randint(2, 97, (2, 16))
    lo, lr = ours(x, labels=x).loss, ref(x, labels=x).loss
    assert torch.equal(ours(x).logits, ref(x).logits)
    lo.backward()
    lr.backward()
    for name in masks:
        mod_name, _, _ = name.rpartition(".")
        g_ref = ref.get_submodule(mod_name).weight_orig.grad
        torch.testing.assert_close(ours.get_parameter(name).grad, g_ref, rtol=0, atol=0)


def test_masked_weights_grads_and_adam_moments_stay_exactly_zero():
    m = tiny_model()
    m.train()
    masks = sparsify(m, 0.75)
    opt = make_optimizer(m, TrainConfig(max_steps=1, lr=1e-2, weight_decay=0.1), "cpu")
    for _ in range(5):
        x = torch.randint(2, 97, (4, 16))
        m(x, labels=x).loss.backward()
        for name, mask in masks.items():
            assert torch.all(m.get_parameter(name).grad[~mask] == 0)
        opt.step()
        opt.zero_grad()
    for name, mask in masks.items():
        p = m.get_parameter(name)
        assert torch.all(p[~mask] == 0), name
        assert torch.any(p[mask] != 0)
        st = opt.state[p]
        assert torch.all(st["exp_avg"][~mask] == 0) and torch.all(st["exp_avg_sq"][~mask] == 0)


def test_densify_lets_pruned_weights_learn_from_zero():
    m = tiny_model()
    m.train()
    masks = sparsify(m, 0.75)
    densify(m)
    assert m.config.sparse_params == [] and m.masks() == {}
    assert not any(n.endswith("_mask") for n in m.state_dict())
    name, mask = next(iter(masks.items()))
    assert torch.all(m.get_parameter(name)[~mask] == 0)  # pruned weights start at exactly 0
    opt = make_optimizer(m, TrainConfig(max_steps=1, lr=1e-2), "cpu")  # a fresh optimizer
    x = torch.randint(2, 97, (4, 16))
    m(x, labels=x).loss.backward()
    opt.step()
    assert torch.count_nonzero(m.get_parameter(name)[~mask]) > 0.9 * (~mask).sum()


def test_sparse_checkpoint_loads_for_sparse_and_dense_fine_tuning(tmp_path):
    m = tiny_model()
    masks = sparsify(m, 0.5)
    m.save_pretrained(tmp_path)
    sparse = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert set(sparse.masks()) == set(masks)
    assert all(torch.equal(sparse.masks()[k], masks[k]) for k in masks)
    x = torch.randint(2, 97, (2, 8))
    sparse.train()
    sparse(x, labels=x).loss.backward()  # the gradient hooks came back with the masks
    for k, mask in masks.items():
        assert torch.all(sparse.get_parameter(k).grad[~mask] == 0)
    dense = densify(AutoModelForCausalLM.from_pretrained(tmp_path))
    assert dense.masks() == {} and torch.equal(dense(x).logits, m(x).logits)


def test_bad_input_is_a_clear_error(tmp_path):
    m = tiny_model()
    for s in (1.0, 1.2, -0.1):
        with pytest.raises(ValueError, match="sparsity must be in"):
            sparsify(m, s)
    with pytest.raises(ValueError, match="matches no weight"):
        sparsify(m, 0.5, targets=[r"\.attn\.qkv\.weight$"])
    with pytest.raises(ValueError, match="stay dense"):
        sparsify(m, 0.5, targets=[r"transformer\.wte\.weight"])
    with pytest.raises(ValueError, match="unknown mask init"):
        sparsify(m, 0.5, init="magnitude")
    # a mask whose shape does not fit the weight when loading
    sparsify(m, 0.5)
    m.save_pretrained(tmp_path)
    from safetensors.torch import load_file, save_file
    sd = load_file(tmp_path / "model.safetensors")
    key = "transformer.h.0.attn.q_proj.weight_mask"
    sd[key] = sd[key][:, :-1].contiguous()
    save_file(sd, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="weight_mask has another shape"):
        AutoModelForCausalLM.from_pretrained(tmp_path)
