"""Two-process torchrun (gloo) worker for test_hf_ddp.py: a tiny Llama, sparsified on each rank with the same
seed, trained under DDP with AdamW (weight decay 0.1) and `keep_zeros` on rank-specific data.

Usage: torchrun --nproc-per-node 2 tests/hf_ddp_worker.py OUT_DIR
Writes OUT_DIR/rank<r>.pt: the masks, the final weights, and the non-zero counts at masked positions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from hf_fixtures import tiny_hf  # noqa: E402

from spdf_lib.sparsity import get_masks, keep_zeros, sparsify  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = tiny_hf("llama")
    sparsify(model, 0.75, seed=0)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(ddp.parameters(), lr=1e-2, weight_decay=0.1)
    keep_zeros(opt, ddp)
    gen = torch.Generator().manual_seed(100 + rank)
    for _ in range(8):
        x = torch.randint(3, 90, (2, 16), generator=gen)
        ddp(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    masks = get_masks(model)
    revived = sum(int((model.get_parameter(n)[~m] != 0).sum())
                  + int((opt.state[model.get_parameter(n)]["exp_avg"][~m] != 0).sum()) for n, m in masks.items())
    torch.save({"masks": masks, "state": model.state_dict(), "revived": revived}, out / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
