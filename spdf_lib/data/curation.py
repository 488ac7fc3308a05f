"""The Curation Corpus article bodies: fetched from the web the way the corpus's authors' scraper does it.

The corpus (CurationCorp/curation-corpus, CC BY 4.0) publishes ~40,000 professionally written summaries as a CSV
of article URLs, headlines and summaries (`curation-corpus-base.csv`, in the registry); the article bodies are
not redistributed. The authors' scraper tries each URL, then the same URL with `https`, then the Wayback
Machine's copy (`https://web.archive.org/web/<url>`). `fetch_articles` follows the same chain, as a
well-behaved client:

- bounded concurrency (`concurrency` connections at a time) and a per-host rate limit (`rate` request starts
  per second per host name: the archive is one host, so its copies are never asked for faster than that);
- a timeout per request, and `retries` more tries (exponential back-off) for what may pass: timeouts, dropped
  connections, HTTP 429 and 5xx; a 4xx answer moves on to the next URL of the chain at once;
- the main text extracted with `trafilatura` (no comments, no tables); a page with no main text, or fewer than
  `min_words` words of it (trafilatura falls back to what there is: a menu, a paywall notice), counts as failed
  ("empty extraction") and the chain goes on, since an archived copy may have what a live page lost;
- one record per URL, `<out>/records/<sha1[:2]>/<sha1>.json`, written atomically: a re-run (after a kill,
  say) fetches only the URLs without a record. A failure is a record too, with its reason (`http 404`,
  `timeout`, `empty extraction`, `connection error`; that of the article's own URL, every attempt listed), so
  it is not fetched again unless `retry_failed`;
- one line before it starts (how many URLs, the politeness settings), a tqdm bar (articles/s, ETA), and the
  coverage at the end (articles obtained, failures by reason).

The fetched set is a dataset of its own: `<out>/manifest.json` records its source (the summaries CSV and its
checksum, the chain, the extractor's version, the settings) and its coverage. `spdf data fetch
curation-corpus` fetches into `$SPDF_CACHE/data/curation-corpus/articles` (`articles_dir()`).
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import json
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from spdf_lib.atomic import atomic_write_text
from spdf_lib.data.download import DataError
from spdf_lib.params import Params

DATASET = "curation-corpus"
CSV_FILE = "curation-corpus-base.csv"
ARCHIVE_BASE = "https://web.archive.org/web/"
REQUIRED_COLUMNS = ("url", "summary")
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Politeness:
    """How the fetch treats the sites it asks."""

    concurrency: int = 8  # connections at a time
    rate: float = 1.0  # request starts per second per host
    timeout: float = 20.0  # seconds per request
    retries: int = 2  # more tries of one URL after a timeout, a dropped connection, HTTP 429 or 5xx
    backoff: float = 2.0  # seconds before the first retry, doubling
    https_fallback: bool = True  # the scraper's second try: the URL with https
    archive_base: str = ARCHIVE_BASE  # the third: <archive_base><url>; empty: no archive
    user_agent: str = "spdf-kit/0.1 (research; Curation Corpus article fetch)"
    min_words: int = 40  # fewer words extracted is no article (a paywall, a cookie wall, a menu): "empty extraction"

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.rate <= 0 or self.timeout <= 0 or self.retries < 0 or self.backoff < 0:
            raise DataError(f"bad fetch settings {self.line()}: concurrency >= 1, rate > 0, timeout > 0, "
                            f"retries >= 0 and backoff >= 0 are needed")

    def line(self) -> str:
        chain = ["url"] + (["https"] if self.https_fallback else []) + ([self.archive_base + "<url>"]
                                                                         if self.archive_base else [])
        return (f"{self.concurrency} connections, {self.rate:g} requests/s per host, timeout {self.timeout:g} s, "
                f"{self.retries} retries (back-off {self.backoff:g} s, doubling); tries {' -> '.join(chain)}")


# --- the summaries CSV ----------------------------------------------------------------------------------------


def read_summaries(path: str | Path) -> list[dict[str, str]]:
    """The rows of a Curation Corpus summaries CSV (`url`, `summary`, and `headline`/`publish_date` if there),
    whitespace-normalised, first occurrence of a URL kept. A file that is not such a CSV is one `DataError`
    naming it, the line and the fix."""
    path = Path(path)
    fix = f"download it again (`spdf data fetch {DATASET}`) or point to the corpus's {CSV_FILE}"
    reader = None
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f, strict=True)
            header = next(reader, None)
            if not header or any(c not in header for c in REQUIRED_COLUMNS):
                raise DataError(f"{path}: not a Curation Corpus summaries CSV: the header {header} lacks the "
                                f"columns {list(REQUIRED_COLUMNS)}; {fix}")
            rows, seen = [], set()
            for fields in reader:
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise DataError(f"{path}, line {reader.line_num}: {len(fields)} fields where the header has "
                                    f"{len(header)}; the file is corrupt or truncated; {fix}")
                row = {k: " ".join(v.split()) for k, v in zip(header, fields, strict=True)}
                if not row["url"].startswith(("http://", "https://")) or not row["summary"]:
                    raise DataError(f"{path}, line {reader.line_num}: no http(s) URL or an empty summary "
                                    f"({row['url'][:60]!r}); {fix}")
                if row["url"] not in seen:
                    seen.add(row["url"])
                    rows.append(row)
    except csv.Error as e:
        where = f", line {reader.line_num}" if reader is not None else ""
        raise DataError(f"{path}{where}: cannot parse the CSV ({e}); {fix}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); {fix}") from None
    if not rows:
        raise DataError(f"{path}: the CSV has a header but no rows; {fix}")
    return rows


# --- records ------------------------------------------------------------------------------------------------


def articles_dir() -> Path:
    """Where `spdf data fetch curation-corpus` puts the article records: `$SPDF_CACHE/data/curation-corpus/articles`."""
    from spdf_lib.data.registry import cache_dir

    return cache_dir() / DATASET / "articles"


def record_path(out: str | Path, url: str) -> Path:
    h = hashlib.sha1(url.encode("utf-8")).hexdigest()
    return Path(out) / "records" / h[:2] / f"{h}.json"


def read_record(out: str | Path, url: str) -> dict[str, Any] | None:
    path = record_path(out, url)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def candidates(url: str, p: Politeness) -> list[str]:
    """The URLs tried for one article, in order: as given, with https (if it was http), the archive's copy."""
    out = [url]
    if p.https_fallback and url.startswith("http://"):
        out.append("https://" + url[len("http://"):])
    if p.archive_base:
        out.append(p.archive_base + url)
    return out


