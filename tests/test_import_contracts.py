"""The layout, as contracts a tool checks (import-linter, pyproject.toml ``[tool.importlinter]``):
handler's rooms import only the rooms below them, the function imports none of the build, ops or
test code, the tree's packages import top-down, and no circle exists at any level. Each contract is
also shown to bite: a module that imports against it, added to a copy of the tree, breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

PACKAGES = ("handler", "layers", "training", "hooks", "infra", "devtools", "localaws", "bench", "tests")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_contract_is_kept() -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and done.stdout.count("KEPT") == 4, done.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    """The packages and pyproject.toml, copied: a place to add a module that breaks a contract."""
    root = tmp_path_factory.mktemp("tree")
    for name in (*PACKAGES, "pyproject.toml"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy(source, root / name)
    return root


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        ("handler/recognition/peek.py", "from handler.http import routes\n", "each room imports only"),
        ("handler/peek.py", "import devtools.cli\n", "The function ships alone"),
        ("training/peek.py", "import devtools.cli\n", "The tree, top-down"),
        ("handler/answers/peek.py", "from handler.answers import answering\n", "No import circles"),
    ],
    ids=["room-reaches-up", "function-imports-tools", "tree-reaches-up", "circle"],
)
def test_each_contract_bites(tree_copy: Path, module: str, source: str, broken: str) -> None:
    added = tree_copy / module
    added.write_text(source)
    if broken == "No import circles":  # answering imports peek back: a circle between siblings
        answering = tree_copy / "handler/answers/answering.py"
        original = answering.read_text()
        answering.write_text(original + "\nfrom handler.answers import peek  # noqa\n")
    try:
        done = lint_imports(tree_copy)
    finally:
        added.unlink()
        if broken == "No import circles":
            answering.write_text(original)
    assert done.returncode != 0
    broken_section = done.stdout.split("Broken contracts", 1)[-1]
    assert broken in broken_section, done.stdout
