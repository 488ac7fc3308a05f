"""Resume an exam without asking (or paying for) a question twice.

Every reply or score is appended to the run folder's `replies.jsonl` as it arrives: one JSON line a request,
written with a single `write` and flushed, keyed by the sha256 of the model's identity (name, endpoint or
weights, dtype), the method, the exact prompt and the decoding parameters. A re-run into the same folder asks
only for what is missing; a line cut short by a kill is ignored. Another model or other prompts make other
keys, so they never reuse these records.

`Resumable(lm, run_dir)` wraps a `LocalLM` or an `ApiLM` with the same methods. An API model writes each reply
the moment it arrives (`ApiLM.generate(on_result=...)`); a local model writes after every chunk of
`LOCAL_CHUNK` requests (its batches stay inside a chunk).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spdf_lib.exams.backends import Progress, Prompt

STORE = "replies.jsonl"
LOCAL_CHUNK = 64
# describe() facts that do not change a reply: how requests were sent, this process's threads
VOLATILE = ("concurrency", "rpm", "tpm", "retries", "timeout_s", "torch_threads")


def model_identity(lm) -> dict:
    """What makes two models' replies interchangeable: their description less how requests were sent, and for a
    local folder the size and time of its weight files (a retrained model in the same folder is another)."""
    ident = {k: v for k, v in lm.describe().items() if k not in VOLATILE}
    folder = getattr(lm, "folder", None)
    if folder is not None:
        ident["weights"] = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns)
                                  for f in Path(folder).glob("*.safetensors"))
    return ident


class ReplyStore:
    """`replies.jsonl`: key -> value, appended one line a reply."""

    def __init__(self, path: Path):
        self.path = path
        self.values: dict[str, Any] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    self.values[rec["key"]] = rec["value"]
                except (ValueError, KeyError, TypeError):  # a line cut short by a kill: asked again
                    continue
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("a", encoding="utf-8")

    def put(self, key: str, value: Any) -> None:
        self.values[key] = value
        self.file.write(json.dumps({"key": key, "value": value}) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())


class Resumable:
    """`lm` whose replies and scores are kept in `run_dir/replies.jsonl` and reused on a re-run; `reused` and
    `asked` count requests taken from the store and sent to the model."""

    def __init__(self, lm, run_dir: str | Path):
        self.lm = lm
        self.store = ReplyStore(Path(run_dir) / STORE)
        self.identity = json.dumps(model_identity(lm), sort_keys=True, default=str)
        self.reused = self.asked = 0

    def __getattr__(self, name: str):
        return getattr(self.lm, name)

    def _key(self, method: str, request: Any, params: dict) -> str:
        text = json.dumps([self.identity, method, request, params], sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _run(self, method: str, requests: Sequence[Any], params: dict, call: Callable, progress: Progress | None
             ) -> list:
        keys = [self._key(method, r, params) for r in requests]
        out = [self.store.values.get(k) for k in keys]
        have = [i for i, v in enumerate(out) if v is not None]
        todo = [i for i, v in enumerate(out) if v is None]
        self.reused += len(have)
        if have:
            print(f"resuming: {len(have)} of {len(requests)} {method} requests answered before are reused; asking "
                  f"{len(todo)}", file=sys.stderr, flush=True)
        if progress and have:
            progress(have)

        def keep(i: int, value: Any) -> None:
            value = json.loads(json.dumps(value))  # as the store gives it back: lists, not tuples
            out[i] = value
            self.store.put(keys[i], value)

        streams = getattr(self.lm, "streams_results", False)
        for chunk in [todo] if streams else [todo[s:s + LOCAL_CHUNK] for s in range(0, len(todo), LOCAL_CHUNK)]:
            if not chunk:
                continue
            sub = (lambda done, chunk=chunk: progress([chunk[j] for j in done])) if progress else None
            stream = (lambda j, v, chunk=chunk: keep(chunk[j], v)) if streams else None
            for j, v in enumerate(call([requests[i] for i in chunk], sub, stream)):
                if out[chunk[j]] is None:  # not streamed: kept when its chunk ends
                    keep(chunk[j], v)
            self.asked += len(chunk)
        return out

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int = 16, progress: Progress | None = None
                 ) -> list[str]:
        def call(ps, prog, on_result):
            kw = {"on_result": on_result} if on_result else {}
            return self.lm.generate(ps, max_new_tokens=max_new_tokens, progress=prog, **kw)

        return self._run("generate", list(prompts), {"max_new_tokens": max_new_tokens, "temperature": 0}, call,
                         progress)

    def letter_logprobs(self, prompts: list[str], n_options: list[int], batch_tokens: int = 2048,
                        progress: Progress | None = None) -> list[list[float]]:
        requests = list(zip(prompts, n_options, strict=True))

        def call(rs, prog, on_result):
            kw = {"on_result": on_result} if on_result else {}
            return self.lm.letter_logprobs([p for p, _ in rs], [n for _, n in rs], batch_tokens=batch_tokens,
                                           progress=prog, **kw)

        return self._run("letter_logprobs", requests, {}, call, progress)

    def option_logliks(self, requests: Sequence[tuple[str, Sequence[str]]], progress: Progress | None = None
                       ) -> list[list[tuple[float, int]]]:
        def call(rs, prog, on_result):
            kw = {"on_result": on_result} if on_result else {}
            return self.lm.option_logliks(rs, progress=prog, **kw)

        return self._run("option_logliks", [[c, list(o)] for c, o in requests], {}, call, progress)


def requests_record(lm: Resumable) -> dict:
    """For the manifest: requests reused from the store and asked, and (served models) sent, with retries by
    reason."""
    out = {"requests_reused": lm.reused, "requests_asked": lm.asked}
    if (stats := getattr(lm.lm, "stats", None)) is not None:
        out |= {"requests_sent": stats.sent, "retries": sum(stats.retries.values()),
                "retry_reasons": dict(stats.retries)}
    return out
