"""The package's layering, read from the source: the CLI is imported by nothing else, KNOW does not
depend on task-incremental learning, the applications (bench, cli) sit on top, and there are no
import cycles between modules."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "weightlab"


def _module(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """module -> the weightlab modules it imports (at any level of the file, lazy imports included)."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        mod = _module(path)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("weightlab"):
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("weightlab"))
        graph[mod] = deps
    modules = set(graph)
    return {m: {d for d in deps if d in modules and d != m} for m, deps in graph.items()}


GRAPH = _imports()


def test_the_graph_sees_the_package():
    assert {"weightlab.cli", "weightlab.engine.loop", "weightlab.registry", "weightlab.know.forgetting"} <= set(GRAPH)
    assert "weightlab.engine" in GRAPH["weightlab.know.transfer"]


@pytest.mark.parametrize(
    "module", sorted(m for m in GRAPH if not m.startswith("weightlab.cli") and m != "weightlab.__main__")
)
def test_nothing_outside_the_cli_imports_it(module):
    assert not [d for d in GRAPH[module] if d == "weightlab.cli" or d.startswith("weightlab.cli.")]


def test_know_does_not_import_incremental_and_the_core_not_the_applications():
    for module, deps in GRAPH.items():
        if module.startswith("weightlab.know"):
            assert not [d for d in deps if d.startswith("weightlab.incremental")], module
        if not module.startswith(("weightlab.cli", "weightlab.bench", "weightlab.__main__")):
            assert not [d for d in deps if d.startswith("weightlab.bench")], module


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle of ``graph`` (its strongly connected components of more than one module), a
    package's ``__init__`` counted as a module like any other: a submodule that imports its own package
    while the package imports it is a cycle too."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_at_all():
    """Between packages and inside one (a package's __init__ and its submodules included), lazy imports too."""
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize(
    "edges",
    [
        {"p": {"p.a"}, "p.a": {"p"}},  # a submodule importing its own package
        {"p.a": {"p.b"}, "p.b": {"p.a"}, "p": set()},  # two siblings
        {"p.config": {"p.reg"}, "p.reg": {"p.model"}, "p.model": {"p.config"}},  # three, as peft had
    ],
)
def test_the_cycle_check_sees_cycles_inside_a_package(edges):
    assert _cycles(edges)


def test_no_family_checks_outside_the_family_table_and_models():
    """Code outside ``weightlab.models`` asks the family table; it never compares a family name."""
    from weightlab.models.families import FAMILIES

    families = set(FAMILIES)
    for path in SRC.rglob("*.py"):
        if path.is_relative_to(SRC / "models"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                consts = [
                    c
                    for side in [node.left, *node.comparators]
                    for c in ast.walk(side)
                    if isinstance(c, ast.Constant) and c.value in families
                ]
                assert not consts, f"{path.name}:{node.lineno} compares with family {consts[0].value!r}"


def test_recast_adapt_never_passes_through_the_applications():
    """``weightlab recast adapt`` is a library call: the command imports nothing from ``bench``, and the
    library it calls cannot (see above)."""
    tree = ast.parse((SRC / "cli" / "incremental.py").read_text())
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "cmd_adapt"]
    imported = {n.module for n in ast.walk(fn) if isinstance(n, ast.ImportFrom)}
    assert imported and not [m for m in imported if m.startswith("weightlab.bench")], imported
    top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert not [m for m in top if m.startswith("weightlab.bench")], top


@pytest.mark.parametrize("folder", ["bench", "cli"])
def test_the_applications_stay_thin(folder):
    """No file of the applications grows into a second library (about 400 lines at most)."""
    sizes = {p.name: len(p.read_text().splitlines()) for p in (SRC / folder).rglob("*.py")}
    assert not {n: s for n, s in sizes.items() if s > 420}, sizes
