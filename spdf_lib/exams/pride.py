"""PriDe (Zheng et al., 2023, "Large Language Models Are Not Robust Multiple Choice Selectors"): the letter
prior of a model, estimated on a few questions and divided out of every other question's letter probabilities.

The observed probability of shown position i factors as P_obs(i | x) ∝ P_prior(i) · P_debiased(option at i | x).
Asked under all n cyclic rotations, every option visits every position once, so the mean over rotations of
log P_obs(i | rotation r) is log P_prior(i) plus a constant: its softmax is the question's prior. The model's
prior (one per number of options) is the mean of those over a random `share` (5%) of the questions; every other
question's letter log-probabilities (normalised over its n letters) minus the prior's log give the debiased
choice. The estimation questions themselves are answered from their rotation average (the permutation-debiased
prediction), so every question gets a debiased answer. Cost: the estimation questions' n - 1 extra rotations,
about 1 + 0.05 · (n - 1) ≈ 1.15 forward passes per question with four options (none extra with CircularEval).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from spdf_lib.exams.parse import LETTERS, Question


def estimation_sample(questions: Sequence[Question], share: float = 0.05, seed: int = 0) -> set[str]:
    """The qids of a `seed`-random `share` of the questions (at least one when there are any)."""
    qids = sorted(q.qid for q in questions)
    if not qids or share <= 0:
        return set()
    k = min(len(qids), max(1, round(share * len(qids))))
    return set(random.Random(f"pride-{seed}").sample(qids, k))


def log_softmax(xs: Sequence[float]) -> list[float]:
    m = max(xs)
    z = m + math.log(sum(math.exp(x - m) for x in xs))
    return [x - z for x in xs]


def question_prior(rotated: Sequence[Sequence[float]]) -> list[float]:
    """One question's position prior from its letter log-probabilities under the n cyclic rotations (rows: the
    rotations, in order; columns: the shown positions)."""
    n = len(rotated[0])
    mean = [sum(log_softmax(row)[i] for row in rotated) / len(rotated) for i in range(n)]
    return [math.exp(x) for x in log_softmax(mean)]


def original_average(rotated: Sequence[Sequence[float]]) -> list[float]:
    """Per original option: the mean over rotations of its normalised log-probability at the position it was
    shown in (rotation r shows original option (i + r) mod n at position i)."""
    n = len(rotated[0])
    out = [0.0] * n
    for r, row in enumerate(rotated):
        lp = log_softmax(row)
        for i in range(n):
            out[(i + r) % n] += lp[i] / len(rotated)
    return out


def estimate_prior(rotated_by_question: Sequence[Sequence[Sequence[float]]]) -> dict[int, list[float]]:
    """{number of options: the mean position prior} over the estimation questions."""
    sums: dict[int, list[float]] = {}
    counts: dict[int, int] = {}
    for rotated in rotated_by_question:
        prior = question_prior(rotated)
        n = len(prior)
        sums[n] = [a + b for a, b in zip(sums.get(n, [0.0] * n), prior, strict=True)]
        counts[n] = counts.get(n, 0) + 1
    return {n: [x / counts[n] for x in s] for n, s in sums.items()}


def debias(letter_logprobs: Sequence[float], prior: Sequence[float] | None) -> list[float]:
    """Debiased letter scores: the letters' log-probabilities normalised over the n letters, minus log prior
    (unchanged up to normalisation when there is no prior for this number of options)."""
    lp = log_softmax(letter_logprobs)
    if prior is None:
        return lp
    return [x - math.log(max(p, 1e-30)) for x, p in zip(lp, prior, strict=True)]


def prior_table(prior: dict[int, list[float]], counts: dict[int, int]) -> list[dict]:
    """Rows for the run's `pride_prior` table: options, estimation questions, letter, prior probability."""
    return [{"n_options": n, "estimation_questions": counts.get(n, 0), "letter": LETTERS[i], "prior": p}
            for n, ps in sorted(prior.items()) for i, p in enumerate(ps)]
