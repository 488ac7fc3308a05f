"""Parameter schema of the Primer ablation (`primer`), and the variants it compares. Torch-free."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from spdf_lib.params import Params
from spdf_lib.spdf.params import ModelSize, check_corpus_tokenizer, known_corpus

# Primer-EZ (So et al. 2021, §3) = squared ReLU + multi-dconv-head attention, each also alone.
VARIANTS: dict[str, dict] = {
    "baseline": {"activation": "gelu", "mdha": False},
    "relu2": {"activation": "relu2", "mdha": False},
    "mdha": {"activation": "gelu", "mdha": True},
    "primer-ez": {"activation": "relu2", "mdha": True},
}
Variant = Literal["baseline", "relu2", "mdha", "primer-ez"]


class PrimerParams(Params):
    """The Primer ablation: every variant at every size and seed, same data and token budget per size."""

    sizes: list[ModelSize] = ["nano"]
    variants: list[Variant] = ["baseline", "relu2", "mdha", "primer-ez"]
    seeds: list[int] = [0]
    tokens_per_param: float = Field(20.0, gt=0)  # token budget per (non-embedding + embedding) parameter
    min_tokens: float = Field(20_000, gt=0)
    max_epochs: float = Field(1.0, gt=0)  # passes over the corpus a point's budget may take
    corpus: str = "shakespeare"
    tokenizer: str = ""  # streamed corpora: gpt2 or a tokenizer folder (see spdf_lib.spdf.params.PretrainParams)
    shards: str = ""  # streamed corpora: the prepared shard folder
    vocab_size: int = Field(512, ge=259)
    tokenizer_max_chars: int | None = Field(None, ge=1000)
    seq_len: int = Field(64, ge=8)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(2e-3, gt=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    mdha_kernel: int = Field(3, ge=1)
    eval_points: int = Field(8, ge=2)  # validation evaluations per run (the speedup reads these)
    eval_windows: int = Field(16, ge=1)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where native (spdf_lib.precision)
    device: str = "auto"
    progress: bool = True

    _corpus = field_validator("corpus")(classmethod(lambda cls, v: known_corpus(v)))

    @model_validator(mode="after")
    def _streamed_corpus_has_a_tokenizer(self) -> PrimerParams:
        check_corpus_tokenizer(self.corpus, self.tokenizer, self.shards)
        return self
