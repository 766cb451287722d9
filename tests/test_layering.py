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


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if not m.startswith("weightlab.cli")))
def test_nothing_outside_the_cli_imports_it(module):
    assert not [d for d in GRAPH[module] if d == "weightlab.cli" or d.startswith("weightlab.cli.")]


def test_know_does_not_import_incremental_and_the_core_not_the_applications():
    for module, deps in GRAPH.items():
        if module.startswith("weightlab.know"):
            assert not [d for d in deps if d.startswith("weightlab.incremental")], module
        if not module.startswith(("weightlab.cli", "weightlab.bench")):
            assert not [d for d in deps if d.startswith("weightlab.bench")], module


def test_no_import_cycles_between_modules():
    # a package's __init__ re-exporting its own submodules is not a cycle; edges into a package mean its __init__
    def edges(m):
        return {d for d in GRAPH[m] if not (m == d.rpartition(".")[0] or d.startswith(m + "."))}

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in edges(m):
            if state.get(d) == 1:
                cycle = stack[stack.index(d) :] + [d]
                # a submodule importing a sibling through its package __init__ while that __init__ imports it
                if not all(a.startswith(b.rpartition(".")[0]) for a, b in zip(cycle, cycle[1:])):
                    pytest.fail("import cycle: " + " -> ".join(cycle))
            elif state.get(d) is None:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


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