class HostRateLimit:
    """At most `rate` request starts per second per host: each start is booked at least 1/rate after the
    previous one to that host (the booking is under a lock, the waiting is not)."""

    def __init__(self, rate: float):
        self.gap = 1.0 / rate
        self.next: dict[str, float] = {}
        self.lock = threading.Lock()

    def wait(self, url: str) -> None:
        host = urlsplit(url).hostname or ""
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next.get(host, now))
            self.next[host] = start + self.gap
        if start > now:
            time.sleep(start - now)


def _get(url: str, p: Politeness, limit: HostRateLimit, opener) -> tuple[str | None, str | None]:
    """(html, None) or (None, reason) for one URL, retrying what may pass."""
    reason = None
    for attempt in range(p.retries + 1):
        if attempt:
            time.sleep(p.backoff * 2 ** (attempt - 1))
        limit.wait(url)
        try:
            req = urllib.request.Request(url, headers={"User-Agent": p.user_agent})
            with opener.open(req, timeout=p.timeout) as resp:
                raw = resp.read()
                charset = resp.headers.get_content_charset() or "utf-8"
            return raw.decode(charset, errors="replace"), None
        except urllib.error.HTTPError as e:
            reason = f"http {e.code}"
            if e.code not in RETRY_STATUS:
                return None, reason
        except TimeoutError:
            reason = "timeout"
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                reason = "timeout"
            elif isinstance(e.reason, ssl.SSLError | socket.gaierror | ConnectionRefusedError):
                return None, f"connection error ({type(e.reason).__name__})"  # will not pass on a retry
            else:
                reason = f"connection error ({type(e.reason).__name__})"
        except (ConnectionError, OSError, http.client.HTTPException) as e:  # reset or cut short mid-body
            reason = f"connection error ({type(e).__name__})"
        except ValueError as e:  # a URL urllib cannot even send (bad port, bad host name): no retry helps
            return None, f"bad url ({type(e).__name__})"
    return None, reason


