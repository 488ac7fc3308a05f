"""The cloze side of the exam study without a model: options that name other options, the cloze baselines,
PriDe on a synthetic scorer with a known letter bias, and the bootstrap intervals."""

from __future__ import annotations

import math
import random

import pytest

from spdf_lib.exams.cloze import cf_baseline_correct, normalise, option_references, reference_counts
from spdf_lib.exams.intervals import accuracy_interval, pass_share_interval
from spdf_lib.exams.parse import LETTERS, Question
from spdf_lib.exams.scoring import ScoreOptions, score


def _q(qid: str, stem: str, options: list[str], key: str = "A", cert: str = "C") -> Question:
    return Question(qid=qid, certification=cert, number=None, stem=stem, options=tuple(options),
                    key=frozenset(key), raw_key=key, n_stated=len(key))


@pytest.mark.parametrize("options, named", [
    (["Port 22", "Port 80", "Port 443", "All of the above"], {"D": "all_of_the_above"}),
    (["TCP", "UDP", "None of these", "ICMP"], {"C": "none_of_the_above"}),
    (["red", "blue", "Both A and B", "Neither A nor B"], {"C": "names_letters", "D": "names_letters"}),
    (["x", "y", "z", "a & c only"], {"D": "names_letters"}),
    (["Same as A above, but signed", "Encrypt", "Hash", "Sign"], {"A": "names_letters"}),
    (["one", "two", "three", "All of the listed answers are correct."], {"D": "all_of_the_above"}),
    (["Neither of the above", "Both of the above", "Snapshots", "Backups"],
     {"A": "any_of_the_above", "B": "any_of_the_above"}),
])
def test_options_that_name_other_options_are_found(options, named):
    found = {x: reason for x, reason, _ in option_references(_q("0", "Which one?", options))}
    assert found == named


@pytest.mark.parametrize("options", [
    ["Add a rule to deny all traffic", "Use both endpoints", "None", "A firewall"],
    ["Both teams would use the same source of truth", "Install on both laptops", "Plan A", "Plan B and C"],
    ["a", "b", "Both A and F", "d"],  # F is no option of a four-option question
])
def test_ordinary_options_are_not_flagged(options):
    assert option_references(_q("0", "Which one?", options)) == []


def test_the_data_report_counts_them_by_reason():
    qs = [_q("0", "s", ["a", "b", "All of the above"]), _q("1", "s", ["a", "None of the above", "Both A and B"]),
          _q("2", "s", ["a", "b"])]
    assert reference_counts(qs) == {"questions": 2, "all_of_the_above": 1, "none_of_the_above": 1,
                                    "names_letters": 1}


def test_cloze_baselines_pick_the_longest_shortest_and_most_overlapping_options():
    q1 = _q("1", "Which protocol encrypts web traffic?", ["HTTPS encrypts web traffic", "FTP", "Telnet session"])
    q2 = _q("2", "Pick two storage classes", ["S3 Glacier", "EBS gp3 volume type", "Storage classes of S3", "x"],
            key="BC")
    got = cf_baseline_correct([q1, q2], {"1": 1, "2": 2})
    assert got["longest"] == {"1": True, "2": True}  # q2: the two longest are B and C
    assert got["shortest"] == {"1": False, "2": False}
    assert got["overlap"]["1"] is True  # "encrypts web traffic" repeats the stem


def test_normalisations():
    assert normalise(-6.0, 3, "abcd", "none") == -6.0
    assert normalise(-6.0, 3, "abcd", "char") == -1.5
    assert normalise(-6.0, 3, "abcd", "token") == -2.0
    assert normalise(-6.0, 3, "abcd", "pmi", unconditional=-8.0) == 2.0
    with pytest.raises(ValueError, match="unconditional"):
        normalise(-6.0, 3, "abcd", "pmi")


class BiasedScorer:
    """Letter log-probabilities from a fixed skill: each option has a content score (the key's is higher on most
    questions) that moves with the option under rotations, plus +2 on whatever is shown at position A."""

    name = "synthetic"

    def __init__(self, questions: list[Question], bias: float = 2.0):
        rng = random.Random(0)
        self.content = {q.qid: {o: rng.gauss(0, 1) + (1.5 if LETTERS[i] in q.key else 0.0)
                                for i, o in enumerate(q.options)} for q in questions}
        self.by_prompt: dict[str, Question] = {}
        self.bias = bias

    def letter_logprobs(self, prompts, n_options, letters="ABCDEFGHIJ", batch_tokens=2048, progress=None):
        out = []
        for p in prompts:
            q = next(q for q in self.questions if p.startswith(q.stem))
            shown = [line[3:] for line in p.splitlines()[1:-1]]
            logits = [self.content[q.qid][o] + (self.bias if i == 0 else 0.0) for i, o in enumerate(shown)]
            z = math.log(sum(math.exp(x) for x in logits)) + 1.0  # some mass on other tokens
            out.append([x - z for x in logits])
        return out


def test_pride_removes_a_synthetic_letter_prior():
    qs = [_q(f"{i:04d}", f"Question number {i}?", [f"option {i}-{j}" for j in range(4)],
             key=random.Random(i).choice("ABCD")) for i in range(400)]
    unbiased = BiasedScorer(qs, bias=0.0)
    biased = BiasedScorer(qs, bias=2.0)
    for s in (unbiased, biased):
        s.questions = qs
    truth = score(unbiased, qs, ScoreOptions(circular=False, progress=False))
    plain = score(biased, qs, ScoreOptions(circular=False, pride=True, pride_share=0.05, seed=0, progress=False))
    acc = {name: sum(r[col] for r in recs) / len(recs)
           for name, recs, col in (("truth", truth, "correct"), ("biased", plain, "correct"),
                                   ("pride", plain, "pride_correct"))}
    assert sum(r["choice"] == "A" for r in plain) > 0.6 * len(qs)  # the bias wins most questions
    assert acc["biased"] < acc["truth"] - 0.15
    assert acc["pride"] == pytest.approx(acc["truth"], abs=1e-9)  # the exact prior is recovered and removed
    prior = plain[0]["pride_prior"]
    assert prior[0] / prior[1] == pytest.approx(math.exp(2.0))
    assert sum(r["pride_estimation"] for r in plain) == 20  # 5% of 400, each asked under its 4 rotations
    assert all(len(r["rotation_logprobs"]) == 4 for r in plain if r["pride_estimation"])


def test_bootstrap_intervals_cover_the_estimate_and_shrink_with_more_questions():
    small = accuracy_interval([1, 0] * 10)
    large = accuracy_interval([1, 0] * 1000)
    assert small.lo < 0.5 < small.hi and large.lo < 0.5 < large.hi
    assert large.hi - large.lo < small.hi - small.lo
    ps = pass_share_interval({"a": [True] * 10, "b": [False] * 10, "c": [True] * 7 + [False] * 3})
    assert ps.estimate == pytest.approx(1 / 3)  # 7/10 is not over 70%
    assert ps.lo <= ps.estimate <= ps.hi  # certifications resampled: see test_exams_intervals.py
