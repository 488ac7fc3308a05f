"""SPDF's fine-tuning step (Thangarasa et al. 2023, §3–4): a pre-trained checkpoint fine-tuned on a data-to-text
task densely (`dense`: the masks are dropped and the pruned weights, starting at exactly 0, learn — SPDF),
sparsely (`sparse`: masks kept, the paper's comparison) or from scratch (`scratch`: same architecture and
tokenizer, no pre-training); then the evaluation split is decoded and scored.

Convergence, not a fixed budget: inputs held out from the training split (`val_inputs`) are greedy-decoded every
`eval_every` steps; fine-tuning stops when their BLEU (or slot realisation / entity coverage, or loss) has not
improved for `patience` validations, and the best model is kept (`spdf_lib.train`, early stopping). Every run
scores its test outputs with the corpus metrics and the task-level checks (`spdf_lib.spdf.checks`).

`run_finetune(params, run_dir)` writes the run records, `generations.jsonl`, `metrics.json`, the per-example
table `examples` (BLEU statistics, checks and loss per test input: what the report's bootstrap intervals
resample) and (with `save_model`) the fine-tuned model and tokenizer in `<run_dir>/model`, loadable by
`from_pretrained`. An interrupted run resumes from its last validation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from spdf_lib.checkpoints import verify_model_folder
from spdf_lib.errors import CorruptFileError
from spdf_lib.experiments import load
from spdf_lib.jsonio import read_json, read_jsonl, write_json
from spdf_lib.locations import new_run_dir
from spdf_lib.memory import check_finetune as check_memory
from spdf_lib.params import ParamsError, preset_path
from spdf_lib.pretrain import run_pretrain, save_model
from spdf_lib.records import Run
from spdf_lib.run_status import ends_runs_on_error
from spdf_lib.rundir import claim
from spdf_lib.spdf.params import FinetuneParams
from spdf_lib.train import is_main_process

PRETRAIN_PREFIX = "pretrain:"  # checkpoint = "pretrain:<preset>": pre-train with that preset first
BEST_PREFIX = "best:"  # checkpoint = "best:<folder>,<folder>": the one with the lowest pre-training eval loss
STOP_KEYS = {"val_bleu": ("val_bleu", "max"), "val_check": ("val_check", "max"), "val_loss": ("eval_loss", "min")}


def check_checkpoint(path: str | Path, max_len: int | None = None) -> dict[str, Any]:
    """Validate a pre-trained checkpoint folder before any work: it exists, holds a kit GPT and the tokenizer it
    was trained with (same vocabulary size, with the fine-tuning special tokens). Returns its config dict."""
    from spdf_lib.data.encoding import special_ids
    from spdf_lib.modeling_gpt import MODEL_TYPE
    from spdf_lib.tokenizer import load_tokenizer

    path = Path(path)
    if not str(path) or not path.is_dir():
        raise ParamsError(f"checkpoint {str(path)!r} is not a folder; give the `model` folder of a spdf_pretrain run")
    if not (path / "config.json").is_file():
        raise ParamsError(f"checkpoint {path} is not a model folder (no config.json); give the `model` folder of a "
                          f"spdf_pretrain run")
    try:
        config = json.loads((path / "config.json").read_text())
    except ValueError:
        raise CorruptFileError(f"checkpoint {path}: its config.json is damaged (not JSON)") from None
    if config.get("model_type") != MODEL_TYPE:
        raise ParamsError(f"checkpoint {path} is a {config.get('model_type')!r} model, not the kit's {MODEL_TYPE!r}")
    verify_model_folder(path)  # a truncated model.safetensors is named here, not deep inside from_pretrained
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


def check_inputs(p: FinetuneParams) -> None:
    """What `spdf run` checks before a kernel starts: the checkpoint folders named (not `pretrain:`) are intact."""
    if not p.checkpoint.startswith(PRETRAIN_PREFIX):
        for folder in candidates(p.checkpoint):
            check_memory(p, check_checkpoint(folder, p.max_len))


def candidates(checkpoint: str) -> list[Path]:
    """The model folders a `best:a,b,...` checkpoint names (one folder for a plain checkpoint)."""
    if not checkpoint.startswith(BEST_PREFIX):
        return [Path(checkpoint)]
    return [Path(c.strip()) for c in checkpoint[len(BEST_PREFIX):].split(",") if c.strip()]


def choose_checkpoint(folders: Sequence[Path]) -> tuple[Path, list[dict[str, Any]]]:
    """Of pre-trained model folders, the one whose run ended with the lowest validation loss (a per-sparsity
    learning-rate sweep); returns it and the table it was chosen from (lr, eval loss per candidate)."""
    table = []
    for folder in folders:
        results = folder.parent / "results.json"
        if not results.is_file():
            raise ParamsError(f"checkpoint {folder}: its run has no results.json to compare validation losses with")
        manifest = read_json(folder.parent / "manifest.json")
        table.append({"checkpoint": str(folder), "lr": manifest["params"].get("lr"),
                      "eval_loss": read_json(results)["eval_loss"]})
    best = min(table, key=lambda r: r["eval_loss"])
    return Path(best["checkpoint"]), table


def resolve_checkpoint(p: FinetuneParams, run_dir: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The checkpoint folder of `p` and, for `best:`, the table it was chosen from: as given; the best of several;
    or, for `pretrain:<preset>`, a model pre-trained now with `params/spdf_pretrain/<preset>.yaml` (seed `p.seed`)
    into `<run_dir>/pretrain` (reused when it is there)."""
    if p.checkpoint.startswith(BEST_PREFIX):
        return choose_checkpoint(candidates(p.checkpoint))
    if not p.checkpoint.startswith(PRETRAIN_PREFIX):
        return Path(p.checkpoint), []
    preset = p.checkpoint[len(PRETRAIN_PREFIX):]
    folder = run_dir / "pretrain"
    path = preset_path("spdf_pretrain", preset)
    if not path.is_file():
        raise ParamsError(f"checkpoint {p.checkpoint!r}: there is no preset {path}")
    if not (folder / "model" / "config.json").is_file():
        run_pretrain(load("spdf_pretrain", path, {"seed": p.seed, "progress": p.progress}), folder)
    return folder / "model", []


