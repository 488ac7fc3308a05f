"""SPDF on Hugging Face causal LMs (issue 32): adapters, zeros kept under HF Trainer, masks on disk and resume,
dense fine-tuning from the zeros. Tiny models built from configs with plain `transformers`; no network."""

from __future__ import annotations

import math

import pytest
import torch
import transformers as tr
from hf_fixtures import tiny_hf

from spdf_lib.hf import SPDFCallback
from spdf_lib.masks import SIDECAR
from spdf_lib.sparsity import densify, get_masks, keep_zeros, load_masks, sparsify, sparsity_report

ROLES = {  # architecture -> {parameter suffix: matrices it holds}
    "gpt2": {"attn.c_attn.weight": "qkv", "attn.c_proj.weight": "o", "mlp.c_fc.weight": "fc_in",
             "mlp.c_proj.weight": "fc_out"},
    "llama": {f"self_attn.{p}_proj.weight": p for p in "qkvo"}
    | {f"mlp.{p}_proj.weight": p for p in ("gate", "up", "down")},
    "gpt_neox": {"attention.query_key_value.weight": "qkv", "attention.dense.weight": "o",
                 "mlp.dense_h_to_4h.weight": "fc_in", "mlp.dense_4h_to_h.weight": "fc_out"},
}
ROLES["qwen2"] = ROLES["mistral"] = ROLES["llama"]


