"""Reading sweep files (the format is described in `spdf_lib.sweep`): stages with their presets, parameters,
grids, vars and launchers, includes merged, torchrun options checked. Nothing is validated against the
experiments' schemas here; that is planning's job (`spdf_lib.sweep.points`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spdf_lib import params as P
from spdf_lib.experiments import NOTEBOOKS_DIR

SWEEP_KEYS = ("name", "description", "include", "stages", "budget_minutes")
STAGE_KEYS = ("notebook", "experiment", "schema", "preset", "params", "grid", "vars", "launcher", "torchrun",
              "module")
LAUNCHERS = ("papermill", "torchrun", "process")
DEFAULT_MODULE = "spdf_lib.experiments"
# `torch.distributed.run` options a sweep may pass through (written with underscores; flags take true/false).
TORCHRUN_OPTIONS = (
    "nnodes", "nproc_per_node", "node_rank", "master_addr", "master_port", "rdzv_backend", "rdzv_endpoint",
    "rdzv_id", "rdzv_conf", "standalone", "max_restarts", "monitor_interval", "start_method", "role", "log_dir",
    "redirects", "tee", "local_addr", "local_ranks_filter",
)
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class SweepError(ValueError):
    """A bad sweep file; the message is one line naming the file, the stage and the problem."""


@dataclass
class Stage:
    """One stage of a sweep file, as written (templates unresolved)."""

    name: str
    file: Path
    experiment: str
    notebook: Path | None  # papermill stages
    schema: str | None
    preset: dict[str, Any]
    params: dict[str, Any]
    grid: dict[str, list[Any]]
    vars: dict[str, list[Any]]
    launcher: str = "papermill"
    torchrun: dict[str, Any] = field(default_factory=dict)
    module: str = DEFAULT_MODULE

    @property
    def where(self) -> str:
        return f"{self.file}: stage {self.name!r}"


def _mapping(value: Any, where: str, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SweepError(f"{where}: {key} must be a mapping (got {type(value).__name__})")
    return value


def _lists(value: Any, where: str, key: str) -> dict[str, list[Any]]:
    out = _mapping(value, where, key)
    for k, v in out.items():
        if not isinstance(v, list) or not v:
            raise SweepError(f"{where}: {key}.{k} must be a non-empty list of values (got {v!r}); "
                             f"put a fixed value under params")
    return out


def _resolve_notebook(notebook: str, base: Path, where: str) -> Path:
    path = Path(notebook)
    if path.suffix == ".ipynb":
        path = (path if path.is_absolute() else base / path).resolve()
    else:
        path = NOTEBOOKS_DIR / f"{notebook}.ipynb"
    if not path.is_file():
        raise SweepError(f"{where}: no notebook {path}")
    return path


def _torchrun_options(options: dict[str, Any], where: str) -> dict[str, Any]:
    for key in options:
        if key.replace("-", "_") not in TORCHRUN_OPTIONS:
            raise SweepError(f"{where}: unknown torchrun option {key!r}; known: {', '.join(TORCHRUN_OPTIONS)}")
    return {k.replace("-", "_"): v for k, v in options.items()}


def _default_launcher(spec: dict[str, Any]) -> str:
    """`papermill` for an experiment with a notebook; `process` for one without (data preparation)."""
    from spdf_lib.experiments import EXPERIMENTS

    e = EXPERIMENTS.get(str(spec.get("experiment") or ""))
    return "process" if e is not None and not e.has_notebook and not spec.get("notebook") else "papermill"


def _read_stage(name: str, spec: Any, file: Path, torchrun: dict[str, Any]) -> Stage:
    where = f"{file}: stage {name!r}"
    if not _NAME.fullmatch(name) or "." in name:
        raise SweepError(f"{where}: stage names may hold letters, digits, '_' and '-' only")
    spec = _mapping(spec, where, "the stage")
    unknown = [k for k in spec if k not in STAGE_KEYS]
    if unknown:
        raise SweepError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(STAGE_KEYS)}")
    launcher = spec.get("launcher") or _default_launcher(spec)
    if launcher not in LAUNCHERS:
        raise SweepError(f"{where}: launcher must be one of {', '.join(LAUNCHERS)} (got {launcher!r})")
    notebook = spec.get("notebook")
    experiment = spec.get("experiment") or (Path(str(notebook)).stem if notebook else None)
    if not experiment:
        raise SweepError(f"{where}: name the `experiment` (or the `notebook`, whose name is the experiment's)")
    nb_path = None
    if launcher == "papermill":
        nb_path = _resolve_notebook(str(notebook or experiment), file.parent, where)
    preset: dict[str, Any] = {}
    if spec.get("preset"):
        preset_file = Path(str(spec["preset"]))
        if preset_file.suffix in (".yaml", ".yml"):
            preset_file = preset_file if preset_file.is_absolute() else file.parent / preset_file
        else:
            preset_file = P.preset_path(experiment, str(spec["preset"]))
        try:
            preset = P.read_yaml(preset_file)
        except P.ParamsError as e:
            raise SweepError(f"{where}: preset: {e}") from None
    params = _mapping(spec.get("params"), where, "params")
    grid = _lists(spec.get("grid"), where, "grid")
    sweep_vars = _lists(spec.get("vars"), where, "vars")
    if "run_dir" in params or "run_dir" in grid or "run_dir" in sweep_vars:
        raise SweepError(f"{where}: run_dir is set by the sweep (runs/<sweep>/<point-id>); remove it")
    clash = [k for k in sweep_vars if k in params or k in grid]
    if clash:
        raise SweepError(f"{where}: {clash[0]!r} is under vars and is also a parameter; keep it in one place")
    options = {**_torchrun_options(_mapping(spec.get("torchrun"), where, "torchrun"), where), **torchrun}
    return Stage(
        name=name, file=file, experiment=str(experiment), notebook=nb_path, schema=spec.get("schema"),
        preset=preset, params=params, grid=grid, vars=sweep_vars, launcher=launcher,
        torchrun=options if launcher == "torchrun" else {}, module=str(spec.get("module") or DEFAULT_MODULE),
    )


def read_sweep(path: str | Path, torchrun: dict[str, Any] | None = None,
               _seen: tuple[Path, ...] = ()) -> tuple[str, dict[str, Stage]]:
    """(sweep name, stages by name) of a sweep file and the files it includes; `torchrun` overrides options."""
    path = Path(path).resolve() if _seen else Path(path)
    if path.resolve() in _seen:
        raise SweepError(f"{_seen[-1]}: includes {path}, which includes it back")
    if not path.is_file():
        where = f"{_seen[-1]}: include" if _seen else "sweep file"
        raise SweepError(f"{where}: no such file {path}")
    try:
        data = P.read_yaml(path)
    except P.ParamsError as e:
        raise SweepError(str(e)) from None
    unknown = [k for k in data if k not in SWEEP_KEYS]
    if unknown:
        raise SweepError(f"{path}: unknown key {unknown[0]!r}; allowed: {', '.join(SWEEP_KEYS)}")
    name = str(data.get("name") or path.stem)
    if not _NAME.fullmatch(name):
        raise SweepError(f"{path}: name {name!r} must be a folder name (letters, digits, '_', '-', '.')")
    extra = _torchrun_options(torchrun or {}, "--torchrun")
    stages: dict[str, Stage] = {}
    includes = data.get("include") or []
    if isinstance(includes, str):
        includes = [includes]
    for inc in includes:
        inc_path = Path(inc) if Path(inc).is_absolute() else path.parent / inc
        _, inc_stages = read_sweep(inc_path, torchrun, (*_seen, path.resolve()))
        for stage in inc_stages.values():
            _add_stage(stages, stage)
    for stage_name, spec in _mapping(data.get("stages"), str(path), "stages").items():
        _add_stage(stages, _read_stage(str(stage_name), spec, path, extra))
    if not stages:
        raise SweepError(f"{path}: no stages (add a `stages:` mapping or `include:` other sweep files)")
    return name, stages


def _add_stage(stages: dict[str, Stage], stage: Stage) -> None:
    old = stages.get(stage.name)
    if old is not None and _stage_key(old) != _stage_key(stage):
        raise SweepError(f"{stage.where}: stage {stage.name!r} is also defined, differently, in {old.file}; "
                         f"rename one of them")
    stages.setdefault(stage.name, stage)


def _stage_key(stage: Stage) -> str:
    d = {k: v for k, v in vars(stage).items() if k != "file"}
    return json.dumps(d, sort_keys=True, default=str)
