"""The experiment table: every experiment of the study, by name, with its parameter schema, runner, notebook
and presets. The CLI (`spdf run`, `spdf sweep`, `spdf reproduce`), the sweeps and the notebooks all read it.

| experiment      | paper       | notebook                     | runner                                        |
| --------------- | ----------- | ---------------------------- | --------------------------------------------- |
| `spdf_pretrain` | SPDF        | `notebooks/spdf_pretrain`    | `spdf_lib.pretrain.run_pretrain`              |
| `spdf_finetune` | SPDF        | `notebooks/spdf_finetune`    | `spdf_lib.spdf.finetune.run_finetune`         |
| `flops`         | SPDF        | `notebooks/flops`            | `spdf_lib.spdf.flops_tables.run_flops`        |
| `spdf_hf`       | SPDF        | `notebooks/spdf_hf`          | `spdf_lib.spdf.hf_run.run_spdf_hf`            |
| `primer`        | Primer      | `notebooks/primer`           | `spdf_lib.primer.run.run_primer`              |
| `exams`         | Vocational  | `notebooks/exams`            | `spdf_lib.exams.run.run_exam`                 |
| `report`        | all three   | `notebooks/report`           | (the notebook itself)                         |
| `data_prepare`  | (data)      | (none: `spdf data prepare`)  | `spdf_lib.data.prepare.run_prepare`           |
| `curation_fetch`| (data)      | (none: `spdf data fetch`)    | `spdf_lib.data.curation.run_curation_fetch`   |

This module imports neither torch nor pandas: a bad name or value is rejected in a fraction of a second.
Runners are imported when a run starts. Outside a notebook, e.g. under `torchrun`:

    python -m torch.distributed.run --nproc-per-node 2 -m spdf_lib.experiments spdf_pretrain \\
        --params params/spdf_pretrain/paper.yaml --run-dir runs/x
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from spdf_lib import params as P
from spdf_lib.locations import REPO_ROOT, new_run_dir

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


class ReportParams(P.Params):
    """The report: every figure from the results table."""

    runs_root: str = ""  # folder of runs to aggregate; empty: runs/
    results_table: str = ""  # a results table (parquet/csv) of runs under runs_root; empty: scan runs_root
    figures_dir: str = ""  # empty: figures/ in the repository
    margin_bleu: float = Field(1.0, ge=0)  # verdicts: a BLEU difference within this many points is no difference
    margin_relative: float = Field(0.02, ge=0)  # ... and for slot realisation, coverage, loss: this fraction


@dataclass(frozen=True)
class Experiment:
    """One experiment: its name is also its notebook's name and its folder under `params/`."""

    name: str
    paper: str
    schema_ref: str  # "module:Class" of its `Params` schema (a torch-free module)
    runner_ref: str | None  # "module:function" called as function(params, run_dir); None: notebook only
    description: str
    has_notebook: bool = True  # notebooks/<name>.ipynb; without one, sweeps run it as a plain process
    check_ref: str | None = None  # "module:function" called as function(params) before a kernel starts
    # its cost on this machine: "module:function" called as function(pricer, point, start) -> PointPlan
    # (`spdf_lib.unit_costs.Pricer`); None: its start-up only
    price_ref: str | None = None
    # its cost on GPUs: "module:function" called as function(point) -> PointCost (`spdf_lib.sweep_cost`);
    # None: not counted (small next to pre-training)
    gpu_cost_ref: str | None = None
    # more lines of a GPU plan: "module:function" called as function(point) -> list[str] (a served exam's
    # requests, tokens and money); None: none
    plan_lines_ref: str | None = None
    memory_ref: str | None = None  # "module:function(params)": refuses a run that cannot fit, before any compute

    def check_memory(self, params: P.Params) -> None:
        """The experiment's memory check alone: what a sweep runs on every point before any point starts."""
        if self.memory_ref:
            _resolve(self.memory_ref)(params)

    def check(self, params: P.Params) -> None:
        """The experiment's checks of its inputs (files it reads), before a kernel or any compute starts."""
        if self.check_ref:
            _resolve(self.check_ref)(params)

    def schema(self) -> type[P.Params]:
        return _resolve(self.schema_ref)

    def price_function(self):
        """`price(pricer, point, start) -> PointPlan` of this experiment, or None (start-up only)."""
        return _resolve(self.price_ref) if self.price_ref else None

    def gpu_cost_function(self):
        """`gpu_cost(point) -> PointCost` of this experiment, or None (not counted)."""
        return _resolve(self.gpu_cost_ref) if self.gpu_cost_ref else None

    def plan_lines_function(self):
        """`plan_lines(point) -> list[str]` of this experiment, or None (no more lines)."""
        return _resolve(self.plan_lines_ref) if self.plan_lines_ref else None

    def runner(self):
        if self.runner_ref is None:
            raise P.ParamsError(f"experiment {self.name!r} runs only as its notebook; use `spdf run {self.name}`")
        return _resolve(self.runner_ref)

    @property
    def notebook(self) -> Path:
        if not self.has_notebook:
            raise P.ParamsError(f"experiment {self.name!r} has no notebook; run it with `spdf data prepare` or as a "
                                f"sweep stage")
        return NOTEBOOKS_DIR / f"{self.name}.ipynb"

    @property
    def presets(self) -> list[str]:
        """The preset names under `params/<name>/` (smoke, tiny, paper and variants)."""
        return sorted(p.stem for p in (P.PARAMS_DIR / self.name).glob("*.yaml"))


