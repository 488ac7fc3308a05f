"""Typed experiment parameters, loaded from `params/<experiment>/<preset>.yaml`.

Each experiment declares a pydantic schema (a subclass of `Params`) in its paper's package; the experiment table
(`spdf_lib.experiments.EXPERIMENTS`) maps the experiment's name — also its notebook's name and its folder under
`params/` — to that schema. Unknown keys, wrong types and out-of-range values fail before any compute with one
line that names the key and the file, e.g. ``params/spdf_pretrain/bad.yaml: sparsity: must be less than 1 (got
1.2)``. This module and the schema modules import neither torch nor pandas, so a bad value is rejected in a
fraction of a second.

Presets: `smoke` (CI, seconds; also the defaults of each notebook's `parameters` cell), `tiny` (CPU, minutes;
what `make reproduce` runs) and `paper` (the papers' configurations, for GPUs).
"""

from __future__ import annotations

import ast
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

PARAMS_DIR = Path(__file__).resolve().parent.parent / "params"
PRESETS = ("smoke", "tiny", "paper")


class ParamsError(ValueError):
    """Invalid parameters; the message is one line naming the file (or source) and the key."""


class Params(BaseModel):
    """Base of every experiment schema: no unknown keys, values validated on assignment too; no `true` where a
    number is asked for (pydantic would take it as 1) and no infinite or NaN number."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)

    seed: int = 0
    run_dir: str = ""  # where records go; empty: runs/<experiment>/<timestamp> (set by `spdf run`/sweeps)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and isinstance(value, bool) and not _admits_bool(field.annotation):
            raise ValueError(f"must be a number, not {str(value).lower()}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's type takes a bool (bool itself, Any, a union or literal holding one)."""
    if annotation is bool or annotation is Any:
        return True
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return any(isinstance(a, bool) for a in args)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_admits_bool(a) for a in args)
    return False


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
        raise ParamsError(yaml_error_line(path, e)) from None
    if data is None:
        raise ParamsError(f"{path}: the parameter file is empty; give the parameters to change (or `base: smoke` "
                          f"to take a preset as it is)")
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: must be a mapping of parameter names to values")
    if "base" in data:
        base = path.with_name(f"{data.pop('base')}.yaml")
        if base.resolve() in _seen:
            raise ParamsError(f"{path}: 'base' chain loops back to {base}")
        data = {**read_yaml(base, (*_seen, path.resolve())), **data}
    return data


def yaml_error_line(path: str | Path, e: yaml.YAMLError) -> str:
    """`file:line:column: not valid YAML (the problem)`, the position 1-based as editors count."""
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    return f"{where}: not valid YAML ({f'{context}, ' if context else ''}{problem})"


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is parsed as YAML (so `0.5`, `true`, `[1, 2]` work), except
    that a value with ` #` in it is kept whole, as text (YAML would read the rest as a comment)."""
    if "=" not in item:
        raise ParamsError(f"-p {item}: expected key=value")
    key, raw = item.split("=", 1)
    if re.search(r"(^|\s)#", raw):  # YAML would drop the rest as a comment: the whole value is the text
        return key.strip(), raw.strip()
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ParamsError(yaml_error_line(f"-p {item}", e)) from None


def preset_path(experiment: str, preset: str) -> Path:
    return PARAMS_DIR / experiment / f"{preset}.yaml"


# Names IPython puts into a kernel's namespace, which are never parameters.
_KERNEL_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "display"}
PARAMETERS_MARK = "# Parameters"  # first line of the `parameters` cell, and of the cell papermill injects


def _assigned_names(source: str) -> list[str]:
    names = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign | ast.AugAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def parameter_names(namespace: dict[str, Any]) -> list[str]:
    """The names a notebook's parameters cells defined.

    In a kernel, these are the names assigned in the last executed cell that starts with ``# Parameters``
    (the notebook's `parameters` cell) and, right before it, another such cell (papermill injects its
    parameters in a cell that starts the same way, after the notebook's own). Outside a kernel: every public
    name in `namespace` that is not a module, function or class.
    """
    history = namespace.get("In")
    if isinstance(history, list):
        marked = [i for i, src in enumerate(history) if isinstance(src, str) and src.startswith(PARAMETERS_MARK)]
        if marked:
            cells = [marked[-1]] + ([marked[-2]] if len(marked) > 1 and marked[-2] == marked[-1] - 1 else [])
            return list(dict.fromkeys(n for i in sorted(cells) for n in _assigned_names(history[i])))
    return [k for k, v in namespace.items() if not k.startswith("_") and k not in _KERNEL_NAMES
            and not isinstance(v, types.ModuleType | types.FunctionType | types.BuiltinFunctionType | type)]


def from_namespace(schema: type[P], namespace: dict[str, Any], source: str = "notebook parameters") -> P:
    """Build `schema` from the variables a notebook's `parameters` cell (and papermill) defined.

    A name there that the schema lacks (a typo such as `sparsty = 0.9`) is an error with "did you mean", the
    same one-line message a parameter file with that key gets.
    """
    names = parameter_names(namespace)
    values = {k: namespace[k] for k in names if k in namespace}
    values |= {k: namespace[k] for k in schema.model_fields if k in namespace and k not in values}
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