def extract_text(html: str, url: str) -> str:
    """The main text of an article page (trafilatura: no comments, no tables), whitespace-normalised per
    paragraph, paragraphs one per line; empty when the page has none."""
    import trafilatura

    text = trafilatura.extract(html, url=url, include_comments=False, include_tables=False) or ""
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def fetch_one(url: str, p: Politeness, limit: HostRateLimit, opener=None) -> dict[str, Any]:
    """The record of one article: its text and where it came from, or why it could not be had. `opener`: a
    `urllib.request` opener (default: a new one, which reads the proxy settings from the environment now)."""
    opener = opener or urllib.request.build_opener()
    attempts = []
    for candidate in candidates(url, p):
        t0 = time.monotonic()
        html, reason = _get(candidate, p, limit, opener)
        try:
            text = extract_text(html, candidate) if html is not None else ""
        except Exception as e:  # noqa: BLE001 - one unparseable page of 40,000 must not end the fetch
            html, reason, text = None, f"extraction error ({type(e).__name__})", ""
        if len(text.split()) < p.min_words:
            text = ""
        if html is not None and not text:
            reason = "empty extraction"
        attempts.append({"url": candidate, "result": "ok" if text else reason,
                         "seconds": round(time.monotonic() - t0, 3)})
        if text:
            return {"url": url, "ok": True, "text": text, "source_url": candidate, "attempts": attempts,
                    "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return {"url": url, "ok": False, "reason": attempts[0]["result"], "attempts": attempts,
            "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


# --- the fetch ------------------------------------------------------------------------------------------------


@dataclass
class Coverage:
    n_urls: int
    ok: int
    by_reason: dict[str, int]
    by_source: dict[str, int]  # url / https / archive
    fetched_this_run: int
    seconds: float

    @property
    def failed(self) -> int:
        return sum(self.by_reason.values())

    def line(self) -> str:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_reason.items(), key=lambda kv: -kv[1])) or "none"
        rate = self.fetched_this_run / max(self.seconds, 1e-9)
        return (f"coverage: {self.ok:,} of {self.n_urls:,} articles ({100 * self.ok / max(1, self.n_urls):.1f}%; "
                f"from {', '.join(f'{k} {v}' for k, v in self.by_source.items()) or 'nowhere'}); failures: {reasons}; "
                f"{self.fetched_this_run:,} fetched this run ({rate:.2f} articles/s)")


def _source_kind(record: dict[str, Any], p: Politeness) -> str:
    src = record["source_url"]
    if p.archive_base and src.startswith(p.archive_base):
        return "archive"
    return "url" if src == record["url"] else "https"


