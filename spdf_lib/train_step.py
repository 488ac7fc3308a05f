"""One optimisation step: forward and loss over the step's micro-batches, backward, gradient clipping, AdamW,
zero grad. `train.train`, the plan's calibration (`spdf_lib.unit_costs`) and the benchmarks all run this one step.

Two paths compute the same step (the same math; fp32 losses agree to rounding, 1e-5 after 3 steps in
`tests/test_train_step.py`):

- **eager**: the model's modules as written, AdamW's per-tensor loop (torch's CPU default);
- **fast**: the forward pass and the summed token loss compiled by `torch.compile` (inductor fuses the
  element-wise work of the blocks and of the LM head's softmax, in the backward too), and AdamW's fused kernel
  (one call per parameter group instead of a dozen small kernels per tensor; `train.make_optimizer` creates it,
  and a run resumed from a checkpoint keeps the AdamW kind that the checkpoint's optimizer state names).

Which one a run takes: `TrainConfig.fast_step` (True, False, or None for "where it pays"), or the environment
variable `SPDF_TRAIN_STEP=eager|fast`, which overrides it (a speed choice, so it is not part of the run's
parameters, its fingerprint or its folder: the manifest records it as `train_step`). Where it pays: on CPU for
runs of at least `COMPILE_MIN_STEPS` steps (the compile costs seconds once per shape; profile and ratios in
`docs/performance.md`); on CUDA, when `compile` is asked for, as before.

Compiled kernels are cached on disk under `$SPDF_CACHE/inductor/<capability>` (one folder per CPU capability:
kernels built for one ISA are never loaded under another), so the 20 pre-trainings of a sweep compile once. When
compiling fails (no C++ compiler, an unsupported op), the step says so in one line and runs eagerly; the failed
attempt changed nothing (gradients cleared, random state restored), so the run is the eager run.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import record_function

from spdf_lib.data.streams import IGNORE

ENV = "SPDF_TRAIN_STEP"
COMPILE_MIN_STEPS = 1000  # below this, a CPU run keeps the eager step (a cold compile costs ~16 s here)
Batch = dict[str, torch.Tensor]


def summed_token_loss(model, batch: Batch, autocast: Callable) -> torch.Tensor:
    """Summed next-token cross-entropy of `model` over `batch["targets"]` (already shifted; IGNORE skipped)."""
    with autocast():
        logits = model(input_ids=batch["input_ids"]).logits
    return F.cross_entropy(logits.flatten(0, 1).float(), batch["targets"].flatten(), ignore_index=IGNORE,
                           reduction="sum")


class _Loss(torch.nn.Module):
    """The model and its loss as one module: what `torch.compile` compiles and DDP wraps."""

    def __init__(self, model: torch.nn.Module, autocast: Callable):
        super().__init__()
        self.model, self.autocast = model, autocast

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return summed_token_loss(self.model, {"input_ids": input_ids, "targets": targets}, self.autocast)


def choose_fast(requested: bool | None, device: str, max_steps: int, compile_requested: bool = False) -> bool:
    """Whether a run takes the fast path: `$SPDF_TRAIN_STEP` first, then `requested`, else where it pays."""
    env = os.environ.get(ENV, "").strip().lower()
    if env and env not in ("eager", "fast"):
        raise ValueError(f"{ENV}={env!r}: set it to 'eager' or 'fast', or unset it")
    if env:
        return env == "fast"
    if requested is not None:
        return requested
    if compile_requested or device.startswith("cuda"):  # on CUDA: as before, compiled when asked
        return compile_requested
    return max_steps >= COMPILE_MIN_STEPS


def inductor_cache_dir() -> Path:
    """Where compiled kernels are kept: `$SPDF_CACHE/inductor/<torch>-<capability>`."""
    root = Path(os.environ.get("SPDF_CACHE") or Path.home() / ".cache" / "spdf-kit") / "inductor"
    isa = "-".join(os.environ.get(k, "")
                   for k in ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS"))
    return root / f"{torch.__version__}-{torch.backends.cpu.get_cpu_capability()}{'-' + isa if isa.strip('-') else ''}"


@dataclass
class StepResult:
    loss_sum: float  # summed token loss over this process's micro-batches (before scaling)
    grad_norm: float | None  # before clipping; None without clipping or when not updated
    updated: bool  # False: a non-finite loss stopped the step before the update (the weights are untouched)


class TrainStep:
    """One optimisation step of `model` with `optimizer`, eager or fast (see the module docstring).

    `step(batches, scale)` runs forward and backward over each micro-batch with the summed loss × `scale` (the
    caller's normalisation, e.g. world size / global target tokens), then clips to `grad_clip` (0: no clipping),
    steps the optimizer and clears the gradients. Under DDP (`distributed`), gradients are all-reduced once,
    after the last micro-batch."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, autocast: Callable, *,
                 fast: bool = False, grad_clip: float = 1.0, distributed: bool = False, device: str = "cpu",
                 sdpa: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 say: Callable[[str], None] | None = None):
        self.model, self.opt, self.grad_clip, self.sdpa = model, optimizer, grad_clip, sdpa
        self.distributed, self.device = distributed, device
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.fast, self.compiled, self.fallback = fast, fast, ""
        self._eager = _Loss(model, autocast)
        self._net = self._wrap(self._compile(self._eager) if fast else self._eager)

    def _compile(self, module: torch.nn.Module) -> torch.nn.Module:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        # Importing transformers already fills in inductor's default (shared by every ISA); a user's choice stays.
        chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        if chosen is None or os.path.abspath(chosen) == os.path.abspath(default_cache_dir()):
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(inductor_cache_dir())
        return torch.compile(module, dynamic=False)

    def _wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if not self.distributed:
            return module
        ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def describe(self) -> dict:
        """What the manifest records as `train_step`."""
        fused = any(g.get("fused") for g in self.opt.param_groups)
        out = {"path": "fast" if self.fast else "eager", "compiled": self.compiled, "fused_adamw": bool(fused)}
        return {**out, "compile_failed": self.fallback} if self.fallback else out

    def step(self, batches: list[Batch], scale: float, stop_if_nonfinite: bool = True) -> StepResult:
        """One optimisation step over `batches` (this process's micro-batches, already on the device)."""
        if not self.compiled:
            return self._step(batches, scale, stop_if_nonfinite)
        rng = torch.get_rng_state()
        try:
            return self._step(batches, scale, stop_if_nonfinite)
        except Exception as e:  # noqa: BLE001  # any compile failure: the eager step computes the same thing
            if not _is_compile_error(e):
                raise
            self.opt.zero_grad(set_to_none=True)
            torch.set_rng_state(rng)
            self.fallback = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
            self.say(f"torch.compile failed ({self.fallback}); training with the eager step instead")
            self.compiled = False
            self._net = self._wrap(self._eager)
            return self._step(batches, scale, stop_if_nonfinite)

    def _step(self, batches: list[Batch], scale: float, stop_if_nonfinite: bool) -> StepResult:
        with deterministic() if self.compiled else contextlib.nullcontext():
            loss_sum = self._forward_backward(batches, scale)
        if stop_if_nonfinite and not math.isfinite(loss_sum):  # before the update: the weights stay
            self.opt.zero_grad(set_to_none=True)
            return StepResult(loss_sum, None, False)
        grad_norm = None
        if self.grad_clip:
            with record_function("clip"):
                grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip))
        with record_function("optimizer"):
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        return StepResult(loss_sum, grad_norm, True)

    def _forward_backward(self, batches: list[Batch], scale: float) -> float:
        loss_sum = 0.0
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            sync = contextlib.nullcontext() if last or not self.distributed else self._net.no_sync()
            with sync, self.sdpa():
                with record_function("forward"):
                    loss = self._net(batch["input_ids"], batch["targets"])
                with record_function("backward"):
                    (loss * scale).backward()
            loss_sum += loss.item()
        return loss_sum


