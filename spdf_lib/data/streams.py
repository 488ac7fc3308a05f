"""Training data sources for the one training loop (`spdf_lib.train.TrainData`): what a step trains on.

- `PackedStream`: pre-training windows of one concatenated token stream held in memory (the CPU presets).
- `PairData`: fine-tuning (prompt, target) pairs, with the loss on the target only.

Every source draws a step's examples as a pure function of (seed, step), so a resumed run sees exactly the
batches it would have seen, and DDP ranks split one global batch.

A batch is `{"input_ids", "targets"}`, both (B, T): `targets[b, t]` is the token that should follow position t
(already shifted, as nanoGPT's y), or `IGNORE` where no loss is taken (prompts, padding). A pre-training window
is therefore `seq_len + 1` tokens: `seq_len` inputs and `seq_len` next-token targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

IGNORE = -100  # label of a position that carries no loss


def step_generator(seed: int, index: int) -> torch.Generator:
    """A generator that depends only on (seed, index): batches need no RNG state to resume."""
    return torch.Generator().manual_seed((seed * 1_000_003 + index) % (1 << 63))


class PackedStream:
    """Pre-training data: windows of `seq_len + 1` tokens at random offsets of one concatenated token stream.

    `train_ids`/`val_ids` are 1-D token tensors (documents joined by EOS). Eval uses `eval_windows` windows at
    evenly spaced offsets of the validation stream.
    """

    def __init__(self, train_ids: torch.Tensor, val_ids: torch.Tensor, seq_len: int, seed: int = 0,
                 eval_windows: int = 32):
        if len(train_ids) <= seq_len + 1:
            raise ValueError(f"training stream has {len(train_ids)} tokens, fewer than seq_len + 2 = {seq_len + 2}")
        if len(val_ids) <= seq_len + 1:
            raise ValueError(f"validation stream has {len(val_ids)} tokens, fewer than seq_len + 2 = {seq_len + 2}")
        self.train_ids, self.val_ids, self.seq_len, self.seed = train_ids.long(), val_ids.long(), seq_len, seed
        last = len(val_ids) - seq_len - 1
        n = min(eval_windows, last)
        self._eval = [("val", int(i * last / n)) for i in range(n)]

    def examples(self, step: int, n: int) -> list:
        starts = torch.randint(
            0, len(self.train_ids) - self.seq_len - 1, (n,), generator=step_generator(self.seed, step)
        )
        return [("train", int(s)) for s in starts]

    def eval_examples(self) -> list:
        return self._eval

    def collate(self, examples: list) -> dict[str, torch.Tensor]:
        windows = torch.stack([
            (self.train_ids if split == "train" else self.val_ids)[s : s + self.seq_len + 1] for split, s in examples
        ])
        return {"input_ids": windows[:, :-1], "targets": windows[:, 1:]}


class PairData:
    """Fine-tuning data: (prompt ids, target ids) pairs; the loss is on the target only.

    Each sequence is prompt + target (the target should end with EOS), right-padded; pairs from
    `spdf_lib.data.tasks.encode_pair` fit `max_len` already, and a longer one is an error. Epochs are shuffled
    with a generator seeded by (seed, epoch).
    """

    def __init__(self, train: Sequence[tuple[list[int], list[int]]], eval: Sequence[tuple[list[int], list[int]]],
                 pad_id: int, max_len: int, seed: int = 0):
        if not train:
            raise ValueError("fine-tuning set is empty")
        if too_long := next((len(p) + len(t) for p, t in [*train, *eval] if len(p) + len(t) > max_len), None):
            raise ValueError(f"a (prompt, target) pair has {too_long} tokens, more than max_len={max_len}; encode "
                             f"pairs with spdf_lib.data.tasks.encode_pair(..., max_len)")
        self.train, self.eval, self.pad_id, self.max_len, self.seed = list(train), list(eval), pad_id, max_len, seed
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(len(self.train), generator=step_generator(self.seed, epoch))}
        return self._perms[epoch]

    def examples(self, step: int, n: int) -> list:
        out = []
        for i in range(step * n, (step + 1) * n):
            epoch, j = divmod(i, len(self.train))
            out.append(self.train[int(self._perm(epoch)[j])])
        return out

    def eval_examples(self) -> list:
        return self.eval

    def collate(self, examples: list) -> dict[str, torch.Tensor]:
        seqs, labels = [], []
        for prompt, target in examples:
            seqs.append(prompt + target)
            labels.append([IGNORE] * len(prompt) + target)
        T = max(map(len, seqs))
        ids = torch.full((len(seqs), T), self.pad_id, dtype=torch.long)
        targets = torch.full((len(seqs), T), IGNORE, dtype=torch.long)
        for i, (s, lb) in enumerate(zip(seqs, labels, strict=True)):
            ids[i, : len(s)] = torch.tensor(s)
            targets[i, : len(lb) - 1] = torch.tensor(lb[1:])  # position t predicts token t + 1
        # Right padding needs no attention mask: under the causal mask no real token sees a pad.
        return {"input_ids": ids, "targets": targets}
