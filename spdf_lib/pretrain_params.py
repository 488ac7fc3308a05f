"""Parameter schemas of generic GPT pre-training, shared by SPDF's `spdf_pretrain` and the Primer ablation.

`PretrainBase` carries the fields both papers' pre-training set (corpus, tokenizer, batch shape, schedule,
precision), each with its one validator; `PretrainParams` is one pre-training run (`spdf_lib.pretrain`). Torch-free
on purpose (see `spdf_lib.params`): a bad value is rejected before torch is imported.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from spdf_lib.model_sizes import ModelSize
from spdf_lib.params import Params

GPT2_VOCAB = 50257 + 2  # GPT-2's vocabulary with the kit's <|pad|> and <|sep|> added


def steps_for(tokens: float, batch_size: int, seq_len: int) -> int:
    """Optimiser steps of a token budget: steps = ceil(tokens / (batch_size · seq_len)), at least one."""
    return max(1, math.ceil(tokens / (batch_size * seq_len)))


def known_corpus(v: str) -> str:
    """`v` if every `+`-joined part is a corpus of `spdf_lib.data.corpora.CORPORA`."""
    from spdf_lib.data.corpora import CORPORA

    for part in v.split("+"):
        if part not in CORPORA:
            raise ValueError(f"unknown corpus {part!r}; choose one of {', '.join(CORPORA)} (combine with '+')")
    return v


def check_corpus_tokenizer(corpus: str, tokenizer: str, shards: str) -> None:
    """With a `tokenizer`, a run reads the corpus from token shards (`spdf data prepare`), which a streamed corpus
    must; without one it reads the corpus into memory and trains its own BPE."""
    from spdf_lib.data.corpora import corpus_spec

    parts = [corpus_spec(c) for c in corpus.split("+")]
    streamed = [s.dataset for s in parts if s.streamed]
    if (streamed or tokenizer) and len(parts) > 1:
        raise ValueError(f"corpus {corpus!r}: token shards hold one corpus; '+' joins in-memory corpora only")
    if streamed and not tokenizer:
        raise ValueError(f"corpus {corpus!r} is read from token shards: set tokenizer (gpt2, or a folder with "
                         f"tokenizer.json) as for `spdf data prepare {corpus} --tokenizer ...`")
    if shards and not tokenizer:
        raise ValueError("shards is set but tokenizer is not: name the tokenizer the shards were prepared with")


class PretrainBase(Params):
    """The fields every pre-training experiment shares (SPDF's runs, the Primer ablation's points)."""

    mdha_kernel: int = Field(3, ge=1)
    corpus: str = "shakespeare"  # a corpus of spdf_lib.data.corpora ('+' joins in-memory ones)
    tokenizer: str = ""  # read token shards made with this tokenizer (gpt2 or a folder); empty: in memory, own BPE
    shards: str = ""  # the prepared shard folder; empty: `spdf data prepare`'s default folder for the corpus
    vocab_size: int = Field(512, ge=259)  # of the BPE trained on an in-memory corpus
    tokenizer_max_chars: int | None = Field(None, ge=1000)
    seq_len: int = Field(64, ge=8)
    max_epochs: float = Field(1.0, gt=0)  # passes over the corpus the budget may take (the papers: one)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(6e-4, gt=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    eval_windows: int = Field(32, ge=1)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where native (spdf_lib.precision)
    device: str = "auto"
    progress: bool = True

    _corpus = field_validator("corpus")(classmethod(lambda cls, v: known_corpus(v)))

    @model_validator(mode="after")
    def _streamed_corpus_has_a_tokenizer(self) -> PretrainBase:
        check_corpus_tokenizer(self.corpus, self.tokenizer, self.shards)
        return self

    @property
    def model_vocab(self) -> int:
        """The vocabulary of the model: GPT-2's (plus the kit's two specials) or the trained BPE's."""
        return GPT2_VOCAB if self.tokenizer == "gpt2" else self.vocab_size


class PretrainParams(PretrainBase):
    """One pre-training run (SPDF §3, sparse or dense), also a Primer variant (`activation`, `mdha`)."""

    model_size: ModelSize = "nano"
    n_layer: int | None = Field(None, ge=1)  # overrides of the named size
    n_embd: int | None = Field(None, ge=8)
    n_head: int | None = Field(None, ge=1)
    activation: Literal["gelu", "relu2"] = "gelu"
    mdha: bool = False
    tokens: float = Field(20_000, gt=0)  # token budget; steps = steps_for(tokens, batch_size, seq_len)
    micro_batch_size: int | None = Field(None, ge=1)
    matrix_lr_scale: float = Field(1.0, gt=0)  # the blocks' matrices train at lr × this (spdf_lib.train.TrainConfig)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.1, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    sparsity: float = Field(0.0, ge=0, lt=1)
    mask_init: Literal["random", "topk"] = "random"
    sparsity_distribution: Literal["uniform", "erk"] = "uniform"
    sparsity_targets: list[str] | None = None  # regexes over parameter names; None: the six SPDF matrices
    compile: bool = False  # torch.compile the training steps (GPU)
    activation_checkpointing: bool = False  # recompute activations in backward (fits GPT-3 XL on one GPU)
    sdpa_backend: Literal["auto", "flash", "efficient", "math"] = "auto"  # force an attention kernel
    eval_every: int = Field(0, ge=0)
    log_every: int = Field(10, ge=1)
    diagnostics: bool = False  # log update/weight ratios per parameter group (and the gradient norm, always)
    checkpoint_every: int = Field(0, ge=0)

    @property
    def steps(self) -> int:
        """The optimiser steps of this run's token budget."""
        return steps_for(self.tokens, self.batch_size, self.seq_len)
