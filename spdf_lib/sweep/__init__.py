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
`schema` ("module:Class", default: `spdf_lib.experiments.schema_for(experiment)`), `preset`, `params`, `grid`,
`vars`, `launcher` (`papermill`, the default; `torchrun`; or `process`, a plain `python -m`, the default for
an experiment without a notebook such as `data_prepare`), `torchrun` (options passed through to
`torch.distributed.run`) and `module` (what torchrun or process runs; default `spdf_lib.experiments`).

Templates in string parameters: `{var}` is a value of the point (a grid, vars, params or preset key; a
string that is exactly `{var}` keeps the value's type); `{stage[key=value,...]}` is the run folder of the
one point of `stage` whose parameters match, and makes this point wait for that one (`{stage}` alone: a
stage of one point).
A point referred to by many (a pre-trained model) is run once.

A point's id is `<experiment>-<hash>`, the hash of its experiment, explicitly set parameters (references count
as the referred point's id, not its path) and vars, so ids are stable across machines and runs folders.
Every point of the file is validated against its schema before anything runs (`--dry-run` too).

Running (`run_sweep`): each point is a process of its own — `python -m spdf_lib.sweep.worker <point dir>` (papermill)
or `python -m torch.distributed.run <options> -m <module> <experiment> --params <dir>/params.yaml --run-dir
<dir>` — started once the points it needs are done, `workers` at a time, with OMP_NUM_THREADS splitting the
cores between them. A point is done when its `results.json` exists and its `manifest.json` says status "ok";
re-running a sweep skips done points and retries the others. The sweep's own record of each point is
`point.json` (status, error, seconds, command); a point that did not complete also leaves `error.txt`, and
every point its process output in `log.txt`. Ctrl-C (or SIGTERM) interrupts the running points and records
them as interrupted; done points stay done.

Modules: `spec` (reading and checking a sweep file), `points` (its points, ids, references and status:
`plan_sweep`), `scheduler` (`run_sweep`), `worker` (one papermill point in its own process).
"""

from spdf_lib.sweep.points import (
           Plan,
           Point,
           format_plan,
           is_complete,
           plan_sweep,
           point_status,
           torchrun_args,
)
from spdf_lib.sweep.scheduler import run_sweep
from spdf_lib.sweep.spec import SweepError, read_sweep

__all__ = ["Plan", "Point", "SweepError", "format_plan", "is_complete", "plan_sweep", "point_status", "read_sweep",
           "run_sweep", "torchrun_args"]
