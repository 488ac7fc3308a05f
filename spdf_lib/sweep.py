"""Parameter sweeps: a YAML file of stages and grids; each point runs in its own process into
`runs/<sweep>/<point-id>/`.

A sweep file (`params/sweeps/<name>.yaml`)::

    name: smoke                      # optional; default: the file's stem (runs/<name>/<point-id>/)
    include: [primer.yaml]           # optional; sweep files (relative to this one) whose stages join in
    stages:
      pretrain:
        notebook: spdf_pretrain      # notebooks/<name>.ipynb, or a path relative to this file
        preset: smoke                # base values: params/<experiment>/<preset>.yaml, or a .yaml path
        params: {model_size: nano}   # fixed parameters
        grid: {sparsity: [0.0, 0.5, 0.75]}     # the Cartesian product of these lists gives the points
      finetune:
        notebook: spdf_finetune
        params:
          checkpoint: "{pretrain[sparsity={sparsity}]}/model"
        vars: {sparsity: [0.0, 0.5, 0.75]}    # swept like `grid`, but not passed to the notebook
        grid: {task: [e2e], mode: [dense, sparse], seed: [0, 1]}

Keys of a stage: `notebook`, `experiment` (default: the notebook's stem; names the parameter schema),
`schema` ("module:Class", default: `spdf_lib.params.schema_for(experiment)`), `preset`, `params`, `grid`,
`vars`, `launcher` (`papermill`, the default, or `torchrun`), `torchrun` (options passed through to
`torch.distributed.run`) and `module` (what torchrun runs; default `spdf_lib.experiments`).

Templates in string parameters: `{var}` is a value of the point (a grid, vars, params or preset key; a
string that is exactly `{var}` keeps the value's type); `{stage[key=value,...]}` is the run folder of the
one point of `stage` whose parameters match, and makes this point wait for that one (`{stage}` alone: a
stage of one point).
A point referred to by many (a pre-trained model) is run once.

A point's id is `<experiment>-<hash>`, the hash of its experiment, explicitly set parameters (references count
as the referred point's id, not its path) and vars, so ids are stable across machines and runs folders.
Every point of the file is validated against its schema before anything runs (`--dry-run` too).

Running (`run_sweep`): each point is a process of its own — `python -m spdf_lib.sweep <point dir>` (papermill)
or `python -m torch.distributed.run <options> -m <module> <experiment> --params <dir>/params.yaml --run-dir
<dir>` — started once the points it needs are done, `workers` at a time, with OMP_NUM_THREADS splitting the
cores between them. A point is done when its `results.json` exists and its `manifest.json` says status "ok";
re-running a sweep skips done points and retries the others. The sweep's own record of each point is
`point.json` (status, error, seconds, command); a point that did not complete also leaves `error.txt`, and
every point its process output in `log.txt`. Ctrl-C (or SIGTERM) interrupts the running points and records
them as interrupted; done points stay done.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spdf_lib import params as P
from spdf_lib.records import REPO_ROOT, atomic_write_text, now, read_json, runs_dir, write_json

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
SWEEP_KEYS = ("name", "description", "include", "stages")
STAGE_KEYS = ("notebook", "experiment", "schema", "preset", "params", "grid", "vars", "launcher", "torchrun",
              "module")
LAUNCHERS = ("papermill", "torchrun")
DEFAULT_MODULE = "spdf_lib.experiments"
# `torch.distributed.run` options a sweep may pass through (written with underscores; flags take true/false).
TORCHRUN_OPTIONS = (
    "nnodes", "nproc_per_node", "node_rank", "master_addr", "master_port", "rdzv_backend", "rdzv_endpoint",
    "rdzv_id", "rdzv_conf", "standalone", "max_restarts", "monitor_interval", "start_method", "role", "log_dir",
    "redirects", "tee", "local_addr", "local_ranks_filter",
)
_RENDEZVOUS = ("master_addr", "master_port", "rdzv_backend", "rdzv_endpoint", "rdzv_id", "standalone")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_VAR = re.compile(r"\{(\w+)\}")
_REF = re.compile(r"\{(\w+)(?:\[([^\]{}]*)\])?\}")
_REF_START = re.compile(r"\{(\w+)[\[}]")  # where a reference may start, before `{var}`s inside it are filled
INTERRUPT_GRACE_S = 20.0  # how long interrupted points get to shut their kernels down before being killed


class SweepError(ValueError):
    """A bad sweep file; the message is one line naming the file, the stage and the problem."""


# ----------------------------------------------------------------------------------------------------------
# Reading sweep files


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


def _read_stage(name: str, spec: Any, file: Path, torchrun: dict[str, Any]) -> Stage:
    where = f"{file}: stage {name!r}"
    if not _NAME.fullmatch(name) or "." in name:
        raise SweepError(f"{where}: stage names may hold letters, digits, '_' and '-' only")
    spec = _mapping(spec, where, "the stage")
    unknown = [k for k in spec if k not in STAGE_KEYS]
    if unknown:
        raise SweepError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(STAGE_KEYS)}")
    launcher = spec.get("launcher", "papermill")
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


# ----------------------------------------------------------------------------------------------------------
# Planning: points, ids, references, validation


@dataclass
class Point:
    """One run of a sweep: validated parameters, its folder and the points it needs."""

    id: str
    stage: str
    experiment: str
    dir: Path
    params: dict[str, Any]  # validated, complete (schema defaults included), run_dir set to `dir`
    values: dict[str, Any]  # the explicitly set parameters and vars: what references match on
    swept: dict[str, Any]  # the grid and vars values of this point (its label)
    vars: dict[str, Any]
    needs: tuple[str, ...]
    launcher: str = "papermill"
    notebook: Path | None = None
    module: str = DEFAULT_MODULE
    torchrun: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.swept.items()) or "(fixed parameters)"

    @property
    def nproc(self) -> int:
        """Processes this point starts on this machine (torchrun's nproc_per_node when it is a number)."""
        n = self.torchrun.get("nproc_per_node", 1)
        return int(n) if str(n).isdigit() else 1

    def command(self) -> list[str]:
        """The command that runs this point (in the repository root)."""
        if self.launcher == "papermill":
            return [sys.executable, "-m", "spdf_lib.sweep", str(self.dir)]
        return [sys.executable, "-m", "torch.distributed.run", *torchrun_args(self.torchrun),
                "-m", self.module, self.experiment, "--params", str(self.dir / "params.yaml"),
                "--run-dir", str(self.dir)]


def torchrun_args(options: dict[str, Any]) -> list[str]:
    """`torch.distributed.run` arguments from sweep options; a single-node run with no rendezvous given gets
    `--standalone` (a free port), so that parallel points on one machine do not fight over port 29500."""
    args = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args += [flag] if value else []
        else:
            args.append(f"{flag}={value}")
    if str(options.get("nnodes", 1)) == "1" and not any(k in options for k in _RENDEZVOUS):
        args.insert(0, "--standalone")
    return args


@dataclass
class Plan:
    """The points of a sweep, dependencies first."""

    name: str
    file: Path
    dir: Path
    points: list[Point]

    def __post_init__(self) -> None:
        self.by_id = {p.id: p for p in self.points}

    @property
    def stages(self) -> list[str]:
        return list(dict.fromkeys(p.stage for p in self.points))


def _load_schema(stage: Stage) -> type[P.Params]:
    try:
        if stage.schema:
            module, _, cls = stage.schema.partition(":")
            return getattr(importlib.import_module(module), cls)
        return P.schema_for(stage.experiment)
    except (ImportError, AttributeError, ValueError) as e:
        what = stage.schema or stage.experiment
        raise SweepError(f"{stage.where}: cannot load the parameter schema of {what!r} ({e})") from None


def _stage_order(stages: dict[str, Stage]) -> list[Stage]:
    """Stages sorted so that each comes after the stages its templates refer to."""

    def refs(stage: Stage) -> set[str]:
        found: set[str] = set()
        for text in _strings(stage.params):
            found |= {name for name in _REF_START.findall(text) if name in stages}
        return found

    deps = {name: refs(st) for name, st in stages.items()}
    order: list[Stage] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise SweepError(f"{stages[name].where}: stages refer to each other in a cycle: "
                             f"{' -> '.join((*path, name))}")
        state[name] = 1
        for dep in sorted(deps[name]):
            visit(dep, (*path, name))
        state[name] = 2
        order.append(stages[name])

    for name in stages:
        visit(name, ())
    return order


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def _same(a: Any, b: Any) -> bool:
    """Selector value `b` (parsed from a template) matches parameter value `a` (`0.5` == `"0.5"`, `1e-4`...)."""
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


class _Resolver:
    """Resolves templates of one point: `{var}` from its values, `{stage[k=v]}` to another point's folder."""

    def __init__(self, env: dict[str, Any], stage_points: dict[str, list[Point]], where: str):
        self.env, self.stage_points, self.where = env, stage_points, where
        self.needs: list[str] = []

    def __call__(self, value: Any) -> tuple[Any, Any]:
        """(real value, identity value): the identity replaces a referred folder by its point id."""
        if isinstance(value, list):
            pairs = [self(v) for v in value]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        if isinstance(value, dict):
            pairs = {k: self(v) for k, v in value.items()}
            return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}
        if not isinstance(value, str) or "{" not in value:
            return value, value
        whole = _VAR.fullmatch(value)
        if whole and whole.group(1) in self.env and whole.group(1) not in self.stage_points:
            v = self.env[whole.group(1)]
            return v, v
        text = _VAR.sub(self._var, value)
        real = _REF.sub(lambda m: str(self._ref(m).dir), text)
        ident = _REF.sub(lambda m: "@" + self._ref(m).id, text)
        return real, ident

    def _var(self, m: re.Match) -> str:
        name = m.group(1)
        if name in self.stage_points:
            if name in self.env:
                raise SweepError(f"{self.where}: {{{name}}} is both a stage and a parameter; rename one")
            return m.group(0)  # a reference: resolved next
        if name not in self.env:
            known = ", ".join(sorted(self.env)) or "none"
            raise SweepError(f"{self.where}: template {{{name}}} names no parameter or stage; known: {known}")
        return str(self.env[name])

    def _ref(self, m: re.Match) -> Point:
        stage, selector = m.group(1), m.group(2)
        if stage not in self.stage_points:
            raise SweepError(f"{self.where}: {m.group(0)} refers to no stage; stages: "
                             f"{', '.join(self.stage_points)}")
        candidates = self.stage_points[stage]
        wanted: dict[str, Any] = {}
        for item in filter(None, (s.strip() for s in (selector or "").split(","))):
            key, eq, raw = item.partition("=")
            if not eq:
                raise SweepError(f"{self.where}: {m.group(0)}: expected key=value, got {item!r}")
            key = key.strip()
            if not any(key in p.values for p in candidates):
                raise SweepError(f"{self.where}: {m.group(0)}: stage {stage!r} sets no parameter {key!r}")
            wanted[key] = yaml.safe_load(raw)
        found = [p for p in candidates if all(k in p.values and _same(p.values[k], v) for k, v in wanted.items())]
        if len(found) != 1:
            what = "no point" if not found else f"{len(found)} points ({'; '.join(p.label for p in found[:3])})"
            fix = "check the values" if not found else "add keys to pick one"
            raise SweepError(f"{self.where}: {m.group(0)} matches {what} of stage {stage!r}; {fix}")
        if found[0].id not in self.needs:
            self.needs.append(found[0].id)
        return found[0]


