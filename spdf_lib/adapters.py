"""Architecture adapters: where SPDF's matrices live in each model family, as data.

An `Adapter` names, per role, the regex over parameter names that finds the matrices SPDF sparsifies (Q, K, V,
the attention output, the FFN matrices of every block; Thangarasa et al. 2023, §3), how a fused QKV weight
splits into its Q, K and V slices, and which projections Primer's multi-dconv-head attention follows. One
implementation (`spdf_lib.sparsity`, `spdf_lib.flops`, `spdf_lib.hf_primer`) reads them; an architecture is
supported by adding a row to `ADAPTERS`, not code.

Roles: `q`, `k`, `v`, `o`, `qkv` (fused, split by `Fused`), and the FFN's `fc_in`/`fc_out` (two-matrix FFN) or
`gate`/`up`/`down` (gated FFN, SwiGLU). Weight layouts: `nn.Linear` holds (out, in); GPT-2's `Conv1D` holds
(in, out), so its output features are dimension 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Fused:
    """How a fused QKV weight splits into Q, K and V along its output-feature dimension `dim`.

    layout `blocks`: [Q | K | V], each a third (GPT-2's `c_attn`).
    layout `heads`: per head h, [q_h | k_h | v_h] of head_size each (GPT-NeoX's `query_key_value`, viewed as
    (heads, 3·head_size) in its attention).
    """

    dim: int
    layout: str

    def slices(self, shape: tuple[int, ...], n_head: int) -> dict[str, torch.Tensor]:
        """{"q"|"k"|"v": indices along `dim`} of each part."""
        n = shape[self.dim]
        idx = torch.arange(n)
        if self.layout == "blocks":
            return dict(zip("qkv", idx.view(3, n // 3), strict=True))
        head = n // (3 * n_head)
        per_head = idx.view(n_head, 3, head)  # (head, part, head_dim)
        return {p: per_head[:, i].reshape(-1) for i, p in enumerate("qkv")}


@dataclass(frozen=True)
class Adapter:
    """One architecture family: the model types it covers, a regex per role, the fused weights' layout, the
    attention modules and the projections that MDHA's convolution follows."""

    name: str
    model_types: tuple[str, ...]
    roles: dict[str, str]  # role -> regex over parameter names
    fused: Fused | None = None  # layout of the `qkv` role's weight
    attention: str = ""  # regex over module names: the attention modules
    mdha_projections: tuple[str, ...] = ()  # child names of an attention module, before which nothing mixes positions
    n_head_key: str = "num_attention_heads"
    order: tuple[str, ...] = ()  # the target regexes in the order masks are drawn (default: one per role)
    mlp: str = ""  # regex over module names: the FFN modules
    activation: tuple[str, str] = ("", "")  # (config key of the FFN activation, its attribute on the FFN module)

    @property
    def targets(self) -> tuple[str, ...]:
        return self.order or tuple(self.roles.values())

    def role_of(self, name: str) -> str | None:
        return next((r for r, pat in self.roles.items() if re.search(pat, name)), None)


ADAPTERS: tuple[Adapter, ...] = (
    Adapter("spdf-gpt", ("spdf_gpt",), {
        "q": r"\.attn\.q_proj\.weight$", "k": r"\.attn\.k_proj\.weight$", "v": r"\.attn\.v_proj\.weight$",
        "o": r"\.attn\.o_proj\.weight$", "fc_in": r"\.mlp\.fc_in\.weight$", "fc_out": r"\.mlp\.fc_out\.weight$"},
        n_head_key="n_head",
        order=(r"\.attn\.(q|k|v|o)_proj\.weight$", r"\.mlp\.fc_(in|out)\.weight$")),  # the kit's masks, as drawn
    Adapter("gpt2", ("gpt2",), {
        "qkv": r"\.attn\.c_attn\.weight$", "o": r"\.attn\.c_proj\.weight$",
        "fc_in": r"\.mlp\.c_fc\.weight$", "fc_out": r"\.mlp\.c_proj\.weight$"},
        fused=Fused(dim=1, layout="blocks"), attention=r"\.attn$", mdha_projections=("c_attn",),
        mlp=r"\.mlp$", activation=("activation_function", "act")),
    Adapter("llama", ("llama", "mistral", "qwen2", "qwen3"), {
        "q": r"\.self_attn\.q_proj\.weight$", "k": r"\.self_attn\.k_proj\.weight$",
        "v": r"\.self_attn\.v_proj\.weight$", "o": r"\.self_attn\.o_proj\.weight$",
        "gate": r"\.mlp\.gate_proj\.weight$", "up": r"\.mlp\.up_proj\.weight$", "down": r"\.mlp\.down_proj\.weight$"},
        attention=r"\.self_attn$", mdha_projections=("q_proj", "k_proj", "v_proj"),
        mlp=r"\.mlp$", activation=("hidden_act", "act_fn")),
    Adapter("gpt-neox", ("gpt_neox",), {
        "qkv": r"\.attention\.query_key_value\.weight$", "o": r"\.attention\.dense\.weight$",
        "fc_in": r"\.mlp\.dense_h_to_4h\.weight$", "fc_out": r"\.mlp\.dense_4h_to_h\.weight$"},
        fused=Fused(dim=0, layout="heads"), attention=r"\.attention$", mdha_projections=("query_key_value",),
        mlp=r"\.mlp$", activation=("hidden_act", "act")),
)
BY_MODEL_TYPE = {t: a for a in ADAPTERS for t in a.model_types}


def model_type(model_or_config) -> str:
    config = getattr(model_or_config, "config", model_or_config)
    return getattr(config, "model_type", None) or type(model_or_config).__name__


def adapter_for(model_or_config, required: bool = True) -> Adapter | None:
    """The adapter of a model (or config); with `required`, a one-line error for an unsupported architecture."""
    kind = model_type(model_or_config)
    adapter = BY_MODEL_TYPE.get(kind)
    if adapter is None and required:
        raise ValueError(f"no SPDF adapter for architecture {kind!r} (supported: {', '.join(sorted(BY_MODEL_TYPE))}); "
                         "pass targets=[regex, ...] naming the weights to sparsify, "
                         f"e.g. targets=[r'\\.mlp\\..*\\.weight$']")
    return adapter


def n_head(model_or_config) -> int:
    config = getattr(model_or_config, "config", model_or_config)
    adapter = adapter_for(config, required=False)
    return int(getattr(config, adapter.n_head_key if adapter else "num_attention_heads", 1))
