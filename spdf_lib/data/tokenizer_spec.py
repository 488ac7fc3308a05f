"""What `--tokenizer gpt2|PATH` means for token shards: a `tokenizer.json` resolved to its text, vocabulary
size, EOS id and hash (which a shard set records and a model that trains on it must match).

`gpt2` is GPT-2's `tokenizer.json` (HF `openai-community/gpt2`, vocabulary 50257), pinned in the registry as
dataset `gpt2-tokenizer` and fetched like any data file (so `SPDF_DATA_MIRROR` and the cache apply); offline,
`SPDF_TOKENIZER_GPT2` names a local folder (or file) with it. A PATH is a local folder holding `tokenizer.json`
(a kit model folder, or one saved by `spdf_lib.tokenizer`) or such a file itself.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from spdf_lib.data.registry import DataError, dataset, fetch_file

GPT2_ENV = "SPDF_TOKENIZER_GPT2"
GPT2_VOCAB = 50257
EOS_TOKEN = "<|endoftext|>"



@dataclass
class TokenizerSpec:
    """A resolved `--tokenizer`: its name as given, the `tokenizer.json` text, and what the shards record."""

    name: str
    json: str
    vocab_size: int
    eos_id: int
    hash: str  # SHA-256 (16 hex) of the tokenizer.json text: shards and a model must agree on it


def _tokenizer_file(path: Path, what: str) -> Path:
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"{what}: {path} is neither a folder with tokenizer.json nor a tokenizer.json file "
                        f"(give a kit model folder, or one saved by spdf_lib.tokenizer)")
    return file


def _gpt2_file() -> Path:
    local = os.environ.get(GPT2_ENV)
    if local:
        return _tokenizer_file(Path(local).expanduser(), GPT2_ENV)
    try:
        return fetch_file(dataset("gpt2-tokenizer").files[0])
    except DataError as e:
        reason = str(e).split(";")[0]
        raise DataError(f"--tokenizer gpt2 needs GPT-2's tokenizer.json (HF openai-community/gpt2) and cannot get "
                        f"it ({reason}); offline, set {GPT2_ENV} to a folder holding GPT-2's tokenizer.json, or "
                        f"pass --tokenizer PATH") from None


def resolve_tokenizer(spec: str, eos: str = EOS_TOKEN) -> TokenizerSpec:
    """Resolve `--tokenizer gpt2|PATH` (see the module docstring); one-line `DataError` when it cannot."""
    from tokenizers import Tokenizer

    file = _gpt2_file() if spec == "gpt2" else _tokenizer_file(Path(spec).expanduser(), "--tokenizer")
    text = file.read_text(encoding="utf-8")
    try:
        tok = Tokenizer.from_str(text)
    except Exception as e:  # noqa: BLE001 (tokenizers raises plain Exception subclasses)
        raise DataError(f"{file} is not a HF tokenizers tokenizer.json ({e})") from None
    vocab = tok.get_vocab_size(with_added_tokens=True)
    if spec == "gpt2" and vocab != GPT2_VOCAB:
        raise DataError(f"{file} has {vocab} tokens, GPT-2's has {GPT2_VOCAB}; point {GPT2_ENV} at GPT-2's "
                        f"tokenizer.json")
    eos_id = tok.token_to_id(eos)
    if eos_id is None:
        raise DataError(f"{file} has no {eos!r} token to separate documents; pass --eos TOKEN")
    return TokenizerSpec(spec, text, vocab, eos_id, hashlib.sha256(text.encode()).hexdigest()[:16])
