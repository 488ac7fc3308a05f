"""spdf-kit: a reproducible study kit for SPDF (sparse pre-training, dense fine-tuning), Primer, and the
professional-certification exam study of LLM vocational skills.

Modules: `modeling_gpt` (the GPT family, Primer options), `sparsity` (static masks, densify, keep_zeros, on any
model), `adapters` (where each architecture keeps SPDF's matrices), `masks` (mask storage and the step hook),
`hf` (HF Trainer callback, Primer-EZ on HF models), `flops` (sparse-aware FLOP counter, HF configs too), `train`
(the one training loop), `train_step` (its one optimisation step, eager or compiled), `machine_load` (how busy
the cores are while timing), `tokenizer`, `data` (registry, corpora, tasks),
`params` (typed parameters), `records` (run records), `experiments` (what each notebook runs), `cli` (`spdf`).
"""

import os

# GNU OpenMP's default busy-waiting makes torch's CPU threads spin against each other (and against notebook
# kernels, sweep workers and the tokenizer's threads) on a small machine: measured here, a smoke pre-training run
# took 35 s with it and 1.1 s with passive waiting. Set before torch loads libgomp; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
