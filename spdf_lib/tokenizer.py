"""Byte-level BPE tokenizer trained with HF `tokenizers` on the pre-training corpus.

Saved next to the model as a `PreTrainedTokenizerFast`, so `AutoTokenizer.from_pretrained(model_dir)` works.
Special tokens: `<|endoftext|>` (BOS/EOS, also the document separator of the packed stream), `<|pad|>`
(padding in fine-tuning batches) and `<|sep|>` (between a data-to-text input and its target). Training is
deterministic for a given corpus: BPE merges are chosen by count with deterministic tie-breaking, and the
optional character budget takes a seeded sample of documents.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from tokenizers import ByteLevelBPETokenizer
from transformers import PreTrainedTokenizerFast

EOS, PAD, SEP = "<|endoftext|>", "<|pad|>", "<|sep|>"
SPECIAL_TOKENS = [EOS, PAD, SEP]


def train_tokenizer(
    documents: list[str], vocab_size: int, seed: int = 0, max_chars: int | None = None
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of `vocab_size` tokens (specials and the 256 byte symbols included).

    `max_chars` caps the training text: documents are taken in a `seed`-shuffled order until the budget is met.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(
            f"vocab_size={vocab_size} is too small for a byte-level BPE (needs >= {256 + len(SPECIAL_TOKENS)})"
        )
    docs = list(documents)
    if max_chars is not None:
        random.Random(seed).shuffle(docs)
        taken, total = [], 0
        for d in docs:
            if total >= max_chars:
                break
            taken.append(d[: max_chars - total])
            total += len(taken[-1])
        docs = taken
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(docs, vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                            show_progress=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, pad_token=PAD, sep_token=SEP,
        model_max_length=1 << 30,
    )


def tokenizer_from_json(text: str) -> PreTrainedTokenizerFast:
    """A `PreTrainedTokenizerFast` from a `tokenizer.json` text (GPT-2's, say) with the kit's special tokens:
    `<|endoftext|>` as BOS/EOS, and `<|pad|>` and `<|sep|>` added at the end of the vocabulary when missing, so
    a model pre-trained with it can be fine-tuned on data-to-text pairs (its ids below stay what shards hold)."""
    from tokenizers import Tokenizer

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(text), bos_token=EOS, eos_token=EOS,
                                  model_max_length=1 << 30)
    tok.add_special_tokens({"pad_token": PAD, "sep_token": SEP})
    return tok


def tokenizer_fingerprint(tok: PreTrainedTokenizerFast) -> str:
    """A short hash of the vocabulary and merges: two checkpoints can share data only if this matches."""
    return hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest()[:16]


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(str(path))
