"""Early stopping for the training loop (`spdf_lib.train`, `TrainConfig.patience`): at each evaluation, keep the
best weights (in memory and in `<out_dir>/best/`), count evaluations without an improvement of more than
`min_delta`, and stop after `patience` of them (never before `min_steps`). The counters live in the loop's
checkpointed `state`, so a resumed run takes the same decisions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from spdf_lib.checkpoints import save_best, unique_state_dict


def improved(value: float, best: float | None, cfg) -> bool:
    """Whether `value` beats `best` by more than `cfg.min_delta` in the direction `cfg.stop_mode` says."""
    if best is None:
        return math.isfinite(value)
    return value < best - cfg.min_delta if cfg.stop_mode == "min" else value > best + cfg.min_delta


def load_weights(model, weights: dict[str, torch.Tensor]) -> None:
    """Put saved weights into `model` (a tied `lm_head.weight` may be absent)."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise ValueError(f"saved weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")


def update_early_stopping(row: dict[str, Any], state: dict[str, Any], cfg, model,
                          best_weights: dict[str, torch.Tensor] | None,
                          out_dir: Path | None) -> dict[str, torch.Tensor] | None:
    """Update the early-stopping state with an eval row; returns the best weights (a CPU copy)."""
    if cfg.stop_metric not in row:
        raise ValueError(f"early stopping on {cfg.stop_metric!r}, but the eval row has only {sorted(row)}")
    value = float(row[cfg.stop_metric])
    if improved(value, None if state["best"] is None else state["best"][cfg.stop_metric], cfg):
        best_weights = {k: v.detach().to("cpu", copy=True) for k, v in unique_state_dict(model).items()}
        if out_dir is not None:
            save_best(out_dir, best_weights)
        state["best"], state["bad_evals"] = dict(row), 0
    else:
        state["bad_evals"] += 1
        state["stopped"] = state["bad_evals"] >= cfg.patience and row["step"] >= cfg.min_steps
    return best_weights