def fetch_articles(csv_path: str | Path, out: str | Path, p: Politeness | None = None, limit: int | None = None,
                   retry_failed: bool = False, progress: bool = True, source: dict[str, Any] | None = None
                   ) -> Coverage:
    """Fetch the article of every URL of the summaries CSV at `csv_path` (the first `limit`) into `out`
    (records and manifest, see the module docstring); returns the coverage, also written to the manifest.
    `source`: what to record about the CSV (its URL and checksum), besides its path."""
    from tqdm import tqdm

    p = p or Politeness()
    rows = read_summaries(csv_path)[:limit]  # bad input fails here, before any request
    out = Path(out)
    todo = []
    for row in rows:
        rec = read_record(out, row["url"])
        if rec is None or (retry_failed and not rec["ok"]):
            todo.append(row["url"])
    print(f"spdf: fetching {len(todo):,} of {len(rows):,} Curation Corpus articles ({len(rows) - len(todo):,} "
          f"already recorded) into {out}; politeness: {p.line()}", file=sys.stderr, flush=True)
    limiter = HostRateLimit(p.rate)
    t0, done = time.monotonic(), 0
    bar = tqdm(total=len(todo), unit="article", desc="curation-corpus", disable=None if progress else True,
               smoothing=0.1, file=sys.stderr)
    failures: Counter[str] = Counter()
    pool = ThreadPoolExecutor(p.concurrency)
    try:
        opener = urllib.request.build_opener()  # proxies from the environment as it is now (urlopen caches them)
        futures = {pool.submit(fetch_one, url, p, limiter, opener): url for url in todo}
        for fut in as_completed(futures):
            rec = fut.result()
            atomic_write_text(record_path(out, rec["url"]), json.dumps(rec, ensure_ascii=False) + "\n")
            done += 1
            failures.update([] if rec["ok"] else [rec["reason"]])
            bar.update(1)
            bar.set_postfix(failed=sum(failures.values()), refresh=False)
    except BaseException:  # Ctrl-C: drop the queued URLs now (the records written so far are kept)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        bar.close()
    pool.shutdown()
    cov = coverage(rows, out, p, done, time.monotonic() - t0)
    write_manifest(csv_path, out, p, cov, source)
    print(f"spdf: {DATASET} {cov.line()} -> {out}", file=sys.stderr, flush=True)
    return cov


def coverage(rows: list[dict[str, str]], out: str | Path, p: Politeness, fetched: int = 0,
             seconds: float = 0.0) -> Coverage:
    """Articles obtained and failures by reason, over the records of `rows` in `out` (missing ones: `not fetched`)."""
    ok, reasons, sources = 0, Counter(), Counter()
    for row in rows:
        rec = read_record(out, row["url"])
        if rec is None:
            reasons["not fetched"] += 1
        elif rec["ok"]:
            ok += 1
            sources[_source_kind(rec, p)] += 1
        else:
            reasons[rec["reason"]] += 1
    return Coverage(len(rows), ok, dict(reasons), dict(sources), fetched, seconds)


