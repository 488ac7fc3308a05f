"""SPDF and Primer-EZ on Hugging Face models and `Trainer` (docs/hf.md).

    model = AutoModelForCausalLM.from_config(config)        # any model with an adapter (spdf_lib.adapters)
    sparsify(model, 0.75)                                   # spdf_lib.sparsity
    Trainer(model, args, train_dataset=..., callbacks=[SPDFCallback()]).train()
    model.save_pretrained("out")                            # weights with exact zeros + spdf_masks.safetensors
    dense = AutoModelForCausalLM.from_pretrained("out")     # SPDF's dense fine-tuning start
    load_masks(dense, "out")                                # ... or sparse fine-tuning

`SPDFCallback` finds the masks on the model Trainer trains, installs `keep_zeros` on Trainer's optimizer
(masked weights and their optimizer state stay exactly 0, also after resuming a checkpoint whose optimizer
state predates the masks), and logs the sparse-aware training FLOPs (`spdf_lib.flops`) beside Trainer's dense
`total_flos`. `primer_ez` and `from_pretrained` live in `spdf_lib.hf_primer`.
"""

from __future__ import annotations

import logging

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from spdf_lib import flops
from spdf_lib.adapters import adapter_for
from spdf_lib.hf_primer import from_pretrained, primer_ez
from spdf_lib.masks import get_masks, keep_zeros, unwrap

__all__ = ["SPDFCallback", "primer_ez", "from_pretrained"]
log = logging.getLogger(__name__)


class SPDFCallback(TrainerCallback, ExportableState):
    """Keeps the masks of the model Trainer trains and counts its sparse training FLOPs. No arguments.

    Logged with every Trainer log: `spdf_sparse_flos` (training FLOPs of the tokens seen so far, counted with
    the model's masks: forward + backward = 3 × forward, `spdf_lib.flops`) and `spdf_dense_flos` (the same
    count for the dense model), beside Trainer's `total_flos` (6 × non-embedding parameters × tokens, dense,
    no attention). Counts are per process × world size; they survive a resume (Trainer saves the callback's
    state in its checkpoint).
    """

    def __init__(self):
        self.sparse_flos = 0.0
        self.dense_flos = 0.0
        self._handles: list = []
        self._per_seq: dict[int, tuple[float, float]] = {}

    def state(self) -> dict:
        return {"args": {}, "attributes": {"sparse_flos": self.sparse_flos, "dense_flos": self.dense_flos}}

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._remove()
        model = unwrap(model)
        if not get_masks(model):
            log.warning("SPDFCallback: the model carries no sparsity masks (call spdf_lib.sparsity.sparsify or "
                        "load_masks before training); it is trained dense")
        if optimizer is not None:
            self._handles.append(keep_zeros(optimizer, model))
        self._per_seq = {}
        if adapter_for(model, required=False) is None:  # masks from targets=: kept, but no FLOP shape to count
            log.warning("SPDFCallback: no adapter for %s; masks are kept, FLOPs are not counted", type(model).__name__)
            return
        sparse, dense = flops.shape_from_model(model), flops.shape_from_model(model, dense=True)
        world = max(1, args.world_size)

        def count(module, fargs, fkwargs):
            ids = fkwargs.get("input_ids", fargs[0] if fargs else None)
            if not module.training or ids is None:
                return
            B, T = ids.shape[0], ids.shape[-1]
            if T not in self._per_seq:
                self._per_seq[T] = (flops.training_flops_per_sequence(sparse, T),
                                    flops.training_flops_per_sequence(dense, T))
            s, d = self._per_seq[T]
            self.sparse_flos += B * s * world
            self.dense_flos += B * d * world

        self._handles.append(model.register_forward_pre_hook(count, with_kwargs=True))

    def on_log(self, args, state, control, logs=None, **kwargs):
        extra = {"spdf_sparse_flos": self.sparse_flos, "spdf_dense_flos": self.dense_flos}
        if logs is not None:
            logs.update(extra)
        if state.log_history:
            state.log_history[-1].update(extra)

    def on_train_end(self, args, state, control, **kwargs):
        self._remove()

    def _remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []
