"""Data-to-text tasks for SPDF's downstream evaluation (Thangarasa et al. 2023, §4): E2E, WebNLG 2017 and DART v1.1.1.

Every file is read through the data registry (`spdf_lib.data.registry.fetch`), so it is verified against its
checksum, and a file the mirror lacks fails with the registry's one-line error naming its download URL.

Examples. An `Example` is one input with *all* its references (what evaluation needs); training uses one
(source, reference) pair per reference (`training_pairs`, `encode_examples`).

Splits. Each task maps logical split names to registry files (`TASKS[task].splits`, `split_table()`):

| task   | split        | files                                                       | note |
| ------ | ------------ | ----------------------------------------------------------- | ---- |
| e2e    | train        | trainset.csv                                                | not in the offline mirror |
| e2e    | dev          | devset.csv                                                  | 547 MRs |
| e2e    | test         | testset_w_refs.csv                                          | 630 MRs |
| webnlg | train        | train/*triples/*.xml (52 files)                             | 6,940 entries |
| webnlg | dev          | dev/*triples/*.xml (52 files)                               | 872 entries |
| webnlg | test         | test/testdata_with_lex.xml                                  | 1,862 entries, 15 categories |
| webnlg | test_seen    | test/testdata_with_lex.xml minus the 5 unseen categories    | 971 entries |
| webnlg | test_unseen  | test/testdata_unseen_with_lex.xml                           | 891 entries |
| dart   | train        | dart-v1.1.1-full-train.json                                 | not in the offline mirror |
| dart   | dev          | dart-v1.1.1-full-dev.json                                   | 2,768 entries |
| dart   | test         | dart-v1.1.1-full-test.json                                  | not in the offline mirror |
| dart   | test_xml     | dart-v1.1.1-full-test.xml                                   | the test set as XML, 5,097 |
| curation | train, validation, test | curation-corpus-base.csv + fetched articles | 80/10/10, seeded URL hash |

What to train and evaluate on is a *setup* (`TaskSpec.setups`), overridable split by split in `load_task`:
`paper` trains on train and evaluates on test (needs the files the mirror lacks for E2E and DART); `offline`
uses only mirror files: E2E trains on dev and evaluates on test, WebNLG is unchanged, DART trains on dev and
evaluates on the test XML.

Linearisation (`Example.source`), chosen to keep the input readable by a GPT pre-trained on plain text:
- E2E: the MR's attributes in their given order, `slot[value]`, joined by ` | `:
  `name[The Vaults] | eatType[pub] | priceRange[more than £30]`.
- WebNLG: the `modifiedtripleset` triples in order, each `subject | property | object`, joined by ` ; `.
  Underscores become spaces in subject, property and object (they stand for spaces in DBpedia resource and
  property names: `Aarhus_Airport` -> `Aarhus Airport`, `1st_runway_LengthFeet` -> `1st runway LengthFeet`);
  camelCase properties and the double quotes around literals (`"18L/36R"`) are kept as they are.
- DART: the triples in order, `subject | relation | object` joined by ` ; `, verbatim: DART's entities are
  already surface text, and its relation names (`LEADER_NAME`, `[TITLE]`) are kept as the dataset has them.
Whitespace in every field and reference is normalised (runs of spaces, tabs and newlines become one space; the
E2E CSVs have ~1,600 references with stray or doubled spaces). Empty references are dropped (the DART test XML
has one, so it yields 12,551 references from its 12,552 `<lex>` elements); an entry left without any reference
would be skipped (none is, in the mirror files).

Curation Corpus (`curation`, summarisation): the source is the article's main text as fetched by `spdf data fetch
curation-corpus` (`spdf_lib.data.curation`; its paragraphs joined by spaces), the one reference its professional
summary. The corpus ships no splits: an article is in train, validation or test by a hash of its URL (SHA-256 of
`curation-split-<seed>:<url>`, its first 8 bytes as a fraction of 2^64: below 0.8 train, below 0.9 validation,
else test; `split_of`), so a split never depends on which other articles could be fetched, and the seed and
fractions go into the run's records. URLs without a fetched article are left out (and counted). The article is
truncated like every source (`encoding.encode_prompt`): its first `max_len // 2 - 1` tokens, then `<|sep|>`,
leaving the other half of the context to the summary (82.6 words on average in the corpus's README).

Their token format for fine-tuning and decoding is `spdf_lib.data.encoding`.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spdf_lib.data.registry import DataError, checksums, dataset, fetch, is_available

# The five WebNLG 2017 test categories absent from train/dev.
WEBNLG_UNSEEN_CATEGORIES = frozenset({"Artist", "Athlete", "CelestialBody", "MeanOfTransportation", "Politician"})
TRIPLE_SEP = " ; "
FIELD_SEP = " | "


@dataclass(frozen=True)
class Example:
    """One data-to-text input with all its references.

    `id` is unique within a split (`<split>/...`); `source` is the linearised input; `meta` holds what the
    dataset says besides (E2E: the raw `mr`; WebNLG: `category`, `size`, `eid`, `seen`; DART: `sources` of the
    references, `size`, `dropped_empty_references`, and `subtree_was_extended` (JSON) or `category`/`eid` (XML)).
    Equality and hashing ignore `meta`.
    """

    id: str
    source: str
    references: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


# --- linearisation ---------------------------------------------------------------------------------------------

_MR_ATTRIBUTE = re.compile(r"\s*([^\[\],]+?)\s*\[([^\]]*)\]\s*(?:,|$)")


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def parse_mr(mr: str) -> list[tuple[str, str]]:
    """The (slot, value) pairs of an E2E meaning representation such as `name[Alimentum], area[city centre]`."""
    pairs, end = [], 0
    for m in _MR_ATTRIBUTE.finditer(mr):
        if m.start() != end:
            break
        pairs.append((_clean(m.group(1)), _clean(m.group(2))))
        end = m.end()
    if end != len(mr) or not pairs:
        raise DataError(f"cannot parse E2E MR {mr!r}: expected `slot[value], slot[value], ...`")
    return pairs


def linearise_mr(mr: str) -> str:
    """E2E input as `slot[value] | slot[value] | ...`, attributes in their given order."""
    return FIELD_SEP.join(f"{slot}[{value}]" for slot, value in parse_mr(mr))


def linearise_triples(triples: Sequence[Sequence[str]], dbpedia: bool = False) -> str:
    """Triples as `subject | relation | object ; ...`. With `dbpedia`, underscores become spaces (WebNLG)."""
    parts = []
    for triple in triples:
        if len(triple) != 3:
            raise DataError(f"a triple must have subject, relation and object; got {list(triple)!r}")
        fields = [_clean(x.replace("_", " ") if dbpedia else x) for x in triple]
        parts.append(FIELD_SEP.join(fields))
    return TRIPLE_SEP.join(parts)


def _split_mtriple(text: str) -> list[str]:
    parts = (text or "").split(" | ")
    if len(parts) != 3:
        raise DataError(f"cannot parse triple {text!r}: expected `subject | relation | object`")
    return parts


# --- readers: files -> examples ---------------------------------------------------------------------------------


def _read_e2e(paths: list[Path], split: str) -> list[Example]:
    # devset.csv has CRLF line endings and an unquoted header, testset_w_refs.csv LF and a quoted header: the
    # csv module reads both (newline="" lets it handle CRLF inside its own parser).
    refs: dict[str, list[str]] = {}
    for path in paths:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != ["mr", "ref"]:
                raise DataError(f"{path}: expected the columns mr,ref; got {reader.fieldnames}")
            for row in reader:
                refs.setdefault(row["mr"], []).append(_clean(row["ref"]))
    return [
        Example(f"{split}/{i}", linearise_mr(mr), tuple(x for x in r if x), {"mr": mr})
        for i, (mr, r) in enumerate(refs.items()) if any(r)
    ]


def _read_webnlg(paths: list[Path], split: str) -> list[Example]:
    out = []
    multi_file = len(paths) > 1  # train/dev: one file per (size, category), whose eids restart at Id1
    for path in paths:
        for entry in ET.parse(path).getroot().iter("entry"):
            triples = [_split_mtriple(t.text) for t in entry.find("modifiedtripleset").iter("mtriple")]
            category, eid = entry.get("category"), entry.get("eid")
            key = f"{path.stem}/{eid}" if multi_file else eid
            references = tuple(r for r in (_clean(lex.text) for lex in entry.findall("lex")) if r)
            if not references:
                continue
            out.append(Example(
                f"{split}/{key}",
                linearise_triples(triples, dbpedia=True),
                references,
                {"category": category, "size": int(entry.get("size")), "eid": eid,
                 "seen": category not in WEBNLG_UNSEEN_CATEGORIES},
            ))
    return out


def _dart_example(id: str, triples: list, annotations: list[tuple[str, str | None]], meta: dict) -> Example | None:
    # The test XML has one empty reference (<lex ... lid="Id2" /> in entry Id116): an empty string is no
    # reference, and as one it would distort BLEU's closest reference length. Empty references are dropped.
    kept = [(_clean(text), source) for text, source in annotations if _clean(text)]
    if not kept:
        return None
    meta = {"sources": [source for _, source in kept], "size": len(triples),
            "dropped_empty_references": len(annotations) - len(kept), **meta}
    return Example(id, linearise_triples(triples), tuple(text for text, _ in kept), meta)


def _read_dart_json(paths: list[Path], split: str) -> list[Example]:
    out = []
    for path in paths:
        for i, entry in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            ex = _dart_example(f"{split}/{i}", entry["tripleset"],
                               [(a["text"], a["source"]) for a in entry["annotations"]],
                               {"subtree_was_extended": entry.get("subtree_was_extended")})
            if ex is not None:
                out.append(ex)
    return out


def _read_dart_xml(paths: list[Path], split: str) -> list[Example]:
    out = []
    for path in paths:
        for entry in ET.parse(path).getroot().iter("entry"):
            triples = [_split_mtriple(t.text) for t in entry.find("modifiedtripleset").iter("mtriple")]
            ex = _dart_example(f"{split}/{entry.get('eid')}", triples,
                               [(lex.text, lex.get("comment")) for lex in entry.findall("lex")],
                               {"category": entry.get("category"), "eid": entry.get("eid")})
            if ex is not None:
                out.append(ex)
    return out


def split_of(url: str, seed: int = 0) -> str:
    """The Curation Corpus split of an article (`train`, `validation` or `test`): a seeded hash of its URL."""
    u = int.from_bytes(hashlib.sha256(f"curation-split-{seed}:{url}".encode()).digest()[:8], "big") / 2**64
    return next(name for name, upper in CURATION_SPLITS if u < upper)


CURATION_SPLITS = (("train", 0.8), ("validation", 0.9), ("test", 1.0))  # cumulative upper bounds


def _read_curation(paths: list[Path], split: str, articles: str | Path = "", split_seed: int = 0) -> list[Example]:
    from spdf_lib.data.curation import articles_dir, load_articles, read_summaries

    texts, manifest = load_articles(articles or articles_dir())
    rows = [r for r in read_summaries(paths[0]) if split_of(r["url"], split_seed) == split]
    out = []
    for r in rows:
        if r["url"] in texts:
            article = texts[r["url"]]
            meta = {"url": r["url"], "headline": r.get("headline", ""), "article": article,
                    "split_seed": split_seed, "articles_coverage": manifest.get("coverage", {})}
            out.append(Example(f"{split}/{hashlib.sha1(r['url'].encode()).hexdigest()[:12]}", _clean(article),
                               (r["summary"],), meta))
    return out


# --- the task registry ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitSpec:
    """A logical split: the registry files it reads (fnmatch `pattern` relative to the dataset folder), how to
    read them, and an optional filter on the examples read."""

    pattern: str
    reader: Callable[[list[Path], str], list[Example]]
    keep: Callable[[Example], bool] | None = None
    note: str = ""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    dataset: str  # the registry dataset
    splits: dict[str, SplitSpec]
    setups: dict[str, tuple[str, str]]  # setup name -> (train split, eval split)


TASKS: dict[str, TaskSpec] = {
    "e2e": TaskSpec(
        "e2e", "e2e",
        {
            "train": SplitSpec("trainset.csv", _read_e2e, note="not in the offline mirror"),
            "dev": SplitSpec("devset.csv", _read_e2e),
            "test": SplitSpec("testset_w_refs.csv", _read_e2e),
        },
        {"paper": ("train", "test"), "offline": ("dev", "test")},
    ),
    "webnlg": TaskSpec(
        "webnlg", "webnlg2017",
        {
            "train": SplitSpec("train/*triples/*.xml", _read_webnlg),
            "dev": SplitSpec("dev/*triples/*.xml", _read_webnlg),
            "test": SplitSpec("test/testdata_with_lex.xml", _read_webnlg, note="seen and unseen categories"),
            "test_seen": SplitSpec("test/testdata_with_lex.xml", _read_webnlg, keep=lambda e: e.meta["seen"],
                                   note="the full test set minus the 5 unseen categories"),
            "test_unseen": SplitSpec("test/testdata_unseen_with_lex.xml", _read_webnlg,
                                     note="the 5 categories absent from train/dev"),
        },
        {"paper": ("train", "test"), "offline": ("train", "test")},
    ),
    "dart": TaskSpec(
        "dart", "dart",
        {
            "train": SplitSpec("dart-v1.1.1-full-train.json", _read_dart_json, note="not in the offline mirror"),
            "dev": SplitSpec("dart-v1.1.1-full-dev.json", _read_dart_json),
            "test": SplitSpec("dart-v1.1.1-full-test.json", _read_dart_json, note="not in the offline mirror"),
            "test_xml": SplitSpec("dart-v1.1.1-full-test.xml", _read_dart_xml,
                                  note="the test set in XML (no subtree_was_extended field)"),
        },
        {"paper": ("train", "test"), "offline": ("dev", "test_xml")},
    ),
    "curation": TaskSpec(
        "curation", "curation-corpus",
        {name: SplitSpec("curation-corpus-base.csv", _read_curation, note="needs `spdf data fetch curation-corpus`")
         for name, _ in CURATION_SPLITS},
        {"paper": ("train", "test"), "offline": ("train", "test")},
    ),
}


def task(name: str) -> TaskSpec:
    """The spec of task `name`; a one-line error listing the known tasks otherwise."""
    if name not in TASKS:
        raise DataError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def _split(spec: TaskSpec, split: str) -> SplitSpec:
    if split not in spec.splits:
        raise DataError(f"task {spec.name!r} has no split {split!r}; choose one of {', '.join(spec.splits)}")
    return spec.splits[split]


def split_files(task_name: str, split: str) -> list[str]:
    """The registry paths (relative to the dataset folder) that `split` of `task_name` reads, sorted."""
    spec = task(task_name)
    pattern = _split(spec, split).pattern
    files = [f.path.split("/", 1)[1] for f in dataset(spec.dataset).files]
    matched = sorted(p for p in files if fnmatch.fnmatchcase(p, pattern))
    if not matched:
        raise DataError(f"split {split!r} of task {task_name!r}: no registry file matches {pattern!r}")
    return matched


def split_available(task_name: str, split: str) -> bool:
    """Whether every file of the split can be read without network (mirror folder, cache or package)."""
    spec = task(task_name)
    by_key = {f.path.split("/", 1)[1]: f for f in dataset(spec.dataset).files}
    return all(is_available(by_key[p]) for p in split_files(task_name, split))


def split_table() -> list[dict[str, Any]]:
    """One row per (task, split): files read, whether they are available offline, and a note. For notebooks."""
    rows = []
    for name, spec in TASKS.items():
        for split, s in spec.splits.items():
            files = split_files(name, split)
            rows.append({"task": name, "split": split, "dataset": spec.dataset, "pattern": s.pattern,
                         "n_files": len(files), "available": split_available(name, split), "note": s.note})
    return rows


def _read_split(spec: TaskSpec, split: str, paths: dict[str, Path], limit: int | None,
                **options: Any) -> list[Example]:
    s = _split(spec, split)
    examples = s.reader([paths[p] for p in split_files(spec.name, split)], split, **options)
    if s.keep is not None:
        examples = [e for e in examples if s.keep(e)]
    if limit is not None:
        examples = examples[:limit]
    if not examples:
        raise DataError(f"split {split!r} of task {spec.name!r} has no examples; check the files it reads "
                        f"({s.pattern}) and the example limit")
    return examples


def _check_limit(name: str, limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise DataError(f"{name}={limit}: must be at least 1 (or None for the whole split)")


def load_split(task_name: str, split: str, limit: int | None = None) -> list[Example]:
    """The examples of one split, each with all its references; `limit` keeps the first `limit` of them."""
    spec = task(task_name)
    _split(spec, split)
    _check_limit("limit", limit)
    paths = fetch(spec.dataset, split_files(task_name, split))
    return _read_split(spec, split, paths, limit)


@dataclass
class TaskData:
    """The train and eval examples of a task, and the registry checksums of the files read (for run records)."""

    task: str
    train_split: str
    eval_split: str
    train: list[Example]
    eval: list[Example]
    checksums: dict[str, str]


def load_task(task_name: str, setup: str = "paper", train_split: str | None = None,
              eval_split: str | None = None, max_train: int | None = None,
              max_eval: int | None = None, **options: Any) -> TaskData:
    """Train and eval examples of `task_name` for a `setup` (`paper` or `offline`, see the module docstring);
    `train_split`/`eval_split` override the setup's choice. Names and limits are checked, and every file of
    both splits is fetched (and verified), before anything is parsed. `options` go to the task's reader
    (curation: `articles`, the folder of a fetch; `split_seed`)."""
    spec = task(task_name)
    if setup not in spec.setups:
        raise DataError(f"task {task_name!r} has no setup {setup!r}; choose one of {', '.join(spec.setups)}")
    train_split = train_split or spec.setups[setup][0]
    eval_split = eval_split or spec.setups[setup][1]
    _split(spec, train_split)
    _split(spec, eval_split)
    _check_limit("max_train", max_train)
    _check_limit("max_eval", max_eval)
    files = sorted(set(split_files(task_name, train_split)) | set(split_files(task_name, eval_split)))
    paths = fetch(spec.dataset, files)
    return TaskData(
        task_name, train_split, eval_split,
        _read_split(spec, train_split, paths, max_train, **options),
        _read_split(spec, eval_split, paths, max_eval, **options),
        checksums(paths, spec.dataset),
    )


def training_pairs(examples: Sequence[Example]) -> list[tuple[str, str]]:
    """One (source, reference) pair per reference, in example order."""
    return [(e.source, ref) for e in examples for ref in e.references]
