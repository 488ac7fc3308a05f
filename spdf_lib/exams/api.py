"""`ApiLM`: the exams through an OpenAI-compatible chat-completions endpoint (the `openai` client). The base URL
and key come from the environment (`OPENAI_BASE_URL`, `OPENAI_API_KEY`) and never enter parameters, notebooks or
run records; every error line passes through `spdf_lib.scrub` first."""

from __future__ import annotations

import email.utils
import json
import os
import time
from collections.abc import Callable, Sequence

import torch

from spdf_lib.exams.backends import API_KEY_ENV, BASE_URL_ENV, Progress, Prompt
from spdf_lib.exams.pool import PoolStats, RequestPolicy, Retryable, run_requests
from spdf_lib.scrub import public_url, scrub

__all__ = ["ApiLM", "public_url", "retry_after"]


def retry_after(headers) -> float | None:
    """Seconds a 429/503 asks to wait: `retry-after-ms`, `Retry-After` in seconds or as an HTTP date."""
    if headers is None:
        return None
    try:
        if ms := headers.get("retry-after-ms"):
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _both(on_result, progress):
    """One callback for the pool: the caller's `on_result(i, value)`, then the progress bar's `progress([i])`."""
    if not on_result and not progress:
        return None

    def call(i, value):
        if on_result:
            on_result(i, value)
        if progress:
            progress([i])

    return call


class ApiLM:
    """A model behind an OpenAI-compatible chat-completions endpoint (greedy: temperature 0).

    The endpoint and key are read from `$OPENAI_BASE_URL` and `$OPENAI_API_KEY` (a local server needs no real
    key; any non-empty string does). Requests are sent as `policy` says (`spdf_lib.exams.pool`)."""

    def __init__(self, model: str, base_url: str | None = None, timeout: float = 60.0, retries: int = 3,
                 policy: RequestPolicy | None = None):
        from openai import OpenAI

        base_url = base_url or os.environ.get(BASE_URL_ENV)
        if not base_url:
            raise ValueError(
                f"backend api needs the server's URL in ${BASE_URL_ENV} (e.g. http://127.0.0.1:8000/v1)"
            )
        self.name = model
        self.base_url = base_url
        self.endpoint = public_url(base_url)  # what is printed and recorded
        self.policy = policy or RequestPolicy(timeout=timeout, retries=retries)
        self.stats = PoolStats()
        # retries are the pool's (they honour Retry-After and are counted), not the client's
        self.client = OpenAI(base_url=base_url, api_key=os.environ.get(API_KEY_ENV) or "none",
                             timeout=self.policy.timeout, max_retries=0)

    has_chat_template = True  # the chat-completions endpoint applies the served model's template
    streams_results = True  # generate() hands each reply to `on_result` as it arrives (`resume.Resumable`)

    kind = "chat API"  # how errors name the endpoint

    def _error(self, what: object) -> str:
        return scrub(f"{self.kind} at {self.endpoint} (model {self.name!r}): {what}")

    def _fail(self, e: Exception) -> Exception:
        """The one-line error (or `Retryable`) for what the client raised."""
        from openai import APIConnectionError, APIStatusError, APITimeoutError

        if isinstance(e, APIStatusError):
            status = e.status_code
            if status == 429 or status >= 500:
                return Retryable(self._error(e), str(status), retry_after(e.response.headers))
        elif isinstance(e, APITimeoutError):
            return Retryable(self._error(f"no reply within {self.policy.timeout:g} s"), "timeout")
        elif isinstance(e, APIConnectionError):
            return Retryable(self._error(f"{e} ({e.__cause__ or 'connection failed'})"), "connection")
        elif isinstance(e, ValueError):  # the body claimed JSON but is not
            return RuntimeError(self._error("the reply is not JSON; is the URL an OpenAI-compatible API?"))
        return RuntimeError(self._error(e))

    def _chat(self, messages: list[dict], max_new_tokens: int) -> str:
        from openai import OpenAIError
        from openai.types.chat import ChatCompletion

        try:
            r = self.client.chat.completions.create(
                model=self.name, messages=messages, temperature=0, max_tokens=max_new_tokens
            )
        except (OpenAIError, ValueError) as e:
            raise self._fail(e) from None
        if not isinstance(r, ChatCompletion):  # the client hands back a body that was not JSON as text
            raise RuntimeError(self._error("the reply is not JSON; is the URL an OpenAI-compatible API?"))
        if not r.choices:
            raise RuntimeError(self._error("the reply has no choices (an empty `choices` list)"))
        return r.choices[0].message.content or ""

    def render(self, prompt: Prompt) -> str:
        """The exact request content: the chat messages as JSON."""
        if isinstance(prompt, str):
            raise ValueError("backend api sends chat messages: use prompt_format chat (or auto)")
        return json.dumps(prompt, ensure_ascii=False)

    def generate(self, chats: Sequence[Prompt], max_new_tokens: int = 16, progress: Progress | None = None,
                 on_result: Callable[[int, str], None] | None = None) -> list[str]:
        """Greedy replies (temperature 0), one request per chat, in the order of `chats`; `on_result(i, reply)`
        as each arrives. An API failure is one RuntimeError line (scrubbed); Ctrl-C stops at once."""
        if any(isinstance(m, str) for m in chats):
            raise ValueError("backend api sends chat messages: use prompt_format chat (or auto)")
        return run_requests(lambda m: self._chat(m, max_new_tokens), chats, self.policy,
                            tokens=[len(json.dumps(m)) // 4 + max_new_tokens for m in chats],
                            on_result=_both(on_result, progress), stats=self.stats)

    def describe(self) -> dict:
        """Facts for the run record: backend and endpoint (never the key), torch threads of this process."""
        return {"backend": "api", "model_name": self.name, "base_url": self.endpoint, "device": "api",
                "dtype": None, "torch_threads": torch.get_num_threads(), "chat_template": True,
                **self.policy.describe()}
