"""A Curation Corpus in miniature, served on 127.0.0.1: a summaries CSV and the article pages, built here.

The CSV names articles on `http://news.example/...`; the tests point `http_proxy` and `https_proxy` at the
server, which answers for every host the way a test wants (the fetcher's own URLs, unchanged, as on the real
web): a page, a 404 (some of them archived at `http://archive.example/web/<url>`), a page that answers too late
(timeout), a page with no main text, a 503 that passes on retry, or a page that hangs until released (to kill a
fetch mid-way). It counts every request per URL, their arrival times per host, and the most at once.
"""

from __future__ import annotations

import csv
import http.server
import io
import threading
import time
from collections import Counter, defaultdict

NEWS = "http://news.example/2019/"
ARCHIVE = "http://archive.example/web/"
COMPANIES = ["Acme Holdings", "Borealis Energy", "Cobalt Mining", "Delta Foods", "Elgin Motors", "Fenwick Bank",
             "Garnet Telecom", "Halcyon Pharma", "Ivory Airlines", "Juniper Retail", "Kestrel Steel",
             "Lumen Software", "Marlow Insurance", "Northwind Shipping", "Orion Media", "Pinnacle Chemicals"]
TARGETS = ["Widget Group", "Quarry Partners", "Solent Labs", "Tamar Logistics", "Ulster Mills", "Vale Robotics",
           "Wessex Water", "Yarrow Capital"]
CITIES = ["London", "Frankfurt", "Paris", "Madrid", "Dublin", "Milan", "Oslo", "Vienna"]


def article(i: int) -> tuple[str, str, list[str]]:
    """(headline, summary, paragraphs) of article `i`."""
    c, t, city = COMPANIES[i % len(COMPANIES)], TARGETS[i % len(TARGETS)], CITIES[i % len(CITIES)]
    n = 100 + 25 * i
    paragraphs = [
        f"{c} has agreed to buy {t} for {n} million pounds, the company said on Monday. The deal was approved by "
        f"the board in {city} after weeks of talks with the regulator.",
        f"Shares in {c} rose by {i % 7 + 2} per cent in early trading. Analysts at Northgate Securities said the "
        f"price was high but that the purchase would double the size of its business in {city}.",
        f"The chief executive of {t} said the two firms shared a long history. The agreement still needs the "
        f"approval of the Competition Authority, which is expected to decide before the end of the year.",
        "Both companies declined to comment on whether jobs would be lost as a result of the merger, and unions "
        "said they would seek talks with management in the coming weeks.",
    ]
    summary = (f"{c} is buying {t} for {n} million pounds, pending approval from the Competition Authority. "
               f"Analysts at Northgate Securities said the price was high but the deal doubles its business in {city}.")
    return f"{c} to buy {t}", summary, paragraphs


def page(i: int) -> bytes:
    headline, _, paragraphs = article(i)
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f"<!DOCTYPE html><html><head><title>{headline}</title></head><body><nav><a href='/'>Home</a> | "
            f"<a href='/markets'>Markets</a></nav><article><h1>{headline}</h1>{body}</article><footer>Copyright "
            f"News Example Ltd</footer></body></html>").encode()


EMPTY_PAGE = (b"<!DOCTYPE html><html><head><title>Subscribe</title></head><body><nav><a href='/'>Home</a></nav>"
              b"<div id='app'></div><script>render()</script></body></html>")


def url(i: int) -> str:
    return f"{NEWS}article-{i}"


def summaries_csv(n: int) -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["url", "headline", "summary", "publish_date"])
    for i in range(n):
        headline, summary, _ = article(i)
        w.writerow([url(i), headline, summary, f"2019-0{i % 9 + 1}-1{i % 10}"])
    return out.getvalue().encode()


class CorpusServer:
    """The mini-corpus over HTTP (see the module docstring). `kinds[i]` says how article `i` answers: `ok`,
    `404-archived`, `404`, `timeout`, `empty`, `flaky` (503 once, then the page) or `hang`."""

    def __init__(self, n: int, kinds: dict[int, str] | None = None, slow_s: float = 2.0):
        self.n, self.kinds, self.slow_s = n, dict(kinds or {}), slow_s
        self.csv = summaries_csv(n)
        self.requests: Counter[str] = Counter()
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                server._serve(self)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # a client killed mid-request: not our business
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _serve(self, h) -> None:
        target = h.path if h.path.startswith("http") else f"http://{h.headers.get('Host', '')}{h.path}"
        host = target.split("/")[2]
        with self.lock:
            self.requests[target] += 1
            self.arrivals[host].append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            count = self.requests[target]
        try:
            status, body = self._answer(target, count)
            h.send_response(status)
            h.send_header("Content-Type", "text/html; charset=utf-8" if status == 200 else "text/plain")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _answer(self, target: str, count: int) -> tuple[int, bytes]:
        if target.endswith("/mirror/curation-corpus/curation-corpus-base.csv"):
            return 200, self.csv
        archived = target.startswith(ARCHIVE)
        original = target[len(ARCHIVE):] if archived else target
        if not original.startswith(NEWS + "article-"):
            return 404, b"not found"
        i = int(original.rsplit("-", 1)[1])
        kind = self.kinds.get(i, "ok")
        if archived:
            return (200, page(i)) if kind == "404-archived" else (404, b"not archived")
        if kind in ("404", "404-archived"):
            return 404, b"gone"
        if kind == "timeout":
            time.sleep(self.slow_s)
            return 200, page(i)
        if kind == "empty":
            return 200, EMPTY_PAGE
        if kind == "flaky" and count == 1:
            return 503, b"busy"
        if kind == "hang":
            self.release.wait(60)
        return 200, page(i)

    def article_requests(self) -> dict[str, int]:
        """Requests per article URL (the article's own URL only)."""
        return {u: c for u, c in self.requests.items() if u.startswith(NEWS)}

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def proxy_env(server: CorpusServer) -> dict[str, str]:
    """Environment that sends the fetcher's http(s) requests to `server` and the registry's to it directly."""
    proxy = server.base.rstrip("/")
    return {"http_proxy": proxy, "https_proxy": proxy, "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy,
            "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
