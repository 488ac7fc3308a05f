"""Static unstructured sparsity: SPDF's sparse pre-training and dense fine-tuning (Thangarasa et al. 2023, §3).

One implementation for every model: the kit's GPT and Hugging Face causal LMs (GPT-2, Llama/SmolLM2/Qwen2/
Mistral, GPT-NeoX) through their adapters (`spdf_lib.adapters`: where each architecture keeps SPDF's matrices,
as data), any other `nn.Module` with `targets=`. `sparsify` draws one boolean mask per targeted matrix (per Q, K
and V slice of a fused QKV weight) and zeroes the pruned entries; the masks live on the model as buffers
(`spdf_lib.masks`), with a gradient hook that keeps masked gradients at exactly 0. `keep_zeros(optimizer,
model)` (or `spdf_lib.hf.SPDFCallback` under HF Trainer) re-masks the weights and their optimizer state after
every step, so the zeros hold under any optimizer and loop. The kit's own loop builds a fresh AdamW after
`sparsify`: with masked weights and gradients at 0 its moments stay 0 and decoupled weight decay leaves 0 at 0.

`densify` drops the masks for dense fine-tuning: the pruned weights start from exactly 0 and may learn.
Sparse fine-tuning simply keeps them. `load_masks` re-attaches masks saved beside a model.

Defaults follow the Cerebras reference configs: targets are exactly the Q, K, V, attention-output and the two
FFN matrices of every block; mask init `random` (a uniform random score per element, keep the top (1−s)
fraction of each matrix); `uniform` distribution (every targeted matrix at sparsity s).

Rounding: a matrix with n elements at density δ = 1−s keeps round(δ·n) elements, rounding halves up, so equal-
shaped matrices have the same number of non-zeros to the element.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from spdf_lib import masks as _masks
from spdf_lib.adapters import adapter_for, n_head
from spdf_lib.masks import get_masks, keep_zeros

# The kit GPT's targets (spdf_lib.adapters holds every architecture's); kept for callers that name them.
DEFAULT_TARGETS: tuple[str, ...] = (r"\.attn\.(q|k|v|o)_proj\.weight$", r"\.mlp\.fc_(in|out)\.weight$")
NEVER_SPARSE = re.compile(r"(^|\.)(wte|wpe|lm_head|ln_1|ln_2|ln_f)\.|\.bias$")
MASK_INITS = ("random", "topk")
DISTRIBUTIONS = ("uniform", "erk")
__all__ = ["sparsify", "densify", "load_masks", "keep_zeros", "get_masks", "sparsity_report", "target_params"]


def check_sparsity(sparsity: float) -> None:
    if not (isinstance(sparsity, (int, float)) and 0.0 <= sparsity < 1.0):
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")


def _always_dense(model: nn.Module) -> set[str]:
    """Names of the weights SPDF keeps dense whatever the targets say: embeddings, the LM head, norms, biases."""
    out = {n for n, p in model.named_parameters() if p.ndim < 2 or n.endswith(".bias") or NEVER_SPARSE.search(n)}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Embedding):
            out.add(f"{module_name}.weight")
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        out |= {n for n, p in model.named_parameters() if p is head.weight}
    return out


def default_targets(model: nn.Module) -> tuple[str, ...]:
    """SPDF's targets for `model`'s architecture (its adapter); a one-line error when there is no adapter."""
    return adapter_for(model).targets


def target_params(model: nn.Module, patterns: Sequence[str] | None = None) -> list[str]:
    """Names of the parameters matched by any of the regex `patterns` (default: the architecture's adapter);
    an error for a pattern that matches nothing, or that matches an embedding, the LM head, a bias or a norm
    (SPDF keeps those dense)."""
    patterns = default_targets(model) if patterns is None else patterns
    names = [n for n, _ in model.named_parameters()]
    dense = _always_dense(model)
    chosen: list[str] = []
    for pat in patterns:
        hits = [n for n in names if re.search(pat, n)]
        if not hits:
            raise ValueError(f"sparsity target pattern {pat!r} matches no weight of the model")
        if bad := [n for n in hits if n in dense]:
            raise ValueError(f"sparsity target pattern {pat!r} matches {bad[0]}: embeddings, the LM head, biases "
                             f"and norms stay dense")
        chosen += [n for n in hits if n not in chosen]
    return chosen


def mask_units(model: nn.Module, names: Sequence[str]) -> dict[str, tuple[str, int, torch.Tensor | None]]:
    """The matrices masks are drawn over: {unit: (parameter name, dim, indices along dim or None)}. A fused QKV
    weight (the adapter's `qkv` role) is three units `<name>[q]`, `[k]`, `[v]`, so each slice is masked at the
    sparsity a separate matrix would be; any other weight is one unit."""
    adapter = adapter_for(model, required=False)
    units: dict[str, tuple[str, int, torch.Tensor | None]] = {}
    for name in names:
        if adapter is not None and adapter.fused is not None and adapter.role_of(name) == "qkv":
            shape = tuple(model.get_parameter(name).shape)
            for part, idx in adapter.fused.slices(shape, n_head(model)).items():
                units[f"{name}[{part}]"] = (name, adapter.fused.dim, idx)
        else:
            units[name] = (name, 0, None)
    return units


def layer_densities(
    shapes: dict[str, tuple[int, ...]], sparsity: float, distribution: str = "uniform"
) -> dict[str, float]:
    """Density (1 − sparsity) per matrix.

    `uniform`: every matrix at 1 − s. `erk` (Erdős–Rényi-Kernel, Evci et al. 2020, RigL §3): density
    proportional to sum(shape)/prod(shape), scaled so the total number of non-zeros equals (1 − s) · total;
    matrices whose density would exceed 1 are kept dense and the rest rescaled.
    """
    check_sparsity(sparsity)
    if distribution == "uniform":
        return {n: 1.0 - sparsity for n in shapes}
    if distribution != "erk":
        raise ValueError(f"unknown sparsity distribution {distribution!r}; choose one of {DISTRIBUTIONS}")
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / math.prod(s) for n, s in shapes.items()}
    budget = (1.0 - sparsity) * sum(numel.values())
    dense: set[str] = set()
    while True:
        free = [n for n in shapes if n not in dense]
        eps = (budget - sum(numel[n] for n in dense)) / sum(raw[n] * numel[n] for n in free)
        over = [n for n in free if eps * raw[n] > 1.0]
        if not over:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense.update(over)


def keep_count(numel: int, density: float) -> int:
    """The elements a mask of `density` keeps of `numel`: round(density · numel), half up (the FLOP counter
    counts the same)."""
    return min(numel, math.floor(density * numel + 0.5))


def make_mask(scores: torch.Tensor, density: float) -> torch.Tensor:
    """Boolean mask keeping the round(density · n) highest `scores` (ties broken by index)."""
    k = keep_count(scores.numel(), density)
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    if k:
        mask[torch.topk(scores.flatten().float().cpu(), k, sorted=False).indices] = True
    return mask.view_as(scores)


@torch.no_grad()
def sparsify(
    model: nn.Module,
    sparsity: float,
    init: str = "random",
    distribution: str = "uniform",
    targets: Sequence[str] | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Give `model` static masks at `sparsity` and zero the pruned weights; returns {name: mask}.

    `model`: the kit's GPT or any Hugging Face causal LM with an adapter (GPT-2, Llama/SmolLM2/Qwen2/Mistral,
    GPT-NeoX; see `spdf_lib.adapters`), or any module with `targets=` given.
    init: `random` (uniform random scores, the SPDF default) or `topk` (keep the largest magnitudes).
    distribution: `uniform` (every matrix, and every slice of a fused QKV, at `sparsity`) or `erk`.
    targets: regexes over parameter names (default: the adapter's Q, K, V, attention output and FFN matrices).
    `seed` makes `random` masks reproducible independently of the global RNG.
    Masked weights then stay zero through the gradient hook and, with `keep_zeros(optimizer, model)` or
    `spdf_lib.hf.SPDFCallback`, through any optimizer.
    """
    check_sparsity(sparsity)
    if init not in MASK_INITS:
        raise ValueError(f"unknown mask init {init!r}; choose one of {MASK_INITS}")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown sparsity distribution {distribution!r}; choose one of {DISTRIBUTIONS}")
    model = _masks.unwrap(model)
    names = target_params(model, targets)
    params = dict(model.named_parameters())
    units = mask_units(model, names)
    shapes = {u: tuple(params[n].index_select(d, i).shape if i is not None else params[n].shape)
              for u, (n, d, i) in units.items()}
    densities = layer_densities(shapes, sparsity, distribution)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name in names:  # fixed order: masks depend only on (seed, architecture)
        w = params[name]
        scores = torch.rand(w.shape, generator=gen) if init == "random" else w.detach().abs().float().cpu()
        mask = torch.zeros(w.shape, dtype=torch.bool)
        for unit, (_, dim, idx) in units.items():
            if units[unit][0] != name:
                continue
            if idx is None:
                mask = make_mask(scores, densities[unit])
            else:
                mask.index_copy_(dim, idx, make_mask(scores.index_select(dim, idx), densities[unit]))
        mask = mask.to(w.device)
        w.mul_(mask)
        _masks.attach(model, name, mask)
        out[name] = mask
    model._spdf_meta = dict(sparsity=float(sparsity), init=init, distribution=distribution, seed=seed)
    _masks.install_save_hook(model)
    if hasattr(model, "config"):
        model.config.sparsity = float(sparsity)
    return out


def densify(model: nn.Module) -> nn.Module:
    """Drop every mask (dense fine-tuning): pruned weights start at exactly 0 and are free to learn.
    Build a fresh optimizer afterwards (a `keep_zeros` hook already installed skips weights without masks)."""
    model = _masks.unwrap(model)
    for name in list(get_masks(model)):
        _masks.detach(model, name)
    if hasattr(model, "config"):
        model.config.sparsity = 0.0
    return model


@torch.no_grad()
def load_masks(model: nn.Module, path) -> dict[str, torch.Tensor]:
    """Re-attach the masks saved beside a model (`save_pretrained` of a sparse model: the folder, or its
    `spdf_masks.safetensors`) for sparse fine-tuning; weights at masked positions are set to 0."""
    model = _masks.unwrap(model)
    saved = _masks.read_masks(path)
    params = dict(model.named_parameters())
    if missing := [k for k in saved if k not in params]:
        raise ValueError(f"{path}: mask for {missing[0]} names no weight of this {type(model).__name__}; "
                         f"load the masks into the model they were saved with")
    for name, mask in saved.items():
        params[name].mul_(mask.to(params[name].device))
        _masks.attach(model, name, mask.to(params[name].device))
    _masks.install_save_hook(model)
    return saved


@torch.no_grad()
def sparsity_report(model: nn.Module, patterns: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-matrix and overall sparsity of the targeted matrices (masked or not), from the weights themselves.

    Columns: name, shape, numel, nonzero, sparsity, masked (whether the weight carries a mask),
    mask_sparsity (fraction of the mask that is False; NaN without a mask). The last row, `overall`, sums them.
    """
    masks = get_masks(model)
    rows = []
    for name in target_params(model, patterns):
        w = model.get_parameter(name)
        nz = int(torch.count_nonzero(w))
        m = masks.get(name)
        rows.append(dict(
            name=name, shape=tuple(w.shape), numel=w.numel(), nonzero=nz, sparsity=1 - nz / w.numel(),
            masked=m is not None, mask_sparsity=float(1 - m.float().mean()) if m is not None else float("nan"),
        ))
    total, nonzero = sum(r["numel"] for r in rows), sum(r["nonzero"] for r in rows)
    mask_total = sum(r["numel"] for r in rows if r["masked"])
    mask_zero = sum(r["mask_sparsity"] * r["numel"] for r in rows if r["masked"])
    rows.append(dict(
        name="overall", shape=(), numel=total, nonzero=nonzero, sparsity=1 - nonzero / total,
        masked=bool(mask_total), mask_sparsity=mask_zero / mask_total if mask_total else float("nan"),
    ))
    return pd.DataFrame(rows)
