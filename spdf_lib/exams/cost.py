"""The work of an exam point, counted as the scorer does it (`spdf_lib.exams.scoring`, `exams.backends`), for the
plan (`spdf_lib.cost`): tokens through the model, not prompts times a typical prompt.

- `cf` (the local default) and `hybrid`: one packed pass per request (the context, then every option's text),
  several requests a pass up to `PACK_TOKENS` (`LocalLM._packed_logliks`); the kit's GPT instead runs the
  context once and the options as one batch on its KV cache (`_shared_logliks`): two calls a question.
- `mcf`: one lettered prompt per question, under every rotation with `circular`; without it, PriDe's estimation
  sample (`pride_share` of the questions) is still asked under every rotation.
- `best`: `mcf` and `cf` both.

Token counts come from the questions' characters at a tokenizer's measured characters per token
(`CHARS_PER_TOKEN`): the plan does not load a tokenizer (SmolLM2's takes a minute from its GGUF file, the kit
model's is trained by the sweep itself).
"""

from __future__ import annotations

import math
from typing import Any

# Characters per token on the tiny exam set (86 questions; 26,016 characters of cloze contexts and options):
# SmolLM2's tokenizer gave 5,033 tokens, the nano model's 1,024-token BPE (Shakespeare + WikiText-2) 11,439.
CHARS_PER_TOKEN = {"smollm2": 5.2, "kit": 2.27}
LOAD_S = {"smollm2": 8.0, "kit": 1.0}  # loading the model and its tokenizer


def scorer_work(p: dict[str, Any], questions: list, formulation: str, kit_model: bool) -> dict[str, float]:
    """{"tokens": tokens through the model, "calls": forward calls} of one exam point's scoring."""
    from spdf_lib.exams.cloze import cloze_context, continuations
    from spdf_lib.exams.pride import estimation_sample
    from spdf_lib.exams.prompts import loglik_prompt

    cpt = CHARS_PER_TOKEN["kit" if kit_model else "smollm2"]
    tokens, calls = 0.0, 0.0
    if formulation in ("cf", "hybrid", "best"):
        for q in questions:
            context = cloze_context(q) if formulation != "hybrid" else loglik_prompt(q)
            tokens += (len(context) + sum(len(c) for c in continuations(q))) / cpt
        calls += 2 * len(questions) if kit_model else math.ceil(tokens / 512)  # exams.backends.PACK_TOKENS
    if formulation in ("mcf", "best"):
        sample = estimation_sample(questions, p.get("pride_share", 0.05), p.get("seed", 0)) if p.get("pride") else set()
        for q in questions:
            asked = len(q.options) if p.get("circular") or q.qid in sample else 1
            tokens += asked * len(loglik_prompt(q)) / cpt
            calls += asked
    return {"tokens": tokens, "calls": calls}
