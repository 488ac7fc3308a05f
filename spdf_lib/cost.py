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
EXAM_LOAD_S = 8.0  # loading SmolLM2 from its GGUF file (dequantised) and its tokenizer
EXAM_PROMPT_TOKENS = 160  # a letter-scoring exam prompt (question, four options, instructions)
EXAMS_CIRCULAR_PROMPTS = 4  # CircularEval asks each question under its rotations (4 options: 4 prompts)
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
        return cls(n_layer=p.get("n_layer") or named["n_layer"], n_embd=p.get("n_embd") or named["n_embd"],
                   n_head=p.get("n_head") or named["n_head"], vocab_size=vocab, n_positions=p["seq_len"],
                   activation=p.get("activation", "gelu"), mdha=bool(p.get("mdha")), mdha_kernel=p.get("mdha_kernel", 3))

    def model(self):
        from spdf_lib.modeling_gpt import GPTConfig, GPTForCausalLM

        return GPTForCausalLM(GPTConfig(**asdict(self)))


class Calibration:
    """Unit costs measured on this machine, with `threads` torch threads, in `precision` (`auto` resolved)."""

    def __init__(self, threads: int, precision: str = "auto"):
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
            self.costs: dict[str, float] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.costs = {}
        self.measured = 0  # unit costs measured by this instance (not from the cache)

    def _cached(self, key: str, measure) -> float:
        if key not in self.costs:
            import torch

            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                self.costs[key] = measure()
            finally:
                torch.set_num_threads(before)
            self.measured += 1
        return self.costs[key]

    def save(self) -> None:
        from spdf_lib.atomic import atomic_write_text

        with contextlib.suppress(OSError):  # a read-only cache: the next plan measures again
            atomic_write_text(self.path, json.dumps(self.costs, indent=1, sort_keys=True) + "\n")

    def _autocast(self):
        from spdf_lib.train import autocast_factory

        return autocast_factory("cpu", self.precision)

    def train_step(self, arch: Arch, batch: int, T: int) -> float:
        """Seconds of one optimizer step over `batch` sequences of `T` tokens."""

        def measure() -> float:
            import torch

            from spdf_lib.train import TrainConfig, _token_loss, make_optimizer

            torch.manual_seed(0)
            model = arch.model()
            opt = make_optimizer(model, TrainConfig(max_steps=1), "cpu")
            ids = torch.randint(0, arch.vocab_size, (batch, T))
            data = {"input_ids": ids, "targets": ids}
            autocast = self._autocast()

            def step() -> None:
                loss, _ = _token_loss(model, data, autocast)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            return _timed(step)

        return self._cached(f"train {_key(arch)} {batch}x{T}", measure)

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


def _add(total: Parts, more: Parts) -> Parts:
    return {k: total.get(k, 0.0) + more.get(k, 0.0) for k in {**total, **more}}


