"""A small pre-training run used by test_train.py as a subprocess (killed mid-way, or under torchrun).

Usage: python tests/train_worker.py OUT_DIR MAX_STEPS CHECKPOINT_EVERY PRECISION DROPOUT [probe]
Writes OUT_DIR/final.safetensors (rank 0) and OUT_DIR/metrics.jsonl; with `probe`, each rank also writes the
first dropout mask it drew to OUT_DIR/dropout-rank<r>.pt.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from spdf_lib.checkpoints import unique_state_dict
from spdf_lib.data.streams import PackedStream
from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
from spdf_lib.pretrain import tokenized_corpus
from spdf_lib.records import Run
from spdf_lib.sparsity import sparsify
from spdf_lib.train import TrainConfig, train


def main() -> None:
    out, max_steps, every, precision = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    dropout = float(sys.argv[5])
    torch.set_num_threads(1)
    tok, train_ids, val_ids, _ = tokenized_corpus("shakespeare", 512, seed=0, max_chars=300_000)
    torch.manual_seed(0)
    model = GPTForCausalLM(gpt_config("micro", vocab_size=len(tok), n_positions=64, dropout=dropout))
    sparsify(model, 0.5, seed=0)
    rank = int(os.environ.get("RANK", "0"))
    if sys.argv[6:] == ["probe"]:
        drop = next(m for m in model.modules() if isinstance(m, torch.nn.Dropout))
        drop.register_forward_hook(lambda mod, inp, output: None if (out / f"dropout-rank{rank}.pt").exists() else
                                   torch.save(output == 0, out / f"dropout-rank{rank}.pt"))
    cfg = TrainConfig(max_steps=max_steps, batch_size=8, micro_batch_size=2, lr=3e-3, warmup_steps=2,
                      checkpoint_every=every, precision=precision, log_every=1, progress=False, seed=0)
    run = Run(out, "test", {}, 0) if rank == 0 else None
    train(model, PackedStream(train_ids, val_ids, 64, seed=0, eval_windows=4), cfg, out_dir=out, run=run)
    if rank == 0:
        save_file(unique_state_dict(model), str(out / "final.safetensors"))


if __name__ == "__main__":
    main()
