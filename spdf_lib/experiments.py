"""What each experiment notebook runs: parameter schemas and `run_*` functions.

Notebooks call these; so do `spdf sweep` points launched with `torchrun`:

    python -m torch.distributed.run --nproc-per-node 2 -m spdf_lib.experiments spdf_pretrain \
        --params params/spdf_pretrain/paper.yaml --run-dir runs/x

Every run writes its records (manifest, metrics, results) into its `run_dir` through `spdf_lib.records`.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from pydantic import Field, field_validator

from spdf_lib import params as P
from spdf_lib.params import Params
from spdf_lib.records import Run, atomic_write_text, new_run_dir, read_json

# --- parameter schemas --------------------------------------------------------------------------------------


def _known_size(v: str) -> str:
    from spdf_lib.modeling_gpt import NAMED_CONFIGS

    if v not in NAMED_CONFIGS:
        raise ValueError(f"unknown model size {v!r}; choose one of {', '.join(NAMED_CONFIGS)}")
    return v


def _known_corpus(v: str) -> str:
    from spdf_lib.data.corpora import CORPORA

    for part in v.split("+"):
        if part not in CORPORA:
            raise ValueError(f"unknown corpus {part!r}; choose one of {', '.join(CORPORA)} (combine with '+')")
    return v


class PretrainParams(Params):
    """SPDF pre-training (sparse or dense), also the Primer variants (`activation`, `mdha`)."""

    model_size: str = "nano"  # nano, micro, mini, small, gpt2-small, gpt2-small-2048, gpt3-xl
    n_layer: int | None = Field(None, ge=1)  # overrides of the named size
    n_embd: int | None = Field(None, ge=8)
    n_head: int | None = Field(None, ge=1)
    activation: Literal["gelu", "relu2"] = "gelu"
    mdha: bool = False
    mdha_kernel: int = Field(3, ge=1)
    corpus: str = "shakespeare"
    vocab_size: int = Field(512, ge=259)
    tokenizer_max_chars: int | None = Field(None, ge=1000)
    seq_len: int = Field(64, ge=8)
    tokens: float = Field(20_000, gt=0)  # token budget; steps = ceil(tokens / (batch_size · seq_len))
    batch_size: int = Field(8, ge=1)
    micro_batch_size: int | None = Field(None, ge=1)
    lr: float = Field(6e-4, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.1, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    sparsity: float = Field(0.0, ge=0, lt=1)
    mask_init: Literal["random", "topk"] = "random"
    sparsity_distribution: Literal["uniform", "erk"] = "uniform"
    sparsity_targets: list[str] | None = None  # regexes over parameter names; None: the six SPDF matrices
    precision: Literal["bf16", "fp32"] = "bf16"
    eval_every: int = Field(0, ge=0)
    eval_windows: int = Field(32, ge=1)
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(0, ge=0)
    device: str = "auto"
    progress: bool = True

    _size = field_validator("model_size")(classmethod(lambda cls, v: _known_size(v)))
    _corpus = field_validator("corpus")(classmethod(lambda cls, v: _known_corpus(v)))


class FinetuneParams(Params):
    """Fine-tuning a pre-trained checkpoint on a data-to-text task, then decoding and scoring (SPDF §4)."""

    checkpoint: str = ""  # a spdf_pretrain model folder (<run_dir>/model); needed for every mode
    mode: Literal["dense", "sparse", "scratch"] = "dense"  # dense = SPDF; sparse = masks kept; scratch = no pre-training
    task: Literal["e2e", "webnlg", "dart"] = "webnlg"
    setup: Literal["offline", "paper"] = "offline"  # which splits (see spdf_lib.data.tasks); offline = mirror files
    train_split: str | None = None  # override the setup's training split
    eval_split: str | None = None  # override the setup's evaluation split
    train_fraction: float = Field(1.0, gt=0, le=1)  # of the training inputs (each with all its references)
    max_train_pairs: int | None = Field(None, ge=1)  # then at most this many (input, reference) pairs
    subset_seed: int = 0  # which inputs a fraction keeps (fixed across modes and seeds)
    max_eval_examples: int | None = Field(None, ge=1)  # evaluate on the first N inputs of the eval split
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(16, ge=1)
    micro_batch_size: int | None = Field(None, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_len: int = Field(128, ge=8)  # tokens of source + target
    num_beams: int = Field(1, ge=1)
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = Field(0, ge=0)
    max_new_tokens: int = Field(64, ge=1)
    decode_batch_size: int = Field(32, ge=1)
    metrics: list[Literal["bleu", "chrf++", "ter", "rouge_l", "nist", "meteor", "cider"]] = [
        "bleu", "chrf++", "ter", "rouge_l", "nist", "meteor", "cider"]
    metric_workers: int = Field(1, ge=1)
    precision: Literal["bf16", "fp32"] = "bf16"
    log_every: int = Field(10, ge=1)
    device: str = "auto"
    progress: bool = True


class PrimerParams(Params):
    """The Primer ablation: every variant at every size and seed, same data and token budget per size."""

    sizes: list[str] = ["nano"]
    variants: list[Literal["baseline", "relu2", "mdha", "primer-ez"]] = ["baseline", "relu2", "mdha", "primer-ez"]
    seeds: list[int] = [0]
    tokens_per_param: float = Field(20.0, gt=0)  # token budget per (non-embedding + embedding) parameter
    min_tokens: float = Field(20_000, gt=0)
    corpus: str = "shakespeare"
    vocab_size: int = Field(512, ge=259)
    tokenizer_max_chars: int | None = Field(None, ge=1000)
    seq_len: int = Field(64, ge=8)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(2e-3, gt=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    mdha_kernel: int = Field(3, ge=1)
    eval_points: int = Field(8, ge=2)  # validation evaluations per run (the speedup reads these)
    eval_windows: int = Field(16, ge=1)
    precision: Literal["bf16", "fp32"] = "bf16"
    device: str = "auto"
    progress: bool = True

    _sizes = field_validator("sizes")(classmethod(lambda cls, v: [_known_size(s) for s in v]))
    _corpus = field_validator("corpus")(classmethod(lambda cls, v: _known_corpus(v)))


class FlopsParams(Params):
    """Paper-scale FLOP tables and the reduction-vs-sparsity figure."""

    sizes: list[str] = ["nano", "micro", "mini", "small", "gpt2-small", "gpt3-xl"]
    sparsities: list[float] = [0.0, 0.5, 0.75, 0.875]
    convention: str = "spdf"

    @field_validator("sparsities")
    @classmethod
    def _in_range(cls, v: list[float]) -> list[float]:
        for s in v:
            if not 0 <= s < 1:
                raise ValueError(f"every sparsity must be in [0, 1), got {s}")
        return v


def paper_flop_tables(convention: str = "spdf"):
    """SPDF's pre-training FLOPs at the reference budgets (≈20 tokens/parameter): GPT-2 Small at context 1024
    and 2048 (2.505e9 tokens) and GPT-3 XL (26.3e9 tokens), at sparsity 0, 0.5 and 0.75."""
    from spdf_lib import flops

    return flops.breakdown_table({
        "gpt2-small (ctx 1024)": ("gpt2-small", 2.505e9, 1024),
        "gpt2-small (ctx 2048)": ("gpt2-small-2048", 2.505e9, 2048),
        "gpt3-xl (ctx 2048)": ("gpt3-xl", 26.3e9, 2048),
    }, convention=convention)


def run_flops(p: FlopsParams, run_dir: str | Path | None = None):
    """The FLOP tables: paper budgets, and reduction vs sparsity for every size; writes CSVs and records."""
    import pandas as pd

    from spdf_lib import flops
    from spdf_lib.modeling_gpt import gpt_config

    run_dir = Path(run_dir or p.run_dir or new_run_dir("flops"))
    run = Run(run_dir, "flops", p.model_dump(), p.seed)
    paper = paper_flop_tables(p.convention)
    rows = []
    for size in p.sizes:
        cfg = gpt_config(size)
        for s in p.sparsities:
            terms = flops.count(cfg, cfg.n_positions, s, convention=p.convention)  # one sequence
            rows.append({"model": size, "sparsity": s, "reduction_vs_dense": flops.reduction_factor(cfg, s),
                         **{f"share_{k}": v / terms["total"] for k, v in terms.items() if k != "total"}})
    by_size = pd.DataFrame(rows)
    paper.to_csv(run_dir / "flops_paper.csv", index=False)
    by_size.to_csv(run_dir / "flops_by_size.csv", index=False)
    results = {f"reduction_{r.model.split()[0]}_ctx{r.seq_len}_s{r.sparsity}": r.reduction_vs_dense
               for r in paper.itertuples()}
    results |= {f"train_flops_{r.model.split()[0]}_ctx{r.seq_len}_s{r.sparsity}": r.train_flops
                for r in paper.itertuples()}
    run.finish(results)
    return paper, by_size


class ReportParams(Params):
    """The report: every figure from the results table."""

    runs_root: str = ""  # folder of runs to aggregate; empty: runs/
    results_table: str = ""  # a results table (parquet/csv) of runs under runs_root; empty: scan runs_root
    figures_dir: str = ""  # empty: figures/ in the repository


# --- pre-training ---------------------------------------------------------------------------------------------


def tokenized_corpus(corpus: str, vocab_size: int, seed: int = 0, max_chars: int | None = None):
    """(tokenizer, train ids, val ids, data checksums) for a corpus, cached under `$SPDF_CACHE/tokenized/`.

    The tokenizer is trained on the corpus' training split only; documents are joined with EOS. The cache key
    covers everything that changes the result, so every run with the same key shares the same tokenizer.
    """
    from spdf_lib.data.corpora import load_corpus
    from spdf_lib.data.registry import cache_dir
    from spdf_lib.tokenizer import load_tokenizer, train_tokenizer

    data = load_corpus(corpus)
    key = f"{corpus}-v{vocab_size}-s{seed}-c{max_chars or 'all'}"
    folder = cache_dir().parent / "tokenized" / key
    if not (folder / "train.pt").is_file():
        tok = train_tokenizer(data.train, vocab_size, seed=seed, max_chars=max_chars)
        eos = tok.eos_token_id

        def stream(docs: list[str]) -> torch.Tensor:
            ids: list[int] = []
            for enc in tok(docs, add_special_tokens=False)["input_ids"]:
                ids += enc + [eos]
            return torch.tensor(ids, dtype=torch.int32)

        tmp = folder.with_name(f".{key}.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tok.save_pretrained(str(tmp))
        torch.save(stream(data.val), tmp / "val.pt")
        torch.save(stream(data.train), tmp / "train.pt")  # written last: marks the folder complete
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished first; its result is identical
            shutil.rmtree(tmp, ignore_errors=True)
    tok = load_tokenizer(folder)
    return tok, torch.load(folder / "train.pt"), torch.load(folder / "val.pt"), data.checksums


def build_model(p: PretrainParams, tokenizer):
    """A freshly initialised GPT for `p` (seeded), with SPDF masks when `p.sparsity > 0`."""
    from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
    from spdf_lib.sparsity import DEFAULT_TARGETS, sparsify

    overrides = {k: v for k in ("n_layer", "n_embd", "n_head") if (v := getattr(p, k)) is not None}
    config = gpt_config(
        p.model_size, **overrides, vocab_size=len(tokenizer), n_positions=p.seq_len, activation=p.activation,
        mdha=p.mdha, mdha_kernel=p.mdha_kernel, dropout=p.dropout, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(p.seed)
    model = GPTForCausalLM(config)
    if p.sparsity > 0:
        sparsify(model, p.sparsity, init=p.mask_init, distribution=p.sparsity_distribution,
                 targets=p.sparsity_targets or DEFAULT_TARGETS, seed=p.seed)
    return model


def save_model(model, tokenizer, folder: Path) -> None:
    """`save_pretrained` model and tokenizer into `folder` atomically (temp folder, then rename)."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def run_pretrain(p: PretrainParams, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Pre-train one GPT as `p` says; writes records, checkpoints and `<run_dir>/model`; returns results."""
    from spdf_lib import flops
    from spdf_lib.sparsity import sparsity_report
    from spdf_lib.train import PackedStream, TrainConfig, train

    run_dir = Path(run_dir or p.run_dir or new_run_dir("spdf_pretrain"))
    tok, train_ids, val_ids, checksums = tokenized_corpus(p.corpus, p.vocab_size, p.seed, p.tokenizer_max_chars)
    model = build_model(p, tok)
    steps = max(1, math.ceil(p.tokens / (p.batch_size * p.seq_len)))
    cfg = TrainConfig(
        max_steps=steps, batch_size=p.batch_size, micro_batch_size=p.micro_batch_size, lr=p.lr,
        min_lr_ratio=p.min_lr_ratio, warmup_steps=int(p.warmup_fraction * steps), weight_decay=p.weight_decay,
        precision=p.precision, eval_every=p.eval_every, log_every=p.log_every, checkpoint_every=p.checkpoint_every,
        seed=p.seed, device=p.device, progress=p.progress, desc=f"pretrain {p.model_size} s={p.sparsity}",
    )
    run = Run(run_dir, "spdf_pretrain", p.model_dump(), p.seed) if _is_main() else None
    if run:
        run.add_data(checksums)
    data = PackedStream(train_ids, val_ids, p.seq_len, seed=p.seed, eval_windows=p.eval_windows)
    last = train(model, data, cfg, out_dir=run_dir, run=run)
    if not run:
        return last
    model.to("cpu")
    save_model(model, tok, run_dir / "model")
    report = sparsity_report(model)
    results = {
        "train_loss": last.get("loss", float("nan")), "eval_loss": last["eval_loss"],
        "eval_ppl": math.exp(min(last["eval_loss"], 50)), "train_flops": last["flops"], "tokens": last["tokens"],
        "steps": last["step"], "train_seconds": last["elapsed_s"],
        "sparsity_actual": float(report.iloc[-1]["sparsity"]), "n_params": sum(x.numel() for x in model.parameters()),
        "flops_per_token": flops.training_flops_per_token(flops.shape_from_model(model), p.seq_len),
    }
    run.finish(results)
    return results


