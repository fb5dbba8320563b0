"""The smoke suite (``make smoke API_URL=…``) against the local server with uploads on: the same
suite a deploy runs against staging and production, so it cannot rot."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO, cli_server

pytestmark = [pytest.mark.slow]


def smoke(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "smoke", "--api-url", url, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_smoke_suite_passes_against_the_local_server() -> None:
    with cli_server("--s3") as url:
        passed = smoke(url)
        wrong = smoke(url, "--expect-top1", "golden_retriever")
    assert passed.returncode == 0 and "8 passed" in passed.stdout, passed.stdout + passed.stderr
    assert "skipped" not in passed.stdout
    # It can fail: a model that answers another label fails the four classification checks.
    assert wrong.returncode == 1 and "4 failed" in wrong.stdout, wrong.stdout
