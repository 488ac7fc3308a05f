"""What a sweep will cost on *this* machine, before it runs: `spdf plan SWEEP` without `--gpus`, and the first lines
of `spdf reproduce`.

A plan is work × measured unit cost. The work of each point comes from its validated parameters: pre-training
steps and evaluations, fine-tuning steps, validation and test decoding, exam prompts. The unit costs are measured
here, in a few seconds, at the precision `auto` resolves to and with the torch threads a sweep worker gets (the
cores split among the workers, as `spdf_lib.sweep.scheduler` splits them):

- a training step (forward, backward, AdamW) of each architecture in the sweep at each batch shape it trains on;
- a forward pass at the evaluation shapes;
- a decoding step (one new token for a batch of prompts, greedy or beam);
- a log-likelihood forward of the exam model (SmolLM2's architecture, randomly initialised: its weights' values
  do not change the time) over a typical exam prompt.

Measurements are cached per machine (CPU model, capability, torch, threads, precision) under
`$SPDF_CACHE/plan/`, so a second plan is instant. Two facts of the data enter as constants, measured once:
fine-tuning batches are padded to `max_len` (mean padded length of 16-pair batches with the tiny tokenizer:
127.3 of 128 on E2E, 127.9 on WebNLG), and decoding runs `max_new_tokens` steps per batch (a batch runs until
its longest output ends). Early stopping is not predicted: a fine-tuning point is priced at its epoch cap.
The per-point start-up (a process, a Jupyter kernel, imports, data loading) is the constant `STARTUP_S`.

The wall time of the whole sweep simulates the scheduler: points start in plan order once the points they need
are done, `workers` at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STARTUP_S = {"papermill": 12.0, "process": 6.0, "torchrun": 10.0}  # measured: `spdf run flops` took 12.5 s in all
EXAM_PROMPT_TOKENS = 160  # a letter-scoring exam prompt (question, four options, instructions)
TIMED_STEPS = 1  # timed repetitions after a warm-up (which also creates the optimizer state)
# SmolLM2-135M's shape (its config.json), for timing its forward pass without loading it
SMOLLM2 = {"vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9,
           "num_key_value_heads": 3}
SMOLLM2_LAYERS = 30


@dataclass(frozen=True)
class Arch:
    """What the speed of a kit GPT depends on."""

    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int
    n_positions: int
    activation: str = "gelu"
    mdha: bool = False
    mdha_kernel: int = 3

    @classmethod
    def of(cls, p: dict[str, Any]) -> Arch:
        """The architecture of pre-training parameters `p` (a `PretrainParams` dump)."""
        from spdf_lib.model_sizes import NAMED_SIZES
        from spdf_lib.pretrain_params import GPT2_VOCAB

        named = NAMED_SIZES[p["model_size"]]
        vocab = GPT2_VOCAB if p.get("tokenizer") == "gpt2" else p["vocab_size"]
        return cls(
            n_layer=p.get("n_layer") or named["n_layer"],
            n_embd=p.get("n_embd") or named["n_embd"],
            n_head=p.get("n_head") or named["n_head"],
            vocab_size=vocab,
            n_positions=p["seq_len"],
            activation=p.get("activation", "gelu"),
            mdha=bool(p.get("mdha")),
            mdha_kernel=p.get("mdha_kernel", 3),
        )

    def model(self):
        from spdf_lib.modeling_gpt import GPTConfig, GPTForCausalLM

        return GPTForCausalLM(GPTConfig(**asdict(self)))


class Calibration:
    """Unit costs measured on this machine, with `threads` torch threads, in `precision` (`auto` resolved), and
    how busy the machine was while they were measured (`conditions`, `spdf_lib.machine_load`; the busiest of the
    sessions that measured them). `recalibrate`: measure every unit cost again, ignoring the cache."""

    def __init__(self, threads: int, precision: str = "auto", recalibrate: bool = False):
        import torch

        from spdf_lib.precision import describe, resolve

        self.threads = threads
        self.precision = resolve(precision, "cpu", warn=False)
        machine = describe("cpu")
        key = json.dumps({k: machine[k] for k in ("cpu_model", "capability")} | {
            "torch": torch.__version__, "threads": threads, "precision": self.precision}, sort_keys=True)
        root = Path(os.environ.get("SPDF_CACHE") or Path.home() / ".cache" / "spdf-kit") / "plan"
        self.path = root / f"unit-costs-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
        try:
            self.costs: dict[str, float] = {} if recalibrate else json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.costs = {}
        self.conditions: dict[str, Any] | None = self.costs.pop("_conditions", None)
        self.measured = 0  # unit costs measured by this instance (not from the cache)

    def _cached(self, key: str, measure) -> float:
        if key not in self.costs:
            import torch

            from spdf_lib.machine_load import LoadMeter, worst

            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                with LoadMeter() as load:
                    self.costs[key] = measure()
            finally:
                torch.set_num_threads(before)
            self.conditions = worst(self.conditions, load.conditions)
            self.measured += 1
        return self.costs[key]

    def save(self) -> None:
        from spdf_lib.atomic import atomic_write_text

        with contextlib.suppress(OSError):  # a read-only cache: the next plan measures again
            atomic_write_text(self.path, json.dumps({**self.costs, "_conditions": self.conditions}, indent=1,
                                                    sort_keys=True) + "\n")

    def _autocast(self):
        from spdf_lib.train import autocast_factory

        return autocast_factory("cpu", self.precision)

    def train_step(self, arch: Arch, batch: int, T: int, fast: bool = False) -> float:
        """Seconds of one optimizer step (`spdf_lib.train_step`, the eager or the fast path) over `batch`
        sequences of `T` tokens; the fast path's one-off compile falls in the warm-up, outside the timing."""

        def measure() -> float:
            import torch

            from spdf_lib.train import TrainConfig, make_optimizer
            from spdf_lib.train_step import TrainStep

            torch.manual_seed(0)
            model = arch.model()
            opt = make_optimizer(model, TrainConfig(max_steps=1, fast_step=fast), "cpu")
            ids = torch.randint(0, arch.vocab_size, (batch, T))
            stepper = TrainStep(model, opt, self._autocast(), fast=fast)
            return _timed(lambda: stepper.step([{"input_ids": ids, "targets": ids}], 1.0 / ids.numel()))

        return self._cached(f"train{'-fast' if fast else ''} {_key(arch)} {batch}x{T}", measure)

    def forward(self, arch: Arch, batch: int, T: int) -> float:
        """Seconds of one no-grad forward pass over `batch` sequences of `T` tokens (evaluation, test loss)."""

        def measure() -> float:
            import torch

            model = arch.model().eval()
            ids = torch.randint(0, arch.vocab_size, (batch, T))
            autocast = self._autocast()

            def fwd() -> None:
                with torch.no_grad(), autocast():
                    model(input_ids=ids)

            return _timed(fwd)

        return self._cached(f"forward {_key(arch)} {batch}x{T}", measure)

    def decode_step(self, arch: Arch, batch: int, prompt_len: int, beams: int) -> float:
        """Seconds per generated token of `generate()` on `batch` prompts of `prompt_len` tokens with `beams`."""
        new = 8

        def measure() -> float:
            import torch
            from transformers import GenerationConfig

            model = arch.model().eval()
            ids = torch.randint(0, arch.vocab_size, (batch, prompt_len))
            cfg = GenerationConfig(max_new_tokens=new, min_new_tokens=new, num_beams=beams, do_sample=False,
                                   pad_token_id=0, eos_token_id=None)
            return _timed(lambda: model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                                 generation_config=cfg)) / new

        return self._cached(f"decode {_key(arch)} {batch}x{prompt_len} beams={beams}", measure)

    def exam_prompt(self, batch_tokens: int) -> float:
        """Seconds of one exam prompt's log-likelihood forward on SmolLM2-135M's architecture, timed on a 2-layer
        model of its width and scaled by the weights a token passes through (head + 30 layers against head + 2):
        a 30-layer model takes longer to build than to time; random weights time the same as trained ones."""

        def measure() -> float:
            import torch
            from transformers import LlamaConfig, LlamaForCausalLM

            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
            batch = 1  # one prompt: at this size a batch costs about the sum of its prompts
            ids = torch.randint(0, SMOLLM2["vocab_size"], (batch, EXAM_PROMPT_TOKENS))
            model = LlamaForCausalLM(LlamaConfig(**SMOLLM2, num_hidden_layers=2, tie_word_embeddings=True))
            model = model.to(dtype).eval()
            with torch.no_grad():
                two = _timed(lambda: model(input_ids=ids))
            d, f, kv = SMOLLM2["hidden_size"], SMOLLM2["intermediate_size"], SMOLLM2["num_key_value_heads"]
            layer = 2 * d * d + 2 * d * (d * kv // SMOLLM2["num_attention_heads"]) + 3 * d * f
            head = d * SMOLLM2["vocab_size"]
            return two * (head + SMOLLM2_LAYERS * layer) / (head + 2 * layer) / batch

        return self._cached(f"exam smollm2 {batch_tokens}", measure)


def _key(arch: Arch) -> str:
    return ",".join(f"{v}" for v in asdict(arch).values())


def _timed(fn, reps: int = TIMED_STEPS) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


# --- the work of each point ------------------------------------------------------------------------------------


Parts = dict[str, float]  # seconds by kind of work: start, train, eval, decode, score


def add_parts(total: Parts, more: Parts) -> Parts:
    """The seconds of two pieces of work, kind by kind."""
    return {k: total.get(k, 0.0) + more.get(k, 0.0) for k in {**total, **more}}


def pretrain_parts(p: dict[str, Any], cal: Calibration) -> Parts:
    """Training steps and evaluations (every `eval_every` steps and at the end) of one pre-training run."""
    from spdf_lib.pretrain_params import steps_for

    arch = Arch.of(p)
    steps = steps_for(p["tokens"], p["batch_size"], p["seq_len"])
    evals = (steps // p["eval_every"] if p.get("eval_every") else 0) + 1
    micro = p.get("micro_batch_size") or p["batch_size"]
    eval_batches = math.ceil(p["eval_windows"] / micro)
    from spdf_lib.train_step import choose_fast  # (torch: imported where a plan measures)

    fast = choose_fast(None, "cpu", steps, p.get("compile", False))
    return {"train": steps * cal.train_step(arch, p["batch_size"], p["seq_len"], fast),
            "eval": evals * eval_batches * cal.forward(arch, min(micro, p["eval_windows"]), p["seq_len"])}


@dataclass
class PointPlan:
    point: str
    stage: str
    what: str
    parts: Parts | None  # seconds by kind of work; None: not priced (`note` says why)
    note: str = ""

    @property
    def seconds(self) -> float | None:
        return None if self.parts is None else sum(self.parts.values())


SHARDS_NOTE = "token shards: a GPU plan (`spdf plan --gpus N`)"  # why a streamed-corpus point is not priced


class Pricer:
    """Prices the points of one plan (`spdf_lib.sweep.Plan`), remembering what it loaded (`memo`).

    Each experiment prices its own points: the experiment table (`spdf_lib.experiments.Experiment.price_ref`)
    names a function `price(pricer, point, start) -> PointPlan`; an experiment without one costs its start-up.
    """

    def __init__(self, plan, cal: Calibration):
        self.plan, self.cal = plan, cal
        self.memo: dict[tuple, Any] = {}  # what a price function loaded once per plan (task sizes, exam data)

    def pretrain_params_of(self, point) -> dict[str, Any] | None:
        """The pre-training parameters behind a fine-tuning or exam point's model: the point it needs."""
        for need in point.needs:
            q = self.plan.by_id.get(need)
            if q is not None and q.experiment == "spdf_pretrain":
                return q.params
        ref = str(point.params.get("checkpoint", ""))
        if ref.startswith("pretrain:"):
            from spdf_lib.experiments import load
            from spdf_lib.params import preset_path

            return load("spdf_pretrain", preset_path("spdf_pretrain", ref.split(":", 1)[1])).model_dump()
        return None

    def price(self, point) -> PointPlan:
        from spdf_lib.experiments import get

        start = {"start": STARTUP_S.get(point.launcher, STARTUP_S["process"])}
        price = get(point.experiment).price_function()
        if price is None:  # flops, report: start-up only (seconds of arithmetic)
            return PointPlan(point.id, point.stage, point.experiment, start)
        return price(self, point, start)


def price_pretrain(pricer: Pricer, point, start: Parts) -> PointPlan:
    """The price of one pre-training point (`spdf_pretrain`)."""
    p = point.params
    what = f"{p['model_size']} s={p['sparsity']:g}"
    if p.get("tokenizer"):
        return PointPlan(point.id, point.stage, what, None, SHARDS_NOTE)
    return PointPlan(point.id, point.stage, what, add_parts(start, pretrain_parts(p, pricer.cal)))


def simulate(points: list, seconds: dict[str, float], workers: int) -> float:
    """Wall seconds of running `points` (in plan order, dependencies first) `workers` at a time, each started as
    soon as the points it needs are done, as `spdf_lib.sweep.scheduler.run_sweep` does."""
    done_at: dict[str, float] = {}
    running: list[tuple[float, str]] = []  # (end time, point id)
    todo = list(points)
    now = 0.0
    while todo or running:
        ready = [p for p in todo if all(n in done_at or n not in seconds for n in p.needs)]
        while ready and len(running) < workers:
            p = ready.pop(0)
            todo.remove(p)
            heapq.heappush(running, (now + seconds.get(p.id, 0.0), p.id))
        if not running:  # waiting on something outside the plan: cannot happen with a valid plan
            break
        now, pid = heapq.heappop(running)
        done_at[pid] = now
    return now
