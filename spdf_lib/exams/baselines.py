"""Baselines reported beside every model, and the pass rule.

- Uniform random guessing: each question is answered by a uniformly random set of k of its n options, so it is
  correct with probability 1 / C(n, k). The number of questions a certification gets right is then a sum of
  independent Bernoullis (Poisson-binomial); its exact distribution gives the exact probability of passing,
  and the expected pass share is the mean of those probabilities — no sampling.
- Always-X, in two definitions that both appear in every summary, by these names:
  - "strict single letter" (`always_X_strict`): answer every question with the one letter X, so a question
    whose key has several letters is always wrong;
  - "as many letters as the key" (`always_X`): answer with k letters, X and the k-1 letters after it, where k
    is the number of letters the model is asked for; a question whose options stop before them is wrong.
- Majority letter: always answer the most frequent key letter of the evaluated questions (a global, key-aware
  strategy) and, stronger, the most frequent key letter(s) of each certification (`majority_per_cert`), each
  in both definitions (`…_strict`: the one most frequent letter). Both read the answer keys: they measure how
  far letter imbalance alone goes, which is why a model's pass share means little without them (Noever & Ciolino 2023).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from fractions import Fraction
from math import comb

from spdf_lib.exams.parse import LETTERS, Question
from spdf_lib.exams.scoring import AnswerCount, n_answers

PassRule = str  # ">" (over the threshold, the paper's rule) or ">="
STRICT = "strict single letter"
KEYSIZE = "as many letters as the key"


def passes(correct: int, total: int, threshold: float = 0.7, rule: PassRule = ">") -> bool:
    """Whether `correct` of `total` passes: score > threshold (default, "over 70%") or >= threshold.
    Compared exactly (as fractions), so 7/10 is not over 0.7."""
    if total <= 0:
        return False
    score, t = Fraction(correct, total), Fraction(str(threshold))
    if rule == ">":
        return score > t
    if rule == ">=":
        return score >= t
    raise ValueError(f"pass rule {rule!r}: choose '>' or '>='")


def pass_probability(probs: list[float], threshold: float = 0.7, rule: PassRule = ">") -> float:
    """P(pass) when question i is correct independently with probability probs[i] (exact Poisson-binomial)."""
    dist = [1.0]  # dist[c] = P(c correct so far)
    for p in probs:
        nxt = [0.0] * (len(dist) + 1)
        for c, pc in enumerate(dist):
            nxt[c] += pc * (1 - p)
            nxt[c + 1] += pc * p
        dist = nxt
    m = len(probs)
    return sum(pc for c, pc in enumerate(dist) if passes(c, m, threshold, rule))


def random_correct_probability(q: Question, answer_count: AnswerCount = "key") -> float:
    """Chance that a uniformly random set of k options is exactly the key."""
    k = n_answers(q, answer_count)
    if len(q.key) != k or k > len(q.options):
        return 0.0
    return 1.0 / comb(len(q.options), k)


def by_certification(questions: Iterable[Question]) -> dict[str, list[Question]]:
    out: dict[str, list[Question]] = {}
    for q in questions:
        if q.scored:
            out.setdefault(q.certification, []).append(q)
    return out


def random_pass_probabilities(
    questions: list[Question], threshold: float = 0.7, rule: PassRule = ">", answer_count: AnswerCount = "key"
) -> dict[str, float]:
    """{certification: exact probability that uniform random guessing passes it}."""
    return {
        cert: pass_probability([random_correct_probability(q, answer_count) for q in qs], threshold, rule)
        for cert, qs in by_certification(questions).items()
    }


def always_letter(letter: str) -> Callable[[Question, int], frozenset[str] | None]:
    """The strategy "always answer `letter`" (k answers: the letter and the k-1 after it)."""
    start = LETTERS.index(letter)

    def choose(q: Question, k: int) -> frozenset[str] | None:
        if start + k > len(q.options):
            return None
        return frozenset(LETTERS[start : start + k])

    return choose


def always_letter_strict(letter: str) -> Callable[[Question, int], frozenset[str] | None]:
    """The strategy "always answer the single letter `letter`", whatever the number of answers asked for."""

    def choose(q: Question, k: int) -> frozenset[str] | None:
        return frozenset(letter) if LETTERS.index(letter) < len(q.options) else None

    return choose


def key_letter_counts(questions: Iterable[Question]) -> Counter[str]:
    """How often each letter is (part of) the key."""
    c: Counter[str] = Counter()
    for q in questions:
        if q.scored:
            c.update(q.key)
    return c


def majority_letter(questions: Iterable[Question]) -> str:
    """The most frequent key letter (ties: the earlier letter)."""
    c = key_letter_counts(questions)
    return min(c, key=lambda x: (-c[x], x)) if c else "A"


def strategy_correct(
    questions: list[Question], choose: Callable[[Question, int], frozenset[str] | None],
    answer_count: AnswerCount = "key",
) -> dict[str, bool]:
    """{qid: correct} for a deterministic strategy."""
    return {q.qid: choose(q, n_answers(q, answer_count)) == q.key for q in questions if q.scored}


def majority_per_cert_correct(
    questions: list[Question], answer_count: AnswerCount = "key", strict: bool = False,
    reference: list[Question] | None = None,
) -> dict[str, bool]:
    """{qid: correct} when each certification is answered with its own most frequent key letter(s): the k most
    frequent (as many letters as the key), or with `strict` the single most frequent one. The counts come from
    the certification's questions in `reference` (default: `questions`), so that a sample of one question per
    certification is not answered from its own key."""
    ref = by_certification(reference if reference is not None else questions)
    out = {}
    for cert, qs in by_certification(questions).items():
        counts = key_letter_counts(ref.get(cert, qs))
        ranked = sorted(counts, key=lambda x: (-counts[x], x))
        for q in qs:
            k = 1 if strict else n_answers(q, answer_count)
            out[q.qid] = frozenset(ranked[:k]) == q.key
    return out


def baseline_correct(
    questions: list[Question], answer_count: AnswerCount = "key", reference: list[Question] | None = None
) -> dict[str, dict[str, bool]]:
    """{baseline name: {qid: correct}} for the deterministic baselines: always_A … always_<last letter used> (as
    many letters as the key) and always_A_strict … (strict single letter), majority and majority_strict (the
    most frequent key letter overall), majority_per_cert and majority_per_cert_strict (each certification's
    most frequent key letters, counted over its questions in `reference`, default `questions`)."""
    scored = [q for q in questions if q.scored]
    n_max = max((len(q.options) for q in scored), default=0)
    out = {f"always_{x}": strategy_correct(scored, always_letter(x), answer_count) for x in LETTERS[:n_max]}
    out |= {f"always_{x}_strict": strategy_correct(scored, always_letter_strict(x), answer_count)
            for x in LETTERS[:n_max]}
    top = majority_letter(scored)
    out["majority"] = strategy_correct(scored, always_letter(top), answer_count)
    out["majority_strict"] = strategy_correct(scored, always_letter_strict(top), answer_count)
    out["majority_per_cert"] = majority_per_cert_correct(scored, answer_count, reference=reference)
    out["majority_per_cert_strict"] = majority_per_cert_correct(scored, answer_count, strict=True,
                                                                reference=reference)
    return out


def definition(name: str) -> str:
    """The constant-letter definition a baseline name uses: "strict single letter" or "as many letters as the
    key"."""
    return STRICT if name.endswith("_strict") else KEYSIZE
