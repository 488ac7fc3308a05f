"""Shared pieces of the benchmarks: the result record and a side-by-side timer."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch


@dataclass
class Result:
    """One comparison measured in one run. `ratio` = candidate / baseline."""

    name: str
    baseline_label: str
    baseline: float
    candidate_label: str
    candidate: float
    unit: str
    higher_is_better: bool
    target: float | None = None  # e.g. 1.05 for "candidate time at most 1.05x baseline", 2.0 for ">= 2x throughput"
    note: str = ""
    within: float | None = None  # a two-sided target instead: the ratio within 1 ± this (a plan against actual)

    @property
    def ratio(self) -> float:
        return self.candidate / self.baseline

    def meets_target(self) -> bool | None:
        if self.within is not None:
            return abs(self.ratio - 1) <= self.within
        if self.target is None:
            return None
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def line(self) -> str:
        tgt = ""
        if self.within is not None:
            tgt = f"1 ± {self.within:g}  {'ok' if self.meets_target() else 'MISSED'}"
        elif self.target is not None:
            verdict = "ok" if self.meets_target() else "MISSED"
            tgt = f"{'>=' if self.higher_is_better else '<='} {self.target:g}  {verdict}"
        b = f"{self.baseline:.4g} {self.unit} ({self.baseline_label})"
        c = f"{self.candidate:.4g} {self.unit} ({self.candidate_label})"
        return f"{self.name:<44} {b:>22} {c:>22} {self.ratio:7.3f}  {tgt}" + (f"  {self.note}" if self.note else "")

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "meets_target": self.meets_target()}


def interleaved_median(fns: dict[str, Callable[[], None]], repeats: int = 7, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, timed in interleaved rounds (A, B, C, then B, C, A, …) so that
    machine noise hits every side alike; the order rotates because the first call of a round runs measurably
    faster than the others (5–8% on two identical models here)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for k in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def train_step_fn(model, ids: torch.Tensor, precision: str = "auto", fast: bool = False, device: str = "cpu",
                  sdpa_backend: str = "auto", lr: float = 1e-4, matrix_lr_scale: float = 1.0):
    """A no-argument callable running one training step (`spdf_lib.train_step.TrainStep`: the kit's own step,
    eager or fast) of `model` on the token rows `ids` (next-token targets), as `train.train` runs it."""
    from spdf_lib.train import TrainConfig, autocast_factory, make_optimizer, sdpa_context
    from spdf_lib.train_step import TrainStep

    model.to(device).train()
    cfg = TrainConfig(max_steps=1, lr=lr, matrix_lr_scale=matrix_lr_scale, fast_step=fast)
    step = TrainStep(model, make_optimizer(model, cfg, device), autocast_factory(device, precision), fast=fast,
                     device=device, sdpa=lambda: sdpa_context(sdpa_backend))
    batch = {"input_ids": ids[:, :-1].to(device), "targets": ids[:, 1:].to(device)}
    return lambda: step.step([batch], 1.0 / batch["targets"].numel())


def hf_gpt2_like(config, vocab_size: int, n_positions: int):
    """Hugging Face's `GPT2LMHeadModel` with the dimensions of a kit `GPTConfig` (sdpa attention, no dropout):
    the baseline the kit's own GPT is timed against."""
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=config.n_embd, n_layer=config.n_layer,
        n_head=config.n_head, n_inner=config.n_inner, activation_function="gelu_new", resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="sdpa"))
