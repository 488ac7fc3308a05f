"""The nano recipe's training step (`params/spdf_pretrain/tiny.yaml`: GPT 2x64, vocabulary 1,024, batch 4 x 256,
the blocks' matrices at lr x 0.25) on one thread, as `spdf_lib.train_step.TrainStep` runs it: timed eager against
fast, and profiled by phase with `torch.profiler`.

`python -m bench.nano_step [--profile] [--json]` measures in this process. Torch reads its CPU capability when it
starts, so `bench training` measures AVX2 kernels in a child process started with the emulation variables
(`AVX2_ENV`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
B, T, V = 4, 256, 1024
PHASES = ("data", "forward", "backward", "clip", "optimizer")


def _nano_step(fast: bool, precision: str):
    """(the step's callable, the model): one nano step on a fresh random batch each call, data drawn as
    `PackedStream` draws it (random windows of one token stream)."""
    from spdf_lib.data.streams import PackedStream
    from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
    from spdf_lib.train import TrainConfig, autocast_factory, make_optimizer
    from spdf_lib.train_step import TrainStep

    stream = torch.randint(0, V, (200_000,), generator=torch.Generator().manual_seed(0))
    data = PackedStream(stream, stream[:10_000], T, seed=0)
    torch.manual_seed(0)
    model = GPTForCausalLM(gpt_config("nano", vocab_size=V, n_positions=T))
    cfg = TrainConfig(max_steps=4883, batch_size=B, lr=0.012, matrix_lr_scale=0.25, fast_step=fast)
    stepper = TrainStep(model, make_optimizer(model, cfg, "cpu"), autocast_factory("cpu", precision), fast=fast)
    count = [0]

    def step() -> float:
        with torch.profiler.record_function("data"):
            batch = data.collate(data.examples(count[0], B))
        count[0] += 1
        return stepper.step([batch], 1.0 / (B * T)).loss_sum

    return step, stepper


def step_flops() -> float:
    """Training FLOPs of one nano step (the kit's counter, `spdf_lib.flops`)."""
    from spdf_lib import flops
    from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config

    shape = flops.shape_from_model(GPTForCausalLM(gpt_config("nano", vocab_size=V, n_positions=T)))
    return B * flops.training_flops_per_sequence(shape, T)


def timed(precision: str = "fp32", repeats: int = 30) -> dict[str, float]:
    """Median seconds per step: eager, fast, and a second eager copy (the noise floor), interleaved."""
    from bench.common import interleaved_median

    fns = {"eager": _nano_step(False, precision)[0], "fast": _nano_step(True, precision)[0],
           "eager copy": _nano_step(False, precision)[0]}
    return interleaved_median(fns, repeats=repeats, warmup=3)


def profile(fast: bool, precision: str = "fp32", steps: int = 20) -> dict[str, float]:
    """Milliseconds per step by phase under `torch.profiler`: each phase's span, what of it ran inside ATen ops
    or compiled kernels (`kernels`), and the rest (Python, autograd and dispatch glue: `overhead`)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    step, _ = _nano_step(fast, precision)
    for _ in range(5):
        step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        wall = time.perf_counter() - t0
    out = {p: 0.0 for p in PHASES} | {"kernels": 0.0, "matmul": 0.0, "attention": 0.0}
    for e in prof.events():
        if e.name in PHASES:
            out[e.name] += e.cpu_time_total / 1e3 / steps
        elif e.name.startswith(("aten::", "## Call CompiledFxGraph")):
            self_ms = e.self_cpu_time_total / 1e3 / steps
            out["kernels"] += self_ms
            if e.name in ("aten::mm", "aten::addmm", "aten::bmm"):
                out["matmul"] += self_ms
            elif "scaled_dot_product" in e.name:
                out["attention"] += self_ms
    out["step"] = wall * 1e3 / steps
    out["overhead"] = out["step"] - out["kernels"]
    return out


def measure_avx2(args: list[str], timeout: float = 900) -> dict:
    """Run this module in a child process under the AVX2 emulation variables; its JSON answer."""
    env = {**os.environ, **AVX2_ENV, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "bench.nano_step", "--json", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def context(precision: str) -> dict:
    """What the timings depend on: this process's CPU capability, the precision, the step's GFLOP and the matmul
    peak (the precision probe's fp32 GFLOP/s at the current threads)."""
    from spdf_lib.precision import measure

    return {"capability": torch.backends.cpu.get_cpu_capability(), "precision": precision,
            "step_gflop": step_flops() / 1e9, "matmul_peak_gflops": measure("cpu")["fp32_gflops"]}


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    precision = "bf16" if "--bf16" in argv else "fp32"
    answer = context(precision)
    if "--profile" in argv:
        rounds = [(fast, profile(fast, precision)) for _ in range(2) for fast in (False, True)]  # A B A B
        for fast in (False, True):  # each side's quieter round (the CPU is shared)
            answer["fast" if fast else "eager"] = min((r for f, r in rounds if f == fast), key=lambda r: r["step"])
    else:
        answer |= timed(precision)
    print(json.dumps(answer) if "--json" in argv else json.dumps(answer, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
