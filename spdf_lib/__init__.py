"""spdf-kit: a reproducible study kit for SPDF (sparse pre-training, dense fine-tuning), Primer, and the
professional-certification exam study of LLM vocational skills.

Each paper's code is one package on a shared core; the core imports no paper package and no paper package imports
another (`tests/test_structure.py`). Packages: `spdf` (SPDF, Thangarasa et al. 2023), `primer` (Primer, So et al.
2021), `exams` (the certification exams, Noever & Ciolino 2023), `data` (registry, corpora, tasks, token shards),
`sweep` (sweep files, points, scheduler).

The core's modules:

- model: `modeling_gpt` (the GPT family with Primer's options, a HF `PreTrainedModel`), `model_sizes` (its named
  sizes, torch-free), `sparsity` (static masks, densify, keep_zeros, on any model), `adapters` (where each
  architecture keeps SPDF's matrices), `masks` (mask storage and the step hook), `hf` (HF Trainer callback),
  `hf_primer` (Primer-EZ on HF models), `flops` (sparse-aware FLOP counter, HF configs too), `tokenizer`;
- training: `train` (the one training loop), `train_step` (its one optimisation step, eager or compiled), `memory`
  (a run's peak memory, priced before compute), `early_stopping`, `checkpoints`, `precision` (bf16 or fp32),
  `decoding` (batched `generate`), `pretrain` and `pretrain_params` (generic pre-training, shared by SPDF and Primer);
- experiments: `params` (typed parameters, presets), `experiments` (the experiment table), `notebooks` (the one
  notebook executor), `cli` (`spdf`), `errors` (one-line user errors), `preconditions` (what the papers' verdicts
  presuppose);
- records: `records` (`Run`, a run's files), `run_status` (status, heartbeat, the runs' one error handler),
  `rundir` (one configuration per folder), `jsonio` (strict JSON), `atomic` (atomic writes), `provenance` (git,
  packages, device), `locations` (repository, runs and figures folders), `results` (the one results table);
- safety: `scrub` (the one secrets scrubber), `contain` (paths stay inside their roots), `owner` (one writer per
  folder), `owned` (nothing overwritten without `--overwrite`), `damage` (unreadable records are `damaged`);
- cost: `unit_costs` (unit costs measured on this CPU, each experiment's price), `machine_load` (how busy the cores
  are while timing), `sweep_cost` (`spdf plan`: this machine's wall time, or GPU-hours);
- report: `report` (the study's report from the results table), `report_document` (its blocks, tables and figures),
  `plots` (shared figures), `stats` (intervals and verdicts).
"""

import os

# GNU OpenMP's default busy-waiting makes torch's CPU threads spin against each other (and against notebook
# kernels, sweep workers and the tokenizer's threads) on a small machine: measured here, a smoke pre-training run
# took 35 s with it and 1.1 s with passive waiting. Set before torch loads libgomp; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
