"""`ApiLM`: the exams through an OpenAI-compatible chat-completions endpoint (the `openai` client). The base URL
and key come from the environment (`OPENAI_BASE_URL`, `OPENAI_API_KEY`) and never enter parameters, notebooks or
run records."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch

from spdf_lib.exams.backends import API_KEY_ENV, BASE_URL_ENV, Progress, Prompt


def public_url(url: str) -> str:
    """The endpoint as it may be recorded: scheme, host, port and path; user, password and query dropped (some
    gateways take a key in them)."""
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(url)
    host = u.hostname or ""
    if u.port:
        host = f"{host}:{u.port}"
    return urlunsplit((u.scheme, host, u.path, "", ""))


class ApiLM:
    """A model behind an OpenAI-compatible chat-completions endpoint (greedy: temperature 0).

    The endpoint and key are read from `$OPENAI_BASE_URL` and `$OPENAI_API_KEY` (a local server needs no real
    key; any non-empty string does)."""

    def __init__(self, model: str, base_url: str | None = None, timeout: float = 120.0):
        from openai import OpenAI

        base_url = base_url or os.environ.get(BASE_URL_ENV)
        if not base_url:
            raise ValueError(
                f"backend api needs the server's URL in ${BASE_URL_ENV} (e.g. http://127.0.0.1:8000/v1)"
            )
        self.name = model
        self.base_url = base_url
        self.client = OpenAI(base_url=base_url, api_key=os.environ.get(API_KEY_ENV) or "none", timeout=timeout)

    has_chat_template = True  # the chat-completions endpoint applies the served model's template

    def render(self, prompt: Prompt) -> str:
        """The exact request content: the chat messages as JSON."""
        if isinstance(prompt, str):
            raise ValueError("backend api sends chat messages: use prompt_format chat (or auto)")
        return json.dumps(prompt, ensure_ascii=False)

    def generate(self, chats: Sequence[Prompt], max_new_tokens: int = 16, progress: Progress | None = None
                 ) -> list[str]:
        """Greedy replies (temperature 0), one request per chat; an API failure is one RuntimeError line."""
        from openai import OpenAIError

        texts = []
        for i, messages in enumerate(chats):
            if isinstance(messages, str):
                raise ValueError("backend api sends chat messages: use prompt_format chat (or auto)")
            try:
                r = self.client.chat.completions.create(
                    model=self.name, messages=messages, temperature=0, max_tokens=max_new_tokens
                )
            except OpenAIError as e:
                raise RuntimeError(f"chat API at {self.base_url} (model {self.name!r}): {e}") from None
            texts.append(r.choices[0].message.content or "")
            if progress:
                progress([i])
        return texts

    def describe(self) -> dict:
        """Facts for the run record: backend and endpoint (never the key), torch threads of this process."""
        return {"backend": "api", "model_name": self.name, "base_url": public_url(self.base_url), "device": "api",
                "dtype": None, "torch_threads": torch.get_num_threads(), "chat_template": True}
