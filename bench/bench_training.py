"""Training-step speed of the kit's GPT (CPU, at the precision `auto` resolves to here), each against its baseline in
the same run:

- masking overhead: a 75%-sparse `mini` step vs the dense step (target: at most 1.05x the time);
- MDHA overhead: `mini` with multi-dconv-head attention vs without (target: at most 1.15x the time; the Primer
  paper saw 6–14% fewer steps per second at 35M on its hardware);
- our GPT vs Hugging Face `GPT2LMHeadModel` of the same dimensions (sdpa attention, same batch): tokens per
  second of each (target: ours at least as fast);
- a noise floor: the dense step against an identical second copy of it (no target; read the other ratios
  against its distance from 1);
- the nano recipe's step (`params/spdf_pretrain/tiny.yaml`, one thread, fp32; `bench/nano_step.py`): the fast
  path of `spdf_lib.train_step` against the eager one, with eager against eager as the noise floor, on this
  CPU's own kernels and on AVX2 kernels (a child process under `ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2
  MKL_ENABLE_INSTRUCTIONS=AVX2`: the emulation of the common CPU when this one has more; target there: the fast
  step at most 1/1.5 of the eager step's time). Each note gives the step's share of the matmul peak (the
  precision probe's fp32 GFLOP/s on one thread).

The nano step before (eager) and after (fast), measured for issue 33 (docs/performance.md has the method and
the rest): 2-core Intel Xeon VM (Sapphire Rapids class), torch 2.13.0+cpu, one thread, median of 20 interleaved
rounds at load average 0.3-0.6; AVX2 = the emulation variables on that Xeon.

    kernels, precision        eager     fast   fast/eager  noise   share of the 114 GFLOP/s AVX2 matmul peak
    AVX2 (emulated), fp32    28.3 ms  26.3 ms    1.08x      1.01   44% -> 47%   (target 1.5x: missed)
    AVX512, fp32             24.7 ms  19.5 ms    1.26x      1.00
    AVX512 + AMX, bf16       32.0 ms  24.9 ms    1.28x

    torch.profiler, AVX2 fp32, ms/step        eager   fast
    matrix products (mm, addmm)                 9.6    9.5   (~92% of the matmul peak already)
    attention (flash SDPA, fwd + bwd)           7.5    7.3
    LM-head log-softmax, its backward, fills    4.9    -     (fused into the compiled kernels)
    GELU forward + backward                     2.6    -     (fused into the compiled kernels)
    compiled kernels (forward + backward)        -     6.1
    AdamW                                       1.6    1.5   (loop in this run; fused 0.7 on AVX512)
    gradient clipping                           0.5    0.5
    data                                        0.1    0.1
    step under the profiler                    30.8   26.5
"""

from __future__ import annotations

import torch

from bench import nano_step
from bench.common import Result, hf_gpt2_like, interleaved_median, train_step_fn
from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
from spdf_lib.precision import resolve
from spdf_lib.sparsity import sparsify

B, T, V = 16, 256, 2048
THREADS = torch.get_num_threads()


def _step_fn(model: torch.nn.Module, batch: torch.Tensor):
    return train_step_fn(model, batch, "auto")


def _gpt(**overrides) -> GPTForCausalLM:
    torch.manual_seed(0)
    return GPTForCausalLM(gpt_config("mini", vocab_size=V, n_positions=T, **overrides))


def run() -> list[Result]:
    batch = torch.randint(0, V, (B, T + 1), generator=torch.Generator().manual_seed(0))
    dense, dense_copy, sparse, mdha = _gpt(), _gpt(), _gpt(), _gpt(mdha=True)
    sparsify(sparse, 0.75)
    c = dense.config
    hf = hf_gpt2_like(c, V, T)
    t = interleaved_median({"dense": _step_fn(dense, batch), "sparse": _step_fn(sparse, batch),
                            "mdha": _step_fn(mdha, batch), "hf": _step_fn(hf, batch),
                            "dense copy": _step_fn(dense_copy, batch)}, repeats=15, warmup=2)
    tokens = B * T
    shape = f"mini {c.n_layer}x{c.n_embd}, batch {B}x{T}, {resolve('auto')}, {torch.get_num_threads()} threads"
    return [
        Result("masking overhead (75% sparse step time)", "dense", t["dense"], "sparse 0.75", t["sparse"], "s/step",
               higher_is_better=False, target=1.05, note=shape),
        Result("MDHA overhead (step time)", "no MDHA", t["dense"], "MDHA k=3", t["mdha"], "s/step",
               higher_is_better=False, target=1.15, note=shape),
        Result("ours vs HF GPT2LMHeadModel (tokens/s)", "HF GPT-2", tokens / t["hf"], "spdf GPT", tokens / t["dense"],
               "tok/s", higher_is_better=True, target=1.0, note=shape),
        Result("noise floor (identical dense models)", "dense", t["dense"], "dense copy", t["dense copy"], "s/step",
               higher_is_better=False, note=shape),
        *nano_results(),
    ]


def _nano_pair(t: dict, where: str, target: float | None) -> list[Result]:
    gflop, peak = t["step_gflop"], t["matmul_peak_gflops"]
    share = ", ".join(f"{k} {gflop / t[k] / peak:.0%}" for k in ("eager", "fast"))
    note = (f"nano 2x64 4x256, {t['capability']}, {t['precision']}, 1 thread; of the {peak:.0f} GFLOP/s matmul peak: "
            f"{share}")
    return [Result(f"nano step, fast vs eager ({where})", "eager", t["eager"], "fast", t["fast"], "s/step",
                   higher_is_better=False, target=target, note=note),
            Result(f"nano noise floor ({where})", "eager", t["eager"], "eager copy", t["eager copy"], "s/step",
                   higher_is_better=False, note=note)]


def nano_results() -> list[Result]:
    """The nano step on this CPU's kernels, then on AVX2 kernels (emulated in a child process if need be)."""
    torch.set_num_threads(1)  # as each of 2 sweep workers on 2 cores runs
    try:
        here = {**nano_step.context("fp32"), **nano_step.timed("fp32")}
    finally:
        torch.set_num_threads(THREADS)
    if here["capability"] == "AVX2":
        return _nano_pair(here, "AVX2", 1 / 1.5)
    return _nano_pair(here, here["capability"], None) + _nano_pair(nano_step.measure_avx2([]), "AVX2 emulated", 1 / 1.5)
