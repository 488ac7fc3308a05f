"""SPDF's fine-tuning step (Thangarasa et al. 2023, §3–4): a pre-trained checkpoint fine-tuned on a data-to-text
task densely (`dense`: the masks are dropped and the pruned weights, starting at exactly 0, learn — SPDF),
sparsely (`sparse`: masks kept, the paper's comparison) or from scratch (`scratch`: same architecture and
tokenizer, no pre-training); then the evaluation split is decoded and scored.

`run_finetune(params, run_dir)` writes the run records, `generations.jsonl`, `metrics.json` and (with
`save_model`) the fine-tuned model and tokenizer in `<run_dir>/model`, loadable by `from_pretrained`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from spdf_lib.params import ParamsError, load, preset_path
from spdf_lib.records import Run, new_run_dir, read_json, write_json
from spdf_lib.spdf.params import FinetuneParams
from spdf_lib.spdf.pretrain import run_pretrain, save_model
from spdf_lib.train import is_main_process

PRETRAIN_PREFIX = "pretrain:"  # checkpoint = "pretrain:<preset>": pre-train with that preset first


def check_checkpoint(path: str | Path, max_len: int | None = None) -> dict[str, Any]:
    """Validate a pre-trained checkpoint folder before any work: it exists, holds a kit GPT and the tokenizer it
    was trained with (same vocabulary size, with the fine-tuning special tokens). Returns its config dict."""
    from spdf_lib.data.encoding import special_ids
    from spdf_lib.modeling_gpt import MODEL_TYPE
    from spdf_lib.tokenizer import load_tokenizer

    path = Path(path)
    if not str(path) or not (path / "config.json").is_file():
        raise ParamsError(f"checkpoint {str(path)!r} is not a model folder (no config.json); give the `model` "
                          f"folder of a spdf_pretrain run")
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") != MODEL_TYPE:
        raise ParamsError(f"checkpoint {path} is a {config.get('model_type')!r} model, not the kit's {MODEL_TYPE!r}")
    if not (path / "tokenizer.json").is_file():
        raise ParamsError(f"checkpoint {path} has no tokenizer.json; it was not saved by spdf_pretrain")
    tok = load_tokenizer(path)
    if len(tok) != config["vocab_size"]:
        raise ParamsError(f"checkpoint {path}: its tokenizer has {len(tok)} tokens but the model {config['vocab_size']}"
                          f"; the tokenizer belongs to another model")
    special_ids(tok)
    if max_len is not None and max_len > config["n_positions"]:
        raise ParamsError(f"max_len={max_len} exceeds the checkpoint's context of {config['n_positions']} tokens")
    return config


def resolve_checkpoint(p: FinetuneParams, run_dir: Path) -> Path:
    """The checkpoint folder of `p`: as given, or, for `pretrain:<preset>`, a model pre-trained now with
    `params/spdf_pretrain/<preset>.yaml` (seed `p.seed`) into `<run_dir>/pretrain` (reused when it is there)."""
    if not p.checkpoint.startswith(PRETRAIN_PREFIX):
        return Path(p.checkpoint)
    preset = p.checkpoint[len(PRETRAIN_PREFIX):]
    folder = run_dir / "pretrain"
    path = preset_path("spdf_pretrain", preset)
    if not path.is_file():
        raise ParamsError(f"checkpoint {p.checkpoint!r}: there is no preset {path}")
    if not (folder / "model" / "config.json").is_file():
        run_pretrain(load("spdf_pretrain", path, {"seed": p.seed, "progress": p.progress}), folder)
    return folder / "model"


def training_subset(examples: list, fraction: float, max_pairs: int | None, seed: int) -> list:
    """A `seed`-random `fraction` of the training inputs, then (with `max_pairs`) whole inputs in that random
    order until their references reach `max_pairs` pairs: the same subset for every mode and seed."""
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    order = order[: max(1, round(fraction * len(examples)))]
    if max_pairs is not None:
        kept, pairs = [], 0
        for i in order:
            if pairs >= max_pairs:
                break
            kept.append(i)
            pairs += len(examples[i].references)
        order = kept
    return [examples[i] for i in sorted(order)]


def load_finetune_model(checkpoint: str | Path, mode: str, seed: int):
    """(model, tokenizer) for a fine-tuning mode: `dense` drops the masks (SPDF), `sparse` keeps them,
    `scratch` re-initialises the checkpoint's architecture (seeded) without its weights or masks."""
    from spdf_lib.modeling_gpt import GPTConfig, GPTForCausalLM
    from spdf_lib.sparsity import densify
    from spdf_lib.tokenizer import load_tokenizer

    tok = load_tokenizer(checkpoint)
    if mode == "scratch":
        config = GPTConfig.from_pretrained(checkpoint)
        config.sparse_params, config.sparsity = [], 0.0
        torch.manual_seed(seed)
        return GPTForCausalLM(config), tok
    model = GPTForCausalLM.from_pretrained(checkpoint)
    if mode == "dense":
        densify(model)
    return model, tok