def _resolve(ref: str) -> Any:
    """The object a "module:name" reference names (the module imported now)."""
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("spdf_pretrain", "SPDF", "spdf_lib.pretrain_params:PretrainParams", "spdf_lib.pretrain:run_pretrain",
               "sparse (or dense) pre-training of a GPT", check_ref="spdf_lib.memory:check_gpt_training",
               memory_ref="spdf_lib.memory:check_gpt_training", price_ref="spdf_lib.unit_costs:price_pretrain",
               gpu_cost_ref="spdf_lib.sweep_cost:pretrain_gpu_cost"),
    Experiment("spdf_finetune", "SPDF", "spdf_lib.spdf.params:FinetuneParams", "spdf_lib.spdf.finetune:run_finetune",
               "dense, sparse or from-scratch fine-tuning on E2E, WebNLG or DART, then decoding and scoring",
               check_ref="spdf_lib.spdf.finetune:check_inputs", price_ref="spdf_lib.spdf.cost:price"),
    Experiment("flops", "SPDF", "spdf_lib.spdf.params:FlopsParams", "spdf_lib.spdf.flops_tables:run_flops",
               "pre-training FLOP tables at the paper's budgets and against sparsity"),
    Experiment("spdf_hf", "SPDF", "spdf_lib.spdf.hf_params:HFParams", "spdf_lib.spdf.hf_run:run_spdf_hf",
               "SPDF on a Hugging Face model (SmolLM2's architecture, scaled down) with HF Trainer"),
    Experiment("primer", "Primer", "spdf_lib.primer.params:PrimerParams", "spdf_lib.primer.run:run_primer",
               "the Primer-EZ ablation: speedups and power laws over sizes",
               price_ref="spdf_lib.primer.cost:price", gpu_cost_ref="spdf_lib.primer.cost:gpu_cost"),
    Experiment("exams", "Vocational skills", "spdf_lib.exams.params:ExamParams", "spdf_lib.exams.run:run_exam",
               "certification exams: pass shares by field beside letter baselines",
               price_ref="spdf_lib.exams.cost:price", plan_lines_ref="spdf_lib.exams.cost:served_plan_lines"),
    Experiment("report", "all", "spdf_lib.experiments:ReportParams", None,
               "every figure of the study from the results table, beside the papers' numbers"),
    Experiment("data_prepare", "data", "spdf_lib.data.prepare:PrepareParams", "spdf_lib.data.prepare:run_prepare",
               "token shards of a streamed corpus (the paper presets' first stage)", has_notebook=False,
               gpu_cost_ref="spdf_lib.sweep_cost:prepare_gpu_cost"),
    Experiment("curation_fetch", "data", "spdf_lib.data.curation:CurationFetchParams",
               "spdf_lib.data.curation:run_curation_fetch",
               "the Curation Corpus article bodies, fetched from the web (the curation fine-tuning's first stage)",
               has_notebook=False),
)}


