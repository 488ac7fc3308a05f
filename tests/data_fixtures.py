"""Helpers for the data tests: a Range-capable HTTP server on 127.0.0.1 and small corpora built from mirror text.

Imported by test_download.py, test_shards.py and by the subprocesses they start (which register the same test
corpora in their own registry)."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
import urllib.parse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from spdf_lib.data import corpora, registry
from spdf_lib.data.corpora import CorpusSpec
from spdf_lib.data.registry import DataFile, Dataset


class RangeServer:
    """`http.server` on 127.0.0.1 serving `root`, with `Range: bytes=N-` support.

    Records every body it sends in `requests` as (path, first byte, bytes sent). `cut[path] = n` ends the body of
    the next request for `path` after byte `n` of the file (a dropped connection), once; with `go_away` the
    server then shuts down. `throttle` sleeps between 16 KiB chunks (so a test can kill a client mid-way)."""

    def __init__(self, root: Path, cut: dict[str, int] | None = None, go_away: bool = False,
                 throttle: float = 0.0, ranges: bool = True):
        self.root, self.cut, self.go_away, self.throttle, self.ranges = root, dict(cut or {}), go_away, throttle, ranges
        self.requests: list[tuple[str, int, int]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body: bool):
                rel = urllib.parse.unquote(self.path.lstrip("/"))
                path = server.root / rel
                if not path.is_file():
                    self.send_error(404)
                    return
                size = path.stat().st_size
                m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                start = int(m.group(1)) if m and server.ranges else 0
                if start >= size and start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.send_header("Content-Length", str(size - start))
                self.end_headers()
                if not body:
                    return
                stop = server.cut.pop(rel, size)
                sent = 0
                with path.open("rb") as f:
                    f.seek(start)
                    while start + sent < stop:
                        chunk = f.read(min(16384, stop - start - sent))
                        try:
                            self.wfile.write(chunk)
                        except OSError:  # the client went away (killed)
                            break
                        sent += len(chunk)
                        if server.throttle:
                            time.sleep(server.throttle)
                server.requests.append((rel, start, sent))
                if stop < size:
                    self.close_connection = True
                    if server.go_away:
                        threading.Thread(target=server.close, daemon=True).start()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def logged(self, n: int) -> list[tuple[str, int, int]]:
        """`requests` once it holds `n` entries (a handler logs its request after the client has the bytes)."""
        for _ in range(500):
            if len(self.requests) >= n:
                break
            time.sleep(0.01)
        return self.requests

    def served(self, rel: str) -> int:
        return sum(n for p, _, n in self.requests if p == rel)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def wiki_documents(mirror: Path) -> list[str]:
    """WikiText-2 test split cut into its articles and sections."""
    text = (mirror / "wikitext-2" / "test.txt").read_text(encoding="utf-8")
    return [d for d in re.split(r"\n(?= = )", text) if d.strip()]


def shakespeare_documents(mirror: Path) -> list[str]:
    """Tiny Shakespeare cut into its speeches (all ASCII)."""
    return [d for d in (mirror / "tinyshakespeare" / "input.txt").read_text().split("\n\n") if d.strip()]


def write_parquet(path: Path, docs: list[str], row_group_size: int = 50) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": list(range(len(docs))), "text": docs}), path, row_group_size=row_group_size)


def write_jsonl_zst(path: Path, docs: list[str]) -> None:
    """Two concatenated zstd frames, as parallel compressors write them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"text": d, "meta": {"i": i}}) + "\n" for i, d in enumerate(docs)]
    half = len(lines) // 2
    c = zstandard.ZstdCompressor(level=3)
    path.write_bytes(c.compress("".join(lines[:half]).encode()) + c.compress("".join(lines[half:]).encode()))


def register(name: str, root: Path, files: list[str], fmt: str, val: tuple[str, ...] | None = None,
             pin: bool = False) -> Dataset:
    """Register dataset and corpus `name` made of `root/name/<file>` (pinned with their SHA-256 when `pin`)."""
    import hashlib

    dfs = []
    for rel in files:
        p = root / name / rel
        sha = hashlib.sha256(p.read_bytes()).hexdigest() if pin else None
        dfs.append(
            DataFile(
                name,
                f"{name}/{rel}",
                f"https://example.org/{name}/{rel}",
                p.stat().st_size if pin else None,
                sha,
                None,
                "https://example.org",
                "test",
            )
        )
    ds = Dataset(name, "test", "https://example.org", tuple(sorted(dfs, key=lambda f: f.path)))
    registry.REGISTRY[name] = ds
    train = tuple(f for f in files if f not in (val or ()))
    corpora.CORPORA[name] = CorpusSpec(name, train=train, val=val, format=fmt)
    return ds


def build_corpora(mirror: Path, root: Path) -> None:
    """`root/fw/00{0,1}.parquet` (WikiText-2, like FineWeb-Edu) and `root/pile/{train/00,train/01,val}.jsonl.zst`
    (Shakespeare, like the Pile)."""
    wiki = wiki_documents(mirror)
    write_parquet(root / "fw" / "000.parquet", wiki[: len(wiki) // 2])
    write_parquet(root / "fw" / "001.parquet", wiki[len(wiki) // 2 :])
    plays = shakespeare_documents(mirror)
    n = len(plays)
    write_jsonl_zst(root / "pile" / "train" / "00.jsonl.zst", plays[: 4 * n // 10])
    write_jsonl_zst(root / "pile" / "train" / "01.jsonl.zst", plays[4 * n // 10 : 8 * n // 10])
    write_jsonl_zst(root / "pile" / "val.jsonl.zst", plays[8 * n // 10 :])


def register_corpora(root: Path) -> None:
    """Register `fw` (pinned parquet, no validation file) and `pile` (unpinned jsonl.zst, with val.jsonl.zst)."""
    register("fw", root, ["000.parquet", "001.parquet"], "parquet", pin=True)
    register("pile", root, ["train/00.jsonl.zst", "train/01.jsonl.zst", "val.jsonl.zst"], "jsonl.zst",
             val=("val.jsonl.zst",))


def train_test_tokenizer(mirror: Path, folder: Path) -> Path:
    """A 512-token byte-level BPE of the kit (`spdf_lib.tokenizer`) trained on the mirror text, saved to `folder`."""
    from spdf_lib.tokenizer import train_tokenizer

    tok = train_tokenizer(shakespeare_documents(mirror) + wiki_documents(mirror), 512, seed=0, max_chars=300_000)
    tok.save_pretrained(str(folder))
    return folder
