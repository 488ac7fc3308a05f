"""The kit GPT's named sizes, read torch-free from their one source, `spdf_lib.modeling_gpt.NAMED_CONFIGS`.

`modeling_gpt.py` imports nothing from the kit (it ships beside saved weights for `trust_remote_code`), so it
holds the table; parameter schemas validate a `model_size` without importing torch by reading that table's
literal from the file's syntax tree.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Literal

_SOURCE = Path(__file__).with_name("modeling_gpt.py")


def _named_configs() -> dict[str, dict]:
    """`NAMED_CONFIGS` of `modeling_gpt.py`, parsed (each value a `dict(key=literal, ...)` call)."""
    for node in ast.parse(_SOURCE.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "NAMED_CONFIGS":
            assert isinstance(node.value, ast.Dict)
            return {ast.literal_eval(k): {kw.arg: ast.literal_eval(kw.value) for kw in v.keywords}
                    for k, v in zip(node.value.keys, node.value.values, strict=True)}
    raise RuntimeError(f"{_SOURCE}: no NAMED_CONFIGS table")


NAMED_SIZES: dict[str, dict] = _named_configs()
ModelSize = Literal[tuple(NAMED_SIZES)]  # type: ignore[valid-type]  # nano, micro, ..., gpt3-xl
