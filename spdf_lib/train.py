"""The one training loop: pre-training on a packed token stream and fine-tuning on (prompt, target) pairs,
in one process or data-parallel under `torchrun` (DDP: gloo on CPU, nccl on CUDA).

What it does each optimizer step (the SPDF recipe, Thangarasa et al. 2023, §3): draw the step's global batch
(a pure function of seed and step, so a resumed run sees exactly the batches it would have seen), give each rank
its share, accumulate gradients over micro-batches, normalise the loss by the global number of target tokens
(so 1 process and N processes compute the same gradient), clip to 1.0, AdamW (β 0.9/0.95, weight decay 0.1
on matrices only) at a learning rate with linear warm-up then cosine decay to 10%.

Records: `metrics.jsonl` rows (step, tokens, loss, lr, training FLOPs so far from `spdf_lib.flops`, elapsed
training seconds, eval loss when evaluated). Checkpoints every N steps hold the weights (safetensors), the
optimizer, RNG states and counters (`spdf_lib.checkpoints`); a run restarted with the same `out_dir` resumes
from the newest intact one (a damaged newer one is named and passed over) and ends with bitwise the same
weights as an uninterrupted run from that checkpoint (CPU, same seed). A non-finite loss stops the run at once,
before the update, with a `DivergedError` naming the step.

Early stopping (`patience` > 0): at each evaluation the loop reads `stop_metric` from the eval row (the eval
loss, or a number that `train(validate=...)` computes, e.g. BLEU of greedy outputs on held-out inputs), keeps the
best weights (in memory and, with `out_dir`, in `<out_dir>/best/`), stops after `patience` evaluations without
an improvement of more than `min_delta`, and ends with the best weights loaded. The best value, its step and the
count of evaluations without improvement are part of the checkpointed state, so an interrupted run resumes the
same decisions.

Why one file of ~500 lines (the checkpoint files and early stopping apart): the step, its checkpoints and distribution
share one `state` dict and one loop; split apart, the resume guarantee would span modules that each hold part of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from spdf_lib import flops as flop_counter
from spdf_lib.atomic import atomic_write_text
from spdf_lib.checkpoints import load_best, load_latest, save_checkpoint
from spdf_lib.data.streams import IGNORE
from spdf_lib.early_stopping import load_weights, update_early_stopping
from spdf_lib.errors import DivergedError
from spdf_lib.jsonio import read_jsonl
from spdf_lib.precision import PRECISIONS, resolve
from spdf_lib.train_step import TrainStep, choose_fast, group_weights, update_ratios

SDPA_BACKENDS = ("auto", "flash", "efficient", "math")


@dataclass
class TrainConfig:
    """How to train. `batch_size` is global (sequences per optimizer step, over all ranks and micro-batches);
    `micro_batch_size` is what one rank runs in one forward pass (default: all of its share)."""

    max_steps: int
    batch_size: int = 16
    micro_batch_size: int | None = None
    lr: float = 6e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 0
    weight_decay: float = 0.1
    # The blocks' weight matrices (SPDF's six) and MDHA's conv taps train at lr × matrix_lr_scale; the embeddings
    # (tied LM head), norms and biases at lr. 1.0 is the papers' single rate. Narrow models need < 1 (README).
    matrix_lr_scale: float = 1.0
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0
    precision: str = "auto"  # "bf16" (autocast on CPU and CUDA), "fp32", or "auto" (spdf_lib.precision.resolve)
    eval_every: int = 0  # 0: only at the end
    log_every: int = 10
    checkpoint_every: int = 0  # 0: no checkpoints
    keep_checkpoints: int = 2
    patience: int = 0  # early stopping: evaluations without improvement before stopping; 0: off (no best kept)
    stop_metric: str = "eval_loss"  # a key of the eval row (eval_loss, or one that `validate` returns)
    stop_mode: str = "min"  # "min" (a loss) or "max" (BLEU, a share)
    min_delta: float = 0.0  # an improvement must exceed this
    min_steps: int = 0  # early stopping never stops before this step
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    diagnostics: bool = False  # log each group's update/weight ratio every `log_every` steps (a copy of the weights)
    desc: str = "train"
    # Speed options (GPU; none changes what is computed beyond floating-point rounding):
    compile: bool = False  # torch.compile the model for the training steps (a one-off compile, then faster steps)
    activation_checkpointing: bool = False  # recompute each block's activations in backward (GPT-3 XL memory)
    fused_adamw: bool | None = None  # the fused AdamW kernel; None: on CUDA
    sdpa_backend: str = "auto"  # attention kernel: auto, or force flash / efficient / math (an error if unavailable)
    fast_step: bool | None = None  # the compiled step + fused AdamW (spdf_lib.train_step); None: where it pays

    def __post_init__(self):
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.sdpa_backend not in SDPA_BACKENDS:
            raise ValueError(f"sdpa_backend must be one of {', '.join(SDPA_BACKENDS)}, got {self.sdpa_backend!r}")
        if self.stop_mode not in ("min", "max"):
            raise ValueError(f"stop_mode must be 'min' or 'max', got {self.stop_mode!r}")
        if not self.matrix_lr_scale > 0:
            raise ValueError(f"matrix_lr_scale must be > 0, got {self.matrix_lr_scale}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        self.betas = tuple(self.betas)


# --- data ---------------------------------------------------------------------------------------------------


class TrainData(Protocol):
    """A source of training examples (implementations: `spdf_lib.data.streams`): `examples(step, n)` returns
    the step's global batch of `n` cheap example descriptors and must depend only on (its seed, step); each
    rank collates its own slice of it into tensors."""

    def examples(self, step: int, n: int) -> list: ...
    def eval_examples(self) -> list: ...
    def collate(self, examples: list) -> dict[str, torch.Tensor]: ...


# --- distributed ----------------------------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where collectives run: nccl needs CUDA tensors
    enabled: bool = False  # a process group exists (under torchrun, even with one process)

    @property
    def main(self) -> bool:
        return self.rank == 0


def is_main_process() -> bool:
    """Whether this process writes the records: rank 0 under `torchrun`, or a process on its own."""
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed(device: str) -> Dist:
    """Join the process group that `torchrun` describes in the environment (gloo on CPU, nccl on CUDA).
    Under torchrun the group is created even for one process, so one GPU exercises the same DDP path."""
    if "TORCHELASTIC_RUN_ID" not in os.environ and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Dist(device=device)
    if not dist.is_initialized():
        if device.startswith("cuda"):
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), device, True)


def _all_reduce(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum `t` over the ranks (in place where possible); returns the result on `t`'s original device."""
    if not d.enabled:
        return t
    on = t.to(d.device)
    dist.all_reduce(on)
    return on.to(t.device)


