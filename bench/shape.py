"""Run a measuring process the way Lambda runs a function, so that work "after the answer" is not free.

Lambda gives a function a share of CPU by its memory size (1,769 MB is one vCPU) and freezes the
whole execution environment (every process of the function: its decode workers too) once an answer
is returned, thawing it at the next event. A spare worker forked, or a cleanup run, after the answer
therefore runs during the *next* request. A plain process hides both; this harness shows them.

Parent side, ``Harness``: the child (the "function") and everything it starts live in a cgroup v1
``cpu`` hierarchy with a CFS quota (``vcpu``) and a ``freezer`` hierarchy, frozen between events.
Where cgroups are not writable (or with ``fallback=True``), every process of the child's tree gets
SIGSTOP/SIGCONT instead and there is no quota; ``describe()`` says which, for the reports.

Child side, ``between_events()``: the measuring code calls it between two events ("the answer is
out: freeze me"); it returns once the tree is thawed, and does nothing outside the harness.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from handler.contract import MB_PER_VCPU  # Lambda's CPU share, as the stack computes it

ENV = "BENCH_SHAPE"  # HARNESS_PID:ASK_FD:ANSWER_FD, a pipe of its own: stdout carries PROGRESS/RESULT lines
CGROUPS = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"
STACK_MEMORY_MB: int = json.loads(CDK_JSON.read_text())["context"]["memorySize"]
DEFAULT_VCPU = round(STACK_MEMORY_MB / MB_PER_VCPU, 2)  # the stack's 2,048 MB: 1.16 vCPU


def between_events() -> None:
    """Tell the harness the answer is out; return when the tree is thawed for the next event.

    Only the harness's own child talks to it: descendants that inherit the environment (decode
    workers, a server's execution environments) have another parent and return at once."""
    harness, ask, answer = map(int, (os.environ.get(ENV) or "0:0:0").split(":"))
    if not harness or os.getppid() != harness:
        return
    os.write(ask, b"F")
    if os.read(answer, 1) != b"T":
        raise RuntimeError("the shaping harness went away while this process waited to be thawed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--vcpu`` and ``--no-cgroups`` for a benchmark's command line (``Harness.from_args``)."""
    parser.add_argument(
        "--vcpu", type=float, default=DEFAULT_VCPU,
        help=f"the function's CPU quota (default {DEFAULT_VCPU}: the stack's {STACK_MEMORY_MB} MB)",
    )  # fmt: skip
    parser.add_argument("--no-cgroups", action="store_true", help="SIGSTOP/SIGCONT, no CPU quota")


def _tree(root: int) -> list[int]:
    """``root`` and its living descendants, from every process's parent in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):  # it ended while we looked
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        found.append(pid := todo.pop())
        todo += children.get(pid, [])
    return found


def _is_stopped(pid: int) -> bool:
    """Stopped (``T``), dead or gone: a SIGSTOP lands asynchronously, so ``freeze`` waits for this."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "TtXZ"
    except (OSError, IndexError):
        return True


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class Harness:
    """Children run one at a time, each in Lambda's shape. ``close`` (the ``with`` block's end, on
    errors and Ctrl-C too) kills what is left of them and removes the cgroups."""

    def __init__(self, vcpu: float = DEFAULT_VCPU, pause_s: float = 0.05, fallback: bool = False) -> None:
        self.vcpu, self.pause_s = vcpu, pause_s
        self.freezes, self.frozen = 0, False
        self.groups: dict[str, Path] = {}
        self.process: subprocess.Popen | None = None
        self._stopped: list[int] = []
        self._lock = threading.Lock()
        try:
            if not fallback:
                self._make_groups()
        except OSError:  # not root, or no cgroup v1 hierarchies: signals
            self._remove_groups()
        self.mode = "cgroup" if self.groups else "signals"
        self.why_signals = "asked for" if fallback else "cgroups not writable"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Harness:
        return cls(args.vcpu, fallback=args.no_cgroups)

    def _make_groups(self) -> None:
        name = f"bench-shape-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        mine = dict(line.split(":", 2)[1:] for line in Path("/proc/self/cgroup").read_text().splitlines())
        for controller in ("freezer", "cpu"):
            own = next((path for names, path in mine.items() if controller in names.split(",")), None)
            if own is None:
                raise OSError(f"no cgroup v1 {controller} hierarchy")
            # Below this process's own group, so whatever limits that has still hold.
            self.groups[controller] = CGROUPS / controller / own.lstrip("/") / name
            self.groups[controller].mkdir()
        (self.groups["cpu"] / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (self.groups["cpu"] / "cpu.cfs_quota_us").write_text(str(round(self.vcpu * PERIOD_US)))

    def info(self) -> dict[str, Any]:
        """For a report's JSON: the mode, the quota in vCPUs (None: none), the pause between events."""
        quota = self.vcpu if self.mode == "cgroup" else None
        return {"mode": self.mode, "vcpu": quota, "pause_ms": self.pause_s * 1000}

    def describe(self, frozen: bool = True) -> str:
        """A sentence for a report: the mode, the CPU quota, and whether the tree was frozen."""
        if self.mode == "cgroup":
            memory = STACK_MEMORY_MB if self.vcpu == DEFAULT_VCPU else round(self.vcpu * MB_PER_VCPU)
            shape = (
                f"cgroup v1, a CPU quota of {self.vcpu} vCPU (Lambda's share at {memory:,} MB) for the "
                "function and every process it starts"
            )
        else:
            shape = f"SIGSTOP/SIGCONT fallback ({self.why_signals}), **no CPU quota**"
        if not frozen:
            return f"{shape}; not frozen between events"
        return f"{shape}; the whole process tree frozen between events ({self.pause_s * 1000:.0f} ms each)"

    def popen(self, args: list[str], events: bool = True, **kwargs: Any) -> subprocess.Popen:
        """Start the child inside the cgroups (before its first instruction). ``events``: give it
        the pipe ``between_events`` uses, and freeze the tree each time it asks."""
        procs = [os.fsencode(group / "cgroup.procs") for group in self.groups.values()]

        def enter() -> None:  # in the child between fork and exec: system calls only, nothing allocated
            for path in procs:
                fd = os.open(path, os.O_WRONLY)
                os.write(fd, b"0")  # "0": the writing process itself
                os.close(fd)

        env = {**(kwargs.pop("env", None) or os.environ)}
        env.pop(ENV, None)
        ask, ask_child = os.pipe() if events else (-1, -1)
        answer_child, answer = os.pipe() if events else (-1, -1)
        if events:
            env[ENV] = f"{os.getpid()}:{ask_child}:{answer_child}"
        try:
            fds = (ask_child, answer_child) if events else ()
            self.process = subprocess.Popen(args, env=env, pass_fds=fds, preexec_fn=enter, **kwargs)
        finally:
            for fd in (ask_child, answer_child) if events else ():
                os.close(fd)
        if events:
            threading.Thread(target=self._serve, args=(self.process, ask, answer), daemon=True).start()
        return self.process

    def run(
        self, args: list[str], timeout: float | None = None, **kwargs: Any
    ) -> subprocess.CompletedProcess:
        """``subprocess.run(check=True)`` in Lambda's shape; what the child left running is killed."""
        if kwargs.pop("capture_output", False):
            kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        process = self.popen(args, **kwargs)
        try:
            out, err = process.communicate(timeout=timeout)
        finally:
            self.sweep()
        if process.returncode:
            raise subprocess.CalledProcessError(process.returncode, args, out, err)
        return subprocess.CompletedProcess(args, process.returncode, out, err)

    def _serve(self, process: subprocess.Popen, ask: int, answer: int) -> None:
        """Each request of the child: freeze, pause, thaw, answer. On a failure ``answer`` closes, so
        the child's ``between_events`` raises instead of waiting for ever."""
        try:
            while process.poll() is None:  # not EOF: a forked worker may hold the pipe's other end
                if select.select([ask], [], [], 0.1)[0]:
                    if not os.read(ask, 1):
                        break
                    try:
                        self.freeze()
                        time.sleep(self.pause_s)
                    finally:
                        self.thaw()
                    self.freezes += 1
                    os.write(answer, b"T")
        except OSError:
            pass  # the child ended, or the harness is closing
        finally:
            os.close(ask)
            os.close(answer)

    def freeze(self) -> None:
        """Freeze the child's whole tree; return once every process of it is frozen."""
        with self._lock:
            until = time.monotonic() + 10
            if self.groups:
                state = self.groups["freezer"] / "freezer.state"
                state.write_text("FROZEN")
                while state.read_text().strip() != "FROZEN" and time.monotonic() < until:
                    time.sleep(0.001)
            elif self.process is not None:  # again until no process forked while the others stopped
                while new := [pid for pid in _tree(self.process.pid) if pid not in self._stopped]:
                    for pid in new:
                        _kill(pid, signal.SIGSTOP)
                    self._stopped += new
                    while not all(map(_is_stopped, new)) and time.monotonic() < until:
                        time.sleep(0.001)
            self.frozen = True
            if time.monotonic() >= until:
                raise OSError("the function's tree did not freeze within 10 s")

    def thaw(self) -> None:
        with self._lock:
            if self.groups:
                (self.groups["freezer"] / "freezer.state").write_text("THAWED")
            for pid in self._stopped:
                _kill(pid, signal.SIGCONT)
            self._stopped, self.frozen = [], False

    def sweep(self) -> None:
        """Kill the child and everything it started that still runs (thawed first, so it can die)."""
        self.thaw()
        until = time.monotonic() + 10
        while left := [
            int(pid) for group in self.groups.values() for pid in (group / "cgroup.procs").read_text().split()
        ]:
            if time.monotonic() > until:
                raise OSError(f"processes {left} outlived SIGKILL in {self.groups['cpu']}")
            for pid in left:
                _kill(pid, signal.SIGKILL)
            time.sleep(0.01)
        if self.process is not None and self.process.poll() is None:
            for pid in _tree(self.process.pid):
                _kill(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def _remove_groups(self) -> None:
        for controller, group in list(self.groups.items()):
            if group.is_dir():
                group.rmdir()
            del self.groups[controller]

    def close(self) -> None:
        try:
            self.sweep()
        finally:
            self._remove_groups()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """``count`` processes spinning on the CPU for the block's duration, started from here: outside
    any function's cgroup, so they compete with it for the machine's cores (CI, a busy laptop)."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
