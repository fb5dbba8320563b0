"""``bench/shape.py``: the measuring harness freezes the function's whole process tree between events
(cgroup freezer, or SIGSTOP where cgroups are not writable), holds it to a CPU quota, and leaves
nothing behind. Progress is read from counters the processes write, never from timings."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import shape
from bench.shape import Harness

# A dozen interpreters and 0.3 s freezes (about 5 s); serial: freezes and CPU shares measured in wall
# time, alone, not beside another worker.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

REPO = Path(__file__).resolve().parents[2]
# The "function": starts a grandchild that spins a counter, then spins its own ("spin") or asks to
# be frozen N times ("events N"). The first line it prints is the grandchild's pid.
CHILD = r"""
import os, struct, subprocess, sys, time
from bench.shape import between_events

def spin(path):
    fd, n = os.open(path, os.O_WRONLY | os.O_CREAT), 0
    while True:
        n += 1
        if n % 1000 == 0:
            os.pwrite(fd, struct.pack("<Q", n), 0)

if sys.argv[1] == "grandchild":
    spin(sys.argv[2])
grandchild = subprocess.Popen([sys.executable, __file__, "grandchild", sys.argv[3]])
print(grandchild.pid, flush=True)
if sys.argv[1] == "spin":
    spin(sys.argv[2])
while not os.path.exists(sys.argv[3]) or os.path.getsize(sys.argv[3]) < 8:  # the grandchild counts
    time.sleep(0.01)
for _ in range(int(sys.argv[4])):
    between_events()
print("done", flush=True)
grandchild.kill()
"""


@pytest.fixture
def start(tmp_path: Path) -> Callable[..., tuple[subprocess.Popen, int, Callable[[], tuple[int, int]]]]:
    """Start ``CHILD`` under a harness: the process, its grandchild's pid, and a reader of both counters."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    mine, theirs = tmp_path / "child.count", tmp_path / "grandchild.count"

    def read(path: Path) -> int:
        data = path.read_bytes() if path.exists() else b""
        return struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else 0

    def counters() -> tuple[int, int]:
        return read(mine), read(theirs)

    def begin(harness: Harness, mode: str, events: int = 0) -> tuple[subprocess.Popen, int, Callable]:
        args = [sys.executable, str(script), mode, str(mine), str(theirs), str(events)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = harness.popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        grandchild = int(process.stdout.readline())
        moving = [1, 1] if mode == "spin" else [0, 1]
        until = time.monotonic() + 20
        while any(c < m for c, m in zip(counters(), moving, strict=True)):
            assert time.monotonic() < until, "the counters never started"
            time.sleep(0.01)
        return process, grandchild, counters

    return begin


def gone(pid: int) -> bool:
    """Ended (a zombie waiting for its new parent counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "XZ"
    except OSError:
        return True


@pytest.mark.parametrize("fallback", [False, True], ids=["cgroup", "sigstop"])
def test_a_frozen_tree_makes_no_progress(start, fallback: bool) -> None:
    with Harness(fallback=fallback) as harness:
        assert harness.mode == ("signals" if fallback else "cgroup")
        _, _, counters = start(harness, "spin")
        harness.freeze()
        frozen = counters()
        time.sleep(0.3)
        assert counters() == frozen, "the child or the grandchild counted while frozen"
        harness.thaw()
        time.sleep(0.3)
        child, grandchild = counters()
        assert child > frozen[0] and grandchild > frozen[1], "thawed, both count again"


@pytest.mark.parametrize("fallback", [False, True], ids=["cgroup", "sigstop"])
def test_between_events_freezes_the_tree_until_the_next_event(start, fallback: bool) -> None:
    with Harness(pause_s=0.6, fallback=fallback) as harness:
        process, _, counters = start(harness, "events", events=2)
        until = time.monotonic() + 10
        while not harness.frozen:  # the child asked: the harness freezes it
            assert time.monotonic() < until, "between_events never froze the function"
            time.sleep(0.001)
        frozen = counters()
        time.sleep(0.3)
        assert counters() == frozen, "the grandchild counted while the function waited between events"
        assert process.stdout.readline() == "done\n"
        assert process.wait(timeout=10) == 0
        assert harness.freezes == 2


def test_the_function_and_its_grandchild_share_the_cpu_quota(start) -> None:
    with Harness(vcpu=0.5) as harness:
        process, grandchild, _ = start(harness, "spin")
        for pid in (process.pid, grandchild):
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
            its = dict(line.split(":", 2)[1:] for line in lines)  # controllers -> its group
            cpu = next(path for names, path in its.items() if "cpu" in names.split(","))
            folder = shape.CGROUPS / "cpu" / cpu.lstrip("/")
            assert folder == harness.groups["cpu"]
            assert (folder / "cpu.cfs_quota_us").read_text().split() == ["50000"]
            assert (folder / "cpu.cfs_period_us").read_text().split() == ["100000"]
            assert shape.CGROUPS / "freezer" / its["freezer"].lstrip("/") == harness.groups["freezer"]
        groups = list(harness.groups.values())
    assert not [group for group in groups if group.exists()]
    assert harness.info() == {"mode": "cgroup", "vcpu": 0.5, "pause_ms": 50.0}  # for the report, after


@pytest.mark.parametrize("fallback", [False, True], ids=["cgroup", "sigstop"])
def test_an_interrupted_run_leaves_no_process_and_no_cgroup(start, fallback: bool) -> None:
    with pytest.raises(KeyboardInterrupt), Harness(fallback=fallback) as harness:
        process, grandchild, _ = start(harness, "spin")
        groups = list(harness.groups.values())
        assert len(groups) == (0 if fallback else 2)
        harness.freeze()
        raise KeyboardInterrupt
    assert not [group for group in groups if group.exists()]
    until = time.monotonic() + 5
    while not (gone(process.pid) and gone(grandchild)):
        assert time.monotonic() < until, "a process of the function outlived the harness"
        time.sleep(0.01)


def test_without_writable_cgroups_it_falls_back_and_says_so(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shape, "CGROUPS", tmp_path / "none")
    with Harness() as harness:
        assert harness.mode == "signals"
        assert harness.info()["vcpu"] is None
        assert "cgroups not writable" in harness.describe() and "no CPU quota" in harness.describe()
        done = harness.run([sys.executable, "-c", "print('hello')"], capture_output=True, text=True)
        assert done.stdout == "hello\n"
        with pytest.raises(subprocess.CalledProcessError):
            harness.run([sys.executable, "-c", "raise SystemExit(3)"])


def test_the_default_quota_is_the_stacks_memory_share() -> None:
    assert shape.STACK_MEMORY_MB == 2048
    assert shape.DEFAULT_VCPU == 1.16


def test_between_events_is_a_no_op_outside_the_harness(monkeypatch) -> None:
    monkeypatch.delenv(shape.ENV, raising=False)
    shape.between_events()
    # A descendant that inherited the variable (its parent is not the harness) ignores it too.
    monkeypatch.setenv(shape.ENV, f"{os.getpid()}:{2**20}:{2**20 + 1}")
    shape.between_events()