# --- checkpoints (the files: spdf_lib.checkpoints) -------------------------------------------------------------


def _fingerprint(model, cfg: TrainConfig) -> dict[str, Any]:
    mc = model.config.to_dict()
    keep = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "activation", "mdha",
            "mdha_kernel", "sparse_params")
    # settings of speed, not of the math: a run resumes across a change of them
    speed = ("compile", "activation_checkpointing", "fused_adamw", "sdpa_backend", "fast_step")
    skip = ("progress", "diagnostics", "desc", "device", "log_every", "eval_every", "checkpoint_every",
            "keep_checkpoints", *speed)
    tc = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip}
    if not cfg.patience:  # runs without early stopping keep the fingerprints they always had
        for k in ("patience", "stop_metric", "stop_mode", "min_delta", "min_steps"):
            tc.pop(k)
    if cfg.matrix_lr_scale == 1.0:  # ... and so do runs at a single learning rate
        tc.pop("matrix_lr_scale")
    return {"model": {k: mc.get(k) for k in keep}, "train": json.loads(json.dumps(tc))}


# --- the loop -------------------------------------------------------------------------------------------------


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to `lr` over `warmup_steps`, then cosine decay to `min_lr_ratio · lr`, reached at the last
    step (`max_steps - 1`, the last one that updates the weights)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - 1 - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def param_groups(model, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups, each with its `lr_scale` (its rate is `lr_scale · lr_at(step)`):
    weight decay on matrices only, not on biases, norms or MDHA's conv taps (`conv_taps`, a group of their own when
    the model has them); with `matrix_lr_scale` != 1, the blocks' matrices form a group of their own, apart from
    the embeddings (and the LM head tied to them)."""
    params = [p for p in model.parameters() if p.requires_grad]
    taps = conv_taps(model)
    no_decay = [p for p in params if p.dim() < 2]
    decay = [p for p in params if p.dim() >= 2 and id(p) not in taps]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0, "name": "matrices"},
              {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0, "name": "norms_biases"}]
    if cfg.matrix_lr_scale != 1.0:  # (only then: checkpoints of single-rate runs keep their two groups)
        embedding = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
        output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if output is not None:
            embedding.add(id(output.weight))
        groups[0] = {**groups[0], "params": [p for p in decay if id(p) not in embedding],
                     "lr_scale": cfg.matrix_lr_scale}
        groups.append({"params": [p for p in decay if id(p) in embedding], "weight_decay": cfg.weight_decay,
                       "lr_scale": 1.0, "name": "embeddings"})
    if taps:  # Primer's MDHA: the conv taps at the blocks' rate, without weight decay (see `conv_taps`)
        groups.append({"params": [p for p in params if id(p) in taps], "weight_decay": 0.0,
                       "lr_scale": cfg.matrix_lr_scale, "name": "conv_taps"})
    return groups


def conv_taps(model) -> set[int]:
    """ids of the depthwise-convolution taps of Primer's multi-dconv-head attention (`MultiDConvHead.weight`).

    They form an optimizer group of their own ("conv_taps"): no weight decay, rate `lr × matrix_lr_scale`.
    Why: the paper trained with no regularisation, and decay would pull the current-token tap (0.5 at init)
    towards 0, shrinking Q, K and V, not a matrix's spurious directions. The taps change Q, K and V as the
    blocks' matrices do, so they share those matrices' rate. Their own group also logs their own update/weight
    ratio (`diagnostics`), the drift of the taps."""
    from spdf_lib.modeling_gpt import MultiDConvHead

    return {id(m.weight) for m in model.modules() if isinstance(m, MultiDConvHead) and m.weight.requires_grad}


def make_optimizer(model, cfg: TrainConfig, device: str) -> torch.optim.AdamW:
    """AdamW over `param_groups` (fused on CUDA and on the fast step's CPU path, unless `fused_adamw` says)."""
    fused = device.startswith("cuda") or choose_fast(cfg.fast_step, device, cfg.max_steps, cfg.compile)
    return torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                             fused=fused if cfg.fused_adamw is None else cfg.fused_adamw)


