"""Data-to-text metrics: multi-reference BLEU by hand, perfect outputs, what is missing and why, generations."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from spdf_lib.data.tasks import Example, load_split
from spdf_lib.spdf import metrics as metrics_mod
from spdf_lib.spdf.metrics import (
    METRICS,
    compute_metrics,
    read_generations,
    score_examples,
    write_generations,
)

PYCOCO = metrics_mod._pycocoevalcap_missing() is None
JAVA = shutil.which("java") is not None


def test_multi_reference_bleu_by_hand():
    # Segment 1: every n-gram of the hypothesis is in one of its two references, but neither reference alone
    # contains them all. Segment 2 has a single reference (variable reference counts).
    hyps = ["a b c d e", "a b c d e f g h"]
    refs = [["a b c d x", "y b c d e"], ["a b c d e f g z"]]
    # Clipped matches / hypothesis n-grams, summed over the corpus:
    #   1-grams 5/5 + 7/8, 2-grams 4/4 + 6/7, 3-grams 3/3 + 5/6, 4-grams 2/2 + 4/5;
    # hypothesis length 13 = reference length 13 (closest per segment: 5, 8), so the brevity penalty is 1.
    want = 100 * (12 / 13 * 10 / 11 * 8 / 9 * 6 / 7) ** 0.25
    got = compute_metrics(hyps, refs, ["bleu"])
    assert got.scores["bleu"] == pytest.approx(want, abs=1e-9)
    assert "nrefs:var" in got.signatures["bleu"]
    # Against either reference of segment 1 alone, the same hypothesis is below 100; against both, exactly 100.
    assert compute_metrics(hyps[:1], [refs[0]], ["bleu"]).scores["bleu"] == pytest.approx(100)
    assert compute_metrics(hyps[:1], [refs[0][:1]], ["bleu"]).scores["bleu"] < 100
    # The example order (hence which examples pad with None) does not matter.
    assert compute_metrics(hyps[::-1], refs[::-1], ["bleu"]).scores["bleu"] == pytest.approx(want, abs=1e-9)


def test_brevity_penalty_uses_the_closest_reference():
    # 4-token hypothesis, references of 4 and 8 tokens: the closest is 4, so no penalty and BLEU 100.
    assert compute_metrics(["a b c d"], [["a b c d e f g h", "a b c d"]], ["bleu"]).scores["bleu"] == pytest.approx(100)
    # Against the 8-token reference only: BP = exp(1 - 8/4), precisions all 1.
    assert compute_metrics(["a b c d"], [["a b c d e f g h"]], ["bleu"]).scores["bleu"] == \
        pytest.approx(100 * math.exp(1 - 8 / 4))


@pytest.fixture(scope="module")
def e2e_test(mirror):
    return load_split("e2e", "test")[:20]


def test_perfect_hypotheses_score_100(e2e_test):
    hyps = [e.references[-1] for e in e2e_test]  # any one of the references is a perfect output
    got = score_examples(e2e_test, hyps, ["bleu", "chrf++", "ter", "rouge_l", "nist", "cider"])
    assert got.scores["bleu"] == pytest.approx(100)
    assert got.scores["chrf++"] == pytest.approx(100)
    assert got.scores["ter"] == pytest.approx(0)
    assert got.scores["rouge_l"] == pytest.approx(100)
    worse = score_examples(e2e_test, [e2e_test[0].references[0]] * len(e2e_test), ["bleu", "nist", "cider"])
    assert worse.scores["bleu"] < 50
    assert worse.scores["nist"] < got.scores["nist"]
    if PYCOCO:
        assert worse.scores["cider"] < got.scores["cider"]
    else:
        assert "pycocoevalcap" in got.missing["cider"]


@pytest.mark.skipif(not (PYCOCO and JAVA), reason="METEOR needs pycocoevalcap and Java (see the missing-metric test)")
def test_meteor_via_java(e2e_test):
    # One call: each start of METEOR 1.5 loads its paraphrase table (~15 s). Half the outputs perfect, half
    # another example's reference: the corpus score must fall well between 0 and 100.
    half = len(e2e_test) // 2
    hyps = [e.references[0] for e in e2e_test]
    hyps[half:] = hyps[half + 1:] + hyps[half:half + 1]  # the second half gets the next example's reference
    mixed = compute_metrics(hyps, [e.references for e in e2e_test], ["meteor"])
    assert mixed.missing == {}
    assert 25 < mixed.scores["meteor"] < 95


def test_missing_metrics_say_why(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no java on PATH
    got = compute_metrics(["the cat sat on the mat"], [["the cat sat on the mat", "a cat sat"]], ["meteor", "bleu"])
    assert "meteor" not in got.scores and got.scores["bleu"] == pytest.approx(100)
    assert ("Java" if PYCOCO else "pycocoevalcap") in got.missing["meteor"]
    monkeypatch.setattr(metrics_mod, "_pycocoevalcap_missing", lambda: "needs the package pycocoevalcap")
    got = compute_metrics(["x y"], [["x y"]], ["cider", "meteor", "nist"])
    assert set(got.missing) == {"cider", "meteor", "nist"}
    assert "WordNet" in got.missing["meteor"]  # why NLTK's METEOR is no fallback
    assert "5 tokens" in got.missing["nist"]


def test_all_metrics_on_real_outputs_are_in_range(e2e_test):
    # Another reference as the "system output", scored against the remaining references.
    multi = [e for e in e2e_test if len(e.references) > 1]
    hyps = [e.references[0] for e in multi]
    refs = [list(e.references[1:]) for e in multi]
    wanted = [m for m in METRICS if m != "meteor"]  # METEOR has its own (slow: Java start-up) test
    got = compute_metrics(hyps, refs, wanted)
    assert set(got.scores) | set(got.missing) == set(wanted)
    for name in ("bleu", "chrf++", "rouge_l"):
        assert 10 < got.scores[name] < 100, name
    assert 0 < got.scores["ter"] < 100 and got.scores["nist"] > 1
    assert set(got.signatures) == set(got.scores)


def test_ter_in_parallel_chunks_matches_one_process(e2e_test):
    multi = [e for e in e2e_test if len(e.references) > 2][:8]
    hyps = [e.references[0] for e in multi]
    refs = [list(e.references[1:3]) for e in multi]
    one = compute_metrics(hyps, refs, ["ter"])
    two = compute_metrics(hyps, refs, ["ter"], workers=2)
    assert two.scores["ter"] == pytest.approx(one.scores["ter"], abs=1e-9)
    assert two.signatures == one.signatures


@pytest.mark.parametrize("hyps,refs,kw,match", [
    (["a"], [["a"], ["b"]], {}, "1 hypotheses but 2 reference lists"),
    ([], [], {}, "no hypotheses"),
    (["a"], ["a"], {}, "non-empty list of reference strings"),
    (["a"], [[]], {}, "non-empty list of reference strings"),
    ([None], [["a"]], {}, "hypothesis 0 is a NoneType"),
    (["a"], [["a"]], {"metrics": ["bleu", "bertscore"]}, "unknown metric"),
    (["a"], [["a"]], {"workers": 0}, "workers=0"),
    ("abc", [["a"]], {}, "not a string"),
])
def test_bad_input_fails_before_scoring(hyps, refs, kw, match):
    with pytest.raises(ValueError, match=match):
        compute_metrics(hyps, refs, **kw)


def test_write_generations(tmp_path):
    examples = [Example("test/1", "name[Café Rouge]", ("Café Rouge is nice.", "It is Café Rouge.")),
                Example("test/2", "name[A]", ("A.",))]
    path = tmp_path / "run" / "generations.jsonl"
    write_generations(path, examples, ["Café Rouge is a café.", ""])
    rows = read_generations(path)
    assert rows == [
        {"id": "test/1", "source": "name[Café Rouge]", "hypothesis": "Café Rouge is a café.",
         "references": ["Café Rouge is nice.", "It is Café Rouge."]},
        {"id": "test/2", "source": "name[A]", "hypothesis": "", "references": ["A."]},
    ]
    assert "Café" in path.read_text(encoding="utf-8")  # readable UTF-8, not \\u escapes
    assert [p.name for p in path.parent.iterdir()] == ["generations.jsonl"]  # no temp file left behind
    assert all(json.loads(line) for line in path.read_text().splitlines())
    with pytest.raises(ValueError, match="2 examples but 1 hypotheses"):
        write_generations(path, examples, ["x"])
    assert len(read_generations(path)) == 2  # a refused write leaves the old file intact
