"""Primer-EZ on Hugging Face models (So et al. 2021, §3; the kit's GPT has the same two options in `GPTConfig`).

- Squared ReLU: the FFN activation becomes max(x, 0)². GPT-2 and GPT-NeoX take it from their config
  (`activation_function` / `hidden_act` = "relu2"). A gated FFN (Llama-family: down(act(gate·x) ⊙ up·x)) gets
  ReLU²-GLU: down(relu(gate·x)² ⊙ up·x), the paper's activation in the place SiLU held; the gate stays.
- Multi-dconv-head attention (MDHA): a causal depthwise convolution of width 3 along the sequence after each
  of the Q, K and V projections (after the fused QKV projection for GPT-2 and NeoX: depthwise, so the same),
  with the paper's init (current token 0.5, each past tap 0.5/3): `spdf_lib.modeling_gpt.MultiDConvHead`, the
  kit GPT's own layer, added as `<projection>.dconv` and applied by a forward hook. With a KV cache, the last
  k−1 pre-convolution projections of each layer ride on the cache object, so cached decoding gives the logits
  of a full forward.

Saving and loading: `primer_ez` records `config.primer_ez = {relu2, mdha, mdha_kernel}`, so `save_pretrained`
writes it in config.json and the convolutions in the weights. Stock `AutoModelForCausalLM.from_pretrained`
rebuilds the squared ReLU (a config field) but not MDHA (it warns that the `dconv` weights are unused);
`spdf_lib.hf.from_pretrained(path)` re-applies MDHA's structure, loads its weights, and re-attaches any
sparsity masks saved beside the model.

Limits: greedy and sampling `generate()` are exact with the cache; beam search does not reorder the
convolution's past (it lives beside the cache, not in it), and a left-padded batch lets pad positions into the
first k−1 convolutions of each row (as a full forward does too).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn
from transformers.activations import ACT2FN

from spdf_lib.adapters import adapter_for
from spdf_lib.masks import SIDECAR
from spdf_lib.modeling_gpt import MultiDConvHead

CACHE_KEYS = ("cache", "layer_past", "past_key_values", "past_key_value")


def _attention_pre_hook(module, args, kwargs):
    # Which cache this call continues: a fresh one (or a cache with nothing for this layer yet) starts clean.
    cache = next((kwargs[k] for k in CACHE_KEYS if kwargs.get(k) is not None), None)
    store = None
    if cache is not None:
        store = cache.__dict__.setdefault("_spdf_dconv", {})
        if cache.get_seq_length(module.layer_idx) == 0:
            for key in [k for k in store if k[0] == module.layer_idx]:
                del store[key]
    module.__dict__["_spdf_dconv_store"] = store


def _attention_post_hook(module, args, output):
    module.__dict__.pop("_spdf_dconv_store", None)


def _projection_hook(attention: nn.Module, name: str):
    def hook(proj, inputs, y):
        store = attention.__dict__.get("_spdf_dconv_store")
        key = (attention.layer_idx, name)
        past = store.get(key) if store is not None else None
        out = proj.dconv(y, past)
        k = proj.dconv.kernel
        if store is not None and k > 1:
            store[key] = (y if past is None else torch.cat([past, y], 1))[:, -(k - 1):].detach()
        return out

    return hook


def _out_features(proj: nn.Module) -> int:
    return proj.out_features if isinstance(proj, nn.Linear) else proj.nf  # nn.Linear, or GPT-2's Conv1D


def _add_mdha(model: nn.Module, adapter, kernel: int) -> None:
    attentions = [m for n, m in model.named_modules() if re.search(adapter.attention, n)]
    for attention in attentions:
        if getattr(attention, "_spdf_mdha", False):
            continue
        attention.register_forward_pre_hook(_attention_pre_hook, with_kwargs=True)
        attention.register_forward_hook(_attention_post_hook)
        for name in adapter.mdha_projections:
            proj = getattr(attention, name)
            dconv = MultiDConvHead(_out_features(proj), kernel)
            dconv.reset_parameters()
            proj.dconv = dconv.to(device=proj.weight.device, dtype=proj.weight.dtype)
            proj.register_forward_hook(_projection_hook(attention, name))
        attention._spdf_mdha = True


def primer_ez(model: nn.Module, relu2: bool = True, mdha: bool = True, kernel: int = 3) -> nn.Module:
    """Give a Hugging Face causal LM Primer-EZ's layers in place and return it.

    relu2: squared ReLU in the FFN (ReLU²-GLU for a gated FFN). mdha: the causal depthwise convolution (width
    `kernel`, the paper's 3) after the Q, K and V projections. Supported: the architectures of
    `spdf_lib.adapters` (GPT-2, Llama-family, GPT-NeoX); the kit's GPT has them as `GPTConfig` options.
    """
    adapter = adapter_for(model)
    if not adapter.attention:
        raise ValueError(f"{type(model).__name__}: the kit's GPT takes Primer-EZ from its config "
                         f"(GPTConfig(activation='relu2', mdha=True)); primer_ez is for Hugging Face models")
    if kernel < 1:
        raise ValueError(f"kernel={kernel} must be >= 1")
    if relu2:
        key, attr = adapter.activation
        setattr(model.config, key, "relu2")
        for name, module in model.named_modules():
            if re.search(adapter.mlp, name):
                setattr(module, attr, ACT2FN["relu2"])
    if mdha:
        _add_mdha(model, adapter, kernel)
    old = getattr(model.config, "primer_ez", None) or {}
    model.config.primer_ez = {"relu2": bool(relu2 or old.get("relu2")), "mdha": bool(mdha or old.get("mdha")),
                              "mdha_kernel": kernel if mdha else old.get("mdha_kernel", 0)}
    return model


@torch.no_grad()
def from_pretrained(path: str | Path, masks: bool = True, **kwargs) -> nn.Module:
    """`AutoModelForCausalLM.from_pretrained(path, **kwargs)`, then what stock loading cannot rebuild: Primer's
    MDHA (from `config.primer_ez`, with its saved weights) and, with `masks`, the sparsity masks saved beside
    the model (`spdf_lib.sparsity.load_masks`)."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from spdf_lib.sparsity import load_masks

    path = Path(path)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    primer = getattr(model.config, "primer_ez", None) or {}
    if primer.get("mdha"):
        primer_ez(model, relu2=primer.get("relu2", False), mdha=True, kernel=primer["mdha_kernel"])
        wanted = {n for n, _ in model.named_parameters() if n.endswith(".dconv.weight")}
        for f in sorted(path.glob("*.safetensors")):
            if f.name == SIDECAR:
                continue
            with safe_open(str(f), "pt") as fh:
                stored = set(fh.keys())  # noqa: SIM118 (safe_open is not iterable)
                for key in wanted & stored:
                    model.get_parameter(key).copy_(fh.get_tensor(key))
                wanted -= stored
        if wanted:
            raise ValueError(f"{path}: {sorted(wanted)[0]} is missing from the checkpoint; it was saved without "
                             f"Primer's MDHA weights")
    if masks and (path / SIDECAR).is_file():
        load_masks(model, path)
    return model
