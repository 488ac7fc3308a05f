"""`spdf data prepare`: tokenize a corpus into token shards (`spdf_lib.data.shards`), in parallel, resumably.

    spdf data prepare pile-uncopyrighted --tokenizer gpt2 --tokens 2.505e9 [--out DIR] [--workers N]

How it works:

- The corpus files are fetched through the registry one at a time, as the token count needs them (a
  `--tokens 1e7` run downloads one parquet file, not 28.5 GB); each is verified before it is read.
- The main process streams documents (pyarrow row groups / a zstandard stream, `spdf_lib.data.corpora`) in
  batches to `--workers` processes; each encodes its batch with HF `tokenizers` (one thread per process) and
  sends the ids back. Results are consumed in order, so the shards do not depend on the number of workers.
- Validation first: the corpus' validation files (`val.jsonl.zst` for the Pile), or, where there are none, the
  first documents of the training stream (whole documents, cut at `--val-tokens`); those documents are then
  not trained on. Training tokens follow in `--shard-tokens` shards, each written to a temporary file and
  renamed into place, and recorded in `index.json` (with the stream position where it ends) only after that.
- Interrupted runs resume after the last finished shard; `--tokens` stops early (the last shard is then
  shorter), and a later run with more `--tokens` rewrites only that short shard and continues, giving the same
  files as one run with the larger number.
- Literal special-token text inside documents (`<|endoftext|>` in a web page) is encoded as ordinary text, as
  GPT-2's `encode_ordinary` does: only the separator the kit appends is an EOS.

The tokenizer (`--tokenizer gpt2|PATH`) is resolved by `spdf_lib.data.tokenizer_spec`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator
from tqdm import tqdm

from spdf_lib.data.corpora import CorpusSpec, corpus_spec, iter_documents
from spdf_lib.data.download import locked
from spdf_lib.data.registry import DataError, DataFile, cache_root, fetch_file, planned_download
from spdf_lib.data.shards import INDEX, VAL_FILE, ShardInfo, ShardSet, shard_name
from spdf_lib.data.tokenizer_spec import EOS_TOKEN, GPT2_ENV, TokenizerSpec, resolve_tokenizer
from spdf_lib.params import Params

DEFAULT_SHARD_TOKENS = 100_000_000  # 200 MB of uint16 per shard, as llm.c's FineWeb shards
MAX_VAL_TOKENS = 10_000_000
_BATCH_DOCS = 512  # documents per task sent to a worker
_BATCH_CHARS = 4_000_000  # ... or fewer, when they are long


# --- workers ------------------------------------------------------------------------------------------------

_TOK = None
_EOS = 0


def _init_worker(tokenizer_json: str, eos_id: int) -> None:
    global _TOK, _EOS
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process = one core; --workers sets the parallelism
    from tokenizers import Tokenizer

    _TOK = Tokenizer.from_str(tokenizer_json)
    _TOK.encode_special_tokens = True  # "<|endoftext|>" inside a document is text, not a separator
    _EOS = eos_id


def _encode(job: tuple[int, int, list[str]]) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(file, first document, document lengths, all ids with EOS after each document) of one batch."""
    file, first, texts = job
    encs = _TOK.encode_batch(texts, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) + 1 for e in encs), dtype=np.int64, count=len(encs))
    flat = np.empty(int(lengths.sum()), dtype=np.uint32)
    pos = 0
    for e, n in zip(encs, lengths, strict=True):
        flat[pos : pos + n - 1] = e.ids
        flat[pos + n - 1] = _EOS
        pos += n
    return file, first, lengths, flat


