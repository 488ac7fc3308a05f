"""Static unstructured sparsity: SPDF's sparse pre-training and dense fine-tuning (Thangarasa et al. 2023, §3).

`sparsify` draws one boolean mask per targeted weight and zeroes the pruned entries; the model then carries
the masks (see `GPTForCausalLM.attach_mask`): they are saved with it, and a gradient hook keeps every masked
gradient at exactly 0. With masked weights at 0 and their gradients at 0, AdamW's moments for them stay 0 and
decoupled weight decay (w ← w − lr·λ·w) leaves 0 at 0, so masked weights stay exactly zero through training
without re-masking after each step — and the forward pass costs no extra multiplication.

`densify` drops the masks for dense fine-tuning: the pruned weights start from exactly 0 and may learn.
Sparse fine-tuning simply keeps them.

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

# Regexes over parameter names (see spdf_lib.modeling_gpt for the naming).
DEFAULT_TARGETS: tuple[str, ...] = (r"\.attn\.(q|k|v|o)_proj\.weight$", r"\.mlp\.fc_(in|out)\.weight$")
NEVER_SPARSE = re.compile(r"(^|\.)(wte|wpe|lm_head|ln_1|ln_2|ln_f)\.|\.bias$")
MASK_INITS = ("random", "topk")
DISTRIBUTIONS = ("uniform", "erk")


def check_sparsity(sparsity: float) -> None:
    if not (isinstance(sparsity, (int, float)) and 0.0 <= sparsity < 1.0):
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")


def target_params(model: nn.Module, patterns: Sequence[str] = DEFAULT_TARGETS) -> list[str]:
    """Names of the parameters matched by any of the regex `patterns`; an error for a pattern that matches
    nothing, or that matches an embedding, the LM head, a bias or a norm (SPDF keeps those dense)."""
    names = [n for n, _ in model.named_parameters()]
    chosen: list[str] = []
    for pat in patterns:
        hits = [n for n in names if re.search(pat, n)]
        if not hits:
            raise ValueError(f"sparsity target pattern {pat!r} matches no weight of the model")
        if bad := [n for n in hits if NEVER_SPARSE.search(n)]:
            raise ValueError(f"sparsity target pattern {pat!r} matches {bad[0]}: embeddings, the LM head, biases "
                             f"and norms stay dense")
        chosen += [n for n in hits if n not in chosen]
    return chosen


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
    targets: Sequence[str] = DEFAULT_TARGETS,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Give `model` static masks at `sparsity` and zero the pruned weights; returns {name: mask}.

    init: `random` (uniform random scores, the SPDF default) or `topk` (keep the largest magnitudes).
    distribution: `uniform` (every matrix at `sparsity`) or `erk`. `seed` makes `random` masks reproducible
    independently of the global RNG.
    """
    check_sparsity(sparsity)
    if init not in MASK_INITS:
        raise ValueError(f"unknown mask init {init!r}; choose one of {MASK_INITS}")
    names = target_params(model, targets)
    params = dict(model.named_parameters())
    densities = layer_densities({n: tuple(params[n].shape) for n in names}, sparsity, distribution)
    gen = torch.Generator().manual_seed(seed)
    masks = {}
    for name in names:  # fixed order: masks depend only on (seed, architecture)
        w = params[name]
        scores = torch.rand(w.shape, generator=gen) if init == "random" else w.detach().abs().cpu()
        mask = make_mask(scores, densities[name]).to(w.device)
        w.mul_(mask)
        model.attach_mask(name, mask)
        masks[name] = mask
    model.config.sparsity = float(sparsity)
    return masks


def densify(model: nn.Module) -> nn.Module:
    """Drop every mask (dense fine-tuning): pruned weights start at exactly 0 and are free to learn.
    Build a fresh optimizer afterwards; the training loop does so for every run."""
    for name in list(model.config.sparse_params):
        model.detach_mask(name)
    model.config.sparsity = 0.0
    return model


@torch.no_grad()
def sparsity_report(model: nn.Module, patterns: Sequence[str] = DEFAULT_TARGETS) -> pd.DataFrame:
    """Per-matrix and overall sparsity of the targeted matrices (masked or not), from the weights themselves.

    Columns: name, shape, numel, nonzero, sparsity, masked (whether the weight carries a mask),
    mask_sparsity (fraction of the mask that is False; NaN without a mask). The last row, `overall`, sums them.
    """
    masks = model.masks() if hasattr(model, "masks") else {}
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