# --- fine-tuning ---------------------------------------------------------------------------------------------


def architecture_name(config: dict) -> str:
    """`gpt`, `relu2`, `mdha` or `primer-ez` for a model config (dict)."""
    relu2, mdha = config.get("activation") == "relu2", bool(config.get("mdha"))
    return {(False, False): "gpt", (True, False): "relu2", (False, True): "mdha", (True, True): "primer-ez"}[relu2, mdha]


def check_checkpoint(path: str | Path, max_len: int | None = None) -> dict[str, Any]:
    """Validate a pre-trained checkpoint folder before any work: it exists, holds a kit GPT and the tokenizer it
    was trained with (same vocabulary size, with the fine-tuning special tokens). Returns its config dict."""
    import json

    from spdf_lib.data.tasks import special_ids
    from spdf_lib.modeling_gpt import MODEL_TYPE
    from spdf_lib.tokenizer import load_tokenizer

    path = Path(path)
    if not str(path) or not (path / "config.json").is_file():
        raise P.ParamsError(f"checkpoint {str(path)!r} is not a model folder (no config.json); give the `model` "
                            f"folder of a spdf_pretrain run")
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") != MODEL_TYPE:
        raise P.ParamsError(f"checkpoint {path} is a {config.get('model_type')!r} model, not the kit's {MODEL_TYPE!r}")
    if not (path / "tokenizer.json").is_file():
        raise P.ParamsError(f"checkpoint {path} has no tokenizer.json; it was not saved by spdf_pretrain")
    tok = load_tokenizer(path)
    if len(tok) != config["vocab_size"]:
        raise P.ParamsError(f"checkpoint {path}: its tokenizer has {len(tok)} tokens but the model {config['vocab_size']}"
                            f"; the tokenizer belongs to another model")
    special_ids(tok)
    if max_len is not None and max_len > config["n_positions"]:
        raise P.ParamsError(f"max_len={max_len} exceeds the checkpoint's context of {config['n_positions']} tokens")
    return config


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


