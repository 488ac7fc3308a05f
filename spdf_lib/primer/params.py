"""Parameter schema of the Primer ablation (`primer`), and the variants it compares. Torch-free."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from spdf_lib.model_sizes import ModelSize
from spdf_lib.pretrain_params import PretrainBase

# Primer-EZ (So et al. 2021, §3) = squared ReLU + multi-dconv-head attention, each also alone.
VARIANTS: dict[str, dict] = {
    "baseline": {"activation": "gelu", "mdha": False},
    "relu2": {"activation": "relu2", "mdha": False},
    "mdha": {"activation": "gelu", "mdha": True},
    "primer-ez": {"activation": "relu2", "mdha": True},
}
Variant = Literal["baseline", "relu2", "mdha", "primer-ez"]


class PrimerParams(PretrainBase):
    """The Primer ablation: every variant at every size and seed, same data and token budget per size."""

    sizes: list[ModelSize] = ["nano"]
    variants: list[Variant] = ["baseline", "relu2", "mdha", "primer-ez"]
    seeds: list[int] = [0]
    tokens_per_param: float = Field(20.0, gt=0)  # token budget per (non-embedding + embedding) parameter
    min_tokens: float = Field(20_000, gt=0)
    lr: float = Field(2e-3, gt=0)  # (the shared fields of PretrainBase, with this ablation's defaults)
    eval_windows: int = Field(16, ge=1)
    eval_points: int = Field(8, ge=2)  # validation evaluations per run (the speedup reads these)