def _slices(arch: str, w: torch.Tensor, heads: int = 4) -> list[torch.Tensor]:
    """Q, K and V of a fused weight, cut the way the model's own attention cuts them."""
    if arch == "gpt2":  # Conv1D (in, 3d): split(d, dim=2) of the output
        return list(w.split(w.shape[1] // 3, dim=1))
    per_head = w.view(heads, 3, -1, w.shape[1])  # NeoX: .view(..., heads, 3·head_size) then chunk(3)
    return [per_head[:, i] for i in range(3)]


def _keep(n: int, s: float = 0.75) -> int:
    return math.floor((1 - s) * n + 0.5)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox", "qwen2", "mistral"])
def test_each_adapter_masks_exact_counts_and_keeps_the_rest_dense(arch):
    m = tiny_hf(arch)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    masks = sparsify(m, 0.75)
    suffixes = ROLES[arch]
    assert sorted(masks) == sorted(n for n, _ in m.named_parameters() if any(n.endswith(s) for s in suffixes))
    assert len(masks) == 2 * len(suffixes)
    for name, p in m.named_parameters():
        if name not in masks:  # embeddings, head, norms, biases: untouched, no mask
            assert torch.equal(p, before[name]), name
            continue
        mask = masks[name]
        assert torch.equal(p != 0, mask & (before[name] != 0)) and torch.equal(p[mask], before[name][mask])
        if name.endswith(("c_attn.weight", "query_key_value.weight")):
            for part, sl in zip("qkv", _slices(arch, mask), strict=True):
                assert int(sl.sum()) == _keep(sl.numel()), (name, part)
        else:
            assert int(mask.sum()) == _keep(mask.numel()), name
    k = m.get_parameter(next(n for n in masks if "k_proj" in n)) if arch in ("llama", "qwen2", "mistral") else None
    if k is not None:  # grouped-query attention: K is kv_heads·head_dim = 16 rows, masked on its own
        assert k.shape == (16, 32) and int((k != 0).sum()) == _keep(16 * 32)
    report = sparsity_report(m)
    assert report.iloc[-1]["mask_sparsity"] == pytest.approx(0.75)


def test_unsupported_architecture_is_one_line_naming_it_and_targets():
    cfg = tr.OPTConfig(num_hidden_layers=1, hidden_size=16, ffn_dim=32, num_attention_heads=2, vocab_size=50,
                       word_embed_proj_dim=16, max_position_embeddings=32)
    m = tr.AutoModelForCausalLM.from_config(cfg)
    with pytest.raises(ValueError, match=r"no SPDF adapter for architecture 'opt'.*targets=") as err:
        sparsify(m, 0.5)
    assert "\n" not in str(err.value)
    masks = sparsify(m, 0.5, targets=[r"\.fc[12]\.weight$"])
    assert len(masks) == 2 and all(int(x.sum()) == x.numel() // 2 for x in masks.values())
    with pytest.raises(ValueError, match="stay dense"):
        sparsify(m, 0.5, targets=[r"embed_tokens\.weight$"])


def test_erk_and_topk_on_hf_models():
    m = tiny_hf("llama")
    masks = sparsify(m, 0.75, distribution="erk")
    total = sum(x.numel() for x in masks.values())
    assert sum(int(x.sum()) for x in masks.values()) == pytest.approx(0.25 * total, abs=len(masks))
    assert len({round(float(x.float().mean()), 3) for x in masks.values()}) > 1  # ERK: densities differ by shape
    g = tiny_hf("gpt2")
    w = g.get_parameter("transformer.h.0.attn.c_attn.weight").detach().clone()
    mask = sparsify(g, 0.75, init="topk")["transformer.h.0.attn.c_attn.weight"]
    for wq, mq in zip(_slices("gpt2", w), _slices("gpt2", mask), strict=True):  # top magnitudes per slice
        assert wq.abs()[mq].min() >= wq.abs()[~mq].max()


class Windows(torch.utils.data.Dataset):
    def __init__(self, ids: torch.Tensor, T: int = 32, n: int = 64):
        self.ids, self.T, self.n = ids, T, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        x = self.ids[i * self.T: (i + 1) * self.T].long()
        return {"input_ids": x, "labels": x}


def _args(out, steps: int, **kw):
    base = dict(output_dir=str(out), max_steps=steps, per_device_train_batch_size=4, learning_rate=1e-2,
                weight_decay=0.1, report_to=[], save_strategy="no", logging_steps=5, use_cpu=True,
                disable_tqdm=True, seed=0, dataloader_num_workers=0)
    return tr.TrainingArguments(**(base | kw))


@pytest.fixture(scope="module")
def data(shakespeare_tokens):
    tok, train, _ = shakespeare_tokens
    return Windows(torch.as_tensor(train[: 64 * 32 + 1]))


def _llama(vocab=512):
    return tiny_hf("llama", vocab_size=vocab)


def _stale_optimizer(model, data):
    """AdamW (weight decay 0.1) with moments from 3 dense steps, before `sparsify`."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for i in range(3):
        model(**{k: v[None] for k, v in data[i].items()}).loss.backward()
        opt.step()
        opt.zero_grad()
    return opt


def _masked_nonzeros(model, opt) -> dict[str, int]:
    out = {"weight": 0, "exp_avg": 0, "exp_avg_sq": 0}
    for name, mask in get_masks(model).items():
        p = model.get_parameter(name)
        out["weight"] += int((p[~mask] != 0).sum())
        for k in ("exp_avg", "exp_avg_sq"):
            out[k] += int((opt.state[p][k][~mask] != 0).sum())
    return out


def test_trainer_with_the_callback_keeps_weights_and_moments_at_zero(data, tmp_path):
    for stale in (False, True):  # optimizer created by Trainer after sparsify, or one with state from before
        m = _llama()
        opt = _stale_optimizer(m, data) if stale else None
        sparsify(m, 0.75)
        kept = {n: m.get_parameter(n).detach().clone() for n in get_masks(m)}
        cb = SPDFCallback()
        t = tr.Trainer(m, _args(tmp_path / str(stale), 20), train_dataset=data, callbacks=[cb],
                       optimizers=(opt, None) if stale else (None, None))
        t.train()
        assert _masked_nonzeros(m, t.optimizer.optimizer if hasattr(t.optimizer, "optimizer") else t.optimizer) == \
            {"weight": 0, "exp_avg": 0, "exp_avg_sq": 0}
        for n, mask in get_masks(m).items():  # the kept weights did train
            assert not torch.equal(m.get_parameter(n)[mask], kept[n][mask])
        final = t.state.log_history[-1]
        assert 0 < final["spdf_sparse_flos"] < final["spdf_dense_flos"] and "total_flos" in final


def test_without_the_callback_a_stale_optimizer_revives_pruned_weights(data, tmp_path):
    m = _llama()
    opt = _stale_optimizer(m, data)
    sparsify(m, 0.75)
    tr.Trainer(m, _args(tmp_path, 5), train_dataset=data, optimizers=(opt, None)).train()
    revived = _masked_nonzeros(m, opt)
    assert revived["weight"] > 0 and revived["exp_avg"] > 0  # the gradient hook alone does not keep the zeros
    keep_zeros(opt, m)  # one call in a plain loop puts them back at 0 and keeps them there
    assert _masked_nonzeros(m, opt) == {"weight": 0, "exp_avg": 0, "exp_avg_sq": 0}


def test_save_load_resume_and_dense_finetuning(data, tmp_path):
    m = _llama()
    masks = sparsify(m, 0.75)
    m.save_pretrained(tmp_path / "sparse")
    assert (tmp_path / "sparse" / SIDECAR).is_file()
    dense = tr.AutoModelForCausalLM.from_pretrained(tmp_path / "sparse")  # stock loading: dense, exact zeros
    assert get_masks(dense) == {}
    for n, mask in masks.items():
        assert torch.equal(dense.get_parameter(n) != 0, mask & (m.get_parameter(n) != 0))

    # Sparse fine-tuning from disk: re-attach, train with checkpoints, resume from one: the masks hold.
    again = tr.AutoModelForCausalLM.from_pretrained(tmp_path / "sparse")
    load_masks(again, tmp_path / "sparse")
    assert all(torch.equal(get_masks(again)[n], masks[n]) for n in masks)
    args = _args(tmp_path / "ck", 10, save_strategy="steps", save_steps=5)
    tr.Trainer(again, args, train_dataset=data, callbacks=[SPDFCallback()]).train()
    assert (tmp_path / "ck" / "checkpoint-5" / SIDECAR).is_file()
    resumed = tr.AutoModelForCausalLM.from_pretrained(tmp_path / "ck" / "checkpoint-5")
    load_masks(resumed, tmp_path / "ck" / "checkpoint-5")
    t = tr.Trainer(resumed, _args(tmp_path / "ck", 10, save_strategy="steps", save_steps=5), train_dataset=data,
                   callbacks=[SPDFCallback()])
    t.train(resume_from_checkpoint=str(tmp_path / "ck" / "checkpoint-5"))
    assert t.state.global_step == 10 and all(torch.equal(get_masks(resumed)[n], masks[n]) for n in masks)
    assert _masked_nonzeros(resumed, t.optimizer.optimizer)["weight"] == 0

    # Dense fine-tuning from the exact zeros: densify (or load without masks), then train.
    densify(resumed)
    assert get_masks(resumed) == {}
    tr.Trainer(resumed, _args(tmp_path / "dense", 20), train_dataset=data).train()
    zeros = sum(int((~mask).sum()) for mask in masks.values())
    moved = sum(int((resumed.get_parameter(n)[~mask] != 0).sum()) for n, mask in masks.items())
    assert moved > 0.9 * zeros, (moved, zeros)