class _Encoder:
    """Encodes batches in order, with at most 2 × workers batches in flight (the reader never races ahead)."""

    def __init__(self, tok: TokenizerSpec, workers: int):
        self.pool = None
        if workers > 0:
            import multiprocessing as mp

            # spawn: workers start clean (no inherited tokenizer threads or open sockets of the parent)
            self.pool = mp.get_context("spawn").Pool(workers, _init_worker, (tok.json, tok.eos_id))
        else:
            _init_worker(tok.json, tok.eos_id)
        self.depth = 2 * max(workers, 1)

    def map(self, jobs: Iterator[tuple[int, int, list[str]]]) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        if self.pool is None:
            yield from map(_encode, jobs)
            return
        pending: deque = deque()
        for job in jobs:
            pending.append(self.pool.apply_async(_encode, (job,)))
            if len(pending) >= self.depth:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


# --- documents ----------------------------------------------------------------------------------------------


def _jobs(files: list[DataFile], spec: CorpusSpec, cursor: list[int], sources: dict[str, str]
          ) -> Iterator[tuple[int, int, list[str]]]:
    """Batches of documents from `cursor` ([file, document, _]) on; fetches each file when it is reached."""
    for fi in range(cursor[0], len(files)):
        f = files[fi]
        path = fetch_file(f)
        sources[f.path] = f.checksum()
        start = cursor[1] if fi == cursor[0] else 0
        batch: list[str] = []
        chars, first = 0, start
        for d, text in enumerate(iter_documents(path, spec.format, spec.field, start), start=start):
            batch.append(text)
            chars += len(text)
            if len(batch) >= _BATCH_DOCS or chars >= _BATCH_CHARS:
                yield fi, first, batch
                batch, chars, first = [], 0, d + 1
        if batch:
            yield fi, first, batch


def _next_cursor(file: int, first: int, lengths: np.ndarray, pos: int) -> list[int]:
    """The stream cursor [file, document, token] of position `pos` within a batch's flat ids."""
    ends = np.cumsum(lengths)
    d = int(np.searchsorted(ends, pos, side="right"))
    if d == len(lengths):  # exactly at the end of the batch: the next document starts there
        return [file, first + d, 0]
    return [file, first + d, pos - (int(ends[d - 1]) if d else 0)]


# --- writing ------------------------------------------------------------------------------------------------


def _write_tokens(root: Path, name: str, ids: np.ndarray) -> str:
    """Write `ids` to `root/name` atomically (temp file, fsync, rename); returns their SHA-256."""
    from spdf_lib.atomic import atomic_write_bytes

    atomic_write_bytes(root / name, ids.tobytes())
    return hashlib.sha256(ids).hexdigest()


_LOCK = ".prepare.lock"
_OURS = re.compile(r"\.?(train-\d{6}\.bin|val\.bin|index\.json)(\..+\.tmp)?|\.prepare\.lock")  # + temp files


def _clean(root: Path, s: ShardSet | None) -> None:
    """Remove what an interrupted run left that the index does not list (temp files, unlisted shards).

    Only the set's own file names are touched; a folder holding anything else is refused."""
    listed = {INDEX, _LOCK} | ({x.file for x in s.shards} | ({s.val.file} if s.val else set()) if s else set())
    names = [p.name for p in root.iterdir()]
    if foreign := [n for n in names if not _OURS.fullmatch(n)]:
        raise DataError(f"--out {root} holds other files ({', '.join(sorted(foreign)[:3])}); give an empty or new "
                        f"folder, or one written by spdf data prepare")
    for n in names:
        if n not in listed:
            (root / n).unlink()


def _check_compatible(s: ShardSet, corpus: str, tok: TokenizerSpec, shard_tokens: int, val_tokens: int) -> None:
    mine = {"corpus": corpus, "tokenizer_hash": tok.hash, "shard_tokens": shard_tokens,
            "val_tokens_requested": val_tokens}
    for k, v in mine.items():
        if getattr(s, k) != v:
            raise DataError(f"{s.root} holds shards prepared with {k}={getattr(s, k)!r}, this run asks for {v!r}; "
                            f"use another --out, or delete {s.root} to start over")


