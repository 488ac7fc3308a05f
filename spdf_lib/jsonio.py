"""Strict JSON files for run records: atomic writes (`spdf_lib.atomic`), non-finite numbers written as null (never
`NaN`), numpy/torch scalars, paths and pydantic models serialised."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from spdf_lib.atomic import atomic_write_text


def _jsonable(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item") and callable(x.item):  # numpy / torch scalars
        return x.item()
    if hasattr(x, "model_dump"):
        return x.model_dump()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")



def strict(obj: Any) -> Any:
    """`obj` with every non-finite float (NaN, ±inf) replaced by None: what strict JSON can hold."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and not isinstance(obj, str | bytes):
        return strict(obj.item())
    return obj



def dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON (`allow_nan=False`; non-finite numbers become null)."""
    return json.dumps(strict(obj), default=_jsonable, allow_nan=False, **kwargs)



def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, dumps(obj, indent=2, sort_keys=True) + "\n")



def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))



def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