def load_finetune_model(p: FinetuneParams):
    """(model, tokenizer) for a fine-tuning mode: `dense` drops the masks (SPDF), `sparse` keeps them,
    `scratch` re-initialises the checkpoint's architecture (seeded) without its weights or masks."""
    from spdf_lib.modeling_gpt import GPTConfig, GPTForCausalLM
    from spdf_lib.sparsity import densify
    from spdf_lib.tokenizer import load_tokenizer

    tok = load_tokenizer(p.checkpoint)
    if p.mode == "scratch":
        config = GPTConfig.from_pretrained(p.checkpoint)
        config.sparse_params, config.sparsity = [], 0.0
        torch.manual_seed(p.seed)
        return GPTForCausalLM(config), tok
    model = GPTForCausalLM.from_pretrained(p.checkpoint)
    if p.mode == "dense":
        densify(model)
    return model, tok


def run_finetune(p: FinetuneParams, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Fine-tune, decode the evaluation split, score it; writes records, generations.jsonl and metrics.json."""
    from spdf_lib.data.tasks import encode_examples, load_task
    from spdf_lib.decoding import DecodeConfig, config_dict, generate
    from spdf_lib.metrics import score_examples, write_generations
    from spdf_lib.records import write_json
    from spdf_lib.train import PairData, TrainConfig, train

    config = check_checkpoint(p.checkpoint, p.max_len)  # fail fast, before data or compute
    decode = DecodeConfig(num_beams=p.num_beams, length_penalty=p.length_penalty,
                          no_repeat_ngram_size=p.no_repeat_ngram_size, max_new_tokens=p.max_new_tokens,
                          batch_size=p.decode_batch_size)
    data = load_task(p.task, p.setup, p.train_split, p.eval_split, max_eval=p.max_eval_examples)
    train_examples = training_subset(data.train, p.train_fraction, p.max_train_pairs, p.subset_seed)
    run_dir = Path(run_dir or p.run_dir or new_run_dir("spdf_finetune"))
    model, tok = load_finetune_model(p)
    pairs = encode_examples(tok, train_examples, p.max_len)
    eval_pairs = encode_examples(tok, data.eval[: max(1, min(len(data.eval), 64))], p.max_len)
    steps = max(1, math.ceil(p.epochs * len(pairs) / p.batch_size))
    run = Run(run_dir, "spdf_finetune", p.model_dump(), p.seed) if _is_main() else None
    if run:
        run.add_data(data.checksums)
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
    hyps = generate(model, tok, [e.source for e in data.eval], decode, progress=p.progress)
    write_generations(run_dir / "generations.jsonl", data.eval, hyps)
    scored = score_examples(data.eval, hyps, p.metrics, workers=p.metric_workers)
    write_json(run_dir / "metrics.json", {"scores": scored.scores, "missing": scored.missing,
                                          "signatures": scored.signatures, "decoding": config_dict(decode),
                                          "train_split": data.train_split, "eval_split": data.eval_split})
    pre = Path(p.checkpoint).parent / "results.json"
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


# --- Primer ----------------------------------------------------------------------------------------------------


def primer_point_params(p: PrimerParams, size: str, variant: str, seed: int) -> PretrainParams:
    """The pre-training parameters of one (size, variant, seed) run of the Primer ablation."""
    from spdf_lib.modeling_gpt import GPTForCausalLM, gpt_config
    from spdf_lib.primer import VARIANTS

    with torch.device("meta"):
        n_params = sum(x.numel() for x in GPTForCausalLM(gpt_config(size, vocab_size=p.vocab_size,
                                                                      n_positions=p.seq_len)).parameters())
    tokens = max(p.min_tokens, p.tokens_per_param * n_params)
    steps = max(1, math.ceil(tokens / (p.batch_size * p.seq_len)))
    return PretrainParams(
        model_size=size, **VARIANTS[variant], mdha_kernel=p.mdha_kernel, corpus=p.corpus, vocab_size=p.vocab_size,
        tokenizer_max_chars=p.tokenizer_max_chars, seq_len=p.seq_len, tokens=tokens, batch_size=p.batch_size,
        lr=p.lr, warmup_fraction=p.warmup_fraction, eval_every=max(1, steps // p.eval_points),
        eval_windows=p.eval_windows, precision=p.precision, device=p.device, progress=p.progress, seed=seed,
        log_every=max(1, steps // 50),
    )


def run_primer(p: PrimerParams, run_dir: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Train every (size, variant, seed) of `p` into `<run_dir>/points/` (skipping finished ones), then compute
    speedups and power-law fits. Returns the tables (`runs`, `speedups`, `summary`, `powerlaw`)."""
    from spdf_lib import primer
    from spdf_lib.plots import metrics_frame

    run_dir = Path(run_dir or p.run_dir or new_run_dir("primer"))
    run = Run(run_dir, "primer", p.model_dump(), p.seed)
    rows, curves = [], {}
    for size in p.sizes:
        for seed in p.seeds:
            for variant in p.variants:
                point = run_dir / "points" / f"{size}-{variant}-s{seed}"
                if not (point / "results.json").is_file():
                    run_pretrain(primer_point_params(p, size, variant, seed), point)
                curves[size, variant, seed] = metrics_frame(point)
                rows.append({"size": size, "variant": variant, "seed": seed, **read_json(point / "results.json")})
    runs = pd.DataFrame(rows)
    sp = []
    if "baseline" in p.variants:
        for (size, variant, seed), df in curves.items():
            base = curves[size, "baseline", seed]
            sp.append({"size": size, "variant": variant, "seed": seed,
                       "speedup_flops": primer.speedup(base, df, "flops"),
                       "speedup_time": primer.speedup(base, df, "elapsed_s")})
    speedups = pd.DataFrame(sp, columns=["size", "variant", "seed", "speedup_flops", "speedup_time"])
    summary = (runs.merge(speedups, on=["size", "variant", "seed"], how="left")
               .groupby(["size", "variant"], sort=False)
               .agg(eval_loss=("eval_loss", "mean"), eval_loss_std=("eval_loss", "std"),
                    train_flops=("train_flops", "mean"), train_seconds=("train_seconds", "mean"),
                    speedup_flops=("speedup_flops", "mean"), speedup_flops_std=("speedup_flops", "std"),
                    speedup_time=("speedup_time", "mean"), speedup_time_std=("speedup_time", "std"))
               .reset_index())
    results: dict[str, float] = {}
    for r in summary.itertuples():
        for m in ("eval_loss", "speedup_flops", "speedup_flops_std", "speedup_time", "speedup_time_std"):
            results[f"{m}_{r.variant}_{r.size}"] = getattr(r, m)
    powerlaw = pd.DataFrame()
    if len(p.sizes) >= 2 and "baseline" in p.variants:
        powerlaw = primer.powerlaw_table(summary)
        results["powerlaw_k"] = powerlaw["k"].iloc[0]
        results |= {f"powerlaw_speedup_{r.arch}": r.constant_speedup for r in powerlaw.itertuples()}
    for name, table in (("runs", runs), ("speedups", speedups), ("summary", summary), ("powerlaw", powerlaw)):
        atomic_write_text(run_dir / f"primer_{name}.csv", table.to_csv(index=False))
    run.finish({k: float(v) for k, v in results.items()})
    return {"runs": runs, "speedups": speedups, "summary": summary, "powerlaw": powerlaw, "curves": curves}


# --- command line (used by `spdf sweep` for torchrun points) ----------------------------------------------------

RUNNERS = {"spdf_pretrain": ("spdf_lib.experiments", "run_pretrain"), "spdf_finetune": ("spdf_lib.experiments", "run_finetune"),
           "primer": ("spdf_lib.experiments", "run_primer"),
           "flops": ("spdf_lib.experiments", "run_flops"), "exams": ("spdf_lib.exams.run", "run_exam")}


def run_experiment(experiment: str, params: Params, run_dir: str | Path) -> dict[str, Any]:
    """Run `experiment` with validated `params` into `run_dir` (what its notebook's compute cell does)."""
    import importlib

    if experiment not in RUNNERS:
        raise P.ParamsError(f"experiment {experiment!r} cannot run outside its notebook; runnable: {', '.join(RUNNERS)}")
    module, fn = RUNNERS[experiment]
    return getattr(importlib.import_module(module), fn)(params, run_dir)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m spdf_lib.experiments", description="run one experiment (no notebook)")
    ap.add_argument("experiment")
    ap.add_argument("--params", required=True, help="YAML parameter file")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    try:
        params = P.load(args.experiment, args.params, dict(P.parse_override(x) for x in args.param))
        run_experiment(args.experiment, params, args.run_dir)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"{args.experiment}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

