"""Typed experiment parameters, loaded from `params/<experiment>/<preset>.yaml`.

Each experiment declares a pydantic schema (a subclass of `Params`) next to its code; `EXPERIMENTS` maps the
experiment's name — which is also its notebook's name and its folder under `params/` — to that schema.
Unknown keys, wrong types and out-of-range values fail before any compute with one line that names the key and
the file, e.g. ``params/spdf_pretrain/bad.yaml: sparsity: must be < 1 (got 1.2)``.

Presets: `smoke` (CI, seconds; also the defaults of each notebook's `parameters` cell), `tiny` (CPU, minutes;
what `make reproduce` runs) and `paper` (the papers' configurations, for GPUs).
"""

from __future__ import annotations

import ast
import difflib
import importlib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

PARAMS_DIR = Path(__file__).resolve().parent.parent / "params"
PRESETS = ("smoke", "tiny", "paper")

# experiment name -> "module:Schema"; imported lazily so that `spdf data list` does not import torch.
EXPERIMENTS: dict[str, str] = {
    "spdf_pretrain": "spdf_lib.experiments:PretrainParams",
    "spdf_finetune": "spdf_lib.experiments:FinetuneParams",
    "flops": "spdf_lib.experiments:FlopsParams",
    "primer": "spdf_lib.experiments:PrimerParams",
    "exams": "spdf_lib.exams.params:ExamParams",
    "report": "spdf_lib.experiments:ReportParams",
}


class ParamsError(ValueError):
    """Invalid parameters; the message is one line naming the file (or source) and the key."""


class Params(BaseModel):
    """Base of every experiment schema: no unknown keys, values validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    seed: int = 0
    run_dir: str = ""  # where records go; empty: runs/<experiment>/<timestamp> (set by `spdf run`/sweeps)


P = TypeVar("P", bound=Params)


def _one_line(e: ValidationError, source: str, schema: type[BaseModel]) -> str:
    err = e.errors()[0]
    key = ".".join(str(x) for x in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, list(schema.model_fields), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(schema.model_fields)}"
        return f"{source}: unknown key {key!r}; {hint}"
    msg = err["msg"].removeprefix("Value error, ")
    msg = msg.replace("Input should be", "must be")
    more = f" (and {len(e.errors()) - 1} more problem(s))" if len(e.errors()) > 1 else ""
    return f"{source}: {key}: {msg} (got {err.get('input')!r}){more}"


def validate(schema: type[P], values: dict[str, Any], source: str = "parameters") -> P:
    """`schema(**values)` with a one-line `ParamsError` instead of pydantic's report."""
    try:
        return schema(**values)
    except ValidationError as e:
        raise ParamsError(_one_line(e, source, schema)) from None


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A parameter file as a dict. `base: NAME` inherits `NAME.yaml` from the same folder (then overrides it)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such parameter file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: must be a mapping of parameter names to values")
    if "base" in data:
        base = path.with_name(f"{data.pop('base')}.yaml")
        if base.resolve() in _seen:
            raise ParamsError(f"{path}: 'base' chain loops back to {base}")
        data = {**read_yaml(base, (*_seen, path.resolve())), **data}
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is parsed as YAML (so `0.5`, `true`, `[1, 2]` work)."""
    if "=" not in item:
        raise ParamsError(f"-p {item}: expected key=value")
    key, raw = item.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def schema_for(experiment: str) -> type[Params]:
    if experiment not in EXPERIMENTS:
        raise ParamsError(f"unknown experiment {experiment!r}; known: {', '.join(EXPERIMENTS)}")
    module, name = EXPERIMENTS[experiment].split(":")
    return getattr(importlib.import_module(module), name)


def preset_path(experiment: str, preset: str) -> Path:
    return PARAMS_DIR / experiment / f"{preset}.yaml"


def load(
    experiment: str,
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Params:
    """Parameters of `experiment` from a YAML file (default: its `smoke` preset) plus overrides, validated."""
    schema = schema_for(experiment)
    path = Path(path) if path is not None else preset_path(experiment, "smoke")
    values = read_yaml(path)
    source = str(path)
    if overrides:
        values.update(overrides)
        source += " + " + ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    return validate(schema, values, source)


def from_namespace(schema: type[P], namespace: dict[str, Any], source: str = "notebook parameters") -> P:
    """Build `schema` from the variables a notebook's `parameters` cell (and papermill) defined."""
    values = {k: namespace[k] for k in schema.model_fields if k in namespace}
    return validate(schema, values, source)


def notebook_defaults(notebook: str | Path) -> dict[str, Any]:
    """The literal assignments of a notebook's cell tagged `parameters` (used to check them against `smoke`)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            out = {}
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    out[node.targets[0].id] = ast.literal_eval(node.value)
            return out
    raise ParamsError(f"{notebook}: no cell tagged 'parameters'")
