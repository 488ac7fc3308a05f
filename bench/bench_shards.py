"""Token-shard preparation speed (`spdf data prepare`): tokens per second with 1 and with 2 tokenizer processes.

The corpus is the mirror's text (WikiText-2 valid + test articles, Tiny Shakespeare speeches) repeated to about
14 MB, in one parquet file as FineWeb-Edu ships it. The tokenizer is GPT-2's when it can be had (cached, or
`SPDF_TOKENIZER_GPT2`), else `SPDF_BENCH_TOKENIZER` (a folder with tokenizer.json), else a 16k byte-level BPE
of the kit trained on the same text. Throughput per process is the reported figure divided by the workers.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import Result
from spdf_lib.data import corpora, registry
from spdf_lib.data.corpora import CorpusSpec
from spdf_lib.data.prepare import prepare_shards
from spdf_lib.data.registry import DataError, DataFile, Dataset
from spdf_lib.data.tokenizer_spec import resolve_tokenizer

REPEAT = 4


def _documents() -> list[str]:
    if not os.environ.get("SPDF_DATA_MIRROR"):
        raise SystemExit("bench_shards reads wikitext-2 from the data mirror: set SPDF_DATA_MIRROR")
    mirror = Path(os.environ["SPDF_DATA_MIRROR"])
    wiki = "".join((mirror / "wikitext-2" / n).read_text(encoding="utf-8") for n in ("valid.txt", "test.txt"))
    docs = [d for d in re.split(r"\n(?= = [^=])", wiki) if d.strip()]
    docs += [d for d in (mirror / "tinyshakespeare" / "input.txt").read_text().split("\n\n") if d.strip()]
    return docs * REPEAT


def _tokenizer(docs: list[str], tmp: Path) -> tuple[str, str]:
    if os.environ.get("SPDF_BENCH_TOKENIZER"):
        return os.environ["SPDF_BENCH_TOKENIZER"], "SPDF_BENCH_TOKENIZER"
    try:
        resolve_tokenizer("gpt2")
        return "gpt2", "gpt2"
    except DataError:
        from spdf_lib.tokenizer import train_tokenizer

        train_tokenizer(docs, 16384, max_chars=2_000_000).save_pretrained(str(tmp / "tok"))
        return str(tmp / "tok"), "kit BPE 16k"


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the tokenizer workers, once the pool is joined)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run() -> list[Result]:
    tmp = Path(tempfile.mkdtemp(prefix="spdf-bench-shards-"))
    saved = dict(os.environ)
    try:
        docs = _documents()
        (tmp / "mirror" / "bench-text").mkdir(parents=True)
        pq.write_table(pa.table({"text": docs}), tmp / "mirror" / "bench-text" / "000.parquet", row_group_size=1000)
        registry.REGISTRY["bench-text"] = Dataset("bench-text", "", "", (
            DataFile("bench-text", "bench-text/000.parquet", "file:///", None, None, None, "", ""),))
        corpora.CORPORA["bench-text"] = CorpusSpec("bench-text", format="parquet")
        os.environ.update(SPDF_DATA_MIRROR=str(tmp / "mirror"), SPDF_CACHE=str(tmp / "cache"))
        tok, label = _tokenizer(docs, tmp)
        rates, cpu = {}, {}
        for workers in (1, 2):
            out = tmp / f"out-{workers}"
            t0, c0 = time.perf_counter(), _cpu_seconds()
            s = prepare_shards("bench-text", tok, out=out, workers=workers, shard_tokens=1_000_000,
                               val_tokens=10_000, progress=False)
            n = s.train_tokens + s.val_tokens
            rates[workers], cpu[workers] = n / (time.perf_counter() - t0), n / (_cpu_seconds() - c0)
            shutil.rmtree(out)
        mb = sum(len(d.encode()) for d in docs) / 1e6
        load = os.getloadavg()[0]
        return [
            Result(
                f"shard preparation ({label}, {mb:.0f} MB text)",
                "1 worker",
                rates[1],
                "2 workers",
                rates[2],
                "tok/s",
                True,
                note=f"per process {rates[1]:,.0f} / {rates[2] / 2:,.0f} tok/s; per CPU-second (workers + "
                f"reader) {cpu[1]:,.0f} / {cpu[2]:,.0f}; load average {load:.1f} on {os.cpu_count()} cores",
            )
        ]
    finally:
        os.environ.clear()
        os.environ.update(saved)
        registry.REGISTRY.pop("bench-text", None)
        corpora.CORPORA.pop("bench-text", None)
        shutil.rmtree(tmp, ignore_errors=True)
