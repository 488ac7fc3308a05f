"""Parameter schema of `spdf_hf`: SPDF on a Hugging Face Llama-architecture model with HF `Trainer`.

Torch-free on purpose (see `spdf_lib.params`).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from spdf_lib.params import Params
from spdf_lib.pretrain_params import known_corpus


class HFParams(Params):
    """SmolLM2's architecture scaled down, pre-trained dense and sparse with HF Trainer, then fine-tuned dense."""

    corpus: str = "shakespeare"  # pre-training corpus (spdf_lib.data.corpora)
    max_chars: int = Field(200_000, ge=1000)  # of the corpus the tokenizer is trained on
    vocab_size: int = Field(512, ge=64)
    n_layer: int = Field(2, ge=1)  # SmolLM2-135M: 30
    head_dim: int = Field(8, ge=2)  # SmolLM2-135M: 64 (9 query heads, 3 key/value heads kept)
    seq_len: int = Field(64, ge=8)
    sparsity: float = Field(0.75, ge=0, lt=1)
    steps: int = Field(30, ge=1)  # pre-training steps of each model
    batch_size: int = Field(8, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    eval_every: int = Field(10, ge=1)
    log_every: int = Field(5, ge=1)
    task: str = "webnlg"  # fine-tuning task (spdf_lib.data.tasks)
    finetune_examples: int = Field(96, ge=8)  # training examples (16 more are held out for the loss)
    finetune_steps: int = Field(15, ge=1)
    finetune_lr: float = Field(1e-3, gt=0)

    _corpus = field_validator("corpus")(classmethod(lambda cls, v: known_corpus(v)))