def run_finetune(p: FinetuneParams, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Fine-tune, decode the evaluation split, score it; writes records, generations.jsonl and metrics.json."""
    from spdf_lib.data.encoding import encode_examples
    from spdf_lib.data.streams import PairData
    from spdf_lib.data.tasks import load_task
    from spdf_lib.decoding import DecodeConfig, config_dict, generate
    from spdf_lib.modeling_gpt import architecture_name
    from spdf_lib.spdf.metrics import score_examples, write_generations
    from spdf_lib.train import TrainConfig, train

    run_dir = Path(run_dir or p.run_dir or new_run_dir("spdf_finetune"))
    if not p.checkpoint.startswith(PRETRAIN_PREFIX):
        check_checkpoint(p.checkpoint, p.max_len)  # fail fast, before data or compute
    decode = DecodeConfig(num_beams=p.num_beams, length_penalty=p.length_penalty,
                          no_repeat_ngram_size=p.no_repeat_ngram_size, max_new_tokens=p.max_new_tokens,
                          batch_size=p.decode_batch_size)
    data = load_task(p.task, p.setup, p.train_split, p.eval_split, max_eval=p.max_eval_examples)
    checkpoint = resolve_checkpoint(p, run_dir)
    config = check_checkpoint(checkpoint, p.max_len)
    train_examples = training_subset(data.train, p.train_fraction, p.max_train_pairs, p.subset_seed)
    model, tok = load_finetune_model(checkpoint, p.mode, p.seed)
    pairs = encode_examples(tok, train_examples, p.max_len)
    eval_pairs = encode_examples(tok, data.eval[: max(1, min(len(data.eval), 64))], p.max_len)
    steps = max(1, math.ceil(p.epochs * len(pairs) / p.batch_size))
    run = Run(run_dir, "spdf_finetune", p.model_dump(), p.seed) if is_main_process() else None
    if run:
        run.add_data(data.checksums)
        run.describe(checkpoint=str(checkpoint))
    cfg = TrainConfig(
        max_steps=steps, batch_size=p.batch_size, micro_batch_size=p.micro_batch_size, lr=p.lr,
        warmup_steps=int(p.warmup_fraction * steps), weight_decay=p.weight_decay, precision=p.precision,
        log_every=p.log_every, seed=p.seed, device=p.device, progress=p.progress,
        desc=f"finetune {p.task} {p.mode}",
    )
    last = train(model, PairData(pairs, eval_pairs, tok.pad_token_id, p.max_len, seed=p.seed), cfg,
                 out_dir=run_dir, run=run)
    if not run:
        return last
    model.eval()
    hyps = generate(model, tok, [e.source for e in data.eval], decode, max_len=p.max_len, progress=p.progress)
    write_generations(run_dir / "generations.jsonl", data.eval, hyps)
    scored = score_examples(data.eval, hyps, p.metrics, workers=p.metric_workers)
    write_json(run_dir / "metrics.json", {"scores": scored.scores, "missing": scored.missing,
                                          "signatures": scored.signatures, "decoding": config_dict(decode),
                                          "train_split": data.train_split, "eval_split": data.eval_split})
    if p.save_model:
        model.to("cpu")
        save_model(model, tok, run_dir / "model")
    pre = checkpoint.parent / "results.json"
    pretrain_flops = read_json(pre)["train_flops"] if p.mode != "scratch" and pre.is_file() else 0.0
    results = {
        **{k.replace("++", "pp"): v for k, v in scored.scores.items()},
        "pretrain_sparsity": 0.0 if p.mode == "scratch" else float(config.get("sparsity", 0.0)),
        "arch": architecture_name(config),
        "finetune_flops": last["flops"], "pretrain_flops": pretrain_flops,
        "total_flops": pretrain_flops + last["flops"], "finetune_steps": last["step"],
        "finetune_eval_loss": last["eval_loss"], "n_train_inputs": len(train_examples), "n_train_pairs": len(pairs),
        "n_eval": len(data.eval), "finetune_seconds": last["elapsed_s"],
    }
    run.finish(results)
    return results
