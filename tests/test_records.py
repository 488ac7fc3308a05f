"""Run records: manifest contents, atomic writes, no secrets; notebooks committed without outputs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from spdf_lib.atomic import atomic_write_text
from spdf_lib.jsonio import read_json, read_jsonl
from spdf_lib.records import Run

REPO = Path(__file__).resolve().parent.parent


def test_manifest_records_what_reproduces_the_run(tmp_path):
    run = Run(tmp_path, "spdf_pretrain", {"sparsity": 0.5, "seed": 3}, seed=3)
    run.add_data({"shakespeare/x.txt": "sha256:abc"})
    run.log({"step": 1, "loss": 2.0})
    run.finish({"eval_loss": 1.5})
    m = read_json(tmp_path / "manifest.json")
    assert m["params"] == {"sparsity": 0.5, "seed": 3} and m["seed"] == 3 and m["status"] == "ok"
    assert m["packages"]["key"]["torch"].startswith("2.13.0")
    assert m["git"]["commit"] is None or len(m["git"]["commit"]) == 40
    assert m["data"] == {"shakespeare/x.txt": "sha256:abc"}
    assert m["start"] <= m["end"] and "platform" in m["device"]
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"step": 1, "loss": 2.0}]
    assert read_json(tmp_path / "results.json") == {"eval_loss": 1.5}


def test_secrets_never_enter_a_record(tmp_path):
    with pytest.raises(ValueError, match="environment variable"):
        Run(tmp_path, "exams", {"api_key": "sk-123"}, seed=0)
    assert not (tmp_path / "manifest.json").exists()


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_text(path, "old")

    class Boom:
        def encode(self, _):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_text(path, Boom())  # type: ignore[arg-type]
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_atomic_writes_get_the_mode_of_any_new_file(tmp_path):
    atomic_write_text(tmp_path / "x.json", "{}")
    (tmp_path / "plain.json").write_text("{}")
    assert (tmp_path / "x.json").stat().st_mode == (tmp_path / "plain.json").stat().st_mode


@pytest.mark.parametrize("notebook", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_carry_no_outputs(notebook):
    nb = nbformat.read(str(notebook), as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "a title cell comes first"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, json.dumps(cell.source[:80])
