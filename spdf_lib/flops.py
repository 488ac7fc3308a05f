"""Analytic, sparse-aware FLOP counts for the kit's GPT, with the SPDF paper's convention as the default.

Forward FLOPs of one sequence of T tokens (one multiply-add = 2 FLOPs), per term, for a model of L layers,
width d, FFN width f, vocabulary V:

    qkv        2 · T · (nnz(Wq) + nnz(Wk) + nnz(Wv))   summed over layers     (dense: 2·T·3d² per layer)
    attn_out   2 · T · nnz(Wo)                                                (dense: 2·T·d²)
    ffn        2 · T · (nnz(W_in) + nnz(W_out))                               (dense: 2·T·2df)
    attn_scores        2 · T² · d  per layer (QKᵀ; halved with `causal_halving`)
    attn_values        2 · T² · d  per layer (attention-weighted values; halved likewise)
    mdha_conv  2 · T · k · 3d per layer (Primer's depthwise convolutions on Q, K and V; k = kernel width)
    logits     2 · T · d · V   (LM head, dense)
    embedding  2 · T · d · V   (only with `count_embedding`; the lookup is free by default)

"nnz" is the number of non-zero weights: read from a real model's masks, or d_in·d_out·(1 − s) for a
configuration counted on paper at nominal sparsity s. Biases, LayerNorm, the softmax (except under
`chinchilla`) and the activation function (GELU or Primer's squared ReLU) count 0 FLOPs, as in the published
formulas: they are elementwise, O(T·d) against the matmuls' O(T·d²). So do rotary position embeddings.
Hugging Face models (below, through their adapters): grouped-query K and V enter through their non-zeros, a gated FFN
sums its three matrices, and attention uses heads × head size for d; this is exactly what
`torch.utils.flop_counter.FlopCounterMode` counts on eager attention (tests/test_hf_flops.py).

Training FLOPs = forward + backward = 3 × forward (backward = 2 × forward). With `recompute` (full
activation recomputation) the layers' forward runs once more: + 1 × the per-layer terms (not the LM head).

Conventions (`CONVENTIONS`; each reproduces a published formula, checked in tests/test_flops.py):

- `spdf` (default; the SPDF paper, Thangarasa et al. 2023): all terms above, attention without
  causal halving, logits dense, embedding lookup free, no recomputation.
- `kaplan` (Kaplan et al. 2020, §2.1): C = 6·N per token, N = the non-embedding matmul weights; attention and
  logits dropped.
- `palm` (Chowdhery et al. 2022, App. B; nanoGPT's MFU estimate): 6·N + 12·L·H·Q·T per token, N = matmul
  weights including the (tied) embedding, H·Q = d. Identical to `spdf` for our models: the tied embedding
  counted once is exactly the logits term, and 12·L·H·Q·T is 3 × (attn_scores + attn_values). (nanoGPT's N
  also includes biases and LayerNorm gains, under 1% at these sizes.)
- `chinchilla` (Hoffmann et al. 2022, App. F): adds the embedding (2·T·d·V) and the softmax (3·H·T² per
  layer, term `attn_softmax`) to `spdf`.
- `megatron` (Narayanan et al. 2021, eq. 3): 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)) per batch of B sequences,
  which is `spdf` with FFN = 4d plus full activation recomputation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TERMS = ("qkv", "attn_out", "ffn", "attn_scores", "attn_values", "attn_softmax", "mdha_conv", "logits", "embedding")
LAYER_TERMS = ("qkv", "attn_out", "ffn", "attn_scores", "attn_values", "attn_softmax", "mdha_conv")


@dataclass(frozen=True)
class Convention:
    """Which terms a FLOP count includes and how."""

    name: str
    causal_halving: bool = False  # count only the lower triangle of QKᵀ and AV
    count_embedding: bool = False  # count the input embedding as a d×V matmul
    count_attention: bool = True
    count_logits: bool = True
    count_softmax: bool = False  # Chinchilla's 3·H·T² per layer for the softmax
    recompute: bool = False  # full activation recomputation: the layers' forward runs twice


SPDF = Convention("spdf")
KAPLAN = Convention("kaplan", count_attention=False, count_logits=False)
PALM = Convention("palm")
CHINCHILLA = Convention("chinchilla", count_embedding=True, count_softmax=True)
MEGATRON = Convention("megatron", recompute=True)
CONVENTIONS = {c.name: c for c in (SPDF, KAPLAN, PALM, CHINCHILLA, MEGATRON)}


@dataclass(frozen=True)
class Shape:
    """The dimensions that determine FLOPs, plus the non-zero count of each sparsifiable matrix per layer."""

    n_layer: int
    n_embd: int
    n_inner: int
    vocab_size: int
    n_positions: int
    n_head: int
    mdha_kernel: int  # 0 when MDHA is off
    nnz: tuple[dict[str, int], ...]  # per layer: {"q","k","v","o", FFN matrices} -> non-zero weights
    attn_dim: int = 0  # heads × head size of the queries (0: n_embd); grouped-query K/V only change nnz
    qkv_channels: int = 0  # channels MDHA convolves (0: 3 · attn_dim)


# FLOP-shape key -> parameter name inside block i (`transformer.h.{i}.…`)
_PARAM_NAMES = {"q": "attn.q_proj.weight", "k": "attn.k_proj.weight", "v": "attn.v_proj.weight",
                "o": "attn.o_proj.weight", "fc_in": "mlp.fc_in.weight", "fc_out": "mlp.fc_out.weight"}


def _dense_numel(n_embd: int, n_inner: int) -> dict[str, int]:
    d, f = n_embd, n_inner
    return {"q": d * d, "k": d * d, "v": d * d, "o": d * d, "fc_in": d * f, "fc_out": f * d}


def shape_from_config(config, sparsity: float = 0.0) -> Shape:
    """FLOP shape of a `GPTConfig` (or a named size) at a nominal `sparsity` of the six matrices."""
    from spdf_lib.modeling_gpt import GPTConfig, gpt_config

    if isinstance(config, str):
        config = gpt_config(config)
    if not isinstance(config, GPTConfig):
        raise TypeError(f"expected a GPTConfig or a model size name, got {type(config).__name__}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    from spdf_lib.sparsity import keep_count

    dense = _dense_numel(config.n_embd, config.n_inner)
    per_layer = {k: keep_count(n, 1.0 - sparsity) for k, n in dense.items()}
    return Shape(config.n_layer, config.n_embd, config.n_inner, config.vocab_size, config.n_positions, config.n_head,
                 config.mdha_kernel if config.mdha else 0, tuple(dict(per_layer) for _ in range(config.n_layer)))


def shape_from_model(model, dense: bool = False) -> Shape:
    """FLOP shape of a real model: non-zeros counted from its masks (dense size where a weight is unmasked, or
    everywhere with `dense`). Hugging Face models go through their adapter (`shape_from_hf_model`)."""
    from spdf_lib.masks import unwrap

    model = unwrap(model)
    cfg = model.config
    if not hasattr(model, "masks"):
        return shape_from_hf_config(cfg) if dense else shape_from_hf_model(model)
    if dense:
        return shape_from_config(cfg)
    masks = model.masks()
    nnz = []
    for i in range(cfg.n_layer):
        layer = {}
        for key, rel in _PARAM_NAMES.items():
            name = f"transformer.h.{i}.{rel}"
            m = masks.get(name)
            layer[key] = int(m.sum()) if m is not None else model.get_parameter(name).numel()
        nnz.append(layer)
    return Shape(cfg.n_layer, cfg.n_embd, cfg.n_inner, cfg.vocab_size, cfg.n_positions, cfg.n_head,
                 cfg.mdha_kernel if cfg.mdha else 0, tuple(nnz))


def forward_flops(shape: Shape, seq_len: int, convention: Convention = SPDF) -> dict[str, float]:
    """Forward FLOPs of one sequence of `seq_len` tokens, by term (see the module docstring)."""
    if seq_len <= 0:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    T, d, V = seq_len, shape.n_embd, shape.vocab_size
    da = shape.attn_dim or d
    out = dict.fromkeys(TERMS, 0.0)
    for layer in shape.nnz:
        out["qkv"] += 2.0 * T * (layer["q"] + layer["k"] + layer["v"])
        out["attn_out"] += 2.0 * T * layer["o"]
        out["ffn"] += 2.0 * T * sum(n for k, n in layer.items() if k not in ("q", "k", "v", "o"))  # 2 or 3 (gated)
        if convention.count_attention:
            # QKᵀ and A·V: T×T×d multiply-adds each; the causal lower triangle has T(T+1)/2 entries.
            pairs = T * (T + 1) / 2 if convention.causal_halving else T * T
            out["attn_scores"] += 2.0 * pairs * da
            out["attn_values"] += 2.0 * pairs * da
            if convention.count_softmax:
                out["attn_softmax"] += 3.0 * shape.n_head * pairs
        out["mdha_conv"] += 2.0 * T * shape.mdha_kernel * (shape.qkv_channels or 3 * da)
    if convention.count_logits:
        out["logits"] = 2.0 * T * d * V
    if convention.count_embedding:
        out["embedding"] = 2.0 * T * d * V
    return out


def training_terms(forward: dict[str, float], convention: Convention = SPDF) -> dict[str, float]:
    """Training FLOPs by term from forward FLOPs: 3 × forward, plus the layers' forward once more with
    recomputation."""
    return {k: (4.0 if convention.recompute and k in LAYER_TERMS else 3.0) * v for k, v in forward.items()}


def training_flops_per_sequence(shape: Shape, seq_len: int, convention: Convention = SPDF) -> float:
    return sum(training_terms(forward_flops(shape, seq_len, convention), convention).values())


def training_flops_per_token(shape: Shape, seq_len: int, convention: Convention = SPDF) -> float:
    return training_flops_per_sequence(shape, seq_len, convention) / seq_len


def count(
    model_or_config,
    tokens: float,
    sparsity: float = 0.0,
    seq_len: int | None = None,
    convention: str | Convention = "spdf",
) -> dict[str, float]:
    """Total training FLOPs for a token budget, by term (forward × multiplier), plus `total`.

    `model_or_config`: a model (the kit's or a Hugging Face one; non-zeros from its masks), a `GPTConfig`, a
    Hugging Face config, or a size name (`gpt3-xl`, …) with a nominal `sparsity`. `seq_len` defaults to the context
    length.
    """
    if isinstance(convention, str) and convention not in CONVENTIONS:
        raise ValueError(f"unknown FLOP convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    conv = CONVENTIONS[convention] if isinstance(convention, str) else convention
    if not (isinstance(tokens, (int, float)) and math.isfinite(tokens) and tokens >= 0):
        raise ValueError(f"tokens must be a non-negative number, got {tokens!r}")
    shape = _shape(model_or_config, sparsity)
    T = seq_len or shape.n_positions
    out = {k: v * tokens / T for k, v in training_terms(forward_flops(shape, T, conv), conv).items()}
    out["total"] = sum(out.values())
    return out


def _shape(model_or_config, sparsity: float) -> Shape:
    from spdf_lib.modeling_gpt import GPTConfig

    if hasattr(model_or_config, "named_parameters"):
        return shape_from_model(model_or_config)
    if isinstance(model_or_config, (str, GPTConfig)):
        return shape_from_config(model_or_config, sparsity)
    return shape_from_hf_config(model_or_config, sparsity)


def reduction_factor(config, sparsity: float, tokens: float = 1.0, seq_len: int | None = None,
                     convention: str | Convention = "spdf") -> float:
    """Dense training FLOPs / sparse training FLOPs for the same token budget."""
    return count(config, tokens, 0.0, seq_len, convention)["total"] / count(config, tokens, sparsity, seq_len,
                                                                             convention)["total"]


def breakdown_table(configs: Mapping[str, tuple], sparsities=(0.0, 0.5, 0.75), convention: str = "spdf"):
    """A pandas table: for each `name -> (config or size name, tokens, seq_len)` and sparsity, total training
    FLOPs and the reduction factor vs dense."""
    import pandas as pd

    rows = []
    for name, (cfg, tokens, seq_len) in configs.items():
        dense = count(cfg, tokens, 0.0, seq_len, convention)["total"]
        for s in sparsities:
            total = count(cfg, tokens, s, seq_len, convention)["total"]
            rows.append(dict(model=name, seq_len=seq_len, tokens=tokens, sparsity=s, train_flops=total,
                             reduction_vs_dense=dense / total))
    return pd.DataFrame(rows)

# --- Hugging Face configs and models (through their adapters, spdf_lib.adapters) ---------------------------
# Grouped-query attention (K and V are d × kv_heads·head_dim), gated FFNs (gate, up, down: three d×f matrices),
# an explicit `head_dim`, rotary (elementwise) or learned (a lookup) positions: 0 FLOPs either way; tied or
# untied heads: the same d×V matmul (tying changes parameters, not FLOPs); Primer's MDHA from
# `config.primer_ez`. Non-zeros from a nominal sparsity or from a model's masks, slice by slice for a fused QKV.


def _get(config, *keys, default=None):
    for k in keys:
        v = getattr(config, k, None)
        if v is not None:
            return v
    return default


def dims(config) -> dict[str, int]:
    """The dimensions FLOPs depend on, read from an HF config (GPT-2, Llama-family, GPT-NeoX names)."""
    from spdf_lib.adapters import n_head

    d = int(_get(config, "hidden_size", "n_embd"))
    heads = n_head(config)
    head_dim = int(_get(config, "head_dim", default=d // heads))
    primer = _get(config, "primer_ez", default={}) or {}
    return dict(
        n_layer=int(_get(config, "num_hidden_layers", "n_layer")), d=d, heads=heads, head_dim=head_dim,
        kv_heads=int(_get(config, "num_key_value_heads", default=heads)),
        ffn=int(_get(config, "intermediate_size", "n_inner", default=4 * d)),
        vocab=int(config.vocab_size), positions=int(_get(config, "max_position_embeddings", "n_positions")),
        mdha_kernel=int(primer.get("mdha_kernel", 0)) if primer.get("mdha") else 0,
    )


def dense_numel(config) -> dict[str, int]:
    """Elements of each of one layer's SPDF matrices, by role (a fused QKV as its q, k and v parts)."""
    x = dims(config)
    q, kv = x["heads"] * x["head_dim"], x["kv_heads"] * x["head_dim"]
    out = {"q": x["d"] * q, "k": x["d"] * kv, "v": x["d"] * kv, "o": q * x["d"]}
    from spdf_lib.adapters import adapter_for

    ffn = ("gate", "up", "down") if "gate" in adapter_for(config).roles else ("fc_in", "fc_out")
    return out | {k: x["d"] * x["ffn"] for k in ffn}


def _hf_shape(config, per_layer: list[dict[str, int]]) -> Shape:
    x = dims(config)
    q, kv = x["heads"] * x["head_dim"], x["kv_heads"] * x["head_dim"]
    return Shape(x["n_layer"], x["d"], x["ffn"], x["vocab"], x["positions"], x["heads"], x["mdha_kernel"],
                 tuple(per_layer), attn_dim=q, qkv_channels=q + 2 * kv)


def shape_from_hf_config(config, sparsity: float = 0.0) -> Shape:
    """FLOP shape of an HF config with every SPDF matrix (each fused slice) at a nominal `sparsity`."""
    from spdf_lib.sparsity import check_sparsity, keep_count

    check_sparsity(sparsity)
    layer = {k: keep_count(n, 1.0 - sparsity) for k, n in dense_numel(config).items()}
    return _hf_shape(config, [dict(layer) for _ in range(dims(config)["n_layer"])])


def shape_from_hf_model(model) -> Shape:
    """FLOP shape of an HF model: each matrix's non-zeros from its mask (its size where it has none)."""
    from spdf_lib.adapters import adapter_for, n_head
    from spdf_lib.masks import get_masks, unwrap

    model = unwrap(model)
    adapter, config = adapter_for(model), model.config
    per_layer = [dict(dense_numel(config)) for _ in range(dims(config)["n_layer"])]
    masks = get_masks(model)
    for name, p in model.named_parameters():
        role = adapter.role_of(name)
        if role is None or name not in masks:
            continue
        layer = per_layer[int(re.search(r"\.(\d+)\.", name).group(1))]
        mask = masks[name]
        if role == "qkv":
            for part, idx in adapter.fused.slices(tuple(p.shape), n_head(config)).items():
                layer[part] = int(mask.index_select(adapter.fused.dim, idx.to(mask.device)).sum())
        else:
            layer[role] = int(mask.sum())
    return _hf_shape(config, per_layer)


def load_config(path: str | Path):
    """An HF config from a config.json (or its folder), with a one-line error for a missing file or an
    architecture without an adapter."""
    from transformers import AutoConfig

    from spdf_lib.adapters import adapter_for

    path = Path(path)
    if not (path / "config.json" if path.is_dir() else path).is_file():
        raise FileNotFoundError(f"{path}: no such config.json")
    try:
        config = AutoConfig.from_pretrained(path)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a Hugging Face config ({str(e).splitlines()[0]})") from None
    adapter_for(config)
    return config
