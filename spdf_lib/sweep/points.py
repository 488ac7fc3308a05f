"""Planning a sweep: every point of a sweep file with its parameters validated against its experiment's
schema, its id, its folder and the points it needs (templates resolved), dependencies first; and the status
of each point on disk (`done`, `failed`, ...)."""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spdf_lib import params as P
from spdf_lib.contain import inside
from spdf_lib.damage import DAMAGED, damaged_file
from spdf_lib.experiments import EXPERIMENTS, schema_for
from spdf_lib.jsonio import read_json
from spdf_lib.locations import runs_dir
from spdf_lib.run_status import effective_status
from spdf_lib.sweep.spec import DEFAULT_MODULE, Stage, SweepError, read_sweep

_RENDEZVOUS = ("master_addr", "master_port", "rdzv_backend", "rdzv_endpoint", "rdzv_id", "standalone")
_VAR = re.compile(r"\{(\w+)\}")
_REF = re.compile(r"\{(\w+)(?:\[([^\]{}]*)\])?\}")
_REF_START = re.compile(r"\{(\w+)[\[}]")  # where a reference may start, before `{var}`s inside it are filled


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
            return [sys.executable, "-m", "spdf_lib.sweep.worker", str(self.dir)]
        run = [
            "-m",
            self.module,
            self.experiment,
            "--params",
            str(self.dir / "params.yaml"),
            "--run-dir",
            str(self.dir),
        ]
        if self.launcher == "process":
            return [sys.executable, *run]
        return [sys.executable, "-m", "torch.distributed.run", *torchrun_args(self.torchrun), *run]


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
    budget_minutes: float | None = None  # the sweep file's `budget_minutes`: what its wall time should stay under

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
        return schema_for(stage.experiment)
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
    overrides: dict[str, Any] | None = None,
) -> Plan:
    """Every point of a sweep file, validated against its experiment's schema, dependencies first.

    A point whose parameters say it cannot run on this machine (`skip_reason()` of its schema, e.g. a curation
    fine-tuning without the fetched corpus) is left out, with one line per stage on stderr saying why.

    `root`: the runs folder (default `runs/` or `$SPDF_RUNS_DIR`); `stages`: only these stages (and the points
    they need); `torchrun`: options that override those of every torchrun stage (e.g. node_rank on each node).
    `overrides` (`spdf sweep -p KEY=VALUE`): set in every point whose schema has the key (a key no stage's
    schema has is an error), validated with the point and part of its id.
    Raises `SweepError` (one line) on the first bad point, before anything runs.
    """
    path = Path(path)
    name, all_stages = read_sweep(path, torchrun)
    overrides = dict(overrides or {})
    _check_overrides(overrides, all_stages, path)
    sweep_dir = inside(Path(root or runs_dir()).resolve(), name, f"{path}: sweep name")  # not '.', '..', a link out
    stage_points: dict[str, list[Point]] = {}
    points: dict[str, Point] = {}
    skipped: dict[str, list[str]] = {}
    for stage in _stage_order(all_stages):
        schema = _load_schema(stage)
        stage_points[stage.name] = []
        axes = {**stage.vars, **stage.grid}
        for combo in itertools.product(*axes.values()):
            swept = dict(zip(axes, combo, strict=True))
            grid_values = {k: v for k, v in swept.items() if k in stage.grid}
            point_vars = {k: v for k, v in swept.items() if k in stage.vars}
            where = f"{stage.where} ({' '.join(f'{k}={v}' for k, v in swept.items()) or 'fixed parameters'})"
            raw = {**stage.preset, **stage.params, **grid_values,
                   **{k: v for k, v in overrides.items() if k in schema.model_fields}}
            resolve = _Resolver({**raw, **point_vars}, stage_points, where)
            real, ident = {}, {}
            for key, value in raw.items():
                real[key], ident[key] = resolve(value)
            validated = P.validate(schema, {**real, "run_dir": "."}, source=where)
            if (why := getattr(validated, "skip_reason", lambda: None)()) is not None:
                skipped.setdefault(stage.name, []).append(why)  # cannot run here: left out, said once below
                continue
            dumped = json.loads(validated.model_dump_json())
            explicit = {k: dumped[k] for k in raw}
            identity = {"params": {k: (dumped[k] if ident[k] == real[k] else ident[k]) for k in raw},
                        "vars": point_vars}
            pid = _point_id(stage.experiment, identity)
            point = points.get(pid)
            if point is None:
                run_dir = inside(sweep_dir, pid, "point id")
                point = Point(
                    id=pid, stage=stage.name, experiment=stage.experiment, dir=run_dir,
                    params={**dumped, "run_dir": str(run_dir)}, values={**explicit, **point_vars},
                    swept=swept, vars=point_vars, needs=tuple(resolve.needs), launcher=stage.launcher,
                    notebook=stage.notebook, module=stage.module, torchrun=dict(stage.torchrun),
                )
                points[pid] = point
            if all(q.id != pid for q in stage_points[stage.name]):
                stage_points[stage.name].append(point)
    for stage_name, whys in skipped.items():
        print(f"spdf sweep {name}: skipping stage {stage_name} ({len(whys)} points): {whys[0]}", file=sys.stderr,
              flush=True)
    selected = list(points.values())
    if stages is not None:
        wanted = set(stages)
        if missing := wanted - set(all_stages):
            raise SweepError(f"{path}: no stage {sorted(missing)[0]!r}; stages: {', '.join(all_stages)}")
        keep = {p.id for p in selected if p.stage in wanted}
        for p in reversed(selected):  # dependencies come first, so walking backwards closes over them
            if p.id in keep:
                keep.update(p.needs)
        selected = [p for p in selected if p.id in keep]
    budget = P.read_yaml(path).get("budget_minutes")
    return Plan(name=name, file=path, dir=sweep_dir, points=selected,
                budget_minutes=float(budget) if budget is not None else None)


