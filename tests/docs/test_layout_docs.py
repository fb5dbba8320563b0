"""The README's "How it works" and docs/architecture.md name every room and every module: pure
text against the tree, so a module added, moved or renamed without its line fails the fast tier."""

from __future__ import annotations

import re

from tests.support import REPO

PACKAGES = ("handler", "devtools", "localaws", "training", "layers", "tests/corpora")


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = re.search(r"^## ", text[start + len(heading) :], flags=re.MULTILINE)
    return text[start : start + len(heading) + following.start()] if following else text[start:]


def modules(package: str) -> set[str]:
    """``name.py`` of every module of ``package`` (packages' ``__init__``/``__main__`` aside)."""
    return {
        path.name
        for path in (REPO / package).rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py") and "__pycache__" not in path.parts
    }


def rooms() -> set[str]:
    return {path.name for path in (REPO / "handler").iterdir() if (path / "__init__.py").exists()}


def unnamed(doc: str, names: set[str]) -> list[str]:
    return sorted(name for name in names if f"`{name}" not in doc and f"{name}`" not in doc)


def test_the_readme_names_every_room_and_module_of_the_function() -> None:
    how = section((REPO / "README.md").read_text(), "## How it works")
    assert unnamed(how, modules("handler")) == []
    assert unnamed(how, {f"{room}/" for room in rooms()}) == []
    assert unnamed(how, {f"{package}/" for package in PACKAGES[1:]}) == []


def test_the_architecture_guide_names_every_module_of_the_tree() -> None:
    guide = (REPO / "docs" / "architecture.md").read_text()
    for package in PACKAGES:
        assert unnamed(guide, modules(package)) == [], package


def test_a_module_added_without_its_line_is_noticed() -> None:
    how = section((REPO / "README.md").read_text(), "## How it works")
    assert unnamed(how, {"answering.py", "newcomer.py"}) == ["newcomer.py"]
