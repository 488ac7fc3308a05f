"""Price and plan an exam before compute (`spdf exam --plan`, the first lines of every served exam, `spdf plan`).

The plan runs the exam's own scoring on a `DryRun` model that records each request instead of sending it, so
its requests are exactly those the server will receive: every rotation, every option, both formulations of
`best`. Tokens are counted with the model's tokenizer where one is known (a local model, or `plan_tokenizer`
for a served one), otherwise estimated at 4 characters a token, and the plan says which. Completion tokens of
generation are `max_new_tokens` a request (an upper bound); log-likelihood requests generate none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from spdf_lib.exams.params import ExamParams

CHARS_PER_TOKEN = 4  # the estimate when no tokenizer is known


class DryRun:
    """A model that answers nothing: it records the text of every request `score` would send."""

    def __init__(self, name: str, chat: bool):
        self.name, self.has_chat_template, self.sent = name, chat, []

    def render(self, prompt) -> str:
        return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)

    def generate(self, prompts, max_new_tokens: int = 16, progress=None, **_) -> list[str]:
        self.sent += [("generate", p, max_new_tokens) for p in prompts]
        return [""] * len(prompts)

    def option_logliks(self, requests, progress=None, **_) -> list[list[tuple[float, int]]]:
        self.sent += [("loglik", [ctx + c for c in conts], 0) for ctx, conts in requests]
        return [[(0.0, 1)] * len(conts) for _, conts in requests]

    def letter_logprobs(self, prompts, n_options, batch_tokens: int = 0, progress=None, **_) -> list[list[float]]:
        letters = "ABCDEFGHIJ"
        self.sent += [("loglik", [p + f" {x}" for x in letters[:n]], 0) for p, n in zip(prompts, n_options,
                                                                                          strict=True)]
        return [[0.0] * n for n in n_options]


@dataclass
class ExamPlan:
    requests: int
    prompt_tokens: int
    completion_tokens: int
    counted: str  # how tokens were counted
    seconds: float
    cost: float | None

    def lines(self, p: ExamParams, latency: float) -> list[str]:
        limits = ", ".join(f"{k} {v:g}" for k, v in (("rpm", p.rpm), ("tpm", p.tpm)) if v) or "no rate limits"
        cost = (f"${self.cost:,.2f} at ${p.price_in:g}/${p.price_out:g} per million prompt/completion tokens"
                if self.cost is not None else "cost: give --price-in and --price-out (per million tokens)")
        return [f"plan: {self.requests:,} requests, {self.prompt_tokens:,} prompt tokens and at most "
                f"{self.completion_tokens:,} completion tokens ({self.counted})",
                f"plan: about {_duration(self.seconds)} at concurrency {p.concurrency}, {limits}, "
                f"{latency:g} s a reply; {cost}"]


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else \
        f"{seconds:.0f} s"


def _counter(p: ExamParams):
    """(tokens of a text or chat, how counted): the model's tokenizer where known, else an estimate."""
    spec = p.plan_tokenizer or (p.model if p.backend == "local" else "")
    if spec:
        from transformers import AutoTokenizer

        from spdf_lib.exams.backends import resolve_model

        tok = AutoTokenizer.from_pretrained(str(resolve_model(spec)))

        def count(x) -> int:
            if isinstance(x, str):
                return len(tok(x)["input_ids"])
            return len(tok.apply_chat_template(x, tokenize=True, add_generation_prompt=True))

        return count, f"counted with the tokenizer of {spec}"

    def estimate(x) -> int:
        text = x if isinstance(x, str) else "".join(m["content"] for m in x)
        return -(-len(text) // CHARS_PER_TOKEN)

    return estimate, f"estimated at {CHARS_PER_TOKEN} characters a token; set plan_tokenizer to count them"


def plan_requests(p: ExamParams, chosen: list, fields: dict[str, str], latency: float = 1.0) -> ExamPlan:
    """Requests, tokens, wall time and cost of the exam `p` over the questions `chosen` (see the module
    docstring); nothing is sent. `spdf_lib.exams.run.plan_exam` selects the questions first."""
    from spdf_lib.exams.scoring import score_all

    lm = DryRun(p.model, chat=p.prompt_format != "plain")
    score_all(p, lm, chosen, fields, "plain" if p.prompt_format == "plain" else "chat", progress=False)
    count, counted = _counter(p)
    prompt = sum(count(x) for kind, payload, _ in lm.sent for x in (payload if kind == "loglik" else [payload]))
    completion = sum(n for *_, n in lm.sent)
    n = len(lm.sent)
    rate = p.concurrency / latency  # requests a second the concurrency allows
    if p.rpm:
        rate = min(rate, p.rpm / 60)
    if p.tpm and prompt + completion:
        rate = min(rate, p.tpm / 60 / ((prompt + completion) / n))
    cost = (prompt * p.price_in + completion * p.price_out) / 1e6 if p.price_in or p.price_out else None
    return ExamPlan(n, prompt, completion, counted, n / rate if n else 0.0, cost)