def _point_id(experiment: str, identity: dict[str, Any]) -> str:
    blob = json.dumps({"experiment": experiment, **identity}, sort_keys=True, default=str)
    return f"{experiment}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def plan_sweep(
    path: str | Path,
    root: str | Path | None = None,
    stages: Iterable[str] | None = None,
    torchrun: dict[str, Any] | None = None,
) -> Plan:
    """Every point of a sweep file, validated against its experiment's schema, dependencies first.

    `root`: the runs folder (default `runs/` or `$SPDF_RUNS_DIR`); `stages`: only these stages (and the points
    they need); `torchrun`: options that override those of every torchrun stage (e.g. node_rank on each node).
    Raises `SweepError` (one line) on the first bad point, before anything runs.
    """
    path = Path(path)
    name, all_stages = read_sweep(path, torchrun)
    sweep_dir = Path(root or runs_dir()).resolve() / name
    stage_points: dict[str, list[Point]] = {}
    points: dict[str, Point] = {}
    for stage in _stage_order(all_stages):
        schema = _load_schema(stage)
        stage_points[stage.name] = []
        axes = {**stage.vars, **stage.grid}
        for combo in itertools.product(*axes.values()):
            swept = dict(zip(axes, combo, strict=True))
            grid_values = {k: v for k, v in swept.items() if k in stage.grid}
            point_vars = {k: v for k, v in swept.items() if k in stage.vars}
            where = f"{stage.where} ({' '.join(f'{k}={v}' for k, v in swept.items()) or 'fixed parameters'})"
            raw = {**stage.preset, **stage.params, **grid_values}
            resolve = _Resolver({**raw, **point_vars}, stage_points, where)
            real, ident = {}, {}
            for key, value in raw.items():
                real[key], ident[key] = resolve(value)
            validated = P.validate(schema, {**real, "run_dir": "."}, source=where)
            dumped = json.loads(validated.model_dump_json())
            explicit = {k: dumped[k] for k in raw}
            identity = {"params": {k: (dumped[k] if ident[k] == real[k] else ident[k]) for k in raw},
                        "vars": point_vars}
            pid = _point_id(stage.experiment, identity)
            point = points.get(pid)
            if point is None:
                run_dir = sweep_dir / pid
                point = Point(
                    id=pid, stage=stage.name, experiment=stage.experiment, dir=run_dir,
                    params={**dumped, "run_dir": str(run_dir)}, values={**explicit, **point_vars},
                    swept=swept, vars=point_vars, needs=tuple(resolve.needs), launcher=stage.launcher,
                    notebook=stage.notebook, module=stage.module, torchrun=dict(stage.torchrun),
                )
                points[pid] = point
            if all(q.id != pid for q in stage_points[stage.name]):
                stage_points[stage.name].append(point)
    selected = list(points.values())
    if stages is not None:
        wanted = set(stages)
        missing = wanted - set(all_stages)
        if missing:
            raise SweepError(f"{path}: no stage {sorted(missing)[0]!r}; stages: {', '.join(all_stages)}")
        keep = {p.id for p in selected if p.stage in wanted}
        for p in reversed(selected):  # dependencies come first, so walking backwards closes over them
            if p.id in keep:
                keep.update(p.needs)
        selected = [p for p in selected if p.id in keep]
    return Plan(name=name, file=path, dir=sweep_dir, points=selected)


