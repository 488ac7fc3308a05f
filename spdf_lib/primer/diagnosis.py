"""What to look at when Primer's tuned speedup stays below about 1.1x (issue 34, item 5), on a trained model:

- `ffn_scales`: per layer, the RMS of the FFN's pre-activation (`fc_in` output) and of its output (`fc_out`) on
  given tokens: squared ReLU squares its input, so at GPT-2's 0.02 init its output starts far smaller than GELU's,
  and a variant whose FFN never grows its scale has not used the activation;
- `tap_drift`: per layer, how far MDHA's conv taps moved from their init (current tap 0.5, past taps 0.5/k):
  taps that stayed at init mean the convolution learned nothing beyond a fixed smoothing.
The per-group update/weight ratios come from training with `diagnostics: true` (`spdf_lib.train_step.update_ratios`).
"""

from __future__ import annotations

import torch


@torch.no_grad()
def ffn_scales(model, input_ids: torch.Tensor) -> list[dict[str, float]]:
    """[{layer, pre_rms, out_rms}] of each block's FFN on `input_ids` (B, T)."""
    found: dict[int, dict[str, float]] = {}
    hooks = []
    for i, block in enumerate(model.transformer.h):
        def pre(mod, inp, out, i=i):
            found.setdefault(i, {})["pre_rms"] = float(out.float().pow(2).mean().sqrt())

        def post(mod, inp, out, i=i):
            found.setdefault(i, {})["out_rms"] = float(out.float().pow(2).mean().sqrt())

        hooks += [block.mlp.fc_in.register_forward_hook(pre), block.mlp.fc_out.register_forward_hook(post)]
    try:
        model.eval()
        model(input_ids=input_ids)
    finally:
        for h in hooks:
            h.remove()
    return [{"layer": i, **found[i]} for i in sorted(found)]


@torch.no_grad()
def tap_drift(model) -> list[dict[str, float]]:
    """[{layer, current, past, drift}] for each MDHA layer: the mean current-token tap, the mean past tap, and
    ||w − w_init|| / ||w_init|| over the layer's taps; [] for a model without MDHA."""
    rows = []
    for i, block in enumerate(model.transformer.h):
        conv = getattr(block.attn, "mdha", None)
        if conv is None:
            continue
        w = conv.weight.float()
        init = torch.full_like(w, 0.5 / conv.kernel)
        init[..., -1] = 0.5
        rows.append({"layer": i, "current": float(w[..., -1].mean()),
                     "past": float(w[..., :-1].mean()) if conv.kernel > 1 else float("nan"),
                     "drift": float((w - init).norm() / init.norm())})
    return rows