def held_out(examples: list, n: int, seed: int) -> tuple[list, list]:
    """(validation, rest): `n` training-split inputs, drawn at random (`seed`) and held out of fine-tuning."""
    if n == 0:
        return [], list(examples)
    if n >= len(examples):
        raise ParamsError(f"val_inputs={n} leaves no training inputs (the split has {len(examples)})")
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    val = set(order[:n])
    return [examples[i] for i in sorted(val)], [e for i, e in enumerate(examples) if i not in val]


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


# --- decoding and scoring --------------------------------------------------------------------------------------


def decode(model, tok, examples: Sequence, config, max_len: int, progress: bool = False) -> list[str]:
    """Outputs for `examples` (as the model sees them, possibly delexicalised), placeholders put back."""
    from spdf_lib.decoding import generate
    from spdf_lib.spdf.delex import relexicalise

    hyps = generate(model, tok, [e.source for e in examples], config, max_len=max_len, progress=progress)
    return [relexicalise(h, e) for h, e in zip(hyps, examples, strict=True)]


def validator(task: str, model_view: Sequence, originals: Sequence, tok, config, max_len: int, delex: Sequence[str]):
    """`validate(model)` for the training loop: greedy outputs on the held-out inputs, as BLEU and the task's
    check (0–100)."""
    from spdf_lib.spdf.checks import BLEU_STATS, check_name, corpus_checks, example_table
    from spdf_lib.stats import bleu_from_stats

    def validate(model) -> dict[str, float]:
        hyps = decode(model, tok, model_view, config, max_len)
        table = example_table(task, originals, hyps, delex)
        return {"val_bleu": float(bleu_from_stats(table[BLEU_STATS].to_numpy().sum(0))),
                "val_check": corpus_checks(table).get(check_name(task, delex), float("nan"))}

    return validate


@torch.no_grad()
def example_losses(model, tok, examples: Sequence, max_len: int, batch_size: int = 64,
                   precision: str = "auto") -> np.ndarray:
    """[n_examples, 2]: summed next-token loss (nats) over the target tokens of each example's first reference,
    and their number: per input, so that the bootstrap can resample inputs. (One reference per input: all of
    E2E's ~7.5 per input would cost a minute of CPU per run; the first is the dataset's first-listed one.)"""
    from spdf_lib.data.encoding import encode_pair
    from spdf_lib.data.streams import PairData
    from spdf_lib.train import autocast_factory, token_losses

    pairs = [encode_pair(tok, e.source, e.references[0], max_len) for e in examples]
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))  # little padding
    collate = PairData(pairs, [], tok.pad_token_id, max_len).collate
    device = next(model.parameters()).device
    autocast = autocast_factory(device.type, precision)
    out = np.zeros((len(examples), 2))
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in collate([pairs[i] for i in idx]).items()}
        losses, counts = token_losses(model, batch, autocast)
        out[idx, 0] = losses.double().numpy(force=True)
        out[idx, 1] = counts.numpy(force=True)
    model.train(was_training)
    return out


