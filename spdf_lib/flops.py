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
formulas: they are elementwise, O(T·d) against the matmuls' O(T·d²).

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
from collections.abc import Mapping
from dataclasses import dataclass

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
    nnz: tuple[dict[str, int], ...]  # per layer: {"q","k","v","o","fc_in","fc_out"} -> non-zero weights


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


def shape_from_model(model) -> Shape:
    """FLOP shape of a real model: non-zeros counted from its masks (dense size where a weight is unmasked)."""
    cfg = model.config
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
    out = dict.fromkeys(TERMS, 0.0)
    for layer in shape.nnz:
        out["qkv"] += 2.0 * T * (layer["q"] + layer["k"] + layer["v"])
        out["attn_out"] += 2.0 * T * layer["o"]
        out["ffn"] += 2.0 * T * (layer["fc_in"] + layer["fc_out"])
        if convention.count_attention:
            # QKᵀ and A·V: T×T×d multiply-adds each; the causal lower triangle has T(T+1)/2 entries.
            pairs = T * (T + 1) / 2 if convention.causal_halving else T * T
            out["attn_scores"] += 2.0 * pairs * d
            out["attn_values"] += 2.0 * pairs * d
            if convention.count_softmax:
                out["attn_softmax"] += 3.0 * shape.n_head * pairs
        out["mdha_conv"] += 2.0 * T * shape.mdha_kernel * 3 * d
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

    `model_or_config`: a model (non-zeros from its masks), a `GPTConfig`, or a size name (`gpt3-xl`, …) with a
    nominal `sparsity`. `seq_len` defaults to the context length.
    """
    if isinstance(convention, str) and convention not in CONVENTIONS:
        raise ValueError(f"unknown FLOP convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    conv = CONVENTIONS[convention] if isinstance(convention, str) else convention
    if not (isinstance(tokens, (int, float)) and math.isfinite(tokens) and tokens >= 0):
        raise ValueError(f"tokens must be a non-negative number, got {tokens!r}")
    shape = shape_from_model(model_or_config) if hasattr(model_or_config, "masks") else shape_from_config(
        model_or_config, sparsity)
    T = seq_len or shape.n_positions
    out = {k: v * tokens / T for k, v in training_terms(forward_flops(shape, T, conv), conv).items()}
    out["total"] = sum(out.values())
    return out


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
