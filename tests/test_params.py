"""Parameters: every preset validates, bad files fail fast with one line, notebooks default to `smoke`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spdf_lib import params as P

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", sorted(p for p in (REPO / "params").glob("*/*.yaml") if p.parent.name in P.EXPERIMENTS),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_preset_validates(path):
    P.load(path.parent.name, path)


@pytest.mark.parametrize("experiment", [e for e in P.EXPERIMENTS if (REPO / "params" / e).is_dir()])
def test_smoke_tiny_and_paper_presets_exist(experiment):
    for preset in P.PRESETS:
        assert P.preset_path(experiment, preset).is_file(), f"params/{experiment}/{preset}.yaml"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_parameters_cell_is_the_smoke_preset(notebook):
    defaults = P.notebook_defaults(notebook)
    schema = P.schema_for(notebook.stem)
    smoke = P.read_yaml(P.preset_path(notebook.stem, "smoke"))
    assert set(smoke) <= set(defaults), f"smoke keys missing from the parameters cell: {set(smoke) - set(defaults)}"
    for key, value in defaults.items():
        assert key in schema.model_fields, f"parameters cell defines {key!r}, which the schema does not know"
        expected = smoke.get(key, schema.model_fields[key].default)
        assert value == expected, f"{key}: cell has {value!r}, smoke preset/schema {expected!r}"


def test_an_out_of_range_value_is_one_line_naming_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sparsity: 1.2\n")
    with pytest.raises(P.ParamsError) as e:
        P.load("spdf_pretrain", bad)
    assert str(e.value) == f"{bad}: sparsity: must be less than 1 (got 1.2)"


@pytest.mark.parametrize("text, message", [
    ("sparsty: 0.5", "unknown key 'sparsty'; did you mean 'sparsity'"),
    ("seq_len: long", "seq_len: .*valid integer"),
    ("model_size: gpt5", "unknown model size 'gpt5'"),
    ("[1, 2]", "must be a mapping"),
    ("corpus: shakespeare+pile", "unknown corpus 'pile'"),
])
def test_bad_files_fail_before_any_compute(tmp_path, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text + "\n")
    with pytest.raises(P.ParamsError, match=message) as e:
        P.load("spdf_pretrain", bad)
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
