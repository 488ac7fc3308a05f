"""Step time of HF Trainer with `spdf_lib.hf.SPDFCallback` against plain HF Trainer, on CPU, same model and batch.

Both sides train a 75%-sparse copy of the same Llama-architecture model (SmolLM2's head layout, 4 layers, 144
wide; `spdf_lib.spdf.hf_run.smollm2_scaled`) for `STEPS` steps of batch 8 × 128 in fp32; the callback adds the
`keep_zeros` step post-hook (weights and AdamW moments re-masked) and the FLOP-counting forward hook. Target: at
most 1.05x the time. Noise floor: plain Trainer against an identical second plain Trainer (no target).
"""

from __future__ import annotations

import logging
import types

import torch
import transformers as tr

from bench.common import Result, interleaved_median
from spdf_lib.hf import SPDFCallback
from spdf_lib.sparsity import sparsify

B, T, V, STEPS = 8, 128, 1024, 10


def _model():
    from spdf_lib.spdf.hf_run import smollm2_scaled

    p = types.SimpleNamespace(head_dim=16, n_layer=4, seq_len=T)
    torch.manual_seed(0)
    model = tr.AutoModelForCausalLM.from_config(smollm2_scaled(p, _Tok()))
    sparsify(model, 0.75)
    return model


class _Tok:
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __len__(self) -> int:
        return V


def _train_fn(callbacks: list, data):
    args = tr.TrainingArguments(output_dir="/tmp/spdf-bench-hf", max_steps=STEPS, per_device_train_batch_size=B,
                                learning_rate=1e-3, weight_decay=0.1, report_to=[], save_strategy="no",
                                logging_strategy="no", use_cpu=True, disable_tqdm=True, seed=0)
    trainer = tr.Trainer(_model(), args, train_dataset=data, callbacks=callbacks)
    return lambda: trainer.train()


def run() -> list[Result]:
    tr.logging.set_verbosity_error()
    logging.getLogger("spdf_lib.hf").setLevel(logging.ERROR)
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, V, (B, T), generator=gen)
    data = [{"input_ids": batch[i % B], "labels": batch[i % B]} for i in range(B * STEPS)]
    t = interleaved_median({"plain": _train_fn([], data), "callback": _train_fn([SPDFCallback()], data),
                            "plain copy": _train_fn([], data)}, repeats=7, warmup=1)
    per = {k: v / STEPS * 1e3 for k, v in t.items()}
    shape = f"Llama 4x144 (9/3 heads), 75% sparse, batch {B}x{T}, fp32, {torch.get_num_threads()} threads"
    return [
        Result("HF Trainer step: SPDFCallback vs plain", "plain", per["plain"], "callback", per["callback"], "ms",
               False, target=1.05, note=shape),
        Result("HF Trainer step: noise floor", "plain", per["plain"], "plain copy", per["plain copy"], "ms", False),
    ]
