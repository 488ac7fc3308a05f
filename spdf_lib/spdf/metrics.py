"""Corpus metrics for data-to-text generation, against all references of each example.

| name      | implementation                                                  | scale |
| --------- | --------------------------------------------------------------- | ----- |
| `bleu`    | sacrebleu corpus BLEU (13a tokenisation, exp smoothing)         | 0-100 |
| `chrf++`  | sacrebleu chrF++ (character 6-grams + word 2-grams, β = 2)       | 0-100 |
| `ter`     | sacrebleu TER (lower is better); slow, see `workers`            | 0-100 |
| `rouge_l` | `rouge-score` ROUGE-L F1, best reference per example, averaged  | 0-100 |
| `rouge1`, | `rouge-score` ROUGE-1, -2 and -L F1 with Porter stemming (the   | 0-100 |
| `rouge2`, | summarisation convention), best reference, averaged              |       |
| `rougeL`  |                                                                 |       |
| `nist`    | NLTK corpus NIST, n = 5, on sacrebleu's 13a tokens              | ~0-15 |
| `meteor`  | METEOR 1.5 (`-l en -norm`) via `pycocoevalcap`, which bundles   | 0-100 |
|           | the jar and its English paraphrase table; needs Java            |       |
| `cider`   | CIDEr via `pycocoevalcap`, on lower-cased 13a tokens            | ~0-10 |

Several references per example, in varying number, are handled by each library: sacrebleu takes one reference
stream per reference position, padded with `None` where an example has fewer (sacrebleu skips `None`, not `""`);
the others take each example's list of references. Papers print METEOR and TER as fractions as often as
percentages; here both are percentages.

Offline: everything above runs without downloads. NLTK's own METEOR is not used: it needs the WordNet corpus,
which must be downloaded with `nltk.download`. NLTK's NIST follows Doddington (2002) but, with several references,
scores each n-gram order against the best single reference; mteval-v13a (the E2E challenge script) clips counts
over all references, so the two differ on multi-reference data. The E2E and WebNLG challenge scripts compute
METEOR and CIDEr with the same pycocoevalcap code (the E2E script also PTB-tokenises first), so those two are close
to, not identical with, the official numbers. A metric that cannot run (a package or Java missing) is reported in
`MetricsResult.missing` with the reason, not silently dropped.

Cost: TER dominates. sacrebleu's TER is pure Python, ~20-30 ms per (hypothesis, reference) pair: E2E dev (547
outputs x ~8.5 references) took 127 s on one core here, against 2-6 s for each other metric and ~15 s for
METEOR's Java start-up; `workers=N` splits TER over N processes.

`write_generations` writes each run's outputs next to its metrics.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from spdf_lib.atomic import atomic_write_text

METRICS = ("bleu", "chrf++", "ter", "rouge_l", "nist", "meteor", "cider", "rouge1", "rouge2", "rougeL")
ROUGE = ("rouge1", "rouge2", "rougeL")  # the summarisation scores, computed together


@dataclass
class MetricsResult:
    """`scores` {metric: value}; `missing` {metric: why it was not computed}; `signatures` {metric: how}."""

    scores: dict[str, float] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    signatures: dict[str, str] = field(default_factory=dict)


def _clean(text: str) -> str:
    return " ".join(text.split())


def _check(hypotheses: Sequence[str], references: Sequence[Sequence[str]], metrics: Sequence[str]) -> None:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
    if not metrics:
        raise ValueError("no metrics requested")
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise ValueError("hypotheses and references must be lists (one entry per example), not a string")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists; they must pair up")
    if not hypotheses:
        raise ValueError("no hypotheses to score")
    for i, (h, refs) in enumerate(zip(hypotheses, references, strict=True)):
        if not isinstance(h, str):
            raise ValueError(f"hypothesis {i} is a {type(h).__name__}, not a string")
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"example {i} needs a non-empty list of reference strings, got {refs!r}")


def _reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu's layout: stream k holds every example's k-th reference, `None` where it has fewer."""
    k = max(map(len, references))
    return [[refs[j] if j < len(refs) else None for refs in references] for j in range(k)]


