"""`CompletionsLM`: log-likelihood scoring through an OpenAI-compatible *completions* endpoint, the protocol of
lm-evaluation-harness's `local-completions` model, which vLLM, llama.cpp's server and TGI speak.

One request per question: `prompt` is the list of context + continuation strings (one per option, or per
letter), with `echo=true`, `logprobs=1`, `max_tokens=0` and `temperature=0`. The server returns, for each
string, its tokens, their log-probabilities and their character offsets; the continuation is the tokens that
start at or after the end of the context (its trailing spaces moved to the continuation, as lm-eval does). So
context and continuation split where the server's tokenizer splits them, not where a local copy would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from spdf_lib.exams.api import ApiLM
from spdf_lib.exams.backends import Progress
from spdf_lib.exams.pool import run_requests

LETTERS = "ABCDEFGHIJ"


def continuation_loglik(logprobs, context_chars: int, prompt_chars: int) -> tuple[float, int]:
    """(summed log-probability, token count) of the tokens that start in [context_chars, prompt_chars): the
    continuation (a generated token past the prompt, if the server added one, is not counted)."""
    total, n = 0.0, 0
    for lp, start in zip(logprobs.token_logprobs, logprobs.text_offset, strict=True):
        if context_chars <= start < prompt_chars:
            if lp is None:
                raise ValueError("the server gave no log-probability for a continuation token")
            total, n = total + lp, n + 1
    return total, n


class CompletionsLM(ApiLM):
    """A served model scored by log-likelihood through `/completions` (`echo`, `logprobs`); `cf`, `hybrid`
    and `mcf` letters. Endpoint and key from `$OPENAI_BASE_URL`/`$OPENAI_API_KEY`, as `ApiLM`."""

    kind = "completions API"
    has_chat_template = False
    streams_results = True

    def _score(self, request: tuple[str, Sequence[str]]) -> list[tuple[float, int]]:
        from openai import OpenAIError
        from openai.types import Completion

        context, conts = request
        n_spaces = len(context) - len(context.rstrip())
        split = len(context) - n_spaces  # trailing spaces belong to the continuation (lm-eval's split)
        prompts = [context + c for c in conts]
        try:
            r = self.client.completions.create(model=self.name, prompt=prompts, echo=True, logprobs=1,
                                               max_tokens=0, temperature=0)
        except (OpenAIError, ValueError) as e:
            raise self._fail(e) from None
        if not isinstance(r, Completion):
            raise RuntimeError(self._error("the reply is not JSON; is the URL an OpenAI-compatible API?"))
        choices = sorted(r.choices or [], key=lambda c: c.index)
        if len(choices) != len(prompts) or any(c.logprobs is None or c.logprobs.text_offset is None
                                               for c in choices):
            raise RuntimeError(self._error(f"the reply has {len(choices)} choices with echoed logprobs for "
                                           f"{len(prompts)} prompts; does the server support echo and logprobs?"))
        try:
            return [continuation_loglik(c.logprobs, split, len(p)) for c, p in zip(choices, prompts, strict=True)]
        except ValueError as e:
            raise RuntimeError(self._error(e)) from None

    def option_logliks(self, requests: Sequence[tuple[str, Sequence[str]]], progress: Progress | None = None,
                       on_result: Callable[[int, list], None] | None = None, **_) -> list[list[tuple[float, int]]]:
        """(log P(continuation | context), its token count) for every continuation of every request, one HTTP
        request a (context, continuations) pair, sent as the policy allows."""
        from spdf_lib.exams.api import _both

        return run_requests(self._score, list(requests), self.policy,
                            tokens=[sum(len(r[0]) + len(c) for c in r[1]) // 4 for r in requests],
                            on_result=_both(on_result, progress), stats=self.stats)

    def letter_logprobs(self, prompts: list[str], n_options: list[int], letters: str = LETTERS,
                        batch_tokens: int = 0, progress: Progress | None = None,
                        on_result: Callable[[int, list], None] | None = None) -> list[list[float]]:
        """log P(" X" | prompt) for the first `n_options[i]` letters X of each prompt (`mcf` by letters)."""
        requests = [(p, [f" {x}" for x in letters[:n]]) for p, n in zip(prompts, n_options, strict=True)]
        each = (lambda i, v: on_result(i, [s for s, _ in v])) if on_result else None
        return [[s for s, _ in r] for r in self.option_logliks(requests, progress=progress, on_result=each)]

    def generate(self, *args, **kwargs):
        raise ValueError("backend completions scores log-likelihoods: set mode=loglik (backend api generates)")

    def describe(self) -> dict:
        return {**super().describe(), "backend": "completions", "chat_template": False}
