"""spdf-kit: a reproducible study kit for SPDF (sparse pre-training, dense fine-tuning), Primer, and the
professional-certification exam study of LLM vocational skills.

Modules: `modeling_gpt` (the GPT family, Primer options), `sparsity` (static masks, densify), `flops`
(sparse-aware FLOP counter), `train` (the one training loop), `tokenizer`, `data` (registry, corpora, tasks),
`params` (typed parameters), `records` (run records), `experiments` (what each notebook runs), `cli` (`spdf`).
"""

__version__ = "0.1.0"