def default_out(corpus: str, tok: TokenizerSpec) -> Path:
    """`$SPDF_CACHE/shards/<corpus>-<tokenizer hash[:8]>`: one folder per corpus and tokenizer."""
    return cache_root() / "shards" / f"{corpus}-{tok.hash[:8]}"


def prepare_shards(corpus: str, tokenizer: str, tokens: int | None = None, out: str | Path | None = None,
                   workers: int | None = None, shard_tokens: int = DEFAULT_SHARD_TOKENS,
                   val_tokens: int | None = None, eos: str = EOS_TOKEN, progress: bool = True) -> ShardSet:
    """Tokenize `corpus` into a shard set holding at least `tokens` training tokens (None: the whole corpus).

    `tokenizer` is `gpt2` or a local path (module docstring); `out` defaults to `default_out`; `workers`
    tokenizer processes (default: all cores; 0 = in this process); `val_tokens` held-out validation tokens
    (default 1% of `tokens`, at most 10M). Resumes and extends an existing set in `out`. Returns the set."""
    spec = corpus_spec(corpus)
    if tokens is not None and tokens < 1:
        raise DataError(f"--tokens must be at least 1, got {tokens}")
    if shard_tokens < 1:
        raise DataError(f"--shard-tokens must be at least 1, got {shard_tokens}")
    tok = resolve_tokenizer(tokenizer, eos)
    workers = (os.cpu_count() or 1) if workers is None else workers
    root = Path(out) if out is not None else default_out(corpus, tok)
    root.mkdir(parents=True, exist_ok=True)
    # One preparation per folder at a time (two sweep points, or DDP ranks, asking for the same corpus): the
    # second waits, then finds the shards ready or continues where the first stopped.
    with locked(root / _LOCK):
        return _prepare_locked(corpus, spec, tokenizer, tok, tokens, root, workers, shard_tokens, val_tokens, progress)


