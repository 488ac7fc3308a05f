"""Does `precision: auto` pick the faster arithmetic on this machine? One tiny pre-training step (the `tiny` preset's
micro GPT, batch 16x256, forward + backward + AdamW) in the precision `auto` chose against the other one, and the
probe's matmul figures beside it (`spdf_lib.precision`). Target: auto's step at most as slow as the other's.

On a CPU without native bf16 the bf16 side is many times slower (an AVX2 AMD EPYC: 8.5x), so it is timed with
few repeats.
"""

from __future__ import annotations

import torch

from bench.common import Result, interleaved_median
from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
from spdf_lib.precision import describe, resolve
from spdf_lib.train import TrainConfig, autocast_factory, make_optimizer, token_loss

B, T, V = 16, 256, 4096


def _step(precision: str):
    torch.manual_seed(0)
    model = GPTForCausalLM(gpt_config("micro", vocab_size=V, n_positions=T)).train()
    opt = make_optimizer(model, TrainConfig(max_steps=1), "cpu")
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(0))
    batch, autocast = {"input_ids": ids, "targets": ids}, autocast_factory("cpu", precision)

    def step() -> None:
        loss, _ = token_loss(model, batch, autocast)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def run() -> list[Result]:
    chosen = resolve("auto", "cpu")
    other = "fp32" if chosen == "bf16" else "bf16"
    t = interleaved_median({chosen: _step(chosen), other: _step(other)}, repeats=3, warmup=1)
    hw = describe("cpu")
    note = (f"{hw['cpu_model']} ({hw['capability']}), {torch.get_num_threads()} threads; probe: fp32 "
            f"{hw['probe']['fp32_gflops']:.1f}, bf16 {hw['probe']['bf16_gflops']:.1f} GFLOP/s")
    return [Result("auto's precision vs the other (step time)", other, t[other], f"auto = {chosen}", t[chosen],
                   "s/step", higher_is_better=False, target=1.0, note=note)]
