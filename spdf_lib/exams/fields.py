"""Fields of the certifications: first-match rules from an editable YAML file (`fields.yaml` beside this module).

Each rule names a field and a list of patterns (case-insensitive regular expressions, matched as whole words
against the certification name lower-cased with single spaces). A certification gets the field of the first rule
that matches; one that matches none gets `other` and is listed by `coverage()`, so that the rules can be extended.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

RULES_FILE = Path(__file__).with_name("fields.yaml")
OTHER = "other"


@dataclass(frozen=True)
class FieldRules:
    """Compiled rules: `labels` maps field id -> readable name; `rules` is the ordered (field, regex) list."""

    labels: dict[str, str]
    rules: tuple[tuple[str, re.Pattern[str], str], ...]  # (field, compiled pattern, the pattern as written)
    source: str

    def field_of(self, name: str) -> str:
        """The field id of a certification name (`other` when no rule matches)."""
        return self.explain(name)[0]

    def explain(self, name: str) -> tuple[str, str | None]:
        """(field id, the pattern that decided it, or None)."""
        key = " ".join(name.lower().split())
        for field, rx, pattern in self.rules:
            if rx.search(key):
                return field, pattern
        return OTHER, None

    def label(self, field: str) -> str:
        return self.labels.get(field, field)


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(rf"(?<![a-z0-9])(?:{pattern.lower()})(?![a-z0-9])")
    except re.error as e:
        raise ValueError(f"{where}: pattern {pattern!r} is not a valid regular expression ({e})") from None


def load_rules(path: str | Path | None = None) -> FieldRules:
    """Read and check a rules file (default: the kit's `fields.yaml`); a bad file fails with one line."""
    path = Path(path) if path else RULES_FILE
    return _load_rules(str(path.resolve()))


@lru_cache(maxsize=8)
def _load_rules(path: str) -> FieldRules:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such field rules file")
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    labels = data.get("labels") or {}
    rules = []
    for i, rule in enumerate(data.get("rules") or []):
        where = f"{p}: rules[{i}]"
        if not isinstance(rule, dict) or "field" not in rule or not isinstance(rule.get("match"), list):
            raise ValueError(f"{where}: each rule needs `field: <id>` and `match: [patterns]`")
        if rule["field"] not in labels:
            raise ValueError(f"{where}: field {rule['field']!r} has no entry under `labels`")
        for pattern in rule["match"]:
            rules.append((rule["field"], _compile(str(pattern), where), str(pattern)))
    if not rules:
        raise ValueError(f"{p}: no rules")
    return FieldRules(labels={**labels, OTHER: "other (no rule matched)"}, rules=tuple(rules), source=str(p))


def assign_fields(names: list[str] | set[str], rules: FieldRules | None = None) -> dict[str, str]:
    """{certification name: field id} for each name."""
    rules = rules or load_rules()
    return {n: rules.field_of(n) for n in sorted(set(names))}


def coverage(names: list[str] | set[str], rules: FieldRules | None = None) -> dict:
    """How the rules cover these certification names: certifications per field, and the names no rule matches."""
    fields = assign_fields(names, rules)
    return {
        "certifications_per_field": dict(Counter(fields.values()).most_common()),
        "uncovered": sorted(n for n, f in fields.items() if f == OTHER),
    }