# ----------------------------------------------------------------------------------------------------------
# Status of points


def is_complete(run_dir: str | Path) -> bool:
    """A run is complete when its results.json exists and its manifest says status "ok"."""
    run_dir = Path(run_dir)
    try:
        return (run_dir / "results.json").is_file() and read_json(run_dir / "manifest.json")["status"] == "ok"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _remote_rank(point: Point) -> bool:
    """On nodes other than node 0 of a multi-node torchrun, records are written by node 0, not here."""
    return point.launcher == "torchrun" and str(point.torchrun.get("node_rank", 0)) != "0"


def point_status(point: Point) -> str:
    """`done`, or what the last attempt left (`failed`, `blocked`, `interrupted`), or `todo`."""
    if is_complete(point.dir):
        return "done"
    record = point.dir / "point.json"
    try:
        status = read_json(record).get("status") if record.is_file() else None
    except (OSError, ValueError):
        status = None
    if status == "ok" and _remote_rank(point):
        return "done"
    return status if status in ("failed", "blocked", "interrupted") else "todo"


def format_plan(plan: Plan) -> list[str]:
    """The dry-run listing: a header, then one line per point (stage, id, status, swept values, needs)."""
    statuses = {p.id: point_status(p) for p in plan.points}
    counts = {s: sum(v == s for v in statuses.values()) for s in dict.fromkeys(statuses.values())}
    lines = [f"sweep {plan.name} ({plan.file}): {len(plan.points)} points in {len(plan.stages)} stage(s) "
             f"-> {plan.dir}", "  " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    w_stage = max([len(p.stage) for p in plan.points] + [5])
    w_id = max([len(p.id) for p in plan.points] + [5])
    lines.append(f"{'STAGE':<{w_stage}}  {'POINT':<{w_id}}  {'STATUS':<11}  {'LAUNCH':<13}  VALUES")
    for p in plan.points:
        launch = p.launcher if p.launcher == "papermill" else f"torchrun x{p.torchrun.get('nproc_per_node', 1)}"
        needs = f"  needs {', '.join(p.needs)}" if p.needs else ""
        lines.append(f"{p.stage:<{w_stage}}  {p.id:<{w_id}}  {statuses[p.id]:<11}  {launch:<13}  {p.label}{needs}")
    return lines


# ----------------------------------------------------------------------------------------------------------
# Running


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _error_line(point: Point) -> str:
    """One line saying why a point failed: the worker's error.txt, else the first exception line of its log
    (with torchrun, the first rank to fail is the root cause; the others fail because it left)."""
    err = point.dir / "error.txt"
    if err.is_file():
        first = err.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        if first:
            return first[0]
    log = point.dir / "log.txt"
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
    exc = re.compile(r"^(?:\[rank(\d+)\]:\s*)?((?:\w+\.)*\w*(?:Error|Exception|Interrupt)\b:?.*)$")
    for line in lines:
        m = exc.match(line.strip())
        if m and "ChildFailedError" not in line:
            return (f"rank {m.group(1)}: " if m.group(1) else "") + m.group(2)
    return ""


@dataclass
class _Running:
    point: Point
    proc: subprocess.Popen
    log: Any
    started: float
    record: dict[str, Any]


def _start(point: Point, threads: int) -> _Running:
    if point.dir.exists():  # an earlier, unfinished attempt: start clean (metrics.jsonl appends)
        shutil.rmtree(point.dir)
    point.dir.mkdir(parents=True)
    if point.launcher == "torchrun":
        atomic_write_text(point.dir / "params.yaml", yaml.safe_dump(point.params, sort_keys=False))
    cmd = point.command()
    record = {
        "id": point.id, "stage": point.stage, "experiment": point.experiment, "launcher": point.launcher,
        "notebook": str(point.notebook) if point.notebook else None, "params": point.params, "vars": point.vars,
        "swept": point.swept, "needs": list(point.needs), "command": cmd, "threads": threads,
        "status": "running", "started": now(), "ended": None, "seconds": None, "error": None,
    }
    write_json(point.dir / "point.json", record)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    # Idle OpenMP threads sleep instead of spinning: when the cores are shared (several points, other jobs),
    # spinning threads starve the busy ones; a smoke pre-training took 35 s instead of 1.1 s on 2 loaded cores.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    log = (point.dir / "log.txt").open("w", encoding="utf-8")
    # A session of its own: the terminal's Ctrl-C reaches only the sweep, which then stops the points in order.
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    return _Running(point, proc, log, time.monotonic(), record)


def _finish(run: _Running, interrupted: bool = False) -> dict[str, Any]:
    run.log.close()
    point, rc = run.point, run.proc.returncode
    complete = is_complete(point.dir) or (rc == 0 and _remote_rank(point))
    if complete:
        status, error = "ok", None
    elif interrupted or rc in (130, -signal.SIGINT):
        status, error = "interrupted", "interrupted; re-run the sweep to redo this point"
    elif rc == 0:
        status, error = "failed", "finished without results.json and manifest status 'ok' (call Run.finish)"
    else:
        status, error = "failed", _error_line(point) or f"exit code {rc}"
    if status != "ok" and not (point.dir / "error.txt").is_file():
        log = point.dir / "log.txt"
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-80:] if log.is_file() else []
        atomic_write_text(point.dir / "error.txt", "\n".join([error or "", "", *tail]) + "\n")
    run.record.update(status=status, error=error, ended=now(), exit_code=rc,
                      seconds=round(time.monotonic() - run.started, 2))
    write_json(point.dir / "point.json", run.record)
    return run.record


