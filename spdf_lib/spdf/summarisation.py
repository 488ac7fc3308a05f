"""Summarisation scores for the Curation Corpus task (`task: curation`), beside the ones every task gets.

- **Perplexity** of the test summaries: exp of the mean next-token loss (nats) over their tokens, the article
  as prompt (`finetune.example_losses`: target-only, as in training). The SPDF lineage's summarisation figure.
- **ROUGE-1/2/L** (metrics `rouge1`, `rouge2`, `rougeL` of `metrics.compute_metrics`: `rouge-score` F1 with
  its Porter stemmer) and the **length ratio** (output over reference length in 13a tokens, `checks.corpus_checks`).
- **Entity coverage**, the task check: of the article's named entities that the professional summary names
  (what a summary of this article should say), the share the output names; and **entity support**: of the
  output's named entities, the share the article names (made-up names score low, copying scores 100). So a
  copy of the first sentence passes support but not coverage. No NER model can be loaded offline, so a named
  entity here is a run of capitalised words (joined by `of`, `de`, `&`, `-`), minus sentence-initial words that
  the text also uses in lower case and a short list of function words: a rule that misses lower-case names
  and counts some capitalised common words, the same way for every output, the reference and the baseline.
- **Lead-3**, summarisation's constant baseline: the article's first three sentences (pysbd sentence
  boundaries, per paragraph), scored with the same metrics and checks beside every run's scores.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import cache

_FUNCTION_WORDS_TEXT = """a an the this that these those he she it they we i you his her its their our my your in on
at for to from by with but and or nor so as if when while after before since during according meanwhile however
also yet there here what which who why how all some many most more one two new"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split())
_CONNECTORS = frozenset({"of", "de", "&", "-", "von", "van", "du", "la"})
_WORD = re.compile(r"[\w][\w'’.&-]*")


@cache
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def sentences(text: str) -> list[str]:
    """The sentences of `text`, paragraph by paragraph (a line is a paragraph, as `curation.extract_text` writes)."""
    out = []
    for para in text.splitlines():
        if para.strip():
            out += [s.strip() for s in _segmenter().segment(para) if s.strip()]
    return out


def lead3(article: str) -> str:
    """The lead-3 baseline: the article's first three sentences."""
    return " ".join(sentences(article)[:3])


def _capitalised(word: str) -> bool:
    return word[:1].isupper() or (word[:1].isdigit() and any(c.isupper() for c in word))


def proper_words(text: str) -> set[str]:
    """The words `text` capitalises inside a sentence (not first): the evidence that a word is a name."""
    out = set()
    for sent in sentences(text):
        out |= {w.rstrip(".'’-") for w in _WORD.findall(sent)[1:] if _capitalised(w)}
    return out


def named_entities(text: str, proper: set[str] | None = None) -> list[str]:
    """The distinct named entities of `text` (see the module docstring), lower-cased, in order of appearance. A
    sentence's first word counts only if `proper` (default: `proper_words(text)`) has it or a capitalised word
    follows it: "Shares of Acme rose" names Acme, "Zenith Corp said" names Zenith Corp."""
    proper = proper_words(text) if proper is None else proper
    out: list[str] = []

    def close(span: list[str], first: bool) -> None:
        if first and span and span[0] not in proper and not (len(span) > 1 and _capitalised(span[1])):
            span = span[1:]  # "Shares of Acme": a common word capitalised by its place; "Acme Holdings said": a name
        while span and span[0].lower() in FUNCTION_WORDS | _CONNECTORS:
            span = span[1:]
        while span and span[-1].lower() in _CONNECTORS:
            span = span[:-1]
        if span and (ent := " ".join(span).lower()) not in out:
            out.append(ent)

    for sent in sentences(text):
        words = [(m.group(0).rstrip(".'’-"), m.start()) for m in _WORD.finditer(sent)]
        span: list[str] = []
        first = True  # the span starts the sentence
        for i, (word, start) in enumerate(words):
            gap = sent[words[i - 1][1] + len(words[i - 1][0]):start] if i else ""
            if span and any(c in gap for c in ",;:()\"“”"):  # punctuation between words ends a name
                close(span, first)
                span, first = [], False
            if (word and _capitalised(word)) or (span and word.lower() in _CONNECTORS):
                span.append(word)
            else:
                if span:
                    close(span, first)
                span, first = [], False
        if span:
            close(span, first)
    return out


def entity_counts(article: str, reference: str, output: str, covered) -> dict[str, int]:
    """Per example: `entities_total` (article entities the reference names), `entities_covered` (of those, named
    by the output), `output_entities` and `output_entities_supported` (of the output's, named by the article).
    `covered(entity, text)`: the data-to-text tasks' whole-word, case-insensitive match (`checks.covered`)."""
    proper = proper_words(article)
    salient = [e for e in named_entities(article, proper) if covered(e, reference)]
    own = named_entities(output, proper | proper_words(output))
    return {"entities_total": len(salient), "entities_covered": sum(covered(e, output) for e in salient),
            "output_entities": len(own), "output_entities_supported": sum(covered(e, article) for e in own)}


def example_rouge(examples: Sequence, hypotheses: Sequence[str]):
    """Per example ROUGE-1/2/L F1 (0-100, stemmed, best reference): columns `rouge1_f`, `rouge2_f`, `rougeL_f`,
    whose means are the corpus scores of `metrics.compute_metrics` (the rows the report resamples)."""
    import pandas as pd
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    rows = []
    for e, h in zip(examples, hypotheses, strict=True):
        s = scorer.score_multi(list(e.references), " ".join(h.split()))
        rows.append({f"{k}_f": 100.0 * s[k].fmeasure for k in ("rouge1", "rouge2", "rougeL")})
    return pd.DataFrame(rows)


def perplexity(loss_sum: float, tokens: int) -> float:
    """exp(summed loss / token count): the perplexity of the tokens the losses were summed over."""
    if tokens <= 0:
        raise ValueError("perplexity of no tokens")
    return math.exp(loss_sum / tokens)


SUMMARY_SCORES = ("rouge1", "rouge2", "rougeL", "len_ratio", "entity_coverage", "entity_support", "bleu")


def lead3_table(results: dict[str, float]):
    """One row per summarisation score of a run's results: the model's, the lead-3 baseline's beside it, and the
    test-summary perplexity (which lead-3 has none of)."""
    import pandas as pd

    rows = [{"score": k, "model": results[k], "lead-3": results.get(f"lead3_{k}", float("nan"))}
            for k in SUMMARY_SCORES if k in results]
    if "test_perplexity" in results:
        rows.append({"score": "test_perplexity", "model": results["test_perplexity"], "lead-3": float("nan")})
    return pd.DataFrame(rows).set_index("score")
