"""Figures of the exam evaluation: pass share per field (model vs baselines), scores, letter bias."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from spdf_lib.plots import save  # noqa: F401  (re-exported for the notebook: plots.save(fig, path))

_SERIES = {
    "pass_share": "model",
    "circular_pass_share": "model, CircularEval",
    "pride_pass_share": "model, PriDe (debiased)",
    "random_pass_share": "random guessing (expected)",
    "best_always_strict_pass_share": "best always-X (strict single letter)",
    "best_always_pass_share": "best always-X (as many letters as the key)",
    "majority_per_cert_pass_share": "majority letter per cert.",
    "longest_pass_share": "longest option(s)",
    "shortest_pass_share": "shortest option(s)",
    "overlap_pass_share": "most word overlap with the question",
}
MIN_CERTIFICATIONS = 5  # a field with fewer whole certifications says nothing about the field: no bar


def pass_share_by_field(headline: pd.DataFrame, title: str = "", min_certifications: int = MIN_CERTIFICATIONS
                        ) -> plt.Figure:
    """Horizontal bars: per field with at least `min_certifications` whole certifications (and all
    certifications), the share of certifications passed by the model and by each baseline of its formulation on
    the same questions. Each field's label carries its number of certifications, and the model's bar its count
    of passed certifications; the fields left out are named in the x-axis label."""
    t = headline.copy()
    cols = [c for c in _SERIES if c in t and t[c].notna().any()]
    keep = (t["field"] == "all") | (t["certifications"] >= min_certifications)
    dropped = t[~keep]
    t = t[keep]
    t["name"] = [f"{lab} (n = {n})" for lab, n in zip(t["label"], t["certifications"], strict=True)]
    t = t.iloc[::-1]  # `all` at the top
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(t) * max(1, len(cols)) / 2.5 + 1.6))
    h = 0.8 / len(cols)
    for i, c in enumerate(cols):
        ys = [y + (len(cols) - 1 - i) * h - 0.4 + h / 2 for y in range(len(t))]
        ax.barh(ys, t[c].fillna(0), height=h, label=_SERIES[c])
        if c == "pass_share":
            for y, share, n in zip(ys, t[c].fillna(0), t["certifications"], strict=True):
                ax.text(min(share, 0.9) + 0.01, y, f"{round(share * n)}/{n}", va="center", fontsize="x-small")
    ax.set_yticks(range(len(t)), t["name"])
    note = (f"\n{len(dropped)} fields with fewer than {min_certifications} certifications not shown "
            f"({int(dropped['certifications'].sum())} certifications; they count in 'all')" if len(dropped) else "")
    ax.set_xlabel("share of certifications passed (score over the threshold)" + note, fontsize="small")
    ax.set_xlim(0, 1)
    ax.legend(loc="lower right", fontsize="x-small")
    ax.set_title(title or "Certifications passed, by field")
    fig.tight_layout()
    return fig


def score_distribution(certifications: pd.DataFrame, threshold: float = 0.7) -> plt.Figure:
    """Histogram of certification scores (plain and CircularEval when present), with the pass threshold."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = [i / 20 for i in range(21)]
    ax.hist(certifications["score"], bins=bins, alpha=0.7, label="model")
    if "circular_correct" in certifications:
        ax.hist(certifications["circular_correct"] / certifications["questions"], bins=bins, alpha=0.5,
                label="model, CircularEval")
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"pass threshold {threshold:g}")
    ax.set_xlabel("certification score (share of questions correct)")
    ax.set_ylabel("certifications")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def letter_bias(letters: pd.DataFrame) -> plt.Figure:
    """Share of each letter among the model's choices and among the answer keys (single-answer questions the
    model answered), with their total variation distance in the title."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    x = range(len(letters))
    ax.bar([i - 0.2 for i in x], letters["model_share"], width=0.4, label="model's choices")
    ax.bar([i + 0.2 for i in x], letters["key_share"], width=0.4, label="answer keys")
    ax.set_xticks(list(x), letters["letter"])
    ax.set_ylabel("share of questions")
    ax.legend(fontsize="small")
    tvd = 0.5 * (letters["model_share"] - letters["key_share"]).abs().sum()
    ax.set_title(f"Chosen letter vs key letter (total variation distance {tvd:.2f})")
    fig.tight_layout()
    return fig
