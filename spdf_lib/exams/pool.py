"""Polite concurrent requests to a served model: bounded concurrency, requests- and tokens-per-minute budgets,
retries with back-off on 429 and 5xx that honour `Retry-After`, a timeout per request (the client's), and a
Ctrl-C that stops at once.

Requests run on daemon threads and the caller's thread only waits on a queue, so Ctrl-C (or SIGTERM, raised
as KeyboardInterrupt) interrupts even a request the server holds open: the process does not wait for it.
Results come back in the order of the inputs, whatever the order the replies arrive in.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class Retryable(Exception):
    """A failure worth trying again (429, 5xx, a timeout, a dropped connection); `retry_after` in seconds when
    the server said it, `reason` a short label for the record (e.g. `429`, `timeout`)."""

    def __init__(self, message: str, reason: str, retry_after: float | None = None):
        super().__init__(message)
        self.reason, self.retry_after = reason, retry_after


@dataclass
class RequestPolicy:
    """How requests are sent: at most `concurrency` at once, at most `rpm` requests and `tpm` tokens a minute
    (None: no budget), `retries` further tries of a retryable failure, `timeout` seconds per request."""

    concurrency: int = 4
    rpm: float | None = None
    tpm: float | None = None
    retries: int = 3
    timeout: float = 60.0
    backoff: float = 0.5  # first back-off in seconds without Retry-After; doubles each try, at most 60 s

    def describe(self) -> dict:
        return {"concurrency": self.concurrency, "rpm": self.rpm, "tpm": self.tpm, "retries": self.retries,
                "timeout_s": self.timeout}


@dataclass
class PoolStats:
    """What the pool did: requests sent (retries included), retries by reason."""

    sent: int = 0
    retries: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class _Pacer:
    """Spaces request starts so that no minute holds more than `rpm` requests or `tpm` tokens: each start
    reserves the next free slot, `60/rpm` or `tokens*60/tpm` seconds after the last one."""

    def __init__(self, rpm: float | None, tpm: float | None):
        self.rpm, self.tpm = rpm, tpm
        self.next = self.held = time.monotonic()
        self.lock = threading.Lock()

    def wait(self, tokens: int, stop: threading.Event) -> None:
        gap = max(60.0 / self.rpm if self.rpm else 0.0, tokens * 60.0 / self.tpm if self.tpm else 0.0)
        while not stop.is_set():
            with self.lock:
                start = max(time.monotonic(), self.next, self.held)
                self.next = start + gap
            stop.wait(max(0.0, start - time.monotonic()))
            with self.lock:
                if self.held <= start:  # no Retry-After arrived while this slot waited
                    return

    def hold(self, seconds: float) -> None:
        """Retry-After: no request of this pool starts before `seconds` from now (slots already reserved
        included: they wait again)."""
        with self.lock:
            self.held = max(self.held, time.monotonic() + seconds)


def run_requests(call: Callable[[Any], Any], items: Sequence[Any], policy: RequestPolicy,
                 tokens: Sequence[int] | None = None, on_result: Callable[[int, Any], None] | None = None,
                 stats: PoolStats | None = None) -> list[Any]:
    """`[call(x) for x in items]`, sent as `policy` allows. `call` raises `Retryable` for a failure worth
    retrying, anything else to stop the run (raised here, in the caller's thread, after the requests in flight
    are abandoned). `on_result(i, result)` runs in the caller's thread as each result arrives."""
    stats = stats or PoolStats()
    pacer, stop = _Pacer(policy.rpm, policy.tpm), threading.Event()
    todo: queue.Queue = queue.Queue()
    for i in range(len(items)):
        todo.put(i)
    done: queue.Queue = queue.Queue()

    def attempt(i: int) -> Any:
        for n in range(policy.retries + 1):
            pacer.wait(tokens[i] if tokens else 0, stop)
            if stop.is_set():
                return None
            with stats.lock:
                stats.sent += 1
            try:
                return call(items[i])
            except Retryable as e:
                if n == policy.retries:
                    raise RuntimeError(f"{e} (after {n + 1} tries; raise --retries or --timeout)") from None
                with stats.lock:
                    stats.retries[e.reason] += 1
                delay = e.retry_after if e.retry_after is not None else min(60.0, policy.backoff * 2 ** n)
                delay *= 1 + 0.1 * random.random() if e.retry_after is None else 1
                pacer.hold(delay)
        return None

    def worker() -> None:
        while not stop.is_set():
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((i, attempt(i), None))
            except BaseException as e:  # noqa: BLE001  # handed to the caller's thread
                done.put((i, None, e))

    for _ in range(max(1, min(policy.concurrency, len(items)))):
        threading.Thread(target=worker, daemon=True).start()
    results: list[Any] = [None] * len(items)
    try:
        for _ in range(len(items)):
            i, result, error = done.get()
            if error is not None:
                raise error
            results[i] = result
            if on_result:
                on_result(i, result)
    finally:
        stop.set()  # on an error or Ctrl-C: no new request starts; those in flight are abandoned
    return results
