"""Memory priced before compute: a training run's peak memory, estimated from its batch, context, width, depth
and vocabulary, against what the device has free, so that a run that cannot fit is refused in one line with
the estimate before a kernel starts (rather than dying in an allocation after the kernel's start-up).

The estimate (`training_peak_bytes`) is the sum of
- the training state: fp32 weights, gradients and AdamW's two moments, 16 bytes a parameter;
- the activations kept for backward, per layer `s·b·h·(34 + 5·a·s/h)` bytes at 16-bit (Korthikanti et al. 2022,
  "Reducing Activation Recomputation in Large Transformer Models", §4.1), doubled at fp32; with activation
  checkpointing, one layer's plus each layer's input;
- the logits: `b·s·V` values in the compute precision, their fp32 copy for the loss and its gradient.
Measured on the dev CPU at fp32 (nano, one AdamW step, peak RSS growth): 0.82 of the estimate at micro-batches
of 256, 0.79 at 1024. So a run is refused only when `REFUSE_AT` (3/4) of the estimate exceeds the free memory
(`available_bytes`: the CPU's MemAvailable, or the GPU's free memory on the CUDA path): a run that would fit is
not refused for the estimate's slack, and one refused could not have fit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

GIB = 1024**3
REFUSE_AT = 0.75  # the share of the estimate that must fit (see the module docstring)


def training_peak_bytes(n_layer: int, n_embd: int, n_head: int, n_inner: int, vocab: int, n_positions: int,
                        seq_len: int, micro_batch: int, bytes_per_value: int = 2,
                        activation_checkpointing: bool = False) -> int:
    """The estimated peak bytes of one training micro-step of a GPT (see the module docstring)."""
    s, b, h, a, L = seq_len, micro_batch, n_embd, n_head, n_layer
    params = L * (4 * h * h + 2 * h * n_inner + 9 * h + n_inner) + vocab * h + n_positions * h
    state = 16 * params
    layer = s * b * h * (34 + 5 * a * s / h) * bytes_per_value / 2
    acts = (layer + L * s * b * h * bytes_per_value) if activation_checkpointing else L * layer
    logits = b * s * vocab * (bytes_per_value + 4 + 4)
    return int(state + acts + logits)


def available_bytes(device: str = "cpu") -> tuple[int, str]:
    """(free bytes, what they are) of `device`: the GPU's free memory for `cuda[:i]`, else the CPU's."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free), f"free on {torch.cuda.get_device_name(torch.device(device))}"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "available on this machine"
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free on this machine"


def resolve_device(device: str) -> str:
    """`auto` as training resolves it (CUDA when there is a GPU), without importing torch on a machine that has
    no NVIDIA driver."""
    if device != "auto":
        return device
    if not Path("/proc/driver/nvidia").exists():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def refuse_if_too_big(need: int, device: str, what: str, fix: str) -> None:
    """A one-line `ValueError` when `REFUSE_AT` x `need` bytes exceed what `device` has free."""
    free, where = available_bytes(device)
    if REFUSE_AT * need > free:
        raise ValueError(f"{what} needs about {need / GIB:.1f} GiB at its peak (estimated before any compute), "
                         f"more than the {free / GIB:.1f} GiB {where}; {fix}")


def check_gpt_training(p: Any) -> None:
    """The memory check of a GPT pre-training's parameters (`model_size` and its overrides, `seq_len`,
    `batch_size` / `micro_batch_size`, `vocab_size` or `tokenizer`, `precision`, `activation_checkpointing`,
    `device`)."""
    from spdf_lib.modeling_gpt import NAMED_CONFIGS

    cfg = dict(NAMED_CONFIGS[p.model_size])
    cfg.update({k: v for k in ("n_layer", "n_embd", "n_head") if (v := getattr(p, k, None)) is not None})
    vocab = cfg.get("vocab_size") or (50257 if p.tokenizer else p.vocab_size)
    micro = p.micro_batch_size or p.batch_size
    need = training_peak_bytes(cfg["n_layer"], cfg["n_embd"], cfg["n_head"], cfg.get("n_inner") or 4 * cfg["n_embd"],
                               vocab, max(cfg["n_positions"], p.seq_len), p.seq_len, micro,
                               4 if p.precision == "fp32" else 2, p.activation_checkpointing)
    refuse_if_too_big(need, resolve_device(p.device), f"training {p.model_size} with micro-batches of {micro} x "
                      f"{p.seq_len} tokens", "lower micro_batch_size (the batch is then accumulated), seq_len or "
                      "the model size")


def check_finetune(p: Any, config: dict[str, Any]) -> None:
    """The memory check of a fine-tuning's parameters (`batch_size` / `micro_batch_size`, `max_len`,
    `precision`, `device`) on the model its checkpoint's `config` describes."""
    micro = p.micro_batch_size or p.batch_size
    n_embd = config["n_embd"]
    need = training_peak_bytes(config["n_layer"], n_embd, config["n_head"], config.get("n_inner") or 4 * n_embd,
                               config["vocab_size"], max(config.get("n_positions", 0), p.max_len), p.max_len, micro,
                               4 if getattr(p, "precision", "auto") == "fp32" else 2)
    refuse_if_too_big(need, resolve_device(getattr(p, "device", "auto")), f"fine-tuning with micro-batches of "
                      f"{micro} x {p.max_len} tokens",
                      "lower micro_batch_size (the batch is then accumulated) or max_len")