@contextlib.contextmanager
def deterministic():
    """Torch's deterministic algorithms while the compiled step runs and compiles (its backward compiles during
    the first backward): inductor then keeps scatter-adds such as the embedding's gradient as ATen's kernels
    instead of multi-threaded atomic adds, whose order, and so whose rounding, changes from run to run with
    more than one thread (measured: two identical 6-step runs on 2 threads ended with different weights).
    `warn_only`: an op without a deterministic kernel warns instead of failing the run."""
    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)


def _is_compile_error(e: Exception) -> bool:
    """Errors raised by the compiler (dynamo, inductor, the C++ toolchain), not by the model's own code."""
    from torch._dynamo.exc import TorchRuntimeError

    return not isinstance(e, TorchRuntimeError) and type(e).__module__.startswith(("torch._dynamo", "torch._inductor"))


def group_weights(opt: torch.optim.Optimizer) -> list[list[torch.Tensor]]:
    """A copy of every parameter group's weights, before a step (`update_ratios` compares after it)."""
    return [[p.detach().clone() for p in g["params"]] for g in opt.param_groups]


def update_ratios(opt: torch.optim.Optimizer, before: list[list[torch.Tensor]]) -> dict[str, float]:
    """`update_ratio.<group>`: ||w_after - w_before|| / ||w_before|| over each parameter group, for the step just
    taken. Around 1e-3 is the usual healthy order for AdamW; a group far above it takes steps too large for its
    weights (the tiny study's diagnosis, docs/results.md)."""
    out = {}
    for i, (g, old) in enumerate(zip(opt.param_groups, before, strict=True)):
        delta = math.sqrt(sum(float((p.detach() - w).float().pow(2).sum())
                              for p, w in zip(g["params"], old, strict=True)))
        norm = math.sqrt(sum(float(w.float().pow(2).sum()) for w in old))
        out[f"update_ratio.{g.get('name', f'group{i}')}"] = delta / norm if norm else math.nan
    return out