def get(name: str) -> Experiment:
    """The experiment called `name`; a one-line error with "did you mean" otherwise."""
    if name not in EXPERIMENTS:
        close = difflib.get_close_matches(name, list(EXPERIMENTS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise P.ParamsError(f"unknown experiment {name!r}; {hint}known: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def schema_for(experiment: str) -> type[P.Params]:
    """The parameter schema of `experiment`."""
    return get(experiment).schema()


def load(experiment: str, path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> P.Params:
    """Parameters of `experiment` from a YAML file (default: its `smoke` preset) plus overrides, validated."""
    schema = schema_for(experiment)
    path = Path(path) if path is not None else P.preset_path(experiment, "smoke")
    values = P.read_yaml(path)
    source = str(path)
    if overrides:
        values.update(overrides)
        source += " + " + ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    return P.validate(schema, values, source)


def notebook_params(name: str, namespace: dict[str, Any]) -> P.Params:
    """The validated parameters of a notebook's run, from the variables its `parameters` cell (and papermill)
    defined: an unknown name is an error with "did you mean", as in a parameter file. `run_dir`, when empty,
    becomes a fresh `runs/<name>/<timestamp>`."""
    p = P.from_namespace(get(name).schema(), namespace)
    if not p.run_dir:
        p.run_dir = str(new_run_dir(name))
    return p


def run(name: str, params: P.Params, run_dir: str | Path) -> Any:
    """Run experiment `name` with validated `params` into `run_dir` (what its notebook's compute cell does).

    However the run ends, its manifest says how: an exception leaving the runner ends every run it opened as
    `interrupted` (Ctrl-C; SIGTERM is turned into the same), `diverged` or `failed`, with the reason and the
    last step, before the exception goes on (`spdf_lib.run_status.ends_runs_on_error`, the runs' one error
    handler, which every runner also carries for the notebooks that call it directly)."""
    from spdf_lib.run_status import ends_runs_on_error

    with _sigterm_as_interrupt():
        return ends_runs_on_error(get(name).runner())(params, run_dir)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler cancelling the job, `kill`) raises `Interrupted` like Ctrl-C raises KeyboardInterrupt,
    so the run writes its status; only in the main thread, where Python delivers signals."""
    from spdf_lib.errors import Interrupted

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(f"signal {signal.Signals(signum).name}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    """`python -m spdf_lib.experiments NAME --params FILE --run-dir DIR [-p KEY=VALUE ...]` (what torchrun runs)."""
    from spdf_lib.errors import report_errors

    ap = argparse.ArgumentParser(prog="python -m spdf_lib.experiments", description="run one experiment (no notebook)")
    ap.add_argument("experiment", choices=[n for n, e in EXPERIMENTS.items() if e.runner_ref])
    ap.add_argument("--params", required=True, help="YAML parameter file")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--overwrite", action="store_true", help="move another configuration's run folder aside")
    args = ap.parse_args(argv)

    def go() -> int:
        from spdf_lib.rundir import claim

        params = load(args.experiment, args.params, dict(P.parse_override(x) for x in args.param))
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, the other ranks write nothing
            found = claim(args.run_dir, args.experiment, params.model_dump(), overwrite=args.overwrite)
            if found.state == "finished":
                print(f"{args.experiment}: {args.run_dir} is finished (status ok); nothing to do", file=sys.stderr)
                return 0
        run(args.experiment, params, args.run_dir)
        return 0

    return report_errors(args.experiment, go)


if __name__ == "__main__":
    sys.exit(main())