def _sacrebleu(name: str, hyps: list[str], refs: list[list[str]], result: MetricsResult) -> None:
    from sacrebleu.metrics import BLEU, CHRF

    metric = {"bleu": BLEU, "chrf++": lambda: CHRF(word_order=2)}[name]()
    result.scores[name] = float(metric.corpus_score(hyps, _reference_streams(refs)).score)
    result.signatures[name] = str(metric.get_signature())


def _ter_chunk(hyps: list[str], refs: list[list[str]]) -> tuple[float, float, str]:
    from sacrebleu.metrics import TER

    metric = TER()
    score = metric.corpus_score(hyps, _reference_streams(refs))
    return float(score.num_edits), float(score.ref_length), str(metric.get_signature())


def _ter(hyps: list[str], refs: list[list[str]], result: MetricsResult, workers: int) -> None:
    from sacrebleu.metrics import TER

    # sacrebleu's TER (a Tercom re-implementation in Python) costs ~30 ms per (hypothesis, reference) pair on
    # a laptop core; its corpus statistics (edits, average reference length) add up, so chunks can run in
    # parallel. The sums are the same up to float rounding of the reference lengths.
    if workers > 1 and len(hyps) >= 2 * workers:
        bounds = [len(hyps) * i // workers for i in range(workers + 1)]
        chunks = [(hyps[a:b], refs[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
        with ProcessPoolExecutor(workers) as pool:
            stats = list(pool.map(_ter_chunk, *zip(*chunks, strict=True)))
    else:
        stats = [_ter_chunk(hyps, refs)]
    edits, ref_length = sum(s[0] for s in stats), sum(s[1] for s in stats)
    result.scores["ter"] = float(TER()._compute_score_from_stats([edits, ref_length]).score)
    signatures = {s[2] for s in stats}  # chunks with different fixed reference counts make a variable one
    result.signatures["ter"] = signatures.pop() if len(signatures) == 1 else re.sub(
        r"nrefs:[^|]*", "nrefs:var", stats[0][2])


def _rouge_l(hyps: list[str], refs: list[list[str]], result: MetricsResult) -> None:
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rougeL"], use_stemmer=False)
    f1 = [scorer.score_multi(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs, strict=True)]
    result.scores["rouge_l"] = 100.0 * sum(f1) / len(f1)
    result.signatures["rouge_l"] = "rouge-score rougeL F1, max over references, mean over examples, no stemming"


def _rouge(hyps: list[str], refs: list[list[str]], result: MetricsResult, kinds: list[str]) -> None:
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(list(kinds), use_stemmer=True)
    scores = [scorer.score_multi(r, h) for h, r in zip(hyps, refs, strict=True)]
    for k in kinds:
        result.scores[k] = 100.0 * sum(s[k].fmeasure for s in scores) / len(scores)
        result.signatures[k] = f"rouge-score {k} F1, Porter stemmer, max over references, mean over examples"


def _tokens_13a(text: str, lowercase: bool = False) -> list[str]:
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()(text.lower() if lowercase else text).split()


def _nist(hyps: list[str], refs: list[list[str]], result: MetricsResult) -> None:
    from nltk.translate.nist_score import corpus_nist

    hyp_tokens = [_tokens_13a(h) for h in hyps]
    if max(map(len, hyp_tokens)) < 5:
        # NLTK divides by the number of hypothesis 5-grams, which is 0 when every hypothesis is that short.
        result.missing["nist"] = "no hypothesis has 5 tokens or more; NLTK's NIST-5 is undefined"
        return
    result.scores["nist"] = float(corpus_nist([[_tokens_13a(r) for r in rs] for rs in refs], hyp_tokens, n=5))
    result.signatures["nist"] = "nltk corpus_nist n=5, sacrebleu 13a tokens, case-sensitive"


def _pycocoevalcap_missing() -> str | None:
    if importlib.util.find_spec("pycocoevalcap") is None:
        return "needs the package pycocoevalcap (pip install pycocoevalcap==1.2), which bundles it offline"
    return None


def _meteor(hyps: list[str], refs: list[list[str]], result: MetricsResult) -> None:
    if (why := _pycocoevalcap_missing()) is not None:
        result.missing["meteor"] = why + " (NLTK's METEOR needs the WordNet corpus, a download)"
        return
    if shutil.which("java") is None:
        result.missing["meteor"] = "needs Java on PATH to run pycocoevalcap's meteor-1.5.jar"
        return
    from pycocoevalcap.meteor.meteor import Meteor

    try:
        meteor = Meteor()
        try:
            score, _ = meteor.compute_score({i: r for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)})
        finally:
            del meteor  # its __del__ ends the Java process
    except (OSError, ValueError) as e:  # Java failed to start or died mid-way (empty output line)
        result.missing["meteor"] = f"METEOR 1.5 (Java) failed: {type(e).__name__}: {e}".splitlines()[0]
        return
    result.scores["meteor"] = 100.0 * float(score)
    result.signatures["meteor"] = "METEOR 1.5 via pycocoevalcap 1.2, -l en -norm"


def _cider(hyps: list[str], refs: list[list[str]], result: MetricsResult) -> None:
    if (why := _pycocoevalcap_missing()) is not None:
        result.missing["cider"] = why
        return
    from pycocoevalcap.cider.cider import Cider

    tok = lambda s: " ".join(_tokens_13a(s, lowercase=True))  # noqa: E731
    score, _ = Cider().compute_score({i: [tok(x) for x in r] for i, r in enumerate(refs)},
                                     {i: [tok(h)] for i, h in enumerate(hyps)})
    result.scores["cider"] = float(score)
    result.signatures["cider"] = "CIDEr (n=4, sigma=6) via pycocoevalcap 1.2, lower-cased 13a tokens"


def compute_metrics(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
                    metrics: Sequence[str] = METRICS, workers: int = 1) -> MetricsResult:
    """Score `hypotheses[i]` against all of `references[i]` (a list, any length >= 1) with each of `metrics`.

    Inputs are checked before anything is computed. Whitespace is normalised (newlines would break METEOR's
    line protocol). `workers` > 1 computes TER, by far the slowest metric, in that many processes. Returns the
    scores, and for each requested metric that could not run, why.
    """
    metrics = list(dict.fromkeys(metrics))
    _check(hypotheses, references, metrics)
    if workers < 1:
        raise ValueError(f"workers={workers}: must be >= 1")
    hyps = [_clean(h) for h in hypotheses]
    refs = [[_clean(r) for r in rs] for rs in references]
    result = MetricsResult()
    for name in metrics:
        if name in ("bleu", "chrf++"):
            _sacrebleu(name, hyps, refs, result)
        elif name == "ter":
            _ter(hyps, refs, result, workers)
        elif name == "rouge_l":
            _rouge_l(hyps, refs, result)
        elif name in ROUGE and name not in result.scores:
            _rouge(hyps, refs, result, [k for k in ROUGE if k in metrics])
        elif name == "nist":
            _nist(hyps, refs, result)
        elif name == "meteor":
            _meteor(hyps, refs, result)
        elif name == "cider":
            _cider(hyps, refs, result)
    return result


def score_examples(examples: Sequence, hypotheses: Sequence[str], metrics: Sequence[str] = METRICS,
                   workers: int = 1) -> MetricsResult:
    """`compute_metrics` for `spdf_lib.data.tasks.Example`s and their hypotheses, in the same order."""
    if len(examples) != len(hypotheses):
        raise ValueError(f"{len(examples)} examples but {len(hypotheses)} hypotheses; they must pair up")
    return compute_metrics(hypotheses, [list(e.references) for e in examples], metrics, workers)


def write_generations(path: str | Path, examples: Sequence, hypotheses: Sequence[str]) -> None:
    """Write one JSON line per example, `{id, source, hypothesis, references}`, atomically to `path`."""
    if len(examples) != len(hypotheses):
        raise ValueError(f"{len(examples)} examples but {len(hypotheses)} hypotheses; they must pair up")
    lines = [
        json.dumps({"id": e.id, "source": e.source, "hypothesis": h, "references": list(e.references)},
                   ensure_ascii=False) + "\n"
        for e, h in zip(examples, hypotheses, strict=True)
    ]
    atomic_write_text(path, "".join(lines))


def read_generations(path: str | Path) -> list[dict]:
    """The rows `write_generations` wrote."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
