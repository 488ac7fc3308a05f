"""A small pre-training run on token shards, used by test_shards.py as a subprocess (alone or under torchrun).

Usage: python tests/shard_worker.py SHARD_DIR OUT_DIR MAX_STEPS
Writes OUT_DIR/final.safetensors and OUT_DIR/metrics.jsonl (rank 0), and OUT_DIR/windows-rank<R>.json: the
training windows this rank read.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from spdf_lib.checkpoints import unique_state_dict
from spdf_lib.data.shard_stream import ShardStream
from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
from spdf_lib.records import Run
from spdf_lib.train import TrainConfig, train


def run(shards: Path, out: Path, max_steps: int) -> None:
    """Train a tiny GPT for `max_steps` on the shards in `shards`; records in `out` (see the module docstring)."""
    rank = int(os.environ.get("RANK", "0"))
    data = ShardStream(shards, 32, seed=0, eval_windows=4)
    read: list = []
    collate = data.collate

    def logged_collate(examples: list) -> dict:
        read.extend(e for e in examples if e[0] == "train")
        return collate(examples)

    data.collate = logged_collate
    torch.manual_seed(0)
    model = GPTForCausalLM(gpt_config("nano", n_embd=32, n_head=4, vocab_size=data.set.vocab_size, n_positions=32))
    cfg = TrainConfig(max_steps=max_steps, batch_size=8, micro_batch_size=2, lr=3e-3, precision="fp32", log_every=1,
                      progress=False, seed=0)
    out.mkdir(parents=True, exist_ok=True)
    run = Run(out, "test", {}, 0) if rank == 0 else None
    train(model, data, cfg, out_dir=out, run=run)
    (out / f"windows-rank{rank}.json").write_text(json.dumps(read))
    if rank == 0:
        save_file(unique_state_dict(model), str(out / "final.safetensors"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
