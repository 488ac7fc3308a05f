"""Task-level checks beside BLEU: does the output say what its input says?

BLEU can rise while a model ignores its input (fluent E2E-style sentences about the wrong restaurant), so every
fine-tuning run also reports:

- **E2E slot realisation**: the share of the meaning representation's values that the output expresses, found
  by pattern matching in the manner of the E2E challenge's slot-error scripts (Dušek, Howcroft & Rieser 2019,
  "Semantic noise matters for neural NLG"; `tuetschek/e2e-cleaning`): each value has a few regular expressions
  for its usual wordings ("family friendly", "kid-friendly", "welcomes children"), matched as whole words,
  case-insensitively; `name` and `near` must appear verbatim. A value also counts as missed when the output
  states another value of the same slot ("cheap" and "expensive" in one output realise neither; "not family
  friendly" is a `no`). The patterns below are this kit's own (a paraphrase they miss counts against the model),
  so `1 − realisation` is the missing-or-wrong part of the slot error rate (slots the input does not have and
  the output adds are not counted). Reported overall and for `name` alone.
- **WebNLG / DART entity coverage**: the share of the input's distinct subject and object strings (underscores
  read as spaces, surrounding quotes dropped) found verbatim, case-insensitively, in the output. DART's table
  placeholders (`[TABLECONTEXT]`) are not entities.
- **Length ratio**: hypothesis length over the closest reference length, summed over the corpus (sacrebleu's
  13a tokens): BLEU's brevity penalty is exp(1 − 1/ratio) below 1, so a ratio of 0.6 alone costs BLEU half.

`example_table` gives these per example (with BLEU's sufficient statistics, for bootstrap intervals in
`spdf_lib.stats`); `corpus_checks` sums them into the run's results.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

import numpy as np
import pandas as pd

from spdf_lib.data.tasks import FIELD_SEP, TRIPLE_SEP, parse_mr
from spdf_lib.spdf.delex import added_slots

# --- E2E slot patterns ---------------------------------------------------------------------------------------
# value -> alternatives (regex, whole words, case-insensitive). Values with overlapping wordings (a "cheap" place
# is also "less than £20") share them: a value counts as realised when any of its own wordings is there.
_CHEAP = r"(?<!not )cheap(?:ly|er|est)?|inexpensive(?:ly)?|low[- ]+(?:cost|price[ds]?|priced)|affordabl[ey]|budget"
_MID = (r"moderate(?:ly)?(?:[- ]+price[ds]?)?|average(?:ly)?[- ]+price[ds]?|mid[- ]*(?:range|price[ds]?|priced|cost)"
        r"|medium[- ]+price[ds]?|reasonabl[ey](?:[- ]+price[ds]?)?|fair(?:ly)?[- ]+price[ds]?")
_DEAR = (
    r"(?:quite |very )?expensive|not (?:\w+ )?cheap|high[- ]+(?:cost|end|price[ds]?|priced)|pric(?:ey|y)|costly|upscale"
    r"|(?:price|cost)s?(?: \w+){0,3} (?:is |are )?high"
)
_RATE = r"(?:customer )?(?:rat(?:ings?|ed|es?)|reviews?|reviewed|score[ds]?|stars?)"


def _rating(number: str, words: str) -> list[str]:
    return [
        rf"(?:{number})(?:[- ]+stars?| out of (?:5|five)|/5)",
        rf"(?:{words})(?:ly)?(?:[- ]+\w+){{0,2}}[- ]+{_RATE}",
        rf"{_RATE}(?: \w+){{0,3}} (?:{words})",
    ]


E2E_PATTERNS: dict[str, dict[str, list[str]]] = {
    "eatType": {
        "coffee shop": [r"coffee[- ]*(?:shop|house)s?", r"caf[eé]s?"],
        "pub": [r"pubs?"],
        "restaurant": [r"restaurants?", r"eater(?:y|ies)", r"diners?"],
    },
    "food": {
        "Chinese": [r"Chinese"], "English": [r"English", r"British"], "Fast food": [r"fast[- ]*food"],
        "French": [r"French"], "Indian": [r"Indian"], "Italian": [r"Italian"], "Japanese": [r"Japanese", r"sushi"],
    },
    "priceRange": {
        "cheap": [_CHEAP],
        "less than £20": [r"(?:less than|under|below|cheaper than|up to) £ ?20", r"£ ?20 or (?:less|under)", _CHEAP],
        "£20-25": [r"£ ?20 ?(?:-|–|to) ?£? ?25", _MID],
        "moderate": [_MID],
        "more than £30": [r"(?:more than|over|above|upwards of|at least) £ ?30", r"£ ?30 (?:or more|plus)", _DEAR],
        "high": [_DEAR],
    },
    "customer rating": {
        "1 out of 5": _rating("1|one", "low|poor|bad"),
        "low": _rating("1|one", "low|poor|bad"),
        "3 out of 5": _rating("3|three", "average|decent|ok|okay"),
        "average": _rating("3|three", "average|decent|ok|okay"),
        "5 out of 5": _rating("5|five", "high|excellent|great|top|very good|highest"),
        "high": _rating("5|five", "high|excellent|great|top|very good|highest"),
    },
    "area": {
        "city centre": [r"(?:city|town) cent(?:re|er)", r"cent(?:re|er) of (?:the )?(?:city|town)",
                        r"(?:in|near|at) the cent(?:re|er)", r"centrally", r"downtown"],
        "riverside": [r"river[- ]*side", r"(?:near|by|at|along|on|beside|next to|close to|off) the river"],
    },
}
_KIDS = r"(?:child(?:ren)?|kids?|famil(?:y|ies))"
# familyFriendly: a negated mention ("not family friendly", "no kids") means `no`, and is checked first, because
# the positive wording is inside it.
_FAMILY_NO = [
    rf"(?:not|\w+n't|non|no)[- ]+(?:\w+ ){{0,2}}{_KIDS}[- ]*(?:friendly|oriented|orientated)",
    rf"{_KIDS}[- ]*unfriendly",
    r"adults?[- ]+only",
    r"only for adults",
    r"for adults",
    rf"(?:not|\w+n't|no) (?:\w+ ){{0,3}}(?:allow|welcom|suit|good|friendly|cater|accept|bring|for)\w* "
    rf"(?:\w+ ){{0,2}}{_KIDS}",
    rf"{_KIDS} (?:are ?n't|is ?n't|are not|is not) (?:welcome|allowed|accepted)",
    rf"no {_KIDS}",
]
_FAMILY_YES = [
    rf"{_KIDS}[- ]*(?:friendly|oriented|orientated)",
    rf"(?:allow|welcom|suit|good|great|ideal|perfect|friendly|cater|accept|bring|take)\w* (?:\w+ ){{0,2}}{_KIDS}",
    rf"{_KIDS} (?:are |is )?(?:welcome|allowed|accepted)", rf"for (?:the )?(?:whole )?{_KIDS}",
]


@cache
def _compiled(patterns: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(rf"(?<!\w)(?:{p})(?!\w)" for p in patterns), re.IGNORECASE)


def _says(text: str, patterns: Sequence[str]) -> bool:
    return _compiled(tuple(patterns)).search(text) is not None


def _spans(text: str, patterns: Sequence[str]) -> list[tuple[int, int]]:
    return [m.span() for m in _compiled(tuple(patterns)).finditer(text)]


def slot_realised(slot: str, value: str, text: str) -> bool:
    """Whether `text` expresses `slot[value]` of an E2E meaning representation (see the module docstring): one
    of the value's wordings is there, and no wording of another value of the slot is there elsewhere (a text that
    says "cheap" and "expensive" has not realised either). Values the patterns do not know (`name`, `near`) must
    appear verbatim."""
    if slot == "familyFriendly" and value.lower() in ("yes", "no"):
        negated = _says(text, _FAMILY_NO)
        return negated if value.lower() == "no" else (not negated and _says(text, _FAMILY_YES))
    values = E2E_PATTERNS.get(slot, {})
    if value not in values:
        return _says(text, [re.escape(value)])
    own = _spans(text, values[value])
    if not own:
        return False
    overlaps = lambda a, b: a[0] < b[1] and b[0] < a[1]  # noqa: E731
    for other, patterns in values.items():  # a wording of another value, not inside one of this value's own
        if other != value and any(not any(overlaps(span, o) for o in own) for span in _spans(text, patterns)):
            return False
    return True


def e2e_slots(mr: str, text: str) -> dict[str, bool]:
    """{slot: realised} for every attribute of the raw E2E `mr` (`name[X], eatType[pub], ...`). The other slots are
    matched with the `name` and `near` values masked out: "Raja Indian Cuisine" says nothing about the food, nor
    "Café Rouge" about the type of place."""
    pairs = parse_mr(mr)
    masked = text
    for slot, value in pairs:
        if slot in ("name", "near"):
            masked = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", " ", masked, flags=re.IGNORECASE)
    return {slot: slot_realised(slot, value, text if slot in ("name", "near") else masked) for slot, value in pairs}


# --- WebNLG / DART entity coverage ---------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(text.replace("_", " ").split()).lower()


def entities(source: str) -> list[str]:
    """The distinct subject and object strings of a linearised triple set (`s | r | o ; ...`), underscores as
    spaces and surrounding quotes dropped, lower-cased; DART's bracketed table placeholders are skipped."""
    out: list[str] = []
    for triple in source.split(TRIPLE_SEP):
        parts = triple.split(FIELD_SEP)
        for ent in (parts[0], parts[-1]) if len(parts) >= 2 else ():
            e = _norm(ent).strip('"').strip()
            if e and not (e.startswith("[") and e.endswith("]")) and e not in out:
                out.append(e)
    return out


