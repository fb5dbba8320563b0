"""``make rollout-demo``: the gate's verdicts and the canary's alarm, as a release engineer reads them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO


@pytest.mark.slow
@pytest.mark.serial  # its gate compares measured costs: alone, never beside another worker
def test_the_demo_stops_every_bad_build_and_rolls_the_buggy_canary_back() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "devtools", "rollout-demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    verdicts = {
        line.strip().split("  ")[0]: line
        for line in shown.stdout.splitlines()
        if "check photos" in line and line.startswith("   ")
    }
    assert "takes traffic" in verdicts["the good build"] and "within its limits" in verdicts["the good build"]
    for build in ("shuffled labels", "double-scaled input"):  # every answer another class
        assert "STOPPED        accuracy 0.000 on 2 check photos (required 0.900" in verdicts[build], verdicts
    # Right labels, far less sure of them than the card's model.
    assert "STOPPED        accuracy 1.000 on 2 check photos" in verdicts["worse weights"], verdicts
    assert float(verdicts["worse weights"].split("largest probability drift ")[1].split()[0]) > 0.3
    # Right answers, a manifest that claims the good build's cost: the gate measures it.
    slow = next(line for line in shown.stdout.splitlines() if line.startswith("   slow, good's manifest"))
    assert "STOPPED        cost: " in slow and "the recorded cost" in slow and "the live version's" in slow
    canary = shown.stdout.split("2. The rollback alarms")[1]
    buggy, good = canary.split("a good version:")
    assert "minute 0-1: 30 invocations, 10 answered 5xx, 0 crashed -> 33 % -> OK" in buggy
    assert "minute 1-2: 30 invocations, 10 answered 5xx, 0 crashed -> 33 % -> ALARM" in buggy
    assert "at about 3 min: CodeDeploy stops the deployment" in buggy
    assert "ALARM" not in good and "no alarm in 5 minutes" in good
