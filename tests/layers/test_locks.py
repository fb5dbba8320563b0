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