def curation_extras(task: str, examples: Sequence, losses, metrics: Sequence[str]) -> dict[str, float]:
    """What a curation run adds to its results: `test_perplexity`, and the lead-3 baseline's scores and checks
    (`lead3_<name>`) beside the model's. Empty for the other tasks."""
    if task != "curation":
        return {}
    from spdf_lib.spdf.checks import corpus_checks, example_table
    from spdf_lib.spdf.metrics import score_examples
    from spdf_lib.spdf.summarisation import lead3, perplexity

    lead = [lead3(e.meta["article"]) for e in examples]
    scores = score_examples(examples, lead, metrics).scores
    checks = corpus_checks(example_table("curation", examples, lead))
    return {"test_perplexity": perplexity(float(losses[:, 0].sum()), int(losses[:, 1].sum())),
            **{f"lead3_{k}": v for k, v in {**scores, **checks}.items()}}


def split_record(p: FinetuneParams, data) -> dict[str, Any]:
    """What a run records about how its task was split: for curation, the URL-hash rule, its seed and the
    articles read (the fetch's coverage); nothing for the tasks with official splits."""
    if p.task != "curation":
        return {}
    from spdf_lib.data.tasks import CURATION_SPLITS

    first = (data.eval or data.train)[0].meta
    return {"curation_split": {"rule": "sha256('curation-split-<seed>:<url>')[:8] / 2**64 against cumulative bounds",
                               "seed": p.split_seed, "bounds": dict(CURATION_SPLITS),
                               "n_train_split": len(data.train), "n_eval_split": len(data.eval),
                               "articles": p.articles or "default", "articles_coverage": first["articles_coverage"]}}


# --- the run --------------------------------------------------------------------------------------------------


def decode_configs(p: FinetuneParams):
    """(the test decoding, the greedy validation decoding, the second test decoding or None) of `p`. Validation
    decodes greedily (with the same repetition rule), whatever the test decoding is."""
    from spdf_lib.decoding import DecodeConfig

    common = {"no_repeat_ngram_size": p.no_repeat_ngram_size, "max_new_tokens": p.max_new_tokens}
    test = DecodeConfig(num_beams=p.num_beams, length_penalty=p.length_penalty, batch_size=p.decode_batch_size,
                        **common)
    greedy = DecodeConfig(batch_size=max(p.decode_batch_size, 64), **common)
    second = dataclasses.replace(test, num_beams=p.second_num_beams) if p.second_num_beams else None
    return test, greedy, second


@dataclass
class Fitted:
    """A fine-tuned model and what its evaluation needs to know of how it was made."""

    model: Any
    tok: Any
    data: Any  # the task's splits (`spdf_lib.data.tasks.TaskData`)
    view: Callable  # examples as the model reads and writes them (delexicalised for E2E with `e2e_delex`)
    delex: list[str]
    val: list  # the held-out training inputs
    train_examples: list
    n_pairs: int
    steps_per_epoch: int
    checkpoint: Path
    config: dict[str, Any]  # the pre-trained checkpoint's config.json
    last: dict[str, Any]  # the training loop's final row
    run: Run | None