def write_manifest(csv_path: str | Path, out: str | Path, p: Politeness, cov: Coverage,
                   source: dict[str, Any] | None = None) -> None:
    """`<out>/manifest.json`: the dataset's source, how it was fetched, and its coverage."""
    csv_path = Path(csv_path)
    digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()
    manifest = {
        "dataset": f"{DATASET}-articles",
        "description": "Curation Corpus article bodies fetched from their URLs (then https, then the web archive), "
                       "main text by trafilatura; one record per URL under records/",
        "license": "summaries CC BY 4.0 (Curation); article texts belong to their publishers",
        "source": {"summaries_csv": str(csv_path), "summaries_sha256": digest, **(source or {})},
        "extractor": f"trafilatura {metadata.version('trafilatura')} (include_comments=False, include_tables=False)",
        "politeness": asdict(p),
        "coverage": {"n_urls": cov.n_urls, "ok": cov.ok, "failed": cov.failed, "by_reason": cov.by_reason,
                     "by_source": cov.by_source},
        "last_run": {"fetched": cov.fetched_this_run, "seconds": round(cov.seconds, 2),
                     "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    atomic_write_text(Path(out) / "manifest.json", json.dumps(manifest, indent=1) + "\n")


def fetch_curation(out: str | Path | None = None, p: Politeness | None = None, limit: int | None = None,
                   retry_failed: bool = False, progress: bool = True) -> tuple[Path, Coverage]:
    """`spdf data fetch curation-corpus`: the summaries CSV through the registry (verified, or its checksum
    recorded at first download), then the article bodies into `out` (default `articles_dir()`)."""
    from spdf_lib.data.registry import dataset, fetch

    csv_path = fetch(DATASET, [CSV_FILE])[CSV_FILE]
    entry = next(f for f in dataset(DATASET).files if f.path.endswith(CSV_FILE))
    out = Path(out) if out else articles_dir()
    cov = fetch_articles(csv_path, out, p, limit, retry_failed, progress,
                         source={"summaries_url": entry.url, "summaries_checksum": entry.checksum()})
    return out, cov


def load_articles(out: str | Path) -> tuple[dict[str, str], dict[str, Any]]:
    """({url: article text} of the fetched articles in `out`, its manifest); a clear error when `out` holds no
    fetched set."""
    out = Path(out)
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(f"{out} holds no fetched Curation Corpus articles (no manifest.json); run `spdf data "
                        f"fetch {DATASET}` (needs the network) or set `articles` to the folder of a fetch")
    texts = {}
    for path in sorted((out / "records").glob("*/*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        if rec.get("ok"):
            texts[rec["url"]] = rec["text"]
    return texts, json.loads(manifest_path.read_text())


# --- command line -------------------------------------------------------------------------------------------


def add_fetch_arguments(parser) -> None:
    """The options of `spdf data fetch curation-corpus` (the article fetch), in their own group."""
    d = Politeness()
    g = parser.add_argument_group("curation-corpus article fetch")
    g.add_argument("--out", default=None, help="records folder (default: $SPDF_CACHE/data/curation-corpus/articles)")
    g.add_argument("--concurrency", type=int, default=d.concurrency, help=f"connections at a time ({d.concurrency})")
    g.add_argument("--rate", type=float, default=d.rate, help=f"request starts per second per host ({d.rate:g})")
    g.add_argument("--timeout", type=float, default=d.timeout, help=f"seconds per request ({d.timeout:g})")
    g.add_argument("--retries", type=int, default=d.retries, help=f"retries of a timeout, 429 or 5xx ({d.retries})")
    g.add_argument("--archive-base", default=d.archive_base, help=f"the archive's URL prefix ({d.archive_base})")
    g.add_argument("--limit", type=int, default=None, help="only the first N URLs of the CSV")
    g.add_argument("--retry-failed", action="store_true", help="fetch again the URLs whose record is a failure")


def cmd_fetch(args) -> int:
    """Run `spdf data fetch curation-corpus` from parsed arguments; prints the records folder."""
    p = Politeness(concurrency=args.concurrency, rate=args.rate, timeout=args.timeout, retries=args.retries,
                   archive_base=args.archive_base)
    out, _ = fetch_curation(args.out, p, args.limit, args.retry_failed)
    print(out)
    return 0


# --- as a sweep stage ---------------------------------------------------------------------------------------


class CurationFetchParams(Params):
    """`spdf data fetch curation-corpus` as an experiment: the paper sweep's stage that its curation fine-tuning
    points wait for (they read `<run_dir>/articles`). Its records hold the summaries' checksum and the coverage."""

    out: str = ""  # records folder; empty: <run_dir>/articles
    concurrency: int = 8
    rate: float = 1.0
    timeout: float = 20.0
    retries: int = 2
    archive_base: str = ARCHIVE_BASE
    limit: int | None = None
    retry_failed: bool = False
    progress: bool = True


def run_curation_fetch(p: CurationFetchParams, run_dir: str | Path) -> dict[str, float]:
    """Fetch the Curation Corpus articles of `p` into `<run_dir>/articles` (or `out`) and write the run's records."""
    from spdf_lib.data.registry import checksums
    from spdf_lib.records import Run

    run_dir = Path(run_dir)
    run = Run(run_dir, "curation_fetch", p.model_dump(), p.seed)
    pol = Politeness(concurrency=p.concurrency, rate=p.rate, timeout=p.timeout, retries=p.retries,
                     archive_base=p.archive_base)
    out, cov = fetch_curation(p.out or run_dir / "articles", pol, p.limit, p.retry_failed, p.progress)
    run.add_data(checksums({CSV_FILE: out}, DATASET))
    results = {"n_urls": cov.n_urls, "articles": cov.ok, "failed": cov.failed,
               "coverage": cov.ok / max(1, cov.n_urls), "seconds": cov.seconds,
               "articles_per_second": cov.fetched_this_run / max(cov.seconds, 1e-9)}
    run.describe(coverage={"by_reason": cov.by_reason, "by_source": cov.by_source}, articles=str(out))
    run.finish(results)
    return results
