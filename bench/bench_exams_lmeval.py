"""Exam letter (`mcf`) scorer vs lm-evaluation-harness (`lm_eval`, EleutherAI), same model, same questions.
The cloze (`cf`) scorer, the default for local models, has its own bench: `bench_exams_cloze`.

SmolLM2-135M-Instruct scores the same 200 single-answer certification questions in the same zero-shot MMLU
prompt format ("<stem>\\nA. …\\nB. …\\nAnswer:", continuations " A", " B", …) with:

- baseline: lm-eval's `HFLM.loglikelihood` at its defaults (batch size 1, dtype "auto" = the converted
  checkpoint's float32; its logits cache already makes it one forward pass per question);
- candidate: `spdf_lib.exams.backends.LocalLM.letter_logprobs` at the kit's default `dtype: auto` (bfloat16 on a
  CPU that computes it natively, such as this Xeon with AMX; float32 elsewhere), length-bucketed batches, one
  forward per question, the LM head only on positions that end a prompt.

Results: throughput (questions/s, target >= 2x), and the predicted letters, which must all equal lm-eval's.
A third line, without a target, puts lm-eval in the candidate's dtype and a batch of 8, to show how much of the
gain is batching and dtype and how much is the scorer itself.

Two more comparisons on the same questions, same model, same thread count:

- CircularEval (`--formulation mcf` with `circular: true`, every rotation of the options asked): questions/s of
  the kit's scorer against lm-eval's `loglikelihood` at its defaults on the same rotated prompts, and whether
  every rotation's prediction agrees;
- generation (`params/exams/paper.yaml`'s mode): the first `N_GENERATE` questions put as chat (the model's chat
  template with the kit's system line; lm-eval renders it with its own `apply_chat_template`), greedy, at most 16
  new tokens: `LocalLM.generate` against lm-eval's `generate_until` (batch size 1, until = end of turn). Both
  replies go through `extract_answer`; the row reports how many extracted answers agree (target: all).
"""

from __future__ import annotations

import os
import random
import statistics
import time

import torch

from bench.common import Result

N_QUESTIONS, SEED, ROUNDS = 200, 0, 2
N_GENERATE, MAX_NEW_TOKENS = 40, 16


def use_mirror() -> None:
    """Read the data from the offline mirror beside the checkout (as the tests do) unless one is set."""
    from spdf_lib.data.registry import MIRROR_ENV
    from spdf_lib.locations import REPO_ROOT

    mirror = REPO_ROOT.parent / "shared" / "data"
    if not os.environ.get(MIRROR_ENV) and mirror.is_dir():
        os.environ[MIRROR_ENV] = str(mirror)


def _questions():
    from spdf_lib.exams.parse import load_questions

    use_mirror()
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


def _lmeval_generator(folder: str, dtype: str):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=folder, dtype=dtype, batch_size=1, device="cpu")

    def render(messages: list[dict]) -> str:
        return lm.apply_chat_template(messages, add_generation_prompt=True)

    def generate(contexts: list[str]) -> list[str]:
        reqs = [Instance(request_type="generate_until", doc={}, idx=0,
                         arguments=(c, {"until": [], "max_gen_toks": MAX_NEW_TOKENS, "do_sample": False}))
                for c in contexts]
        return lm.generate_until(reqs, disable_tqdm=True)

    return render, generate


def _generation_rows(folder: str, qs, note: str) -> list[Result]:
    """Generation: the kit's `LocalLM.generate` vs lm-eval's `generate_until`, and the agreement of the answers
    extracted from both replies."""
    from spdf_lib.exams.backends import LocalLM
    from spdf_lib.exams.extract import extract_answer
    from spdf_lib.exams.prompts import chat_messages

    qs = qs[:N_GENERATE]
    chats = [chat_messages(q, len(q.key)) for q in qs]
    ours = LocalLM.load("smollm2", dtype="auto")
    dtype = str(ours.model.dtype).removeprefix("torch.")
    render, lmeval_generate = _lmeval_generator(folder, dtype)
    contexts = [render(c) for c in chats]
    same_prompt = sum(c == ours.render(m) for c, m in zip(contexts, chats, strict=True))
    ours.generate(chats[:2], max_new_tokens=MAX_NEW_TOKENS)  # warm-up
    lmeval_generate(contexts[:2])
    t_ours, r_ours = _timed(lambda *_: ours.generate(chats, max_new_tokens=MAX_NEW_TOKENS), None, None)
    t_lm, r_lm = _timed(lambda *_: lmeval_generate(contexts), None, None)
    e_ours = [extract_answer(r, len(q.options)) for r, q in zip(r_ours, qs, strict=True)]
    e_lm = [extract_answer(r, len(q.options)) for r, q in zip(r_lm, qs, strict=True)]
    agree = sum(a == b for a, b in zip(e_ours, e_lm, strict=True))
    same_reply = sum(a == b for a, b in zip(r_ours, r_lm, strict=True))
    answered = sum(e.answered for e in e_ours)
    n = len(qs)
    return [
        Result("exam generation vs lm-eval generate_until", f"lm-eval bs1 {dtype}", n / t_lm, f"spdf generate {dtype}",
               n / t_ours, "q/s", higher_is_better=True, target=None,
               note=f"{note}; chat prompts, greedy, {MAX_NEW_TOKENS} new tokens; same rendered prompt "
                    f"{same_prompt}/{n}"),
        Result("exam generation: extracted answers agree", "lm-eval", float(n), "spdf", float(agree), "questions",
               higher_is_better=True, target=1.0,
               note=f"identical replies {same_reply}/{n}; spdf replies answered {answered}/{n}"),
    ]