def covered(entity: str, text: str) -> bool:
    """Whether the (normalised) `entity` appears in `text` as whole words, case-insensitively."""
    return re.search(rf"(?<!\w){re.escape(entity)}(?!\w)", _norm(text)) is not None


# --- per example and per corpus ------------------------------------------------------------------------------

BLEU_STATS = [
    "sys_len",
    "ref_len",
    *(f"bleu_correct{n}" for n in range(1, 5)),
    *(f"bleu_total{n}" for n in range(1, 5)),
]


def bleu_statistics(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
    """sacrebleu's per-sentence BLEU sufficient statistics (13a, `BLEU_STATS` columns); summed over any subset of
    examples they give that subset's corpus BLEU (`spdf_lib.stats.bleu_from_stats`)."""
    from sacrebleu.metrics import BLEU

    k = max(map(len, references))
    streams = [[r[j] if j < len(r) else None for r in references] for j in range(k)]
    bleu = BLEU()
    # sacrebleu keeps the references it was given; the statistics of each hypothesis against all of its own
    return np.asarray(bleu._extract_corpus_statistics(list(hypotheses), streams), dtype=np.int64)


def example_table(task: str, examples: Sequence, hypotheses: Sequence[str],
                  delexicalised: Sequence[str] = ()) -> pd.DataFrame:
    """One row per example: id, BLEU statistics (`BLEU_STATS`), and the task's check as counts — E2E:
    `slots_total`, `slots_realised`, `name_realised`, the same for the slots not in `delexicalised`
    (`lex_total`, `lex_realised`), `added_slots` (placeholders of slots the input lacks, `delex.added_slots`) and
    `slot_<name>` (1 realised, 0 missed, −1 absent from the MR); WebNLG and DART: `entities_total`,
    `entities_covered`."""
    if len(examples) != len(hypotheses):
        raise ValueError(f"{len(examples)} examples but {len(hypotheses)} hypotheses; they must pair up")
    stats = bleu_statistics(hypotheses, [list(e.references) for e in examples])
    table = pd.DataFrame(stats, columns=BLEU_STATS)
    table.insert(0, "id", [e.id for e in examples])
    if task == "e2e":
        rows = []
        for e, h in zip(examples, hypotheses, strict=True):
            got = e2e_slots(e.meta["mr"], h)
            lex = {s: v for s, v in got.items() if s not in delexicalised}
            rows.append({"slots_total": len(got), "slots_realised": sum(got.values()),
                         "name_realised": int(got.get("name", False)), "lex_total": len(lex),
                         "lex_realised": sum(lex.values()), "added_slots": added_slots(h),
                         **{f"slot_{s}": int(got[s]) if s in got else -1 for s in SLOTS}})
        return pd.concat([table, pd.DataFrame(rows)], axis=1)
    if task == "curation":  # the article's named entities (spdf_lib.spdf.summarisation)
        from spdf_lib.spdf.summarisation import entity_counts, example_rouge

        rows = [entity_counts(e.meta["article"], e.references[0], h, covered)
                for e, h in zip(examples, hypotheses, strict=True)]
        return pd.concat([table, pd.DataFrame(rows), example_rouge(examples, hypotheses)], axis=1)
    ents = [entities(e.source) for e in examples]
    table["entities_total"] = [len(x) for x in ents]
    table["entities_covered"] = [sum(covered(x, h) for x in xs) for xs, h in zip(ents, hypotheses, strict=True)]
    return table


SLOTS = ("name", "eatType", "food", "priceRange", "customer rating", "area", "familyFriendly", "near")


def check_name(task: str, delexicalised: Sequence[str] | bool = ()) -> str:
    """The `corpus_checks` key of a task's check, as validation and the report give it: E2E slot realisation (of
    the slots left in words when some are delexicalised: the slots, or just whether any), or WebNLG/DART entity
    coverage."""
    if task != "e2e":
        return "entity_coverage"
    return "lex_slot_realisation" if delexicalised else "slot_realisation"


def corpus_checks(table: pd.DataFrame) -> dict[str, float]:
    """The corpus numbers of an `example_table`: `len_ratio` (hypothesis / closest reference length, as BLEU's
    brevity penalty sees it); E2E `slot_realisation` (all values), `name_realisation`, `added_slot_outputs` (the
    share of outputs that add a delexicalised slot the input lacks), `lex_slot_realisation`
    (the values that were not delexicalised) and per slot `slot_<name>`; WebNLG/DART `entity_coverage`. Shares
    are 0–100, like BLEU."""
    out = {"len_ratio": float(table["sys_len"].sum() / max(1, table["ref_len"].sum()))}
    if "slots_total" in table:
        out["slot_realisation"] = 100.0 * table["slots_realised"].sum() / max(1, table["slots_total"].sum())
        out["name_realisation"] = 100.0 * table["name_realised"].mean()
        out["added_slot_outputs"] = 100.0 * (table["added_slots"] > 0).mean()
        if table["lex_total"].sum():
            out["lex_slot_realisation"] = 100.0 * table["lex_realised"].sum() / table["lex_total"].sum()
        for s in SLOTS:
            present = table[f"slot_{s}"] >= 0
            if present.any():
                out[f"slot_{s.replace(' ', '_')}"] = 100.0 * table.loc[present, f"slot_{s}"].mean()
    if "entities_total" in table:
        out["entity_coverage"] = 100.0 * table["entities_covered"].sum() / max(1, table["entities_total"].sum())
    if "output_entities" in table:  # curation: the output's names that the article has
        out["entity_support"] = (
            100.0 * table["output_entities_supported"].sum() / max(1, table["output_entities"].sum())
        )
    return out
