"""The shape of the library: no import circles (module-level or inside functions), no module over 500 lines, and
a core that imports nothing from the papers' packages, and no paper's package that imports another's."""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parent.parent / "spdf_lib"
PAPERS = ("spdf_lib.spdf", "spdf_lib.primer", "spdf_lib.exams")
MAX_LINES = 500
MAX_FUNCTION_LINES = 80  # one screen
# The entry point and the report: they put the papers together, so they may import them.
TOP = ("spdf_lib.cli", "spdf_lib.report")


def _modules() -> dict[str, Path]:
    out = {}
    for path in LIB.rglob("*.py"):
        parts = path.relative_to(LIB.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the kit's modules it imports anywhere in its body (functions included)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                for a in node.names:  # `from spdf_lib import params` imports the module spdf_lib.params
                    targets.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_over_500_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_core_imports_nothing_from_the_papers():
    core = {name: deps for name, deps in import_graph().items()
            if not name.startswith(PAPERS) and name not in TOP}
    leaks = {name: sorted(d for d in deps if d.startswith(PAPERS)) for name, deps in core.items()}
    assert {k: v for k, v in leaks.items() if v} == {}


def paper_of(module: str) -> str | None:
    """`spdf_lib.spdf` for `spdf_lib.spdf.finetune`; None for a core module."""
    return next((p for p in PAPERS if module == p or module.startswith(p + ".")), None)


def cross_paper_imports(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Paper module -> the modules of *other* papers' packages it imports."""
    out = {name: sorted(d for d in deps if paper_of(d) not in (None, paper_of(name)))
           for name, deps in graph.items() if paper_of(name)}
    return {k: v for k, v in out.items() if v}


def test_no_paper_imports_another():
    assert cross_paper_imports(import_graph()) == {}


def test_the_cross_paper_check_finds_an_edge():
    graph = {
        "spdf_lib.primer.run": {"spdf_lib.spdf.pretrain", "spdf_lib.train"},
        "spdf_lib.spdf.x": {"spdf_lib.spdf.y"},
    }
    assert cross_paper_imports(graph) == {"spdf_lib.primer.run": ["spdf_lib.spdf.pretrain"]}


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """Function (or method) name -> its lines, decorators and docstring included, for those over `limit`."""
    out = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if (n := node.end_lineno - first + 1) > limit:
                out[f"{node.name}:{node.lineno}"] = n
    return out


def test_no_function_over_one_screen():
    long = {f"{name}.{fn}": n for name, path in _modules().items()
            for fn, n in long_functions(path.read_text(encoding="utf-8")).items()}
    assert long == {}


def test_the_length_check_counts_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    assert long_functions(f"def f():\n{body}\n") == {"f:1": 81}
    assert long_functions(f"def f():\n{body}\n", limit=81) == {}


def undocumented_modules(package: Path) -> list[str]:
    """The modules (and, for the kit's root, packages) of `package` that its `__init__` docstring does not name
    as `name`."""
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))) or ""
    names = [p.stem for p in package.glob("*.py") if p.stem != "__init__"]
    names += [p.name for p in package.iterdir() if (p / "__init__.py").is_file()]
    return sorted(n for n in names if f"`{n}`" not in doc)


def test_package_docstrings_list_their_modules():
    packages = [LIB, *(p.parent for p in LIB.glob("*/__init__.py"))]
    assert {p.name: missing for p in packages if (missing := undocumented_modules(p))} == {}


def test_the_docstring_check_finds_a_missing_module(tmp_path):
    (tmp_path / "__init__.py").write_text('"""Modules: `a`."""\n')
    (tmp_path / "a.py").write_text("")
    (tmp_path / "b.py").write_text("")
    assert undocumented_modules(tmp_path) == ["b"]


def test_the_readme_code_map_names_every_module():
    """The README's code map ("Where the code is") names every module and package of the kit as `name`."""
    readme = (LIB.parent / "README.md").read_text(encoding="utf-8")
    code_map = readme.split("## Where the code is", 1)[1].split("\n## ", 1)[0]
    names = {p.stem for p in LIB.rglob("*.py") if p.stem != "__init__"}
    names |= {p.parent.name for p in LIB.glob("*/__init__.py")}
    assert sorted(n for n in names if not any(f"`{form}`" in code_map for form in (n, f"{n}/", f"spdf_lib/{n}/"))) == []
