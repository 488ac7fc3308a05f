"""What a fine-tuning point (`spdf_finetune`) costs on this machine: its work (training to the epoch cap,
evaluation, decoding) times the unit costs measured here (`spdf_lib.unit_costs`).

Early stopping is not predicted: a point is priced at its epoch cap. Fine-tuning batches are padded to `max_len`
(measured once: mean padded length of 16-pair batches with the tiny tokenizer, 127.3 of 128 on E2E, 127.9 on
WebNLG), and decoding runs `max_new_tokens` steps per batch (a batch runs until its longest output ends).
"""

from __future__ import annotations

import math
from typing import Any

from spdf_lib.unit_costs import Arch, Calibration, Parts, PointPlan, Pricer, add_parts, pretrain_parts


def finetune_parts(p: dict[str, Any], arch: Arch, n_pairs: int, n_val: int, n_test: int, prompt_len: int,
                   cal: Calibration) -> Parts:
    """Fine-tuning to the epoch cap at `max_len`-padded batches; evaluation (the held-out loss at each validation,
    the test loss at the end); decoding (greedy outputs of the held-out inputs at each validation, the test inputs
    with `num_beams` and with the second decoding)."""
    b, T = p["batch_size"], p["max_len"]
    steps = max(1, math.ceil(p["epochs"] * n_pairs / b))
    per_epoch = max(1, math.ceil(n_pairs / b))
    evals = steps // (p.get("eval_every") or per_epoch) + 1 if n_val else 1
    gen = p["max_new_tokens"]
    from spdf_lib.train_step import choose_fast  # (torch: imported where a plan measures)

    parts = {"train": steps * cal.train_step(arch, b, T, choose_fast(None, "cpu", steps)),
             "eval": evals * math.ceil(max(n_val, 1) / b) * cal.forward(arch, b, T)
             + math.ceil(n_test / 64) * cal.forward(arch, min(64, n_test), T), "decode": 0.0}
    if n_val:
        vb = max(p["decode_batch_size"], 64)
        parts["decode"] += evals * math.ceil(n_val / vb) * gen * cal.decode_step(arch, min(vb, n_val), prompt_len, 1)
    for beams in (p["num_beams"], p.get("second_num_beams") or 0):
        if beams:
            db = p["decode_batch_size"]
            parts["decode"] += math.ceil(n_test / db) * gen * cal.decode_step(arch, min(db, n_test), prompt_len, beams)
    return parts


def task_sizes(pricer: Pricer, p: dict[str, Any]) -> tuple[int, int, int]:
    """(training pairs, held-out inputs, test inputs) of a fine-tuning point, from its data (once per plan)."""
    from spdf_lib.data.encoding import training_pairs
    from spdf_lib.data.tasks import load_task
    from spdf_lib.spdf.finetune import held_out, training_subset

    key = ("finetune", p["task"], p["setup"], p.get("train_split"), p.get("eval_split"),
           p.get("max_eval_examples"), p["val_inputs"], p["train_fraction"], p.get("max_train_pairs"),
           p.get("subset_seed"))
    if key not in pricer.memo:
        data = load_task(p["task"], p["setup"], p.get("train_split"), p.get("eval_split"),
                         max_eval=p.get("max_eval_examples"))
        val, rest = held_out(data.train, p["val_inputs"], p["subset_seed"])
        train = training_subset(rest, p["train_fraction"], p.get("max_train_pairs"), p["subset_seed"])
        pricer.memo[key] = (len(training_pairs(train)), len(val), len(data.eval))
    return pricer.memo[key]


def price(pricer: Pricer, point, start: Parts) -> PointPlan:
    """Seconds of a fine-tuning point on this machine (plus its own pre-training for `pretrain:<preset>`)."""
    p = point.params
    what = f"{p['task']} {p['mode']} seed {p['seed']}"
    pre = pricer.pretrain_params_of(point)
    if pre is None or pre.get("tokenizer"):
        return PointPlan(point.id, point.stage, what, None, "its model is a folder, or GPU-scale")
    n_pairs, n_val, n_test = task_sizes(pricer, p)
    prompt = max(8, p["max_len"] // 2)
    parts = add_parts(start, finetune_parts(p, Arch.of(pre), n_pairs, n_val, n_test, prompt, pricer.cal))
    if str(p.get("checkpoint", "")).startswith("pretrain:"):
        parts = add_parts(parts, pretrain_parts(pre, pricer.cal))
    return PointPlan(point.id, point.stage, what, parts)
