"""Primer — Searching for Efficient Transformers for Language Modeling (So et al., NeurIPS 2021).

- `params`: the parameter schema of the `primer` ablation and its variants (torch-free).
- `run`: every variant at every size and seed, each point a `spdf_lib.pretrain` run (the core's pre-training).
- `analysis`: the paper's speedup factor (§4) and the power-law fits (§4.2, Fig. 1).
- `cost`: a Primer point's price on this machine and on GPUs (the experiment table's `price_ref`, `gpu_cost_ref`).
- `plots`, `report_section`: Primer's figures and its part of the report.
- In its regime (issue 34; docs/primer.md): the variants as `spdf_pretrain` runs in SPDF's recipe. `speedup`
  (read from annealed endpoints, interval from the pooled seed noise), `grid` (run records to arms), `study`
  (speedups and verdicts per size), `preconditions`, `report_regime`, `diagnosis` (FFN scales, conv-tap drift).

The layers themselves, squared ReLU and multi-dconv-head attention, are options of `spdf_lib.modeling_gpt`
(`activation="relu2"`, `mdha=True`): the same model file serves every experiment and ships with saved models.
"""
