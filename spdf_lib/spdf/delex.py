"""Delexicalised E2E, as the challenge's TGen baseline trained it (Dušek & Jurčíček 2016; Novikova et al. 2017):
the values of chosen slots are replaced by placeholders (`X-name`, `X-near`, ...) in the input and in every
reference before fine-tuning, and the placeholders in a generated output are replaced by the input's values
before it is scored.

Why, for `name` and `near` (TGen's choice): restaurant names are open-class strings (half of the E2E test set's 18
names never occur in its dev set, which the offline setup trains on), and a model must copy them from its input.
The kit's CPU-scale models do not learn to copy in minutes (a random-token copy probe showed no in-context copying
even after 20M tokens of pre-training), so without placeholders they name the wrong restaurant however long they
fine-tune.

Why, offline, also `eatType` and `food`: the mirror lacks E2E's training split, so the offline setup trains on the
dev set, and the dev set has only `eatType[coffee shop]` and `food[Chinese]`/`food[English]`, while the test set
also asks for pubs, restaurants and five other cuisines. A value the model never saw as output cannot be learned
from this data; as placeholders, those slots are copied like names.

The realisation of a delexicalised slot then measures only whether the placeholder was produced; the report
gives the realisation of the other slots (`priceRange`, `customer rating`, `area`, `familyFriendly`), which the
model must express in words itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from spdf_lib.data.tasks import Example, linearise_mr, parse_mr

DELEX_SLOTS = ("name", "near", "eatType", "food")


def placeholder(slot: str) -> str:
    return f"X-{slot}"


def _values(mr: str, slots: Sequence[str]) -> dict[str, str]:
    return {slot: value for slot, value in parse_mr(mr) if slot in slots}


def delexicalise(example: Example, slots: Sequence[str] = DELEX_SLOTS) -> Example:
    """`example` (E2E, with its raw `mr` in `meta`) with the values of `slots` replaced by placeholders in the
    source and, case-insensitively and as whole words, in every reference."""
    if unknown := set(slots) - set(DELEX_SLOTS):
        raise ValueError(f"cannot delexicalise {sorted(unknown)}; only {', '.join(DELEX_SLOTS)}")
    values = _values(example.meta["mr"], slots)
    if not values:
        return example
    source = linearise_mr(", ".join(f"{s}[{placeholder(s) if s in values else v}]"
                                    for s, v in parse_mr(example.meta["mr"])))
    refs = []
    for ref in example.references:
        for slot, value in sorted(values.items(), key=lambda kv: -len(kv[1])):  # longest value first
            ref = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", placeholder(slot), ref, flags=re.IGNORECASE)
        refs.append(ref)
    return replace(example, source=source, references=tuple(refs),
                   meta={**example.meta, "delexicalised": values})


# A placeholder as the model writes it (`X-near`), whole: not the start of a longer word.
PLACEHOLDER = re.compile(r"(?<![\w-])X-(?:" + "|".join(DELEX_SLOTS) + r")(?![\w-])")


def added_slots(text: str) -> int:
    """The placeholders left in a relexicalised output: `relexicalise` fills every slot the input has, so each one
    left is a slot the model added (an error E2E's slot error rate counts, which realisation does not see)."""
    return len(PLACEHOLDER.findall(text))


def relexicalise(text: str, example: Example) -> str:
    """`text` with the placeholders of `example` (a `delexicalise`d example) replaced by its values; a
    placeholder of a slot the input does not have stays as it is (and counts as an error in the checks)."""
    for slot, value in example.meta.get("delexicalised", {}).items():
        text = text.replace(placeholder(slot), value)
    return text
