"""Token shards on disk: fixed-size flat token files plus one small JSON index.

A shard set is a folder:

    index.json           what the set is (see below); rewritten atomically after every finished shard
    val.bin              the held-out validation tokens
    train-000000.bin     `shard_tokens` tokens each (the last one may be shorter), raw little-endian
    train-000001.bin     uint16 where every id fits in 16 bits (vocabulary <= 65536), else uint32
    ...

Each document's tokens are followed by the tokenizer's EOS id (the document separator), exactly as the
in-memory `PackedStream` joins documents. The files have no header: `numpy.memmap(path, dtype)` reads them, and
a reader touches only the pages of the windows it slices. `index.json` holds the format version, corpus,
tokenizer (name, vocabulary size, EOS id, hash of its `tokenizer.json`), dtype, shard size, per shard its token
count, SHA-256 and the stream positions where it starts and ends (`[file, document, token]` cursors, used to
resume and extend), the source files with their checksums, and whether the corpus is exhausted.

`ShardSet.from_arrays` is the in-memory adapter: the same object over tokens already in memory (the small CPU
corpora), so `ShardStream` (`spdf_lib.data.shard_stream`) reads both the same way.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spdf_lib.data.registry import DataError

INDEX = "index.json"
FORMAT = "spdf-shards/1"
VAL_FILE = "val.bin"


def dtype_for(vocab_size: int) -> np.dtype:
    """uint16 when every token id fits in 16 bits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def shard_name(i: int) -> str:
    return f"train-{i:06d}.bin"


@dataclass
class ShardInfo:
    """One token file of the set. `start`/`end`: the stream cursors `[file, document, token]` it spans."""

    file: str
    tokens: int
    sha256: str
    documents: int = 0  # documents that start in this shard
    start: list[int] = field(default_factory=lambda: [0, 0, 0])
    end: list[int] = field(default_factory=lambda: [0, 0, 0])


@dataclass
class ShardSet:
    """A prepared (or in-memory) token shard set; `ShardSet.load(folder)` reads one from disk."""

    corpus: str
    tokenizer: str  # "gpt2" or the local path given to `--tokenizer`
    tokenizer_hash: str
    vocab_size: int
    eos_id: int
    shard_tokens: int
    dtype: str = ""
    shards: list[ShardInfo] = field(default_factory=list)
    val: ShardInfo | None = None
    val_tokens_requested: int = 0
    train_start: list[int] = field(default_factory=lambda: [0, 0, 0])  # cursor of the first training document
    requested_tokens: int | None = None  # the largest `--tokens` asked for so far (None: the whole corpus)
    exhausted: bool = False  # the corpus has no tokens beyond the last shard
    sources: dict[str, str] = field(default_factory=dict)  # registry path -> checksum of every file read
    root: Path | None = None
    _arrays: dict[Any, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.dtype = self.dtype or dtype_for(self.vocab_size).name

    # --- sizes ------------------------------------------------------------------------------------------

    @property
    def train_tokens(self) -> int:
        """Training tokens in the set (all shards)."""
        return sum(s.tokens for s in self.shards)

    @property
    def val_tokens(self) -> int:
        return self.val.tokens if self.val else 0

    @property
    def nbytes(self) -> int:
        """Bytes on disk of the token files (train + validation)."""
        return (self.train_tokens + self.val_tokens) * np.dtype(self.dtype).itemsize

    def satisfies(self, tokens: int | None) -> bool:
        """Whether the set holds `tokens` training tokens (None: the whole corpus), or all the corpus has."""
        if tokens is None:
            return self.exhausted
        return self.train_tokens >= tokens or self.exhausted

    # --- reading ----------------------------------------------------------------------------------------

    def array(self, which: int | str) -> np.ndarray:
        """The tokens of shard `which` (an index) or of the validation split (`"val"`), memory-mapped read-only."""
        if which not in self._arrays:
            info = self.val if which == "val" else self.shards[which]
            if info is None:
                raise DataError(f"shard set {self.root} has no validation split")
            path = self.root / info.file
            if not path.is_file() or path.stat().st_size != info.tokens * np.dtype(self.dtype).itemsize:
                raise DataError(f"{path} is missing or has the wrong size for {info.tokens} tokens; run "
                                f"`spdf data prepare {self.corpus}` again to rewrite it")
            self._arrays[which] = np.memmap(path, dtype=self.dtype, mode="r", shape=(info.tokens,))
        return self._arrays[which]

    # --- on disk ----------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("root", "_arrays")}
        return {"format": FORMAT, **d, "train_tokens": self.train_tokens, "val_tokens": self.val_tokens,
                "separator": f"each document is followed by the EOS token (id {self.eos_id})"}

    def save(self) -> None:
        """Rewrite `index.json` atomically (the folder's files must already be complete)."""
        from spdf_lib.atomic import atomic_write_text

        atomic_write_text(self.root / INDEX, json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, root: str | Path) -> ShardSet:
        """The shard set in folder `root`; a one-line error when there is none."""
        root = Path(root)
        path = root / INDEX
        if not path.is_file():
            raise DataError(f"{root} holds no token shards (no {INDEX}); prepare them with `spdf data prepare "
                            f"CORPUS --tokenizer gpt2|PATH --tokens N --out {root}`")
        d = json.loads(path.read_text())
        if d.get("format") != FORMAT:
            raise DataError(f"{path}: format {d.get('format')!r}, this kit reads {FORMAT!r}; prepare the shards "
                            f"again into a new folder")
        for k in ("format", "train_tokens", "val_tokens", "separator"):
            d.pop(k, None)
        d["shards"] = [ShardInfo(**s) for s in d["shards"]]
        d["val"] = ShardInfo(**d["val"]) if d["val"] else None
        return cls(**d, root=root)

    @classmethod
    def from_arrays(cls, train_ids, val_ids, vocab_size: int, eos_id: int, corpus: str = "in-memory",
                    tokenizer_hash: str = "") -> ShardSet:
        """The in-memory adapter: one shard holding `train_ids` and a validation split holding `val_ids`
        (1-D integer arrays or tensors), read by `ShardStream` exactly like a prepared set."""
        dt = dtype_for(vocab_size)
        train = np.asarray(train_ids).astype(dt, copy=False)
        val = np.asarray(val_ids).astype(dt, copy=False)
        s = cls(corpus=corpus, tokenizer="in-memory", tokenizer_hash=tokenizer_hash, vocab_size=vocab_size,
                eos_id=eos_id, shard_tokens=len(train), exhausted=True,
                shards=[ShardInfo("<memory>", len(train), "")], val=ShardInfo("<memory>", len(val), ""))
        s._arrays = {0: train, "val": val}
        return s


def planned_shard_bytes(tokens: int, vocab_size: int, val_tokens: int = 0) -> int:
    """Disk bytes of a shard set of `tokens` training (+ `val_tokens` validation) tokens, for planners."""
    return (tokens + val_tokens) * dtype_for(vocab_size).itemsize


def shard_set_info(root: str | Path) -> dict[str, Any]:
    """A summary of the shard set in `root` for planners and epoch guards: corpus, tokenizer, token counts,
    bytes on disk, and whether it is complete (`exhausted`: it holds the whole corpus)."""
    s = ShardSet.load(root)
    return {"corpus": s.corpus, "tokenizer": s.tokenizer, "tokenizer_hash": s.tokenizer_hash,
            "vocab_size": s.vocab_size, "dtype": s.dtype, "train_tokens": s.train_tokens,
            "val_tokens": s.val_tokens, "shards": len(s.shards), "bytes": s.nbytes, "exhausted": s.exhausted,
            "requested_tokens": s.requested_tokens}
