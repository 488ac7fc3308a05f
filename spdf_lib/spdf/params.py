"""Parameter schemas of the SPDF experiments `spdf_finetune` and `flops` (`spdf_pretrain`'s is the core's
`spdf_lib.pretrain_params.PretrainParams`).

Torch-free on purpose (see `spdf_lib.params`): `spdf run` rejects a bad value before torch is imported.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from spdf_lib.model_sizes import ModelSize
from spdf_lib.params import Params


class FinetuneParams(Params):
    """Fine-tuning a pre-trained checkpoint on a data-to-text task, then decoding and scoring (SPDF §4).

    `checkpoint` names the `model` folder of a `spdf_pretrain` run. `pretrain:<preset>` (e.g. `pretrain:smoke`)
    instead pre-trains a model with `params/spdf_pretrain/<preset>.yaml` into `<run_dir>/pretrain` first; this
    is what the smoke preset does, so that the notebook runs on its own. `best:<folder>,<folder>,...` takes, of
    several pre-trained model folders (a learning-rate sweep), the one with the lowest pre-training validation
    loss, and records the choice. Empty is an error, in the notebook and under `python -m spdf_lib.experiments` /
    `torchrun` alike.

    Convergence: `val_inputs` inputs of the training split are held out (never trained on); every `eval_every`
    steps the model greedy-decodes them and `stop_metric` is read (BLEU, the task check, or the loss on their
    references). With `patience` > 0, fine-tuning stops after that many evaluations without improvement, at most
    after `epochs` epochs, and the best model is kept (and saved) — the early-stopping rule of the papers'
    fine-tuning recipes.
    """

    checkpoint: str = ""
    mode: Literal["dense", "sparse", "scratch"] = (
        "dense"  # dense = SPDF; sparse = masks kept; scratch = no pre-training
    )
    task: Literal["e2e", "webnlg", "dart", "curation"] = "webnlg"
    setup: Literal["offline", "paper"] = "offline"  # which splits (see spdf_lib.data.tasks); offline = mirror files
    articles: str = ""  # curation: the folder of a Curation Corpus fetch; empty: `spdf data fetch`'s default
    split_seed: int = Field(0, ge=0)  # curation: the seed of the URL hash that splits the corpus
    train_split: str | None = None  # override the setup's training split
    eval_split: str | None = None  # override the setup's evaluation split
    train_fraction: float = Field(1.0, gt=0, le=1)  # of the training inputs (each with all its references)
    max_train_pairs: int | None = Field(None, ge=1)  # then at most this many (input, reference) pairs
    subset_seed: int = 0  # which inputs a fraction keeps (fixed across modes and seeds)
    max_eval_examples: int | None = Field(None, ge=1)  # evaluate on the first N inputs of the eval split
    e2e_delex: list[Literal["name", "near", "eatType", "food"]] = []  # E2E only: slots replaced by placeholders
    # (spdf_lib.spdf.delex; TGen: name, near); the other tasks have no slots and ignore it
    epochs: float = Field(1.0, gt=0)  # the most epochs (early stopping may end sooner)
    val_inputs: int = Field(0, ge=0)  # training-split inputs held out for validation (0: none, no early stopping)
    eval_every: int = Field(0, ge=0)  # steps between validations; 0: once per epoch
    stop_metric: Literal["val_bleu", "val_check", "val_loss"] = "val_bleu"  # what early stopping watches
    patience: int = Field(0, ge=0)  # validations without improvement before stopping; 0: train all epochs
    min_epochs: float = Field(0.0, ge=0)  # never stop before this many epochs (a slow start is not convergence)
    batch_size: int = Field(16, ge=1)
    micro_batch_size: int | None = Field(None, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_len: int = Field(128, ge=8)  # tokens of source + target
    num_beams: int = Field(1, ge=1)
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = Field(0, ge=0)
    max_new_tokens: int = Field(64, ge=1)
    decode_batch_size: int = Field(32, ge=1)
    # decode the test inputs a second time with this many beams (1: greedy) and score it beside (0: no): does the
    # decoding change a conclusion?
    second_num_beams: int = Field(0, ge=0)
    metrics: list[Literal["bleu", "chrf++", "ter", "rouge_l", "nist", "meteor", "cider", "rouge1", "rouge2",
                          "rougeL"]] = [
        "bleu", "chrf++", "ter", "rouge_l", "nist", "meteor", "cider"]
    metric_workers: int = Field(1, ge=1)
    save_model: bool = True  # save the fine-tuned model and tokenizer into <run_dir>/model (from_pretrained)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where native (spdf_lib.precision)
    log_every: int = Field(10, ge=1)
    device: str = "auto"
    progress: bool = True

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint_given(cls, v: str) -> str:
        if not v.strip() or v.strip() == "best:":
            raise ValueError("is empty: name the `model` folder of a spdf_pretrain run (runs/.../model), or "
                             "'pretrain:smoke' to pre-train a seconds-long model first")
        return v

    def skip_reason(self) -> str | None:
        """Why this run cannot start on this machine (a sweep leaves it out, saying so), or None: a curation run
        that reads the default fetch folder while nothing was fetched there (offline, where the corpus's
        article bodies cannot be had)."""
        if self.task != "curation" or self.articles:
            return None
        from spdf_lib.data.curation import articles_dir

        if (articles_dir() / "manifest.json").is_file():
            return None
        return (f"task curation needs the Curation Corpus article bodies, fetched from the web by `spdf data fetch "
                f"curation-corpus` (none in {articles_dir()}: offline, they cannot be had)")

    @model_validator(mode="after")
    def _early_stopping_needs_validation(self) -> FinetuneParams:
        if self.patience and not self.val_inputs:
            raise ValueError("patience > 0 needs held-out validation inputs: set val_inputs (e.g. 40)")
        return self


class FlopsParams(Params):
    """Paper-scale FLOP tables and the reduction-vs-sparsity figure."""

    sizes: list[ModelSize] = ["nano", "micro", "mini", "small", "gpt2-small", "gpt3-xl"]
    sparsities: list[float] = [0.0, 0.5, 0.75, 0.875]
    convention: str = "spdf"  # a FLOP convention of spdf_lib.flops.CONVENTIONS

    @field_validator("convention")
    @classmethod
    def _known_convention(cls, v: str) -> str:
        from spdf_lib.flops import CONVENTIONS

        if v not in CONVENTIONS:
            raise ValueError(f"unknown FLOP convention {v!r}; choose one of {', '.join(CONVENTIONS)}")
        return v

    @field_validator("sparsities")
    @classmethod
    def _in_range(cls, v: list[float]) -> list[float]:
        for s in v:
            if not 0 <= s < 1:
                raise ValueError(f"every sparsity must be in [0, 1), got {s}")
        return v