def _block(point: Point, failed: str) -> dict[str, Any]:
    record = {"id": point.id, "stage": point.stage, "experiment": point.experiment, "params": point.params,
              "vars": point.vars, "swept": point.swept, "needs": list(point.needs), "status": "blocked",
              "error": f"needs {failed}, which did not complete", "started": None, "ended": now(), "seconds": 0}
    point.dir.mkdir(parents=True, exist_ok=True)
    write_json(point.dir / "point.json", record)
    return record


def run_sweep(
    plan: Plan,
    workers: int = 1,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Run every point of `plan` not yet done, up to `workers` at a time, each in its own process.

    A point starts once the points it needs are done; a point whose dependency failed is `blocked`. Threads
    (OMP_NUM_THREADS) are split so that the running points share the machine's cores. Returns
    {point id: status} with status `ok` (ran now), `done` (done before), `failed`, `blocked` or
    `interrupted`. On Ctrl-C the running points are interrupted (their records say so), points already done
    stay intact, and `KeyboardInterrupt` is raised again.
    """
    from tqdm.auto import tqdm

    if workers < 1:
        raise SweepError(f"--workers must be at least 1 (got {workers})")
    statuses = {p.id: "done" for p in plan.points if point_status(p) == "done"}
    todo = [p for p in plan.points if p.id not in statuses]
    plan.dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), unit="point", desc=plan.name, disable=not progress or not todo, leave=False)
    say = echo or bar.write
    running: dict[str, _Running] = {}
    finished = 0
    total = len(todo)
    slots = max(1, min(workers, total))  # points that run at once share the cores

    def report(record: dict[str, Any]) -> None:
        nonlocal finished
        finished += 1
        statuses[record["id"]] = record["status"]
        error = f"  {record['error']}" if record["status"] != "ok" else ""
        point = plan.by_id[record["id"]]
        say(f"[{finished}/{total}] {record['status']:<11} {point.id}  {point.stage}  {point.label}  "
            f"{record['seconds'] or 0:.1f}s{error}")
        bar.update(1)

    # A scheduler's SIGTERM (job cancelled) stops the points like Ctrl-C does, rather than orphaning them.
    in_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None
    old_term = signal.SIG_DFL if in_main and old_term is None else old_term
    try:
        while todo or running:
            for pid, run in list(running.items()):
                if run.proc.poll() is not None:
                    del running[pid]
                    report(_finish(run))
            for p in list(todo):  # blocked: a dependency ended without completing
                bad = next((n for n in p.needs if statuses.get(n) in ("failed", "blocked", "interrupted")), None)
                if bad:
                    todo.remove(p)
                    report(_block(p, bad))
            ready = [p for p in todo if all(statuses.get(n) in ("ok", "done") for n in p.needs)]
            for p in ready[: workers - len(running)]:
                todo.remove(p)
                running[p.id] = _start(p, threads=max(1, _cores() // (slots * p.nproc)))
            if running:
                time.sleep(0.2)
            elif todo:  # cannot happen with a valid plan; guards against a silent hang
                raise SweepError(f"points wait on points outside the plan: {todo[0].id} needs {todo[0].needs}")
    except KeyboardInterrupt:
        _interrupt(running, report)
        raise
    finally:
        bar.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return statuses


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _interrupt(running: dict[str, _Running], report: Callable[[dict[str, Any]], None]) -> None:
    """Ctrl-C: ask each running point to stop (SIGINT: papermill shuts its kernel down), kill stragglers."""
    for run in running.values():
        with _quiet():
            os.killpg(run.proc.pid, signal.SIGINT)
    deadline = time.monotonic() + INTERRUPT_GRACE_S
    for run in running.values():
        try:
            run.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with _quiet():
                os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()
        report(_finish(run, interrupted=True))
    running.clear()


class _quiet:
    """Ignore a process that is already gone."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc_type is not None and issubclass(exc_type, ProcessLookupError | PermissionError)


# ----------------------------------------------------------------------------------------------------------
# The worker: `python -m spdf_lib.sweep <point dir>` executes one papermill point from its point.json


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run_point(point_dir: str | Path) -> int:
    """Execute the notebook of the papermill point in `point_dir` (its point.json); 0 on success."""
    import logging
    import traceback

    # jsonschema (under nbformat) imports rfc3987_syntax when installed, which compiles a Lark grammar: ~1.7 s
    # of every point, for an "iri" format check that notebook validation never uses.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    import papermill
    from papermill.exceptions import PapermillExecutionError

    point_dir = Path(point_dir)
    spec = read_json(point_dir / "point.json")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        papermill.execute_notebook(
            spec["notebook"], str(point_dir / "notebook.ipynb"), parameters=spec["params"], cwd=str(REPO_ROOT),
            kernel_name="python3", progress_bar=False, log_output=True,
            shutdown_kernel="immediate",  # the records are written by now; a graceful shutdown costs ~1 s a point
        )
        return 0
    except KeyboardInterrupt:
        return 130
    except PapermillExecutionError as e:
        line = f"{e.ename}: {e.evalue} (notebook cell {e.exec_count})"
        detail = _ANSI.sub("", "\n".join(e.traceback))
    except Exception as e:  # the point fails, with its reason on record; the sweep goes on
        line = f"{type(e).__name__}: {e}".splitlines()[0]
        detail = traceback.format_exc()
    atomic_write_text(point_dir / "error.txt", f"{line}\n\n{detail}\n")
    print(line, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(run_point(sys.argv[1]))
