"""GPU training throughput at the papers' scale (issue 12), each side measured in the same run:

- model FLOPs utilisation (MFU) of `gpt2-small-2048` (context 2048, bf16 autocast, torch.compile, fused AdamW,
  flash attention): achieved training FLOPs/s (the kit's counter, dense) over the GPU's dense bf16 peak
  (target: at least 45% on an H100/H200-class GPU);
- the 75%-masked step against the dense step (target: at most 1.05x the time);
- the kit's GPT against Hugging Face's `GPT2LMHeadModel` of the same dimensions, both compiled (target: at
  least 1.2x the tokens/s);
- a GPT-3 XL slice (its width, 4 of its 24 layers, activation checkpointing) that fits one GPU: MFU and peak
  memory;
- end to end: token shards prepared from the offline Shakespeare corpus, then `spdf_pretrain` (gpt2-small-2048
  widths, context 512, compiled, flash attention) reading them for a few minutes: the validation loss must fall.

Without CUDA it says so and runs the same code on a tiny CPU configuration, which checks the path, not the
speed (no targets then).
"""

from __future__ import annotations

import time

import torch

from bench.common import Result, hf_gpt2_like, train_step_fn
from spdf_lib import flops
from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
from spdf_lib.sparsity import sparsify
from spdf_lib.sweep_cost import peak_flops


def _timed_steps(model, batch: torch.Tensor, steps: int, warmup: int, compile: bool, device: str,
                 checkpointing: bool = False) -> tuple[float, float]:
    """(seconds per optimizer step, peak memory in GiB) of `steps` training steps after `warmup` ones."""
    model.to(device).train()
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    cuda = device.startswith("cuda")
    # the kit's own step (spdf_lib.train_step): bf16 autocast, fast = compiled, flash attention on CUDA
    step = train_step_fn(model, batch, "bf16", fast=compile, device=device, sdpa_backend="flash" if cuda else "auto")

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    memory = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    model.to("cpu")  # frees the GPU for the next model (the optimizer state goes with this function's frame)
    return seconds, memory


def end_to_end(cuda: bool) -> Result:
    """Prepare shards, pre-train from them through the kit's runner, and compare the first and last eval loss."""
    import tempfile
    from pathlib import Path

    from spdf_lib.data.prepare import prepare_shards
    from spdf_lib.jsonio import read_jsonl
    from spdf_lib.pretrain import run_pretrain, tokenized_corpus, tokens_to_prepare
    from spdf_lib.pretrain_params import PretrainParams

    root = Path(tempfile.mkdtemp(prefix="spdf-gpu-check-"))
    tok = tokenized_corpus("shakespeare", 8192 if cuda else 512, 0, 2_000_000 if cuda else 300_000)[0]
    tok.save_pretrained(str(root / "tokenizer"))
    size = dict(model_size="gpt2-small-2048", seq_len=512, batch_size=64, micro_batch_size=16, compile=True,
                sdpa_backend="flash", lr=6e-4) if cuda else dict(model_size="nano", seq_len=64, batch_size=8, lr=2e-3)
    p = PretrainParams(corpus="shakespeare", tokenizer=str(root / "tokenizer"), shards=str(root / "shards"),
                       tokens=3e7 if cuda else 4e4, eval_every=20 if cuda else 5, eval_windows=16, progress=False,
                       **size)
    prepare_shards("shakespeare", str(root / "tokenizer"), tokens=tokens_to_prepare(p, 1_000_000),
                   out=root / "shards", shard_tokens=1_000_000, progress=False)
    res = run_pretrain(p, root / "run")
    evals = [r["eval_loss"] for r in read_jsonl(root / "run" / "metrics.jsonl") if "eval_loss" in r]
    return Result("end to end from shards: eval loss, first vs last", "first eval", evals[0], "last eval",
                  evals[-1], "nats", higher_is_better=False, target=0.9 if cuda else None,
                  note=f"{res['tokens']:.3g} tokens in {res['train_seconds']:.0f} s ({res['steps']} steps)")


def run() -> list[Result]:
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name() if cuda else "CPU (no GPU: a path check, not a measurement)"
    peak = peak_flops(name) if cuda else None
    if cuda:
        size, T, B, steps, warmup, V = "gpt2-small-2048", 2048, 8, 200, 20, 50257
        xl = dict(n_layer=4)  # a GPT-3 XL slice: full width, 4 of 24 layers
    else:
        size, T, B, steps, warmup, V = "nano", 128, 4, 3, 1, 512
        xl = dict(n_layer=1, n_embd=128, n_head=4, n_inner=512)
    print(f"   device: {name}; peak bf16 {peak / 1e12:.0f} TFLOP/s" if peak else f"   device: {name}")

    def model(sparsity: float = 0.0, base: str = size, **overrides) -> GPTForCausalLM:
        torch.manual_seed(0)
        m = GPTForCausalLM(gpt_config(base, vocab_size=V, n_positions=T, bos_token_id=0, eos_token_id=0,
                                      **overrides))
        if sparsity:
            sparsify(m, sparsity)
        return m

    batch = torch.randint(0, V, (B, T), device=device, generator=torch.Generator(device).manual_seed(0))
    dense = model()
    per_token = flops.training_flops_per_token(flops.shape_from_model(dense), T)
    t_dense, mem_dense = _timed_steps(dense, batch, steps, warmup, cuda, device)
    t_sparse, _ = _timed_steps(model(0.75), batch, steps, warmup, cuda, device)
    t_hf, _ = _timed_steps(hf_gpt2_like(dense.config, V, T), batch, steps, warmup, cuda, device)
    slice_model = model(base="gpt3-xl", **xl)
    xl_per_token = flops.training_flops_per_token(flops.shape_from_model(slice_model), T)
    t_xl, mem_xl = _timed_steps(slice_model, batch, max(1, steps // 4), warmup, cuda, device, checkpointing=True)

    tokens = B * T
    note = f"{name}; {size} batch {B}x{T}, bf16" + (", compiled, flash attention" if cuda else "")
    rows = [
        Result("masked 75% / dense step time", "dense", t_dense, "masked 0.75", t_sparse, "s/step",
               higher_is_better=False, target=1.05 if cuda else None, note=note),
        Result("ours vs HF GPT2LMHeadModel (tokens/s)", "HF GPT-2", tokens / t_hf, "spdf GPT", tokens / t_dense,
               "tok/s", higher_is_better=True, target=1.2 if cuda else None,
               note=f"peak memory, ours: {mem_dense:.1f} GiB"),
    ]
    if peak:
        rows += [
            Result(f"MFU {size}", "bf16 peak", peak, "achieved", per_token * tokens / t_dense, "FLOP/s",
                   higher_is_better=True, target=0.45, note=f"{tokens / t_dense:,.0f} tokens/s"),
            Result("MFU gpt3-xl slice (4 layers, act. ckpt)", "bf16 peak", peak, "achieved",
                   xl_per_token * tokens / t_xl, "FLOP/s", higher_is_better=True,
                   note=f"peak memory {mem_xl:.1f} GiB, {tokens / t_xl:,.0f} tokens/s"),
        ]
    return rows + [end_to_end(cuda)]
