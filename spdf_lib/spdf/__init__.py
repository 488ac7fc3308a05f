"""SPDF — Sparse Pre-training and Dense Fine-tuning (Thangarasa et al., UAI 2023).

- `params`: the parameter schemas of `spdf_finetune` and `flops` (torch-free).
- `finetune`: dense, sparse or from-scratch fine-tuning on E2E, WebNLG or DART, decoding and scoring (§3–4).
- `metrics`: the data-to-text metrics (BLEU, chrF++, TER, ROUGE-L, NIST, METEOR, CIDEr) as the challenges score.
- `flops_tables`: the pre-training FLOP reduction at the paper's budgets and against sparsity (§4.1).
- `plots`, `report_section` (with `verdicts` and `report_tables`): SPDF's figures and its part of the report.

Pre-training (`spdf_pretrain`, §3) is the core's `spdf_lib.pretrain`, which Primer shares. The model (masks included) is `spdf_lib.modeling_gpt` and `spdf_lib.sparsity`; the FLOP counter `spdf_lib.flops`.
"""
