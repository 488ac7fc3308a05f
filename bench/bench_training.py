"""Training-step speed of the kit's GPT (CPU, at the precision `auto` resolves to here), each against its baseline in
the same run:

- masking overhead: a 75%-sparse `mini` step vs the dense step (target: at most 1.05x the time);
- MDHA overhead: `mini` with multi-dconv-head attention vs without (target: at most 1.15x the time; the Primer
  paper saw 6–14% fewer steps per second at 35M on its hardware);
- our GPT vs Hugging Face `GPT2LMHeadModel` of the same dimensions (sdpa attention, same batch): tokens per
  second of each (target: ours at least as fast);
- a noise floor: the dense step against an identical second copy of it (no target; read the other ratios
  against its distance from 1).
"""

from __future__ import annotations

import torch

from bench.common import Result, hf_gpt2_like, interleaved_median
from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
from spdf_lib.precision import resolve
from spdf_lib.sparsity import sparsify
from spdf_lib.train import TrainConfig, autocast_factory, make_optimizer

B, T, V = 16, 256, 2048


def _step_fn(model: torch.nn.Module, batch: torch.Tensor):
    model.train()
    opt = make_optimizer(model, TrainConfig(max_steps=1, lr=1e-4), "cpu")

    autocast = autocast_factory("cpu", "auto")

    def step() -> None:
        with autocast():
            logits = model(input_ids=batch).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _gpt(**overrides) -> GPTForCausalLM:
    torch.manual_seed(0)
    return GPTForCausalLM(gpt_config("mini", vocab_size=V, n_positions=T, **overrides))


def run() -> list[Result]:
    batch = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(0))
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
    ]
