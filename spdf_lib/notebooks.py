"""Running an experiment notebook through papermill with validated parameters.

A notebook `notebooks/<experiment>.ipynb` has a cell tagged `parameters` whose defaults are the experiment's
`smoke` preset; `run_notebook` validates the parameters against the experiment's schema *before* starting a
kernel, then executes the notebook into `<run_dir>/notebook.ipynb`. The notebook writes its records into
`run_dir` (see `spdf_lib.records`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spdf_lib import params as P
from spdf_lib.records import REPO_ROOT, new_run_dir

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def resolve_notebook(notebook: str | Path) -> tuple[str, Path]:
    """(experiment name, notebook path) for a name like `spdf_pretrain` or a path to the .ipynb."""
    path = Path(notebook)
    if path.suffix != ".ipynb":
        path = NOTEBOOKS_DIR / f"{notebook}.ipynb"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb")))
        raise FileNotFoundError(f"no notebook {path}; known notebooks: {known}")
    return path.stem, path


def run_notebook(
    notebook: str | Path,
    params_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    log_output: bool = False,
) -> Path:
    """Validate parameters, execute the notebook with them, return the run folder."""
    import papermill

    experiment, path = resolve_notebook(notebook)
    values = P.load(experiment, params_file, overrides).model_dump()
    run_dir = Path(run_dir) if run_dir else new_run_dir(experiment)
    run_dir.mkdir(parents=True, exist_ok=True)
    values["run_dir"] = str(run_dir.resolve())
    papermill.execute_notebook(
        str(path), str(run_dir / "notebook.ipynb"), parameters=values, cwd=str(REPO_ROOT),
        progress_bar=False, log_output=log_output, kernel_name="python3",
    )
    return run_dir
