"""The exam letter scorer with CircularEval (`--formulation mcf`, `circular: true`: SmolLM2-135M-Instruct at
`dtype: auto`, letter log-likelihood under every rotation of the options) against an unbatched reference on the
same 500 questions (seed 0, all scorable questions, so multi-letter keys and long questions are in), same model,
same threads. (`params/exams/full.yaml` now scores cf and mcf without CircularEval; the cloze scorer has its own
bench, `bench_exams_cloze`.)

- baseline: one forward pass per prompt (no padding, no length buckets), the letters' log-probabilities read from
  the last position; a letter that is not one token after the prompt gets one pass per (prompt, letter);
- candidate: `spdf_lib.exams.scoring.score(..., circular=True)`, the code path of `spdf exam` (length-bucketed,
  right-padded batches of up to 2,048 tokens, the LM head only on the positions that end a prompt).

Results: questions/s with CircularEval (each question once, with all its rotations), and how many questions get
identical predictions under every rotation, naming the rotations that differ. No target on the latter: in
bfloat16 (what `auto` is on a CPU with native bf16) the two paths' letter log-probabilities differ by up to
~0.1-0.3 (the transformer's matrix products are shaped differently), and bfloat16 logits tie exactly now and
then (broken towards the earlier letter), so a prediction decided by less than that margin can differ. An
earlier session measured, in bfloat16 on 2 threads, 499 of 500 questions and 2,029 of 2,030 rotated prompts
alike; the one difference was an exact tie between C and D in the batched scores.
"""

from __future__ import annotations

import random
import time

import torch

from bench.bench_exams_lmeval import use_mirror
from bench.common import Result

N_QUESTIONS, SEED = 500, 0


def _unbatched(lm, prompts: list[str], n_options: list[int], ks: list[int]) -> list[frozenset[str]]:
    from spdf_lib.exams.scoring import top_letters

    out = []
    with torch.no_grad():
        for p, n, k in zip(prompts, n_options, ks, strict=True):
            pairs = [lm.encode_pair(p, " " + "ABCDEFGHIJ"[i]) for i in range(n)]
            ctx = pairs[0][0]
            if all(len(c) == 1 and cx == ctx for cx, c in pairs):
                logits = lm.model(input_ids=torch.tensor([ctx], device=lm.device)).logits[0, -1].float()
                lp = torch.log_softmax(logits, -1)
                scores = [float(lp[c[0]]) for _, c in pairs]
            else:
                scores = [lm._continuation_logprob(p, " " + "ABCDEFGHIJ"[i]) for i in range(n)]
            out.append(top_letters(scores, k))
    return out


def run() -> list[Result]:
    from spdf_lib.exams.backends import LocalLM
    from spdf_lib.exams.parse import load_questions
    from spdf_lib.exams.prompts import loglik_prompt, rotation, to_original
    from spdf_lib.exams.scoring import ScoreOptions, score

    use_mirror()
    questions, _ = load_questions()
    qs = sorted(random.Random(SEED).sample([q for q in questions if q.scored], N_QUESTIONS), key=lambda q: q.qid)
    lm = LocalLM.load("smollm2", dtype="auto")
    score(lm, qs[:4], ScoreOptions(circular=True, progress=False))  # warm-up

    t0 = time.perf_counter()
    records = score(lm, qs, ScoreOptions(circular=True, progress=False))
    t_batched = time.perf_counter() - t0

    prompts, n_options, ks, orders = [], [], [], []
    for q in qs:
        n = len(q.options)
        for r in range(n):
            orders.append(rotation(n, r))
            prompts.append(loglik_prompt(q, orders[-1]))
            n_options.append(n)
            ks.append(len(q.key))
    t0 = time.perf_counter()
    shown = _unbatched(lm, prompts, n_options, ks)
    t_unbatched = time.perf_counter() - t0
    reference, i = [], 0
    for q in qs:
        n = len(q.options)
        reference.append(["".join(sorted(to_original(s, o))) for s, o in zip(shown[i : i + n], orders[i : i + n],
                                                                         strict=True)])
        i += n
    equal = sum(r["rotation_choices"] == ref for r, ref in zip(records, reference, strict=True))
    differ = [f"{r['qid']} rotation {i}: {a} vs {b}" for r, ref in zip(records, reference, strict=True)
              for i, (a, b) in enumerate(zip(r["rotation_choices"], ref, strict=True)) if a != b]
    jobs_equal = len(prompts) - len(differ)
    n = len(qs)
    dtype = str(lm.model.dtype).removeprefix("torch.")
    note = (f"SmolLM2-135M-Instruct {dtype}, {n} questions ({len(prompts)} rotated prompts), "
            f"{torch.get_num_threads()} threads")
    return [
        Result("exam mcf CircularEval: batched vs unbatched", "unbatched", n / t_unbatched,
               "spdf score()", n / t_batched, "q/s", higher_is_better=True, target=None, note=note),
        Result("exam mcf CircularEval: equal to unbatched", "unbatched", float(n), "spdf score()",
               float(equal), "questions", higher_is_better=True, target=None,
               note=f"rotations equal {jobs_equal}/{len(prompts)}" + (f"; differ: {'; '.join(differ[:5])}"
                                                                       if differ else "")),
    ]
