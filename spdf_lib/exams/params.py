"""Parameters of the certification-exam evaluation (`params/exams/<preset>.yaml`, notebook `exams.ipynb`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from spdf_lib.params import Params


class ExamParams(Params):
    """Which model takes which exams, how it is scored, and the pass rule.

    Selection, by whole certifications: `certifications` (exact names) and `fields` (field ids from fields.yaml)
    filter the certifications; `sample_certifications` then keeps a `seed`-random sample of that many; `limit`
    keeps whole certifications, in that seeded order, up to at most `limit` scored questions (0 = no limit).

    Selection by question: `sample` keeps a `seed`-random sample of that many scorable questions (after the
    `certifications`/`fields` filters); `questions_file` names a text file with one data-row index a line (the
    0-based index of the row in certification_exams.csv, header not counted; `#` starts a comment), as other
    harnesses' fixed samples are given. Both usually split certifications: pass shares are then computed over
    the whole certifications only, and the output says so.

    Prompts (generation): `prompt_format` `chat` (the model's chat template, or the API's chat endpoint, with a
    system line stating the answer format), `plain` (base models), or `auto`: chat when the model has a chat
    template (every API model), plain otherwise.
    """

    model: str = "smollm2"  # `smollm2`, a save_pretrained folder, or (backend api) the served model's name
    backend: Literal["local", "api", "completions"] = "local"  # completions: served, scored by log-likelihood
    mode: Literal["loglik", "generate"] = "loglik"
    formulation: Literal["auto", "mcf", "cf", "hybrid", "best"] = "auto"  # auto: cf (local loglik), else mcf
    norm: Literal["none", "char", "token", "pmi"] = "char"  # cf/hybrid: option log-likelihood normalisation
    circular: bool = True  # CircularEval (mcf): also ask every rotation of the options
    pride: bool = True  # mcf log-likelihood: PriDe letter-prior debiasing, reported beside the plain scores
    pride_share: float = Field(0.05, gt=0, le=1)  # share of the questions that estimate the PriDe prior
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # local weights; auto: bfloat16 where native
    threads: int = Field(0, ge=0)  # torch CPU threads; 0 = torch's default
    batch_tokens: int = Field(2048, ge=64)  # padded tokens per log-likelihood batch
    max_new_tokens: int = Field(16, ge=1, le=512)  # generation mode
    prompt_format: Literal["auto", "chat", "plain"] = "auto"  # generation mode; auto: chat if there is a template
    # served models (backend api): requests at once, per-minute budgets (0: none), tries after a 429/5xx/timeout
    concurrency: int = Field(4, ge=1, le=256)
    rpm: float = Field(0, ge=0)
    tpm: float = Field(0, ge=0)
    retries: int = Field(3, ge=0, le=20)
    timeout: float = Field(60.0, gt=0)  # seconds per request
    # the plan (`spdf exam --plan`): a tokenizer to count a served model's tokens, prices per million tokens
    plan_tokenizer: str = ""  # smollm2 or a folder; empty: tokens of a served model are estimated
    price_in: float = Field(0, ge=0)
    price_out: float = Field(0, ge=0)

    certifications: list[str] = []
    fields: list[str] = []
    sample_certifications: int = Field(0, ge=0)
    limit: int = Field(0, ge=0)
    sample: int = Field(0, ge=0)  # a seed-random sample of this many questions (0: off)
    questions_file: str = ""  # one data-row index a line (0-based, header not counted)

    pass_threshold: float = Field(0.7, gt=0, le=1)
    pass_rule: Literal[">", ">="] = ">"  # the paper: "over 70%"
    answer_count: Literal["key", "stated"] = "key"  # letters to give: the key's size, or the stem's "choose two"

    data_file: str = ""  # empty: the registry's verified certify/certification_exams.csv
    fields_file: str = ""  # empty: spdf_lib/exams/fields.yaml

    @model_validator(mode="after")
    def _check(self) -> ExamParams:
        if not self.model.strip():
            raise ValueError("model must name a model (smollm2, a folder, or a served model)")
        if self.formulation in ("cf", "hybrid", "best") and self.mode != "loglik":
            raise ValueError(f"formulation {self.formulation} scores option log-likelihoods: set mode=loglik "
                             f"(generation answers in letters: formulation mcf)")
        if self.backend == "api" and self.mode != "generate":
            raise ValueError("backend api can only generate: set mode=generate")
        if self.backend == "completions" and self.mode != "loglik":
            raise ValueError("backend completions scores log-likelihoods: set mode=loglik (backend api generates)")
        if self.backend == "api" and self.prompt_format == "plain":
            raise ValueError("backend api sends chat messages: set prompt_format=chat (or auto)")
        if self.questions_file:
            others = [k for k in ("certifications", "fields", "sample", "sample_certifications", "limit")
                      if getattr(self, k)]
            if others:
                raise ValueError(f"questions_file chooses the questions itself: set {', '.join(others)} to "
                                 f"empty/0 (the smoke preset sets limit: 8)")
        if self.sample and (self.limit or self.sample_certifications):
            raise ValueError("sample picks questions, limit/sample_certifications pick whole certifications: set "
                             "limit=0 and sample_certifications=0 to sample questions")
        return self

    @property
    def resolved_formulation(self) -> str:
        """`auto` made concrete: `cf` for local log-likelihood scoring, `mcf` otherwise."""
        if self.formulation != "auto":
            return self.formulation
        return "cf" if self.backend in ("local", "completions") and self.mode == "loglik" else "mcf"