def _check_overrides(overrides: dict[str, Any], stages: dict[str, Stage], path: Path) -> None:
    """Every `-p` key must be a parameter of at least one stage's schema."""
    import difflib

    known = {k for stage in stages.values() for k in _load_schema(stage).model_fields}
    for key in overrides:
        if key == "run_dir" or key not in known:
            close = difflib.get_close_matches(key, sorted(known - {"run_dir"}), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "it is a parameter of none of its stages"
            raise SweepError(f"{path}: -p {key}: no stage of this sweep has a parameter {key!r}; {hint}")


def is_complete(run_dir: str | Path) -> bool:
    """A run is complete when its results.json exists and its manifest says status "ok"."""
    run_dir = Path(run_dir)
    if damaged_file(run_dir) is not None:  # a results.json that is not JSON is no result
        return False
    try:
        return (run_dir / "results.json").is_file() and read_json(run_dir / "manifest.json")["status"] == "ok"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def remote_rank(point: Point) -> bool:
    """On nodes other than node 0 of a multi-node torchrun, records are written by node 0, not here."""
    return point.launcher == "torchrun" and str(point.torchrun.get("node_rank", 0)) != "0"


def point_status(point: Point) -> str:
    """`done`, or what the last attempt left (`failed`, `blocked`, `interrupted`, `damaged`: a record that does
    not parse), or `todo`."""
    if is_complete(point.dir):
        return "done"
    if damaged_file(point.dir) is not None:
        return DAMAGED
    record = point.dir / "point.json"
    try:
        status = read_json(record).get("status") if record.is_file() else None
    except (OSError, ValueError):
        status = None
    if status == "ok" and remote_rank(point):
        return "done"
    if status == "running" and effective_status(point.dir)[0] == "interrupted":  # its process is gone
        return "interrupted"
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
        launch = p.launcher if p.launcher != "torchrun" else f"torchrun x{p.torchrun.get('nproc_per_node', 1)}"
        needs = f"  needs {', '.join(p.needs)}" if p.needs else ""
        lines.append(f"{p.stage:<{w_stage}}  {p.id:<{w_id}}  {statuses[p.id]:<11}  {launch:<13}  {p.label}{needs}")
    return lines


def check_memory(plan: Plan) -> None:
    """Refuse, before any point starts, a sweep with a point to run that cannot fit in this machine's memory (the
    experiment table's `memory_ref`). Planning (`spdf plan`, `--dry-run`, a GPU plan) does not check: it prices
    runs for other machines too."""
    for point in plan.points:
        experiment = EXPERIMENTS.get(point.experiment)
        if experiment is not None and experiment.memory_ref and point_status(point) != "done":
            experiment.check_memory(P.validate(schema_for(point.experiment), point.params, source=point.label))