@ends_runs_on_error
def run_finetune(p: FinetuneParams, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Fine-tune (to convergence on held-out inputs), decode the evaluation split, score it with the metrics and
    the task-level checks; writes records, generations.jsonl, metrics.json and the per-example table."""
    run_dir = Path(run_dir or p.run_dir or new_run_dir("spdf_finetune"))
    check_inputs(p)  # fail fast, before data or compute
    fitted = fit(p, run_dir)
    if not fitted.run:
        return fitted.last
    return evaluate_and_record(p, fitted, run_dir)


def fit(p: FinetuneParams, run_dir: Path) -> Fitted:
    """Load the task and the pre-trained model, then fine-tune it with the one training loop (early stopping on
    the held-out inputs); only the main process gets a `run`."""
    from spdf_lib.data.encoding import encode_examples
    from spdf_lib.data.streams import PairData
    from spdf_lib.data.tasks import load_task
    from spdf_lib.spdf.delex import delexicalise
    from spdf_lib.train import TrainConfig, train

    reader = {"articles": p.articles, "split_seed": p.split_seed} if p.task == "curation" else {}
    data = load_task(p.task, p.setup, p.train_split, p.eval_split, max_eval=p.max_eval_examples, **reader)
    if is_main_process():
        claim(run_dir, "spdf_finetune", p.model_dump())  # refuse another configuration's folder before pre-training
    checkpoint, choice = resolve_checkpoint(p, run_dir)
    config = check_checkpoint(checkpoint, p.max_len)
    delex = list(p.e2e_delex) if p.task == "e2e" else []
    view = (lambda es: [delexicalise(e, delex) for e in es]) if delex else list  # what the model reads and writes
    val, rest = held_out(data.train, p.val_inputs, p.subset_seed)
    train_examples = training_subset(rest, p.train_fraction, p.max_train_pairs, p.subset_seed)
    model, tok = load_finetune_model(checkpoint, p.mode, p.seed)
    pairs = encode_examples(tok, view(train_examples), p.max_len)
    # the loss logged at each validation: on the held-out inputs (before: the first 64 test inputs, which would
    # leak the test set into early stopping)
    val_pairs = encode_examples(tok, view(val), p.max_len)
    steps_per_epoch = max(1, math.ceil(len(pairs) / p.batch_size))
    steps = max(1, math.ceil(p.epochs * len(pairs) / p.batch_size))
    eval_every = p.eval_every or steps_per_epoch
    run = Run(run_dir, "spdf_finetune", p.model_dump(), p.seed) if is_main_process() else None
    if run:
        run.add_data(data.checksums)
        run.describe(checkpoint=str(checkpoint), checkpoint_choice=choice, e2e_delex=delex,
                     val_ids=[e.id for e in val], **split_record(p, data))
    stop_key, stop_mode = STOP_KEYS[p.stop_metric]
    cfg = TrainConfig(
        max_steps=steps, batch_size=p.batch_size, micro_batch_size=p.micro_batch_size, lr=p.lr,
        warmup_steps=int(p.warmup_fraction * steps), weight_decay=p.weight_decay, precision=p.precision,
        eval_every=eval_every if val else 0, log_every=p.log_every, seed=p.seed, device=p.device,
        progress=p.progress, desc=f"finetune {p.task} {p.mode}", patience=p.patience, stop_metric=stop_key,
        stop_mode=stop_mode, min_steps=math.ceil(p.min_epochs * steps_per_epoch),
        checkpoint_every=eval_every if p.patience else 0,
    )
    greedy = decode_configs(p)[1]
    validate = validator(p.task, view(val), val, tok, greedy, p.max_len, delex) if val else None
    last = train(model, PairData(pairs, val_pairs or pairs[:64], tok.pad_token_id, p.max_len, seed=p.seed), cfg,
                 out_dir=run_dir, run=run, validate=validate)
    return Fitted(model, tok, data, view, delex, val, train_examples, len(pairs), steps_per_epoch, checkpoint,
                  config, last, run)


def evaluate_and_record(p: FinetuneParams, f: Fitted, run_dir: Path) -> dict[str, Any]:
    """Decode the evaluation split (twice with `second_num_beams`), score it, write generations, the per-example
    tables, metrics.json, the model and the results; then remove the resume state."""
    from spdf_lib.decoding import config_dict
    from spdf_lib.spdf.checks import corpus_checks, example_table
    from spdf_lib.spdf.metrics import score_examples, write_generations

    run, data, delex, view = f.run, f.data, f.delex, f.view
    decode_cfg, _, second_cfg = decode_configs(p)
    f.model.eval()
    hyps = decode(f.model, f.tok, view(data.eval), decode_cfg, p.max_len, progress=p.progress)
    write_generations(run_dir / "generations.jsonl", data.eval, hyps)
    scored = score_examples(data.eval, hyps, p.metrics, workers=p.metric_workers)
    table = example_table(p.task, data.eval, hyps, delex)
    losses = example_losses(f.model, f.tok, view(data.eval), p.max_len, precision=p.precision)
    table["loss_sum"], table["loss_tokens"] = losses[:, 0], losses[:, 1].astype(int)
    table["source"], table["reference"] = [e.source for e in data.eval], [e.references[0] for e in data.eval]
    table["hypothesis"] = hyps
    run.write_table("examples", table)
    checks = corpus_checks(table)
    # the same checks on each input's first human reference: the ceiling the patterns allow on this data
    reference = corpus_checks(example_table(p.task, data.eval, [e.references[0] for e in data.eval], delex))
    extra: dict[str, float] = {f"reference_{k}": v for k, v in reference.items() if k != "len_ratio"}
    extra |= curation_extras(p.task, data.eval, losses, p.metrics)  # perplexity, lead-3 beside every score
    if second_cfg is not None:  # the same model decoded a second way: does the decoding change a conclusion?
        second_hyps = decode(f.model, f.tok, view(data.eval), second_cfg, p.max_len, progress=p.progress)
        second_table = example_table(p.task, data.eval, second_hyps, delex).assign(hypothesis=second_hyps)
        run.write_table("examples_second", second_table)
        extra |= {f"second_{k}": v for k, v in {**score_examples(data.eval, second_hyps, ["bleu"]).scores,
                                                **corpus_checks(second_table)}.items()}
    curve = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "eval_loss" in r]
    run.write_table("validation", pd.DataFrame(curve).rename(columns={"eval_loss": "val_loss"}))
    write_json(
        run_dir / "metrics.json",
        {
            "scores": scored.scores,
            "missing": scored.missing,
            "signatures": scored.signatures,
            "checks": checks,
            "second_decoding": {k: v for k, v in extra.items() if k.startswith("second_")},
            "decoding": config_dict(decode_cfg),
            "train_split": data.train_split,
            "eval_split": data.eval_split,
            "e2e_delex": delex,
        },
    )
    if p.save_model:
        f.model.to("cpu")
        save_model(f.model, f.tok, run_dir / "model")
    results = {**{k.replace("++", "pp"): v for k, v in scored.scores.items()}, **checks, **extra,
               **_training_record(p, f, losses)}
    run.finish(results)
    for folder in ("checkpoints", "best"):  # the run is complete: its model is saved, the resume state can go
        shutil.rmtree(run_dir / folder, ignore_errors=True)
    return results


def _training_record(p: FinetuneParams, f: Fitted, losses: np.ndarray) -> dict[str, Any]:
    """The results of a run beside its scores: what it was pre-trained as, how long it trained, its losses,
    its data sizes and its cost."""
    from spdf_lib.modeling_gpt import architecture_name

    last, best = f.last, f.last.get("best") or f.last
    pre = f.checkpoint.parent / "results.json"
    pre_results = read_json(pre) if p.mode != "scratch" and pre.is_file() else {}
    pre_params = read_json(f.checkpoint.parent / "manifest.json")["params"] if pre_results else {}
    return {
        "pretrain_sparsity": 0.0 if p.mode == "scratch" else float(f.config.get("sparsity", 0.0)),
        "arch": architecture_name(f.config),
        "delexicalised": ",".join(f.delex),
        "pretrain_lr": pre_params.get("lr", float("nan")),
        "pretrain_eval_loss": pre_results.get("eval_loss", float("nan")),
        "finetune_flops": last["flops"],
        "pretrain_flops": pre_results.get("train_flops", 0.0),
        "total_flops": pre_results.get("train_flops", 0.0) + last["flops"],
        "finetune_steps": last["step"],
        "best_step": best["step"],
        "stopped_early": bool(last.get("stopped_early")),
        "epochs_trained": last["step"] / f.steps_per_epoch,
        "best_epoch": best["step"] / f.steps_per_epoch,
        "finetune_eval_loss": float(losses[:, 0].sum() / max(1, losses[:, 1].sum())),
        "val_loss": best.get("eval_loss", float("nan")),
        "val_bleu": best.get("val_bleu", float("nan")),
        "val_check": best.get("val_check", float("nan")),
        "n_train_inputs": len(f.train_examples),
        "n_train_pairs": f.n_pairs,
        "n_val_inputs": len(f.val),
        "n_eval": len(f.data.eval),
        "finetune_seconds": last["elapsed_s"],
        "process_cpu_s": time.process_time(),  # CPU seconds of this process so far: the run's cost on idle cores
    }
