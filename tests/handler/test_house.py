"""How handler/ is built, checked: the constants import nothing and change nothing, the core's
types are plain dataclasses documented by the http room's schemas, and no module keeps state per
thread for the local server's sake (a function instance runs one event at a time)."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import subprocess
import sys

from tests.support import REPO

HANDLER = REPO / "handler"
PROBE = """
import json, os, sys
before = dict(os.environ)
import handler.contract
print(json.dumps({
    "changed": sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)),
    "modules": sorted(m for m in sys.modules if m == "handler" or m.startswith("handler.")),
}))
"""


def test_importing_the_constants_changes_nothing() -> None:
    """infra and the dev tools import ``handler.contract``: that must not set Powertools' variables
    (or anything else) in their process, nor load any other part of the function."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=clean, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {"changed": [], "modules": ["handler", "handler.contract"]}


def _imports(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_module_keeps_state_per_thread() -> None:
    """No ``threading`` (locks, thread-locals) in the function: Lambda runs one event per process at
    a time. Thread pools for I/O and decoding (``concurrent.futures``) are the only threads; the decode
    sandbox's one lock is what its decode threads share (the spare workers, the zygote)."""
    offenders = sorted(
        str(path.relative_to(REPO)) for path in HANDLER.rglob("*.py") if "threading" in _imports(path)
    )
    assert offenders == ["handler/recognition/sandbox.py"]


def test_rooms_depend_one_way() -> None:
    """recognition knows nothing of http or records; records nothing of http; no room reaches back
    to the door (the function, its runtime, the entry points), which is built from the rooms."""
    door = ("handler.app", "handler.function", "handler.runtime")
    forbidden = {
        "recognition": ("handler.http", "handler.records", *door),
        "records": ("handler.http", "handler.app", "handler.function"),
        "http": ("handler.app", "handler.function"),
    }
    for room, banned in forbidden.items():
        for path in (HANDLER / room).rglob("*.py"):
            bad = [name for name in _imports(path) if name.startswith(banned)]
            assert bad == [], f"{path.relative_to(REPO)} imports {bad}"


def test_the_core_returns_dataclasses_the_answers_document() -> None:
    from handler.http import schemas
    from handler.recognition import model

    for core, documented in ((model.Prediction, schemas.Prediction), (model.ModelInfo, schemas.ModelInfo)):
        assert dataclasses.is_dataclass(core)
        assert [f.name for f in dataclasses.fields(core)] == list(documented.model_fields)
    prediction = model.Prediction(label="tabby", probability=0.5, class_id="n02123045")
    assert schemas.Prediction.model_validate(prediction.to_dict()).label == "tabby"
