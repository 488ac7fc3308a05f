"""SPDF — Sparse Pre-training and Dense Fine-tuning (Thangarasa et al., UAI 2023).

- `params`: the parameter schemas of `spdf_finetune` and `flops` (torch-free).
- `finetune`: dense, sparse or from-scratch fine-tuning on E2E, WebNLG or DART, decoding and scoring (§3–4).
- `metrics`: the data-to-text metrics (BLEU, chrF++, TER, ROUGE-L, NIST, METEOR, CIDEr) as the challenges score.
- `flops_tables`: the pre-training FLOP reduction at the paper's budgets and against sparsity (§4.1).
- `cost`: a fine-tuning point's work and price on this machine (the experiment table's `price_ref`).
- `hf_run`, `hf_params`: `spdf_hf`, SPDF on a Hugging Face model (SmolLM2's Llama architecture) with HF `Trainer`.
- `delex`: delexicalised E2E (TGen's slot placeholders); `checks`: task-level checks beside BLEU (slots, entities);
  `summarisation`: the Curation Corpus scores and the lead-3 baseline.
- `plots`, `report_section` (with `verdicts`, `report_tables`, `preconditions` and `report_curation`): SPDF's
  figures and its part of the report.

Pre-training (`spdf_pretrain`, §3) is the core's `spdf_lib.pretrain`, which Primer shares. The model (masks included)
is `spdf_lib.modeling_gpt` and `spdf_lib.sparsity`; the FLOP counter `spdf_lib.flops`.
"""
