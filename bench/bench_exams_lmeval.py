"""Exam log-likelihood scorer vs lm-evaluation-harness (`lm_eval`, EleutherAI), same model, same questions.

SmolLM2-135M-Instruct scores the same 200 single-answer certification questions in the same zero-shot MMLU
prompt format ("<stem>\\nA. …\\nB. …\\nAnswer:", continuations " A", " B", …) with:

- baseline: lm-eval's `HFLM.loglikelihood` at its defaults (batch size 1, dtype "auto" = the checkpoint's
  float32; its logits cache already makes it one forward pass per question);
- candidate: `spdf_lib.exams.backends.LocalLM.letter_logprobs` (bfloat16, length-bucketed batches, one forward
  per question, the LM head only on positions that end a prompt).

Results: throughput (questions/s, target >= 2x), and the predicted letters, which must all equal lm-eval's.
A third line, without a target, puts lm-eval in the candidate's dtype and a batch of 8, to show how much of the
gain is batching and bfloat16 and how much is the scorer itself.
"""

from __future__ import annotations

import os
import random
import statistics
import time

import torch

from bench.common import Result

N_QUESTIONS, SEED, ROUNDS = 200, 0, 2


def _questions():
    from spdf_lib.data.registry import MIRROR_ENV
    from spdf_lib.exams.parse import load_questions
    from spdf_lib.records import REPO_ROOT

    mirror = REPO_ROOT.parent / "shared" / "data"  # the offline mirror beside the checkout, as the tests use it
    if not os.environ.get(MIRROR_ENV) and mirror.is_dir():
        os.environ[MIRROR_ENV] = str(mirror)

    questions, _ = load_questions()
    single = [q for q in questions if q.scored and len(q.key) == 1]
    return random.Random(SEED).sample(single, N_QUESTIONS)


def _lmeval_scorer(folder: str, dtype: str, batch_size: int):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=folder, dtype=dtype, batch_size=batch_size, device="cpu")

    def predict(prompts: list[str], n_options: list[int]) -> list[int]:
        reqs = [Instance(request_type="loglikelihood", doc={}, arguments=(p, " " + "ABCDEFGHIJ"[k]), idx=k)
                for p, n in zip(prompts, n_options, strict=True) for k in range(n)]
        lls = [ll for ll, _ in lm.loglikelihood(reqs, disable_tqdm=True)]
        preds, i = [], 0
        for n in n_options:
            preds.append(max(range(n), key=lambda k, row=lls[i : i + n]: row[k]))  # lm-eval's acc: argmax
            i += n
        return preds

    return predict


def _our_scorer(dtype: str):
    from spdf_lib.exams.backends import LocalLM

    lm = LocalLM.load("smollm2", dtype=dtype)

    def predict(prompts: list[str], n_options: list[int]) -> list[int]:
        rows = lm.letter_logprobs(prompts, n_options)
        return [max(range(len(r)), key=lambda k, r=r: r[k]) for r in rows]

    return predict


def _timed(fn, prompts, n_options) -> tuple[float, list[int]]:
    t0 = time.perf_counter()
    preds = fn(prompts, n_options)
    return time.perf_counter() - t0, preds


def run() -> list[Result]:
    from spdf_lib.exams.backends import smollm2_dir
    from spdf_lib.exams.prompts import loglik_prompt

    folder = str(smollm2_dir())
    qs = _questions()
    prompts, n_options = [loglik_prompt(q) for q in qs], [len(q.options) for q in qs]
    ours = _our_scorer("bfloat16")
    lmeval = _lmeval_scorer(folder, "auto", 1)
    lmeval_bf16 = _lmeval_scorer(folder, "bfloat16", 8)
    for fn in (ours, lmeval, lmeval_bf16):  # warm-up: kernels, allocator, tokenizers
        fn(prompts[:4], n_options[:4])

    # Interleaved rounds (ours, lm-eval, lm-eval bf16, ours, lm-eval, …): a change in machine load hits every side
    # alike; each side's time is its median over the rounds.
    times: dict[str, list[float]] = {"ours": [], "lmeval": [], "lmeval_bf16": []}
    preds: dict[str, list[int]] = {}
    for _ in range(ROUNDS):
        for name, fn in (("ours", ours), ("lmeval", lmeval), ("lmeval_bf16", lmeval_bf16)):
            t, p = _timed(fn, prompts, n_options)
            times[name].append(t)
            assert preds.setdefault(name, p) == p, f"{name} is not deterministic"
    t_ours, t_lm, t_lm_bf16 = (statistics.median(times[k]) for k in ("ours", "lmeval", "lmeval_bf16"))
    p_ours, p_lm, p_lm_bf16 = preds["ours"], preds["lmeval"], preds["lmeval_bf16"]

    n = len(qs)
    equal = sum(a == b for a, b in zip(p_ours, p_lm, strict=True))
    equal_bf16 = sum(a == b for a, b in zip(p_ours, p_lm_bf16, strict=True))
    note = f"SmolLM2-135M-Instruct, {n} questions, {torch.get_num_threads()} threads"
    return [
        Result("exam loglik scorer vs lm-eval (defaults)", "lm-eval bs1 fp32", n / t_lm, "spdf bf16 bucketed",
               n / t_ours, "q/s", higher_is_better=True, target=2.0, note=note),
        Result("exam predictions equal to lm-eval's", "lm-eval", float(n), "spdf", float(equal), "questions",
               higher_is_better=True, target=1.0, note=f"bf16 lm-eval bs8 agrees on {equal_bf16}/{n}"),
        Result("exam loglik scorer vs lm-eval bf16 bs8", "lm-eval bs8 bf16", n / t_lm_bf16, "spdf bf16 bucketed",
               n / t_ours, "q/s", higher_is_better=True, target=None, note="same dtype and batching: informative"),
    ]
