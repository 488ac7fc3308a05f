"""Generic GPT pre-training, shared by both papers: one GPT, dense or with SPDF's static unstructured sparsity
on the six SPDF matrices (Thangarasa et al. 2023, §3), trained by the kit's one training loop. The experiment
`spdf_pretrain` runs it; the Primer ablation runs its points through it (the architecture options `activation`
and `mdha`, So et al. 2021).

`run_pretrain(params, run_dir)` writes the run records, checkpoints (resumable) and `<run_dir>/model`, a
`save_pretrained` folder with the tokenizer that `spdf_finetune` and `from_pretrained` load.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from spdf_lib.atomic import atomic_write_text
from spdf_lib.checkpoints import load_tensors
from spdf_lib.errors import CorruptFileError
from spdf_lib.locations import new_run_dir
from spdf_lib.params import ParamsError
from spdf_lib.pretrain_params import PretrainParams
from spdf_lib.records import Run
from spdf_lib.run_status import ends_runs_on_error
from spdf_lib.train import is_main_process


def tokenized_corpus(corpus: str, vocab_size: int, seed: int = 0, max_chars: int | None = None):
    """(tokenizer, train ids, val ids, data checksums) for a corpus, cached under `$SPDF_CACHE/tokenized/`.

    The tokenizer is trained on the corpus' training split only; documents are joined with EOS. The cache key
    covers everything that changes the result, so every run with the same key shares the same tokenizer. The
    cache folder carries the sha256 of its files (`checksums.json`, written last): a damaged one is named and
    rebuilt, and the temp folders of killed builds are removed.
    """
    from spdf_lib.data.corpora import load_corpus
    from spdf_lib.data.registry import cache_dir
    from spdf_lib.tokenizer import load_tokenizer, train_tokenizer

    data = load_corpus(corpus)
    key = f"{corpus}-v{vocab_size}-s{seed}-c{max_chars or 'all'}"
    folder = cache_dir().parent / "tokenized" / key
    _remove_dead_builds(folder, key)
    if folder.is_dir() and (problem := _cache_problem(folder)):
        print(f"cached corpus {folder} is damaged ({problem}); rebuilding it", file=sys.stderr, flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    if not (folder / CACHE_SUMS).is_file():
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
        torch.save(stream(data.train), tmp / "train.pt")
        sums = {f.name: _sha256(f) for f in sorted(tmp.iterdir()) if f.is_file()}
        (tmp / CACHE_SUMS).write_text(json.dumps(sums, indent=2))  # written last: marks the folder complete
        shutil.rmtree(folder, ignore_errors=True)  # an old cache without checksums
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished first; its result is identical
            shutil.rmtree(tmp, ignore_errors=True)
    tok = load_tokenizer(folder)
    try:  # tensors only, never code (`load_tensors`): the cache folder may have been written by anyone
        train, val = load_tensors(folder / "train.pt"), load_tensors(folder / "val.pt")
    except CorruptFileError as e:
        raise CorruptFileError(f"cached corpus: {e}; delete {folder} to rebuild it") from None
    return tok, train, val, data.checksums


CACHE_SUMS = "checksums.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cache_problem(folder: Path) -> str | None:
    """Why a tokenized-corpus cache folder cannot be used (None: it is intact)."""
    try:
        sums = json.loads((folder / CACHE_SUMS).read_text())
    except FileNotFoundError:
        if not (folder / "train.pt").is_file():
            return "no train.pt: an interrupted build"
        try:  # a cache of an earlier version, without checksums: adopted when its tensors load (never code)
            load_tensors(folder / "train.pt"), load_tensors(folder / "val.pt")
        except CorruptFileError as e:
            return str(e)
        sums = {f.name: _sha256(f) for f in sorted(folder.iterdir()) if f.is_file()}
        atomic_write_text(folder / CACHE_SUMS, json.dumps(sums, indent=2))
        return None
    except ValueError:
        return f"{CACHE_SUMS} is not JSON"
    for name, digest in sums.items():
        if not (folder / name).is_file():
            return f"{name} is missing"
        if _sha256(folder / name) != digest:
            return f"{name} does not match its checksum"
    return None


def _remove_dead_builds(folder: Path, key: str) -> None:
    """Remove `.<key>.<pid>` temp folders whose builder process is gone (killed mid-build)."""
    import psutil

    for tmp in folder.parent.glob(f".{key}.*"):
        pid = tmp.name.rsplit(".", 1)[-1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def shard_corpus(p: PretrainParams):
    """(training data, tokenizer, tokens per pass, data checksums) of a streamed corpus, from the token shards
    `spdf data prepare` wrote; one-line errors, before any compute, when they are missing, were made with another
    tokenizer, or hold fewer tokens than the budget while the corpus has more."""
    from spdf_lib.data.prepare import DEFAULT_SHARD_TOKENS, default_out
    from spdf_lib.data.shard_stream import ShardStream
    from spdf_lib.data.shards import INDEX, ShardSet
    from spdf_lib.data.tokenizer_spec import resolve_tokenizer
    from spdf_lib.tokenizer import tokenizer_from_json

    spec = resolve_tokenizer(p.tokenizer)
    folder = Path(p.shards) if p.shards else default_out(p.corpus, spec)
    shard_tokens = ShardSet.load(folder).shard_tokens if (folder / INDEX).is_file() else DEFAULT_SHARD_TOKENS
    prepare = (
        f"spdf data prepare {p.corpus} --tokenizer {p.tokenizer} --tokens {tokens_to_prepare(p, shard_tokens)}"
        + (f" --out {folder}" if p.shards else "")
    )
    if not (folder / INDEX).is_file():
        raise ParamsError(f"no token shards of {p.corpus!r} in {folder}; prepare them first: {prepare}")
    s = ShardSet.load(folder)
    if s.corpus != p.corpus or s.tokenizer_hash != spec.hash:
        raise ParamsError(f"{folder} holds shards of {s.corpus!r} made with tokenizer {s.tokenizer!r} "
                          f"({s.tokenizer_hash}); this run asks for {p.corpus!r} with {p.tokenizer!r} ({spec.hash})")
    stream = ShardStream(s, p.seq_len, seed=p.seed, eval_windows=p.eval_windows)
    if not s.exhausted and stream.tokens_per_epoch < trained_tokens(p):
        raise ParamsError(
            f"{folder} holds {s.train_tokens:,} training tokens of {p.corpus!r} ({stream.tokens_per_epoch:,}"
            f" in windows of {p.seq_len}), fewer than this run's {trained_tokens(p):,}, and the corpus "
            f"has more: prepare more first: {prepare}"
        )
    checksums = {**s.sources, **{f"{folder.name}/{sh.file}": f"sha256:{sh.sha256}" for sh in s.shards}}
    return stream, tokenizer_from_json(spec.json), stream.tokens_per_epoch, checksums


def trained_tokens(p: PretrainParams) -> int:
    """The tokens a run trains on: whole steps of `batch_size` sequences of `seq_len` covering `p.tokens`."""
    return p.steps * p.batch_size * p.seq_len


def tokens_to_prepare(p: PretrainParams, shard_tokens: int) -> int:
    """Training tokens a shard set needs for one pass of `p`: its trained tokens, plus each shard's tail that
    no whole window of `seq_len + 1` covers."""
    need = trained_tokens(p)
    return need + (math.ceil(need / shard_tokens) + 1) * (p.seq_len + 1)


def check_epochs(tokens: float, corpus_tokens: int, corpus: str, max_epochs: float) -> float:
    """The passes over the corpus that a budget of `tokens` means; more than `max_epochs` is an error (the
    papers saw each pre-training token once: a small corpus repeated a thousand times over-fits silently)."""
    passes = tokens / corpus_tokens
    if passes > max_epochs:
        raise ParamsError(f"tokens={tokens:.4g} is {passes:,.1f} passes over corpus {corpus!r} ({corpus_tokens:,} "
                          f"training tokens), more than max_epochs={max_epochs:g}; pre-train on a larger corpus, with "
                          f"fewer tokens, or raise max_epochs if repeating the data is intended")
    return passes


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


@ends_runs_on_error
def run_pretrain(p: PretrainParams, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Pre-train one GPT as `p` says; writes records, checkpoints and `<run_dir>/model`; returns results."""
    from spdf_lib import flops
    from spdf_lib.data.streams import PackedStream
    from spdf_lib.sparsity import sparsity_report
    from spdf_lib.train import TrainConfig, train

    run_dir = Path(run_dir or p.run_dir or new_run_dir("spdf_pretrain"))
    if p.tokenizer:  # a streamed corpus, from its token shards
        data, tok, corpus_tokens, checksums = shard_corpus(p)
    else:
        tok, train_ids, val_ids, checksums = tokenized_corpus(p.corpus, p.vocab_size, p.seed, p.tokenizer_max_chars)
        data = PackedStream(train_ids, val_ids, p.seq_len, seed=p.seed, eval_windows=p.eval_windows)
        corpus_tokens = len(train_ids)
    epochs = check_epochs(trained_tokens(p), corpus_tokens, p.corpus, p.max_epochs)  # before any training
    model = build_model(p, tok)
    steps = p.steps
    cfg = TrainConfig(
        max_steps=steps, batch_size=p.batch_size, micro_batch_size=p.micro_batch_size, lr=p.lr,
        matrix_lr_scale=p.matrix_lr_scale, diagnostics=p.diagnostics,
        min_lr_ratio=p.min_lr_ratio, warmup_steps=int(p.warmup_fraction * steps), weight_decay=p.weight_decay,
        precision=p.precision, eval_every=p.eval_every, log_every=p.log_every, checkpoint_every=p.checkpoint_every,
        seed=p.seed, device=p.device, progress=p.progress, desc=f"pretrain {p.model_size} s={p.sparsity}",
        compile=p.compile, activation_checkpointing=p.activation_checkpointing, sdpa_backend=p.sdpa_backend,
    )
    run = Run(run_dir, "spdf_pretrain", p.model_dump(), p.seed) if is_main_process() else None
    if run:
        run.add_data(checksums)
    last = train(model, data, cfg, out_dir=run_dir, run=run)
    if not run:
        return last
    model.to("cpu")
    save_model(model, tok, run_dir / "model")
    report = sparsity_report(model)
    results = {
        "train_loss": last.get("loss", float("nan")), "eval_loss": last["eval_loss"],
        "eval_ppl": math.exp(min(last["eval_loss"], 50)), "train_flops": last["flops"], "tokens": last["tokens"],
        "steps": last["step"], "train_seconds": last["elapsed_s"], "corpus_tokens": corpus_tokens,
        "epochs": epochs,
        "sparsity_actual": float(report.iloc[-1]["sparsity"]), "n_params": sum(x.numel() for x in model.parameters()),
        "flops_per_token": flops.training_flops_per_token(flops.shape_from_model(model), p.seq_len),
    }
    run.finish(results)
    return results
