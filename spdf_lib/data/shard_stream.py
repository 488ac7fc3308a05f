"""`ShardStream`: pre-training data for `spdf_lib.train.train` read from token shards.

It implements the training loop's `TrainData` protocol as `PackedStream` does (cheap descriptors from
`examples(step, n)`, windows of `seq_len + 1` tokens from `collate`: `seq_len` inputs and their `seq_len`
next-token targets), but reads memory-mapped shards, so memory stays flat in corpus size: a step touches only
the pages of its windows.

Which windows a step sees: each shard is cut into windows of `seq_len + 1` tokens that start every `seq_len`
tokens (consecutive windows share one token, so every token but a shard's first is predicted once per epoch; a
shard's tail shorter than a window is not used). One epoch visits every window exactly once: the shards in an order
shuffled per epoch, and within a shard its windows in an order shuffled per (epoch, shard). Global example `i` is a pure
function of (seed, i), and step `s` takes examples `s·n … s·n + n − 1`, so:

- a resumed run sees exactly the windows it would have seen (no sampler state to save);
- under DDP, `train()` gives rank r the examples `r, r + world, …` of the step's global batch, so the ranks read
  disjoint windows and together read what one process reads;
- `tokens_per_epoch` says how many tokens one pass over the set is, for an epoch guard.

Shuffling within a shard (not across the whole corpus) keeps the permutation small (one shard's windows) and the
reads local, as llm.c does with FineWeb shards; shards are large, contiguous slices of an already shuffled corpus.

Small in-memory corpora use the same class through `ShardSet.from_arrays(train_ids, val_ids, ...)`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spdf_lib.data.shards import ShardSet


class ShardStream:
    """Windows of `seq_len` tokens from a shard set (a folder, or a `ShardSet`); see the module docstring.

    Eval uses `eval_windows` windows at evenly spaced offsets of the validation split."""

    def __init__(self, shards: ShardSet | str | Path, seq_len: int, seed: int = 0, eval_windows: int = 32):
        self.set = shards if isinstance(shards, ShardSet) else ShardSet.load(shards)
        self.seq_len, self.seed = seq_len, seed
        self.windows = np.array([max(0, s.tokens - 1) // seq_len for s in self.set.shards], dtype=np.int64)
        if self.windows.sum() == 0:
            raise ValueError(f"shard set {self.set.root} has {self.set.train_tokens} training tokens, fewer than "
                             f"one window of seq_len + 1 = {seq_len + 1}")
        if self.set.val_tokens <= seq_len + 1:
            raise ValueError(f"shard set {self.set.root} has {self.set.val_tokens} validation tokens, not more "
                             f"than seq_len + 1 = {seq_len + 1}")
        last = self.set.val_tokens - seq_len - 1
        n = min(eval_windows, last)
        self._eval = [("val", 0, int(i * last / n)) for i in range(n)]
        self._epoch_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    @property
    def windows_per_epoch(self) -> int:
        return int(self.windows.sum())

    @property
    def tokens_per_epoch(self) -> int:
        """Tokens that one pass over the set trains on (windows × seq_len inputs, each with its next token)."""
        return self.windows_per_epoch * self.seq_len

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(shard order, cumulative window counts in that order) of `epoch`."""
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            order = self._rng(epoch).permutation(len(self.windows))
            self._epoch_cache = (epoch, order, np.cumsum(self.windows[order]))
        return self._epoch_cache[1], self._epoch_cache[2]

    def _perm(self, epoch: int, shard: int) -> np.ndarray:
        key = (epoch, shard)
        if key not in self._perm_cache:
            if len(self._perm_cache) > 4:  # a step spans at most a few shards: keep memory at a few shards' worth
                self._perm_cache.clear()
            self._perm_cache[key] = self._rng(epoch, shard + 1).permutation(int(self.windows[shard]))
        return self._perm_cache[key]

    def window(self, index: int) -> tuple[int, int]:
        """(shard, token offset) of global example `index` (a pure function of seed and index)."""
        epoch, i = divmod(index, self.windows_per_epoch)
        order, cum = self._epoch(epoch)
        k = int(np.searchsorted(cum, i, side="right"))
        shard = int(order[k])
        local = i - (int(cum[k - 1]) if k else 0)
        return shard, int(self._perm(epoch, shard)[local]) * self.seq_len

    def examples(self, step: int, n: int) -> list:
        return [("train", *self.window(i)) for i in range(step * n, (step + 1) * n)]

    def eval_examples(self) -> list:
        return self._eval

    def collate(self, examples: list) -> dict[str, torch.Tensor]:
        rows = [np.asarray(self.set.array("val" if split == "val" else shard)[off : off + self.seq_len + 1],
                           dtype=np.int64) for split, shard, off in examples]
        windows = torch.from_numpy(np.stack(rows))
        return {"input_ids": windows[:, :-1], "targets": windows[:, 1:]}
