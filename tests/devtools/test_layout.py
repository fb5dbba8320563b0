"""The rooms around the function import one way: ``devtools`` (the ``imgrec`` commands) ->
``localaws`` (stand-ins for AWS) -> ``handler``; ``bench`` and ``tests.corpora`` sit on top (they
run from the checkout). No module of these packages imports itself back through another, at the
top of a file or inside a function, and nothing shipped imports the tests."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import REPO

PACKAGES = ("devtools", "localaws", "bench", "tests/corpora")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (function-level imports included); ``from
    package import name`` counts as ``package.name`` when that is a module of ours."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def graph() -> dict[str, set[str]]:
    files = [path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))]
    ours = {module_name(path): path for path in files}
    return {name: {m for m in imports(path) if m in ours and m != name} for name, path in ours.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in edges:
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_rooms_import_one_way() -> None:
    """``localaws`` needs nothing of ``devtools``; neither ships an import of the tests or the benches."""
    wrong = []
    for package, forbidden in {
        "localaws": ("devtools", "bench", "tests"),
        "devtools": ("bench", "tests"),
    }.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for module in imports(path):
                if module.split(".")[0] in forbidden:
                    wrong.append(f"{path.relative_to(REPO)} imports {module}")
    assert wrong == []