def sdpa_context(backend: str):
    """A context that forces one scaled-dot-product-attention kernel (`flash`, `efficient`, `math`), so that a
    run asking for flash attention fails loudly instead of silently falling back; `auto` lets torch choose."""
    if backend == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel({"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                        "math": SDPBackend.MATH}[backend])


def resolve_device(device: str) -> str:
    if device == "auto":
        if torch.cuda.is_available():
            return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        return "cpu"
    return device


def token_loss(model, batch: dict[str, torch.Tensor], autocast) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over the targets (already shifted: position t predicts `targets[:, t]`),
    and their count."""
    with autocast():
        logits = model(input_ids=batch["input_ids"]).logits
    targets = batch["targets"]
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="sum")
    return loss, int((targets != IGNORE).sum())


def token_losses(model, batch: dict[str, torch.Tensor], autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, (B,) each: summed next-token cross-entropy over its targets, and their count (the per-input
    numbers a bootstrap resamples). The training step keeps `token_loss`'s one flat sum."""
    with autocast():
        logits = model(input_ids=batch["input_ids"]).logits
    targets = batch["targets"]
    loss = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
    return loss.sum(1), (targets != IGNORE).sum(1)


@torch.no_grad()
def evaluate(model, data: TrainData, micro_batch_size: int, device: str, precision: str = "auto",
             d: Dist | None = None) -> float:
    """Mean next-token loss over `data.eval_examples()` (sharded across ranks)."""
    d = d or Dist()
    was_training = model.training
    model.eval()
    autocast = autocast_factory(device, precision)
    ex = data.eval_examples()[d.rank :: d.world]
    total = torch.zeros(2, dtype=torch.float64)
    for i in range(0, len(ex), micro_batch_size):
        batch = {k: v.to(device) for k, v in data.collate(ex[i : i + micro_batch_size]).items()}
        loss, n = token_loss(model, batch, autocast)
        total += torch.tensor([loss.item(), n], dtype=torch.float64)
    total = _all_reduce(total, d)
    model.train(was_training)
    return float(total[0] / max(total[1], 1))


def autocast_factory(device: str, precision: str):
    """A no-argument callable giving the autocast context of `precision` (bf16, or none for fp32; `auto` resolved
    for `device` by `spdf_lib.precision.resolve`) on `device`."""
    dev_type = "cuda" if device.startswith("cuda") else "cpu"
    if resolve(precision, device) == "bf16":
        return lambda: torch.autocast(dev_type, dtype=torch.bfloat16)
    return lambda: torch.autocast(dev_type, enabled=False)


@dataclass
class _Session:
    """What one call of `train` holds between steps: the set-up, the resumable `state`, the early-stopping copy."""

    model: Any
    stepper: TrainStep  # the one optimisation step (compiled and/or DDP-wrapped there)
    opt: torch.optim.Optimizer
    d: Dist
    device: str
    precision: str
    autocast: Callable
    micro: int  # sequences per forward pass on this rank
    local_n: int  # sequences per step on this rank
    shape: Any  # the FLOP counter's shape of the model
    state: dict[str, Any]
    best_weights: dict[str, torch.Tensor] | None
    out_dir: Path | None
    run: Any
    bar: Any = None


def train(model, data: TrainData, cfg: TrainConfig, out_dir: str | Path | None = None, run=None,
          validate: Callable[[Any], dict[str, float]] | None = None) -> dict[str, Any]:
    """Train `model` in place for `cfg.max_steps` optimizer steps (fewer when early stopping ends it); returns
    the final metrics, and with early stopping `best` (the eval row of the best weights, which the model holds
    on return) and `stopped_early`.

    `out_dir` holds checkpoints (and is where a restarted run resumes from); `run` (a `records.Run`) receives
    the metrics rows; `validate(model)` adds numbers to each eval row (computed on rank 0, shared with the
    others). Under `torchrun`, every rank calls this with the same arguments; rank 0 writes.

    Each step: `_optimisation_step` (one update of the weights), then `_after_step` (log, evaluate, stop,
    checkpoint).
    """
    s = _set_up(model, cfg, Path(out_dir) if out_dir is not None else None, run)
    last: dict[str, Any] = {}
    s.bar = tqdm(total=cfg.max_steps, initial=s.state["step"], desc=cfg.desc,
                 disable=not (cfg.progress and s.d.main), dynamic_ncols=True)
    while s.state["step"] < cfg.max_steps and not s.state.get("stopped"):
        t0 = time.perf_counter()
        done = _optimisation_step(s, data, cfg)
        last = _after_step(s, data, cfg, done, t0, validate)
    s.bar.close()
    if not last:  # resumed from a checkpoint of the final step: nothing left to train
        last = {k: s.state[k] for k in ("step", "tokens", "flops", "elapsed_s")}
        last["eval_loss"] = evaluate(model, data, s.micro, s.device, s.precision, s.d)
    if cfg.patience:
        if s.best_weights is not None:  # end with the best weights (SPDF §4: the best validation checkpoint)
            load_weights(model, s.best_weights)
        last = {**last, "best": s.state["best"], "stopped_early": s.state["stopped"]}
    return last


def _set_up(model, cfg: TrainConfig, out_dir: Path | None, run) -> _Session:
    """Devices and processes, optimizer, and the state: fresh, or resumed from the newest intact checkpoint."""
    device = resolve_device(cfg.device)
    d = init_distributed(device)
    local_n = cfg.batch_size // d.world
    if cfg.batch_size % d.world:
        raise ValueError(f"batch_size={cfg.batch_size} is not divisible by the {d.world} processes")
    micro = cfg.micro_batch_size or local_n
    if local_n % micro:
        raise ValueError(f"each process's {local_n} sequences per step do not split into micro-batches of {micro}")

    # Each rank its own dropout stream (rank 0 keeps the single-process seed); data batches do not use it.
    torch.manual_seed(cfg.seed + 1_000_003 * d.rank)
    model.to(device)
    model.train()
    opt = make_optimizer(model, cfg, device)
    shape = flop_counter.shape_from_model(model)
    fingerprint = _fingerprint(model, cfg)
    state = {"step": 0, "tokens": 0, "flops": 0.0, "elapsed_s": 0.0, "fingerprint": fingerprint}
    if cfg.patience:
        state.update(best=None, bad_evals=0, stopped=False)  # best: the eval row of the best weights
    best_weights: dict[str, torch.Tensor] | None = None
    say = lambda line: tqdm.write(line, file=sys.stderr)  # noqa: E731  # beside the bar, which is on stderr
    resumed = load_latest(out_dir, model, opt, fingerprint, say=say) if out_dir is not None else None
    if resumed is not None:
        state = resumed
        if cfg.patience and state["best"] is not None:
            best_weights = load_best(out_dir)
        if run is not None and d.main:  # drop metrics logged after that checkpoint by the interrupted session
            rows = [r for r in read_jsonl(run.dir / "metrics.jsonl") if r["step"] <= state["step"]]
            atomic_write_text(run.dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    if cfg.activation_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    precision = resolve(cfg.precision, device)  # `auto` becomes bf16 or fp32 once, before the first step
    autocast = autocast_factory(device, precision)
    # the one optimisation step (`spdf_lib.train_step`): compiled and/or DDP-wrapped there, eager or fast
    stepper = TrainStep(model, opt, autocast, fast=choose_fast(cfg.fast_step, device, cfg.max_steps, cfg.compile),
                        grad_clip=cfg.grad_clip, distributed=d.enabled, device=device,
                        sdpa=lambda: sdpa_context(cfg.sdpa_backend), say=say)
    if run is not None and d.main:
        run.describe(precision=precision, precision_requested=cfg.precision, train_step=stepper.describe())
    return _Session(model, stepper, opt, d, device, precision, autocast, micro, local_n, shape, state, best_weights,
                    out_dir, run)


def _optimisation_step(s: _Session, data: TrainData, cfg: TrainConfig) -> dict[str, Any]:
    """One optimizer step: the step's global batch, this rank's micro-batches, then `TrainStep.step` (gradients
    normalised by the global target tokens, clipping, AdamW). Returns the step's numbers (summed over ranks) for
    `_after_step`."""
    step, d, opt = s.state["step"], s.d, s.opt
    lr = lr_at(step, cfg)
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    mine = data.examples(step, cfg.batch_size)[d.rank :: d.world]
    batches = [data.collate(mine[i : i + s.micro]) for i in range(0, s.local_n, s.micro)]
    n_tokens = torch.tensor([sum(int((b["targets"] != IGNORE).sum()) for b in batches)], dtype=torch.float64)
    n_global = float(_all_reduce(n_tokens, d).item())
    step_flops = sum(n * flop_counter.training_flops_per_sequence(s.shape, t)
                     for n, t in (b["input_ids"].shape for b in batches))
    watched = group_weights(opt) if cfg.diagnostics and (step + 1) % cfg.log_every == 0 else None
    # DDP averages gradients over ranks: scale so the result is the global mean over target tokens.
    done = s.stepper.step([{k: v.to(s.device) for k, v in b.items()} for b in batches], d.world / n_global,
                          stop_if_nonfinite=not d.enabled)
    if not done.updated:  # a non-finite loss, before the update: the weights stay the last good ones
        _diverged(s.bar, step + 1, done.loss_sum / n_global, lr)
    totals = _all_reduce(torch.tensor([done.loss_sum, step_flops, sum(b["input_ids"].numel() for b in batches)],
                                      dtype=torch.float64), d)
    if not math.isfinite(float(totals[0])):  # under DDP: every rank sees the summed loss and stops alike
        _diverged(s.bar, step + 1, float(totals[0]) / n_global, lr)
    return {"lr": lr, "loss": float(totals[0]) / n_global, "flops": float(totals[1]), "tokens": int(totals[2]),
            "grad_norm": done.grad_norm, "watched": watched}


def _after_step(s: _Session, data: TrainData, cfg: TrainConfig, result: dict[str, Any], t0: float,
                validate: Callable[[Any], dict[str, float]] | None) -> dict[str, Any]:
    """What follows a step: count it, log its row, evaluate (and stop early), checkpoint. Returns the row."""
    state, d = s.state, s.d
    state["step"] += 1
    state["flops"] += result["flops"]
    state["tokens"] += result["tokens"]
    state["elapsed_s"] += time.perf_counter() - t0
    if s.run is not None:
        s.run.step = state["step"]
    row = {"step": state["step"], "tokens": state["tokens"], "loss": result["loss"], "lr": result["lr"],
           "flops": state["flops"], "elapsed_s": round(state["elapsed_s"], 4)}
    if result["grad_norm"] is not None:
        row["grad_norm"] = float(result["grad_norm"])  # before clipping
    if result["watched"] is not None:
        row.update(update_ratios(s.opt, result["watched"]))
    s.bar.update(1)
    s.bar.set_postfix(loss=f"{row['loss']:.3f}")
    done = state["step"] == cfg.max_steps
    if (cfg.eval_every and state["step"] % cfg.eval_every == 0) or done:
        row["eval_loss"] = evaluate(s.model, data, s.micro, s.device, s.precision, d)
        if not math.isfinite(row["eval_loss"]):
            raise DivergedError(f"training diverged at step {state['step']}: the eval loss is "
                                f"{row['eval_loss']}; lower lr, or check the data and precision", state["step"])
        if validate is not None:
            row.update(_shared(validate(s.model) if d.main else None, d))
        if cfg.patience:
            s.best_weights = update_early_stopping(row, state, cfg, s.model, s.best_weights,
                                                   s.out_dir if d.main else None)
            done = done or state["stopped"]
    if s.run is not None and d.main and (state["step"] % cfg.log_every == 0 or done or "eval_loss" in row):
        s.run.log(row)
    checkpoint = cfg.checkpoint_every and (state["step"] % cfg.checkpoint_every == 0 or done)
    if s.out_dir is not None and d.main and checkpoint:
        save_checkpoint(s.out_dir, s.model, s.opt, state, cfg.keep_checkpoints)
    if d.enabled:
        dist.barrier()
    return row


def _diverged(bar, step: int, loss: float, lr: float) -> None:
    bar.close()
    raise DivergedError(f"training diverged at step {step}: the loss is {loss} (lr {lr:.3g}); lower lr, or check "
                        f"the data and precision", step)


def _shared(values: dict[str, float] | None, d: Dist) -> dict[str, float]:
    """`values` computed on rank 0, the same on every rank (so that every rank takes the same decisions)."""
    if not d.enabled:
        return dict(values or {})
    box = [values]
    dist.broadcast_object_list(box, src=0)
    return dict(box[0] or {})