def _prepare_locked(corpus: str, spec: CorpusSpec, tokenizer: str, tok: TokenizerSpec, tokens: int | None,
                    root: Path, workers: int, shard_tokens: int, val_tokens: int | None, progress: bool) -> ShardSet:
    if (root / INDEX).is_file():
        s = ShardSet.load(root)
        _clean(root, s)
        # Extending a set keeps its validation split unless this run names another size.
        _check_compatible(s, corpus, tok, shard_tokens, val_tokens or s.val_tokens_requested)
    else:
        _clean(root, None)
        if val_tokens is None:
            val_tokens = min(MAX_VAL_TOKENS, max(1, (tokens or MAX_VAL_TOKENS * 100) // 100))
        s = ShardSet(corpus=corpus, tokenizer=tokenizer, tokenizer_hash=tok.hash, vocab_size=tok.vocab_size,
                     eos_id=tok.eos_id, shard_tokens=shard_tokens, val_tokens_requested=val_tokens, root=root)
    if s.val is not None and s.satisfies(tokens):
        return s
    train_files = spec.train_files()
    plan = planned_download(spec.dataset, [f.path.split("/", 1)[1] for f in train_files + spec.val_files()])
    fetch = (f"{plan.size_text()} to download at most (each file only when the token count reaches it)"
             if plan.to_fetch else "all available locally")
    print(f"spdf data prepare {corpus} -> {root}: {len(plan.files)} source files, {fetch}", file=sys.stderr,
          flush=True)

    enc = _Encoder(tok, workers)
    try:
        if s.val is None:
            _prepare_val(s, spec, train_files, enc, val_tokens)
        _prepare_train(s, spec, train_files, enc, tokens, progress)
    finally:
        enc.close()
    return s


def _prepare_val(s: ShardSet, spec: CorpusSpec, train_files: list[DataFile], enc: _Encoder, val_tokens: int) -> None:
    """The validation split: from the corpus' validation files, else the first whole training documents."""
    files = spec.val_files() or train_files
    parts, n, cursor, docs = [], 0, [0, 0, 0], 0
    for fi, first, lengths, flat in enc.map(_jobs(files, spec, [0, 0, 0], s.sources)):
        ends = np.cumsum(lengths)
        k = min(int(np.searchsorted(ends, val_tokens - n, side="left")) + 1, len(lengths))  # whole documents
        parts.append(flat[: ends[k - 1]])
        n, docs, cursor = n + int(ends[k - 1]), docs + k, [fi, first + k, 0]
        if n >= val_tokens:
            break
    ids = np.concatenate(parts)[:val_tokens] if parts else np.empty(0, np.uint32)
    if len(ids) == 0:
        raise DataError(f"corpus {s.corpus} gave no validation tokens")
    ids = ids.astype(s.dtype)
    sha = _write_tokens(s.root, VAL_FILE, ids)
    s.val = ShardInfo(VAL_FILE, len(ids), sha, docs, [0, 0, 0], cursor)
    # Held out of the training files: training starts after the validation documents.
    s.train_start = [0, 0, 0] if spec.val_files() else cursor
    s.save()


def _prepare_train(s: ShardSet, spec: CorpusSpec, files: list[DataFile], enc: _Encoder, tokens: int | None,
                   progress: bool) -> None:
    if s.shards and s.shards[-1].tokens < s.shard_tokens and not s.satisfies(tokens):
        # The short last shard of an earlier `--tokens` stop: redo it, so extending equals preparing at once.
        (s.root / s.shards.pop().file).unlink(missing_ok=True)
        s.exhausted = False
    if s.satisfies(tokens):
        return
    s.requested_tokens = None if tokens is None else max(tokens, s.requested_tokens or 0)
    cursor = list(s.shards[-1].end) if s.shards else list(s.train_start)
    buf = np.empty(s.shard_tokens, dtype=s.dtype)
    fill, shard_start, docs = 0, list(cursor), 0
    done = s.train_tokens
    bar = tqdm(total=tokens, initial=done, unit="tok", unit_scale=True, desc=f"prepare {s.corpus}",
               disable=None if progress else True, dynamic_ncols=True)
    t0, n0 = time.perf_counter(), done

    def flush(end: list[int]) -> None:
        nonlocal fill, shard_start, docs
        ids = buf[:fill]
        name = shard_name(len(s.shards))
        sha = _write_tokens(s.root, name, ids)
        s.shards.append(ShardInfo(name, int(fill), sha, docs, list(shard_start), list(end)))
        s.save()  # the shard is complete on disk before the index names it
        fill, shard_start, docs = 0, list(end), 0

    try:
        for fi, first, lengths, flat in enc.map(_jobs(files, spec, cursor, s.sources)):
            # A resumed stream starts inside its first document: skip the tokens already in earlier shards.
            pos = cursor[2] if [fi, first] == cursor[:2] else 0
            starts = np.cumsum(lengths) - lengths  # where each document begins in `flat`
            while pos < len(flat):
                take = min(len(flat) - pos, s.shard_tokens - fill)
                if tokens is not None:
                    take = min(take, tokens - done)
                buf[fill : fill + take] = flat[pos : pos + take]
                docs += int(np.searchsorted(starts, pos + take) - np.searchsorted(starts, pos))
                fill, pos, done = fill + take, pos + take, done + take
                bar.update(take)
                if fill == s.shard_tokens or (tokens is not None and done >= tokens):
                    flush(_next_cursor(fi, first, lengths, pos))
                if tokens is not None and done >= tokens:
                    break
            if tokens is not None and done >= tokens:
                break
        else:
            if fill:
                flush([len(files), 0, 0])
            s.exhausted = True
            s.save()
    finally:
        bar.close()
    rate = (done - n0) / max(time.perf_counter() - t0, 1e-9)
    print(f"spdf data prepare {s.corpus}: {s.train_tokens:,} training + {s.val_tokens:,} validation tokens in "
          f"{len(s.shards)} shards ({s.nbytes / 1e9:.2f} GB, {rate:,.0f} tokens/s this run) -> {s.root}",
          file=sys.stderr, flush=True)


# --- command line ---------------------------------------------------------------------------------------------


def _count(text: str) -> int:
    """A token count from the command line: `2.5e9`, `2505000000` or `2_505_000_000`."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(value)


class PrepareParams(Params):
    """`spdf data prepare` as an experiment: the first stage of the paper sweep, which the pre-training points
    that read these shards wait for. Its records hold the source files' checksums and the throughput."""

    corpus: str  # a corpus of spdf_lib.data.corpora (streamed ones must be prepared; small ones may be)
    tokenizer: str  # gpt2, or a folder with tokenizer.json
    tokens: float | None = Field(None, ge=1)  # training tokens to prepare; None: the whole corpus
    out: str = ""  # the shard folder; empty: <run_dir>/shards
    workers: int | None = Field(None, ge=0)  # tokenizer processes; None: all cores
    shard_tokens: int = Field(DEFAULT_SHARD_TOKENS, ge=1)
    val_tokens: int | None = Field(None, ge=1)
    progress: bool = True

    @field_validator("corpus")
    @classmethod
    def _known(cls, v: str) -> str:
        corpus_spec(v)  # a one-line error naming the known corpora
        return v


def run_prepare(p: PrepareParams, run_dir: str | Path) -> dict[str, float]:
    """Prepare the shards of `p` (into `<run_dir>/shards` unless `out` is set) and write the run's records."""
    from spdf_lib.records import Run

    run_dir = Path(run_dir)
    run = Run(run_dir, "data_prepare", p.model_dump(), p.seed)
    t0 = time.perf_counter()
    s = prepare_shards(p.corpus, p.tokenizer, None if p.tokens is None else int(p.tokens), p.out or run_dir / "shards",
                       p.workers, p.shard_tokens, p.val_tokens, progress=p.progress)
    seconds = time.perf_counter() - t0
    run.add_data(s.sources)
    results = {"train_tokens": s.train_tokens, "val_tokens": s.val_tokens, "shards": len(s.shards),
               "bytes": s.nbytes, "seconds": seconds, "tokens_per_second": s.train_tokens / max(seconds, 1e-9)}
    run.finish(results)
    return results


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `spdf data prepare CORPUS --tokenizer gpt2|PATH [--tokens N] ...`."""
    parser.add_argument("corpus", help="a corpus of spdf_lib.data.corpora (e.g. pile-uncopyrighted, fineweb-edu-10bt)")
    parser.add_argument("--tokenizer", required=True,
                        help=f"'gpt2' (GPT-2's tokenizer.json; offline: set {GPT2_ENV}=DIR) or a local folder "
                             f"with tokenizer.json")
    parser.add_argument("--tokens", type=_count, default=None,
                        help="training tokens to prepare, e.g. 2.505e9 (default: the whole corpus)")
    parser.add_argument("--out", default=None, help="shard folder (default: $SPDF_CACHE/shards/CORPUS-TOKHASH)")
    parser.add_argument("--workers", type=int, default=None, help="tokenizer processes (default: all cores)")
    parser.add_argument("--shard-tokens", type=_count, default=DEFAULT_SHARD_TOKENS,
                        help=f"tokens per shard file (default {DEFAULT_SHARD_TOKENS:.0e})")
    parser.add_argument("--val-tokens", type=_count, default=None,
                        help=f"held-out validation tokens (default 1%% of --tokens, at most {MAX_VAL_TOKENS:.0e})")
    parser.add_argument("--eos", default=EOS_TOKEN, help=f"the document separator token (default {EOS_TOKEN})")


def cmd_prepare(args: argparse.Namespace) -> int:
    """Run `spdf data prepare` (bad input raises `DataError`, which the CLI prints as one line)."""
    s = prepare_shards(args.corpus, args.tokenizer, args.tokens, args.out, args.workers, args.shard_tokens,
                       args.val_tokens, args.eos)
    print(s.root)
    return 0
