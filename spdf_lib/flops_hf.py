"""FLOP shapes of Hugging Face causal LMs, for the sparse-aware counter in `spdf_lib.flops`.

From any config with an adapter (`spdf_lib.adapters`): grouped-query attention (K and V are d × kv_heads·head_dim),
gated FFNs (gate, up and down: three d×f matrices), an explicit `head_dim`, rotary positions (elementwise) or learned ones (a lookup): 0 FLOPs either way,
tied or untied heads (the same d×V matmul
either way: tying changes parameters, not FLOPs), and Primer's MDHA (`config.primer_ez`). Non-zeros come from
a nominal sparsity (`shape_from_hf_config`) or from a model's masks, slice by slice for a fused QKV
(`shape_from_hf_model`).
"""

from __future__ import annotations

import re
from pathlib import Path

from spdf_lib.adapters import adapter_for, n_head
from spdf_lib.flops import Shape
from spdf_lib.masks import get_masks


def _get(config, *keys, default=None):
    for k in keys:
        v = getattr(config, k, None)
        if v is not None:
            return v
    return default


def dims(config) -> dict[str, int]:
    """The dimensions FLOPs depend on, read from an HF config (GPT-2, Llama-family, GPT-NeoX names)."""
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
    ffn = ("gate", "up", "down") if "gate" in adapter_for(config).roles else ("fc_in", "fc_out")
    return out | {k: x["d"] * x["ffn"] for k in ffn}


def _shape(config, per_layer: list[dict[str, int]]) -> Shape:
    x = dims(config)
    q, kv = x["heads"] * x["head_dim"], x["kv_heads"] * x["head_dim"]
    return Shape(x["n_layer"], x["d"], x["ffn"], x["vocab"], x["positions"], x["heads"], x["mdha_kernel"],
                 tuple(per_layer), attn_dim=q, qkv_channels=q + 2 * kv)


def shape_from_hf_config(config, sparsity: float = 0.0) -> Shape:
    """FLOP shape of an HF config with every SPDF matrix (each fused slice) at a nominal `sparsity`."""
    from spdf_lib.sparsity import _keep_count, check_sparsity

    check_sparsity(sparsity)
    layer = {k: _keep_count(n, 1.0 - sparsity) for k, n in dense_numel(config).items()}
    return _shape(config, [dict(layer) for _ in range(dims(config)["n_layer"])])


def shape_from_hf_model(model) -> Shape:
    """FLOP shape of an HF model: each matrix's non-zeros from its mask (its size where it has none)."""
    from spdf_lib.masks import unwrap

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
    return _shape(config, per_layer)


def load_config(path: str | Path):
    """An HF config from a config.json (or its folder), with a one-line error for a missing file or an
    architecture without an adapter."""
    from transformers import AutoConfig

    path = Path(path)
    if not (path / "config.json" if path.is_dir() else path).is_file():
        raise FileNotFoundError(f"{path}: no such config.json")
    try:
        config = AutoConfig.from_pretrained(path)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a Hugging Face config ({str(e).splitlines()[0]})") from None
    adapter_for(config)
    return config