def _circular_rows(folder: str, qs, ours, dtype: str, note: str) -> list[Result]:
    """Letter scoring with CircularEval (every rotation asked) vs lm-eval's loglikelihood on the same rotated
    prompts; a question counts once, with all its rotations."""
    from spdf_lib.exams.prompts import loglik_prompt, rotation

    prompts, n_options = [], []
    for q in qs:
        n = len(q.options)
        for r in range(n):
            prompts.append(loglik_prompt(q, rotation(n, r)))
            n_options.append(n)
    lmeval = _lmeval_scorer(folder, "auto", 1)
    t_ours, p_ours = _timed(ours, prompts, n_options)
    t_lm, p_lm = _timed(lmeval, prompts, n_options)
    equal = sum(a == b for a, b in zip(p_ours, p_lm, strict=True))
    n = len(qs)
    return [
        Result("exam mcf CircularEval vs lm-eval", "lm-eval bs1 fp32", n / t_lm, f"spdf {dtype} bucketed",
               n / t_ours, "q/s", higher_is_better=True, target=2.0,
               note=f"{note}; {len(prompts)} rotated prompts; rotations predicted alike {equal}/{len(prompts)}"),
    ]


def _our_scorer(dtype: str):
    from spdf_lib.exams.backends import LocalLM

    lm = LocalLM.load("smollm2", dtype=dtype)

    def predict(prompts: list[str], n_options: list[int]) -> list[int]:
        rows = lm.letter_logprobs(prompts, n_options)
        return [max(range(len(r)), key=lambda k, r=r: r[k]) for r in rows]

    return predict, str(lm.model.dtype).removeprefix("torch.")  # the dtype `auto` resolved to


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
    ours, dtype = _our_scorer("auto")
    lmeval = _lmeval_scorer(folder, "auto", 1)
    lmeval_same = _lmeval_scorer(folder, dtype, 8)  # in the candidate's dtype
    for fn in (ours, lmeval, lmeval_same):  # warm-up: kernels, allocator, tokenizers
        fn(prompts[:4], n_options[:4])

    # Interleaved rounds (ours, lm-eval, lm-eval same dtype, ours, lm-eval, …): a change in machine load hits every side
    # alike; each side's time is its median over the rounds.
    times: dict[str, list[float]] = {"ours": [], "lmeval": [], "lmeval_same": []}
    preds: dict[str, list[int]] = {}
    for _ in range(ROUNDS):
        for name, fn in (("ours", ours), ("lmeval", lmeval), ("lmeval_same", lmeval_same)):
            t, p = _timed(fn, prompts, n_options)
            times[name].append(t)
            assert preds.setdefault(name, p) == p, f"{name} is not deterministic"
    t_ours, t_lm, t_lm_same = (statistics.median(times[k]) for k in ("ours", "lmeval", "lmeval_same"))
    p_ours, p_lm, p_lm_same = preds["ours"], preds["lmeval"], preds["lmeval_same"]

    n = len(qs)
    equal = sum(a == b for a, b in zip(p_ours, p_lm, strict=True))
    equal_same = sum(a == b for a, b in zip(p_ours, p_lm_same, strict=True))
    note = f"SmolLM2-135M-Instruct, {n} questions, {torch.get_num_threads()} threads"
    rows = [
        Result("exam mcf scorer vs lm-eval (defaults)", "lm-eval bs1 fp32", n / t_lm, f"spdf {dtype} bucketed",
               n / t_ours, "q/s", higher_is_better=True, target=2.0, note=note),
        Result("exam predictions equal to lm-eval's", "lm-eval", float(n), "spdf", float(equal), "questions",
               higher_is_better=True, target=1.0, note=f"{dtype} lm-eval bs8 agrees on {equal_same}/{n}"),
        Result("exam mcf scorer vs lm-eval same dtype bs8", f"lm-eval bs8 {dtype}", n / t_lm_same,
               f"spdf {dtype} bucketed",
               n / t_ours, "q/s", higher_is_better=True, target=None, note="same dtype and batching: informative"),
    ]
    rows += _circular_rows(folder, qs, ours, dtype, note)
    rows += _generation_rows(folder, qs, f"SmolLM2-135M-Instruct, {min(n, N_GENERATE)} questions, "
                                         f"{torch.get_num_threads()} threads")
    return rows
