"""The memory estimate that prices a run before compute (`spdf_lib.memory`) against a measured peak: one AdamW
step of `nano` at fp32 in a fresh process, its peak RSS growth (`ru_maxrss`) as the baseline, the estimate as the
candidate. `REFUSE_AT` (3/4) must stay below the measured/estimate ratio, or the check would refuse runs that fit."""

from __future__ import annotations

import subprocess
import sys

from bench.common import Result

_STEP = """
import resource, sys, torch
from spdf_lib.memory import training_peak_bytes
from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
torch.set_num_threads(1)
b, T, V = int(sys.argv[1]), 64, 512
cfg = gpt_config("nano", vocab_size=V)
m = GPTForCausalLM(cfg); opt = torch.optim.AdamW(m.parameters())
x = torch.randint(0, V, (b, T))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
m(input_ids=x, labels=x).loss.backward(); opt.step()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(peak - base, training_peak_bytes(cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_inner or 4 * cfg.n_embd, V,
                                       cfg.n_positions, T, b, 4))
"""


def run() -> list[Result]:
    out = []
    for batch in (256, 1024):
        measured, estimate = map(int, subprocess.run([sys.executable, "-c", _STEP, str(batch)], check=True,
                                                     capture_output=True, text=True).stdout.split())
        out.append(Result(f"memory estimate, nano fp32, micro-batch {batch}", "measured peak RSS growth",
                          measured / 2**20, "estimate", estimate / 2**20, "MiB", higher_is_better=False,
                          note="the check refuses at 3/4 of the estimate: measured/estimate must stay above 0.75"))
    return out
