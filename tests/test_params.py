"""Parameters: every preset validates, bad files fail fast with one line (torch not imported), notebooks default
to `smoke`, and a typo in a notebook's parameters cell is the same error as in a parameter file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spdf_lib import experiments as E
from spdf_lib import params as P
from spdf_lib.experiments import EXPERIMENTS

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", sorted(p for p in (REPO / "params").glob("*/*.yaml") if p.parent.name in EXPERIMENTS),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_preset_validates(path):
    E.load(path.parent.name, path)


@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if (REPO / "params" / e).is_dir()])
def test_smoke_tiny_and_paper_presets_exist(experiment):
    for preset in P.PRESETS:
        assert P.preset_path(experiment, preset).is_file(), f"params/{experiment}/{preset}.yaml"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_parameters_cell_is_the_smoke_preset(notebook):
    defaults = P.notebook_defaults(notebook)
    schema = E.schema_for(notebook.stem)
    smoke = P.read_yaml(P.preset_path(notebook.stem, "smoke"))
    assert set(smoke) <= set(defaults), f"smoke keys missing from the parameters cell: {set(smoke) - set(defaults)}"
    # every parameter is in the cell, so that the notebook documents it and papermill never warns about it
    assert set(defaults) == set(schema.model_fields), set(schema.model_fields) ^ set(defaults)
    for key, value in defaults.items():
        assert key in schema.model_fields, f"parameters cell defines {key!r}, which the schema does not know"
        expected = smoke.get(key, schema.model_fields[key].default)
        assert value == expected, f"{key}: cell has {value!r}, smoke preset/schema {expected!r}"


def test_an_out_of_range_value_is_one_line_naming_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sparsity: 1.2\n")
    with pytest.raises(P.ParamsError) as e:
        E.load("spdf_pretrain", bad)
    assert str(e.value) == f"{bad}: sparsity: must be less than 1 (got 1.2)"


@pytest.mark.parametrize("text, message", [
    ("sparsty: 0.5", "unknown key 'sparsty'; did you mean 'sparsity'"),
    ("seq_len: long", "seq_len: .*valid integer"),
    ("model_size: gpt5", "model_size: must be 'nano', 'micro'"),
    ("[1, 2]", "must be a mapping"),
    ("corpus: shakespeare+pile", "unknown corpus 'pile'"),
])
def test_bad_files_fail_before_any_compute(tmp_path, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text + "\n")
    with pytest.raises(P.ParamsError, match=message) as e:
        E.load("spdf_pretrain", bad)
    assert "\n" not in str(e.value) and str(bad) in str(e.value)


def test_base_presets_inherit(tmp_path):
    (tmp_path / "a.yaml").write_text("sparsity: 0.5\nseq_len: 32\n")
    (tmp_path / "b.yaml").write_text("base: a\nsparsity: 0.75\n")
    assert P.read_yaml(tmp_path / "b.yaml") == {"sparsity": 0.75, "seq_len": 32}
    (tmp_path / "c.yaml").write_text("base: c\n")
    with pytest.raises(P.ParamsError, match="loops"):
        P.read_yaml(tmp_path / "c.yaml")


def test_cli_rejects_bad_params_before_starting_a_kernel(tmp_path):
    res = subprocess.run([sys.executable, "-m", "spdf_lib.cli", "run", "spdf_pretrain", "-p", "sparsity=1.2",
                          "--run-dir", str(tmp_path / "r")], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "sparsity: must be less than 1 (got 1.2)" in res.stderr
    assert not (tmp_path / "r").exists()


def test_every_experiment_has_its_notebook_and_schema():
    for name, e in EXPERIMENTS.items():
        assert issubclass(e.schema(), P.Params)
        if e.has_notebook:
            assert e.notebook.is_file(), name
            assert {"smoke", "tiny", "paper"} <= set(e.presets), name
        else:
            assert e.runner_ref, f"{name} has neither a notebook nor a runner"
    with pytest.raises(P.ParamsError, match="unknown experiment 'spdf_pretrian'; did you mean 'spdf_pretrain'"):
        E.load("spdf_pretrian")


def test_model_sizes_of_the_schemas_are_the_models():
    from typing import get_args

    from spdf_lib.model_sizes import ModelSize
    from spdf_lib.modeling_gpt import NAMED_CONFIGS

    assert list(get_args(ModelSize)) == list(NAMED_CONFIGS)


def test_a_typo_in_the_parameters_cell_is_the_cli_error():
    """The kernel-side check reads the names the parameters cells assigned (IPython's input history)."""
    from spdf_lib.pretrain_params import PretrainParams

    cell = "# Parameters (defaults = the `smoke` preset)\nseed = 0\nsparsty = 0.9\nsparsity = 0.5\n"
    injected = "# Parameters\nrun_dir = '/tmp/x'\n"
    namespace = {"In": ["", "import os", cell, injected], "seed": 0, "sparsty": 0.9, "sparsity": 0.5,
                 "run_dir": "/tmp/x", "later_variable": 1}
    with pytest.raises(P.ParamsError) as kernel:
        P.from_namespace(PretrainParams, namespace)
    assert str(kernel.value) == "notebook parameters: unknown key 'sparsty'; did you mean 'sparsity'?"
    with pytest.raises(P.ParamsError) as cli:
        E.load("spdf_pretrain", overrides={"sparsty": 0.9})
    assert str(cli.value).endswith(": unknown key 'sparsty'; did you mean 'sparsity'?")
    # a name defined in a later cell is not a parameter; without a history, every public variable counts
    namespace["In"][2] = cell.replace("sparsty = 0.9\n", "")
    assert P.from_namespace(PretrainParams, namespace).sparsity == 0.5
    with pytest.raises(P.ParamsError, match="unknown key 'later_variable'"):
        P.from_namespace(PretrainParams, {k: v for k, v in namespace.items() if k != "In" and k != "sparsty"})


def test_a_typo_in_a_notebook_fails_its_run_with_the_same_line(tmp_path):
    """Both execution paths: the notebook (papermill, a real kernel) and `python -m spdf_lib.experiments`."""
    import nbformat
    from papermill.exceptions import PapermillExecutionError

    from spdf_lib.notebooks import execute

    nb = nbformat.read(str(REPO / "notebooks" / "spdf_pretrain.ipynb"), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = cell.source.replace("sparsity = 0.5", "sparsty = 0.9")
    nbformat.write(nb, str(tmp_path / "typo.ipynb"))
    with pytest.raises(PapermillExecutionError) as e:
        execute(tmp_path / "typo.ipynb", tmp_path / "out.ipynb", {"run_dir": str(tmp_path / "run")})
    assert e.value.evalue == "notebook parameters: unknown key 'sparsty'; did you mean 'sparsity'?"
    res = subprocess.run([sys.executable, "-m", "spdf_lib.experiments", "spdf_pretrain", "--params",
                          str(P.preset_path("spdf_pretrain", "smoke")), "-p", "sparsty=0.9", "--run-dir",
                          str(tmp_path / "r")], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip().endswith("unknown key 'sparsty'; did you mean 'sparsity'?")


def test_rejecting_bad_parameters_does_not_import_torch():
    code = ("import sys; from spdf_lib.cli import main; rc = main(['run', 'spdf_pretrain', '-p', 'sparsity=1.2']); "
            "assert rc == 2, rc; heavy = [m for m in ('torch', 'transformers', 'pandas') if m in sys.modules]; "
            "assert not heavy, heavy")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
