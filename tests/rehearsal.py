"""Run the API fixtures in a fresh interpreter that sees only a given set of directories.

``python -I -S``: no site-packages, no user site, no PYTHON* variables; ``sys.path`` is the
standard library plus exactly the roots given (a task root, a layer's ``python/``), as in Lambda.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import EVENTS

SCRIPT = r"""
import json, sys
roots = json.loads(sys.argv[1])
sys.path[:0] = roots
try:
    import tensorflow  # noqa: F401
    sys.exit("tensorflow is importable: the litert package must not need it")
except ImportError:
    pass

class Context:
    function_name = "rehearsal"
    function_version = "$LATEST"
    memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:rehearsal"
    aws_request_id = "rehearsal"
    def get_remaining_time_in_millis(self):
        return 30000

from handler import app
assert app.__file__.startswith(roots[0]), app.__file__
answers = {}
for path in sys.argv[2:]:
    result = app.api_handler(json.load(open(path)), Context())
    answers[path.rsplit("/", 1)[-1]] = {"status": result["statusCode"], "body": json.loads(result["body"])}
print("REHEARSAL " + json.dumps(answers))
"""


def run_fixtures(roots: list[Path], env: dict[str, str]) -> dict[str, dict]:
    """Answers to every ``events/api-*.json`` fixture, checked against ``expected.json``."""
    fixtures = sorted(str(p) for p in EVENTS.glob("api-*.json"))
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", SCRIPT, json.dumps([str(r) for r in roots]), *fixtures],
        env={
            "PATH": "/usr/bin:/bin",
            "POWERTOOLS_SERVICE_NAME": "image-recognition",
            "POWERTOOLS_METRICS_NAMESPACE": "ImageRecognition",
            "POWERTOOLS_TRACE_DISABLED": "true",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    answers = json.loads(done.stdout.split("REHEARSAL ", 1)[1])
    expected = json.loads((EVENTS / "expected.json").read_text())
    for name, answer in answers.items():
        assert answer["status"] == expected[name]["status"], (name, answer)
        if "top1" in expected[name]:
            assert answer["body"]["predictions"][0]["label"] == expected[name]["top1"]
    assert answers["api-rest-predict-multipart.json"]["body"]["predictions"][0]["label"] == "military_uniform"
    return answers
