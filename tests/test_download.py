"""Streamed downloads through a real HTTP server on 127.0.0.1: resume after a kill or a dropped connection
without fetching finished bytes again, corrupt files, checksums recorded at first download, the one-line
announcement, and a server that goes away in the middle of a shard preparation."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_fixtures import RangeServer, build_corpora, register_corpora, train_test_tokenizer

from spdf_lib.data import corpora, registry
from spdf_lib.data.registry import DataError, fetch, fetch_file

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def served_root(mirror, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("served")
    build_corpora(mirror, root)
    return root


@pytest.fixture(scope="module")
def tokenizer_dir(mirror, tmp_path_factory) -> Path:
    return train_test_tokenizer(mirror, tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture
def env(served_root, tmp_path, monkeypatch):
    """The test corpora registered, a private cache, and a server over them as the mirror."""
    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    monkeypatch.setattr(corpora, "CORPORA", dict(corpora.CORPORA))
    register_corpora(served_root)
    monkeypatch.setenv("SPDF_CACHE", str(tmp_path / "cache"))
    servers: list[RangeServer] = []

    def serve(**kw) -> RangeServer:
        s = RangeServer(served_root, **kw)
        servers.append(s)
        monkeypatch.setenv("SPDF_DATA_MIRROR", s.url)
        return s

    yield serve, tmp_path / "cache"
    for s in servers:
        s.close()  # also fine for a server that already went away


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _parts(cache: Path) -> list[Path]:
    return [p for p in _files(cache / "partial") if p.suffix == ".part"]


def test_dropped_connection_resumes_where_it_stopped(env, served_root):
    serve, cache = env
    rel = "fw/000.parquet"
    size = (served_root / rel).stat().st_size
    server = serve(cut={rel: size // 3})
    f = registry.dataset("fw").files[0]
    with pytest.raises(DataError) as e:
        fetch_file(f)
    assert "fw/000.parquet" in str(e.value) and "run again to resume" in str(e.value) and "\n" not in str(e.value)
    assert not (cache / "data" / rel).exists()  # the cache holds only verified files
    assert [p.stat().st_size for p in _parts(cache)] == [size // 3]
    path = fetch_file(f)
    assert path.read_bytes() == (served_root / rel).read_bytes()
    assert server.logged(2) == [(rel, 0, size // 3), (rel, size // 3, size - size // 3)]  # no byte fetched twice
    assert server.served(rel) == size and _parts(cache) == []


def test_killed_download_resumes_without_refetching_finished_bytes(env, served_root):
    serve, cache = env
    rel = "pile/train/00.jsonl.zst"
    size = (served_root / rel).stat().st_size
    server = serve(throttle=0.01)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; import data_fixtures as d; "
            "from spdf_lib.data.registry import fetch_file, dataset; d.register_corpora(Path(sys.argv[2])); "
            "fetch_file(dataset('pile').files[0])")
    p = subprocess.Popen([sys.executable, "-c", code, str(HERE), str(served_root)], env={**os.environ},
                         stderr=subprocess.PIPE, text=True)
    part = cache / "partial" / (rel + ".part")
    while (not part.is_file() or part.stat().st_size < size // 4) and p.poll() is None:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the download finished before it could be killed"
    assert not (cache / "data" / rel).exists()
    kept = part.stat().st_size
    assert 0 < kept < size
    server.throttle = 0
    path = fetch_file(registry.dataset("pile").files[0])
    assert path.read_bytes() == (served_root / rel).read_bytes()
    # Besides the killed request from byte 0 (which the server may log only later), one request: from the kept
    # bytes on, for the rest.
    assert [r[1:] for r in server.logged(2) if r[0] == rel and r[1] > 0] == [(kept, size - kept)]


def test_server_ignoring_ranges_gets_the_whole_file_again(env, served_root):
    serve, cache = env
    rel = "fw/001.parquet"
    size = (served_root / rel).stat().st_size
    server = serve(cut={rel: size // 2}, ranges=False)
    f = registry.dataset("fw").files[1]
    with pytest.raises(DataError):
        fetch_file(f)
    assert fetch_file(f).read_bytes() == (served_root / rel).read_bytes()
    assert server.logged(2)[-1] == (rel, 0, size)


def test_corrupt_file_is_a_clear_error_and_the_cache_stays_clean(env, served_root, tmp_path, monkeypatch):
    serve, cache = env
    bad_root = tmp_path / "bad"
    (bad_root / "fw").mkdir(parents=True)
    data = bytearray((served_root / "fw/000.parquet").read_bytes())
    data[len(data) // 2] ^= 1
    (bad_root / "fw/000.parquet").write_bytes(bytes(data))
    server = RangeServer(bad_root)
    monkeypatch.setenv("SPDF_DATA_MIRROR", server.url)
    try:
        with pytest.raises(DataError) as e:
            fetch_file(registry.dataset("fw").files[0])
    finally:
        server.close()
    msg = str(e.value)
    assert "fw/000.parquet" in msg and "SHA-256" in msg and "does not match" in msg and "\n" not in msg
    assert _files(cache / "data") == [] and _parts(cache) == []  # wrong bytes are not kept for a resume


def test_unpinned_file_gets_its_checksum_recorded_and_checked_later(env, served_root):
    serve, cache = env
    serve()
    f = registry.dataset("pile").files[0]
    assert not f.pinned and f.checksum() == "unrecorded"
    path = fetch_file(f)
    record = json.loads((cache / "data" / "pile" / "checksums.json").read_text())[f.path]
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and record["size"] == path.stat().st_size
    assert f.checksum() == f"sha256:{record['sha256']}"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))  # tampered after the download
    with pytest.raises(DataError) as e:
        fetch_file(f)
    assert f.path in str(e.value) and "recorded at its first download" in str(e.value)


def test_fetch_announces_files_and_size_in_one_line_before_downloading(env, served_root, capsys):
    serve, _ = env
    serve()
    fetch("fw")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("spdf:")]
    size = sum((served_root / "fw" / n).stat().st_size for n in ("000.parquet", "001.parquet"))
    assert lines == [f"spdf: downloading 2 files of fw ({size / 1e6:.1f} MB) from {os.environ['SPDF_DATA_MIRROR']}"]
    fetch("fw")  # cached: nothing to announce
    assert "downloading" not in capsys.readouterr().err
    plan = registry.planned_download("pile")
    assert plan.size_text() == "3 files of unpublished size"


def test_server_going_away_mid_prepare_leaves_nothing_half_written(env, served_root, tmp_path, tokenizer_dir):
    from spdf_lib.data.prepare import prepare_shards
    from spdf_lib.data.shards import ShardSet

    serve, cache = env
    rel = "pile/train/01.jsonl.zst"
    serve(cut={rel: (served_root / rel).stat().st_size // 2}, go_away=True)
    out = tmp_path / "shards"
    kw = dict(workers=0, shard_tokens=20_000, val_tokens=5_000, progress=False)
    with pytest.raises(DataError) as e:
        prepare_shards("pile", str(tokenizer_dir), out=out, **kw)
    assert rel in str(e.value) and "\n" not in str(e.value)
    s = ShardSet.load(out)
    assert s.shards and not s.exhausted  # the shards of train/00 were finished and kept
    listed = [".prepare.lock", "index.json", "val.bin"] + [x.file for x in s.shards]
    assert sorted(p.name for p in out.iterdir()) == sorted(listed)  # no temp file, no unlisted shard
    for x in s.shards:
        assert (out / x.file).stat().st_size == 2 * x.tokens
    assert not (cache / "data" / rel).exists()
    finished = {x.file: (out / x.file).stat().st_mtime_ns for x in s.shards}

    serve()  # the server is back (at another address)
    s = prepare_shards("pile", str(tokenizer_dir), out=out, **kw)
    assert s.exhausted and all((out / n).stat().st_mtime_ns == t for n, t in finished.items())
    straight = prepare_shards("pile", str(tokenizer_dir), out=tmp_path / "straight", **kw)
    assert [x.sha256 for x in s.shards] == [x.sha256 for x in straight.shards]
    assert s.val.sha256 == straight.val.sha256
