"""Lock files: every requirements.txt has a requirements.lock that pins the same versions, every
dependency with hashes; what installs them insists on the hashes."""

from __future__ import annotations

import re

import pytest

from tests.support import REPO

REQUIREMENTS = [
    "layers/runtime/requirements.txt",
    "layers/model/requirements.txt",
    "infra/requirements.txt",
    "smoke/requirements.txt",
    "tests/requirements.txt",
]


def pins(text: str) -> dict[str, str]:
    return {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)", text, re.M)
    }


@pytest.mark.parametrize("requirements", REQUIREMENTS)
def test_the_lock_pins_what_the_requirements_pin_with_hashes(requirements: str) -> None:
    wanted = pins((REPO / requirements).read_text())
    lock = (REPO / requirements.replace(".txt", ".lock")).read_text()
    locked = pins(lock)
    assert wanted.items() <= locked.items(), "run `make lock` after changing a requirements file"
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.strip())
    assert entries and all("--hash=sha256:" in entry for entry in entries), "every dependency hashed"


def test_the_dev_lock_includes_every_other_lock() -> None:
    dev = pins((REPO / "tests/requirements.lock").read_text())
    for requirements in ("layers/runtime/requirements.txt", "infra/requirements.txt"):
        assert pins((REPO / requirements).read_text()).items() <= dev.items()


def test_installs_require_hashes() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "--require-hashes -r tests/requirements.lock" in makefile
    build = (REPO / "layers/build.py").read_text()
    assert '"--require-hashes"' in build and "requirements.lock" in build


# Where each part of the tree gets its third-party packages: the function from the locks the image
# installs (the runtime's, and the model's for the optional keras backend); the pre-traffic hook from
# the runtime's (Lambda's boto3); every other part, build and dev time, from the dev lock.
FIRST_PARTY = {
    "handler", "layers", "training", "hooks", "infra", "devtools", "localaws", "bench", "tests", "smoke"
}  # fmt: skip
SOURCES = {
    "handler": ("layers/runtime/requirements.lock", "layers/model/requirements.lock"),
    "hooks": ("layers/runtime/requirements.lock",),
    **dict.fromkeys(
        ("layers", "training", "infra", "devtools", "localaws", "bench", "tests", "smoke"),
        ("tests/requirements.lock",),
    ),
}


def imported(package: str) -> dict[str, str]:
    """Each top-level name ``package`` imports (module level or in a function), with one file."""
    import ast

    found: dict[str, str] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    return found


@pytest.mark.parametrize("package", SOURCES)
def test_every_package_a_part_imports_is_declared_and_locked(package: str) -> None:
    """tqdm and PyYAML once arrived only as another package's dependency: a package imported must
    be pinned in a lock that part installs (by its distribution's name: ``yaml`` is PyYAML)."""
    import sys
    from importlib.metadata import packages_distributions

    locked = {name for lock in SOURCES[package] for name in pins((REPO / lock).read_text())}
    providers = packages_distributions()
    third_party = {
        name: where
        for name, where in imported(package).items()
        if name not in FIRST_PARTY and name not in sys.stdlib_module_names and not name.startswith("_")
    }
    missing = [
        f"{name} ({where})"
        for name, where in sorted(third_party.items())
        if not {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(name, [name])} & locked
    ]
    assert not missing, f"imported by {package}/ but in none of {SOURCES[package]}: {missing}"