def pretrain_parts(p: dict[str, Any], cal: Calibration) -> Parts:
    """Training steps and evaluations (every `eval_every` steps and at the end) of one pre-training run."""
    arch = Arch.of(p)
    steps = max(1, math.ceil(p["tokens"] / (p["batch_size"] * p["seq_len"])))
    evals = (steps // p["eval_every"] if p.get("eval_every") else 0) + 1
    micro = p.get("micro_batch_size") or p["batch_size"]
    eval_batches = math.ceil(p["eval_windows"] / micro)
    return {"train": steps * cal.train_step(arch, p["batch_size"], p["seq_len"]),
            "eval": evals * eval_batches * cal.forward(arch, min(micro, p["eval_windows"]), p["seq_len"])}


def finetune_parts(p: dict[str, Any], arch: Arch, n_pairs: int, n_val: int, n_test: int, prompt_len: int,
                   cal: Calibration) -> Parts:
    """Fine-tuning to the epoch cap at `max_len`-padded batches; evaluation (the held-out loss at each validation,
    the test loss at the end); decoding (greedy outputs of the held-out inputs at each validation, the test inputs
    with `num_beams` and with the second decoding)."""
    b, T = p["batch_size"], p["max_len"]
    steps = max(1, math.ceil(p["epochs"] * n_pairs / b))
    per_epoch = max(1, math.ceil(n_pairs / b))
    evals = steps // (p.get("eval_every") or per_epoch) + 1 if n_val else 1
    gen = p["max_new_tokens"]
    parts = {"train": steps * cal.train_step(arch, b, T),
             "eval": evals * math.ceil(max(n_val, 1) / b) * cal.forward(arch, b, T)
             + math.ceil(n_test / 64) * cal.forward(arch, min(64, n_test), T), "decode": 0.0}
    if n_val:
        vb = max(p["decode_batch_size"], 64)
        parts["decode"] += evals * math.ceil(n_val / vb) * gen * cal.decode_step(arch, min(vb, n_val), prompt_len, 1)
    for beams in (p["num_beams"], p.get("second_num_beams") or 0):
        if beams:
            db = p["decode_batch_size"]
            parts["decode"] += math.ceil(n_test / db) * gen * cal.decode_step(arch, min(db, n_test), prompt_len, beams)
    return parts


def exam_parts(p: dict[str, Any], n_questions: int, cal: Calibration) -> Parts:
    prompts = n_questions * (EXAMS_CIRCULAR_PROMPTS if p.get("circular") else 1)
    return {"start": EXAM_LOAD_S, "score": prompts * cal.exam_prompt(p.get("batch_tokens", 2048))}


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


class Pricer:
    """Prices the points of one plan (`spdf_lib.sweep.Plan`), remembering what it loaded."""

    def __init__(self, plan, cal: Calibration):
        self.plan, self.cal = plan, cal
        self._tasks: dict[tuple, tuple[int, int, int]] = {}
        self._loaded: dict[tuple, Any] = {}

    def _pretrain_params_of(self, point) -> dict[str, Any] | None:
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

    def _task_sizes(self, p: dict[str, Any]) -> tuple[int, int, int]:
        """(training pairs, held-out inputs, test inputs) of a fine-tuning point, from its data."""
        from spdf_lib.data.encoding import training_pairs
        from spdf_lib.data.tasks import load_task
        from spdf_lib.spdf.finetune import held_out, training_subset

        key = (p["task"], p["setup"], p.get("train_split"), p.get("eval_split"), p.get("max_eval_examples"),
               p["val_inputs"], p["train_fraction"], p.get("max_train_pairs"), p.get("subset_seed"))
        if key not in self._tasks:
            data = load_task(p["task"], p["setup"], p.get("train_split"), p.get("eval_split"),
                             max_eval=p.get("max_eval_examples"))
            val, rest = held_out(data.train, p["val_inputs"], p["subset_seed"])
            train = training_subset(rest, p["train_fraction"], p.get("max_train_pairs"), p["subset_seed"])
            self._tasks[key] = (len(training_pairs(train)), len(val), len(data.eval))
        return self._tasks[key]

    def price(self, point) -> PointPlan:
        p, e = point.params, point.experiment
        start = {"start": STARTUP_S.get(point.launcher, STARTUP_S["process"])}
        shards = "token shards: a GPU plan (`spdf plan --gpus N`)"
        if e == "spdf_pretrain":
            what = f"{p['model_size']} s={p['sparsity']:g}"
            if p.get("tokenizer"):
                return PointPlan(point.id, point.stage, what, None, shards)
            return PointPlan(point.id, point.stage, what, _add(start, pretrain_parts(p, self.cal)))
        if e == "primer":
            from spdf_lib.primer.params import PrimerParams
            from spdf_lib.primer.run import point_params

            pp = PrimerParams(**p)
            runs = [point_params(pp, size, v, seed).model_dump() for size in pp.sizes for v in pp.variants
                    for seed in pp.seeds]
            what = f"{len(runs)} runs ({', '.join(pp.sizes)})"
            if any(r.get("tokenizer") for r in runs):
                return PointPlan(point.id, point.stage, what, None, shards)
            parts = start
            for r in runs:
                parts = _add(parts, pretrain_parts(r, self.cal))
            return PointPlan(point.id, point.stage, what, parts)
        if e == "spdf_finetune":
            what = f"{p['task']} {p['mode']} seed {p['seed']}"
            pre = self._pretrain_params_of(point)
            if pre is None or pre.get("tokenizer"):
                return PointPlan(point.id, point.stage, what, None, "its model is a folder, or GPU-scale")
            n_pairs, n_val, n_test = self._task_sizes(p)
            prompt = max(8, p["max_len"] // 2)
            parts = _add(start, finetune_parts(p, Arch.of(pre), n_pairs, n_val, n_test, prompt, self.cal))
            if str(p.get("checkpoint", "")).startswith("pretrain:"):
                parts = _add(parts, pretrain_parts(pre, self.cal))
            return PointPlan(point.id, point.stage, what, parts)
        if e == "exams":
            from spdf_lib.exams.params import ExamParams
            from spdf_lib.exams.run import prepare, select

            ep = ExamParams(**p)
            if ep.backend == "api":
                return PointPlan(point.id, point.stage, "exams (api)", None, "an API's speed is not measured here")
            key = ("exams", ep.data_file, ep.fields_file)
            if key not in self._loaded:  # parsing the certification data takes seconds: once per plan
                self._loaded[key] = prepare(ep)
            questions, _, _, fields = self._loaded[key]
            n = len(select(questions, ep, fields))
            return PointPlan(point.id, point.stage, f"exams {n} questions", _add(start, exam_parts(p, n, self.cal)))
        return PointPlan(point.id, point.stage, e, start)  # flops, report: start-up only (seconds of arithmetic)


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
