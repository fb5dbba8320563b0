"""The decode sandbox: the function never decodes untrusted bytes itself.

Every image is decoded in a worker process held by the operating system to an address-space cap
(``RLIMIT_AS``, ``DECODE_MEMORY_MB``) and by this process to a deadline (``DECODE_DEADLINE_MS``):
past it the worker is killed and replaced. An image that needs more time or memory, or that crashes
its decoder (a segfault included), answers 413 ``image_too_costly``; the other images of its
batch, the function and the next request are unaffected. These bounds hold whatever the file's
format tricks: they do not depend on knowing them (the structure walk in ``formats`` still refuses
known bombs first, in milliseconds).

Workers are forked by a *zygote*: a fresh interpreter started once per container, before the model
loads (``DecodeSandbox.start``), that has imported only Pillow, numpy and the decoder. Forking the
function itself once the model's threads run could deadlock the child; forking the zygote costs a
few milliseconds. The sockets are plain Unix socketpairs (Lambda has no ``/dev/shm``: no
``multiprocessing`` queues, pools or semaphores). With SnapStart the zygote and workers start during
init, so they are in the snapshot; a worker or zygote that did not survive a restore is found dead
at its first image and replaced, the same road as a crash.

One sandbox serves one function instance, which Lambda gives one event at a time: not thread-safe,
and it need not be.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import send_handle
from pathlib import Path

import numpy as np

from handler.config import Settings
from handler.recognition.errors import (
    BadRequest,
    Code,
    PayloadTooLarge,
    Refusal,
    Unprocessable,
    UnsupportedMediaType,
)
from handler.recognition.imaging import INPUT_SIZE, DecodeLimits
from handler.recognition.sandbox_worker import pack, unpack

DEFAULT_DECODER = "handler.recognition.imaging:to_pixels"
PIXELS_SHAPE = (*INPUT_SIZE, 3)
PIXELS_BYTES = int(np.prod(PIXELS_SHAPE))
START_TIMEOUT_S = 30.0  # the zygote imports Pillow and numpy: well under a second, even cold
REFUSALS = {400: BadRequest, 413: PayloadTooLarge, 415: UnsupportedMediaType, 422: Unprocessable}
# Workers reserve little: one thread, numpy's BLAS on one thread (its buffers are address space).
WORKER_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}


class SandboxError(RuntimeError):
    """The sandbox cannot start (a broken install): the function must not start either."""


def too_costly(why: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"Decoding this image {why}; it is refused.", Code.IMAGE_TOO_COSTLY)


@dataclass
class Worker:
    pid: int
    connection: Connection

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGKILL)
        self.connection.close()


def peak_rss_kb(pid: int) -> int:
    """A process's peak resident memory (``VmHWM``), 0 when it is gone or not on Linux."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)


def _refusal(header: dict) -> Refusal:
    """A worker's refusal, checked: a known status and code, a bounded message."""
    kind = REFUSALS.get(header.get("status"))  # type: ignore[arg-type]
    code, message = header.get("code"), header.get("message")
    if kind is None or code not in Code.__members__.values() or not isinstance(message, str):
        return too_costly("stopped its decoder")
    return kind(message[:300], Code(code))


def _pixels(frame: bytes) -> tuple[np.ndarray | Refusal, bool]:
    """A worker's answer: the 224x224 RGB pixels or a refusal, and whether the worker retires."""
    header, payload = unpack(frame)
    if header.get("ok") is True:
        if header.get("shape") != list(PIXELS_SHAPE) or len(payload) != PIXELS_BYTES:
            raise ValueError("answer of the wrong shape")
        return np.frombuffer(payload, dtype=np.uint8).reshape(PIXELS_SHAPE).copy(), False
    return _refusal(header), header.get("retire") is True  # after a MemoryError or a decoder bug


class DecodeSandbox:
    """``workers`` decode processes under ``memory_bytes`` of address space each, fed by ``decode``."""

    def __init__(
        self, workers: int, memory_bytes: int, deadline_s: float, decoder: str = DEFAULT_DECODER
    ) -> None:
        self.size = max(1, workers)
        self.memory_bytes = memory_bytes
        self.deadline_s = deadline_s
        self.decoder = decoder
        self._zygote: subprocess.Popen | None = None
        self._control: Connection | None = None
        self._workers: list[Worker] = []
        self.replaced = 0  # workers killed or lost and replaced so far (tests and logs read it)
        self.peak_worker_kb = 0  # the most resident memory a replaced worker had held (Linux)
        self._crashed: set[int] = set()

    @classmethod
    def start(
        cls, workers: int, memory_bytes: int, deadline_s: float, decoder: str = DEFAULT_DECODER
    ) -> DecodeSandbox:
        """Start the zygote and the workers, and wait until they are ready."""
        return cls.launch(workers, memory_bytes, deadline_s, decoder).ready()

    @classmethod
    def launch(
        cls, workers: int, memory_bytes: int, deadline_s: float, decoder: str = DEFAULT_DECODER
    ) -> DecodeSandbox:
        """Start the zygote without waiting for it: it boots (a fresh interpreter importing Pillow
        and numpy) while the function imports the rest and loads the model. ``ready`` finishes."""
        sandbox = cls(workers, memory_bytes, deadline_s, decoder)
        sandbox._launch_zygote()
        return sandbox

    @classmethod
    def for_settings(cls, settings: Settings) -> DecodeSandbox:
        """Launched (not yet ready) with the function's decode settings."""
        return cls.launch(
            workers=settings.decode_workers,
            memory_bytes=settings.decode_memory_mb * 1024 * 1024,
            deadline_s=settings.decode_deadline_ms / 1000,
            decoder=settings.decoder,
        )

    def ready(self) -> DecodeSandbox:
        """Wait for the zygote, then fork the workers (idempotent)."""
        if not self._workers:
            self._await_zygote()
            self._workers = [self._fork() for _ in range(self.size)]
        return self

    def _start_zygote(self) -> None:
        self._launch_zygote()
        self._await_zygote()

    def _launch_zygote(self) -> None:
        ours, theirs = socket.socketpair()
        environment = {**os.environ, **WORKER_ENVIRONMENT, "PYTHONPATH": os.pathsep.join(sys.path)}
        command = [sys.executable, "-m", "handler.recognition.sandbox_worker"]
        self._zygote = subprocess.Popen(
            [*command, self.decoder, str(theirs.fileno()), str(self.memory_bytes)],
            pass_fds=(theirs.fileno(),),
            env=environment,
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        theirs.close()
        self._control = Connection(ours.detach())

    def _await_zygote(self) -> None:
        assert self._control is not None
        if not self._control.poll(START_TIMEOUT_S):
            raise SandboxError("the decode sandbox did not start")
        try:
            header, _ = unpack(self._control.recv_bytes())
        except (EOFError, OSError, ValueError) as error:
            raise SandboxError(f"the decode sandbox did not start: {error}") from None
        if not header.get("ready"):
            raise SandboxError(f"the decode sandbox cannot load its decoder: {header.get('error')}")

    def _fork(self) -> Worker:
        """A new worker from the zygote (restarting the zygote if it is gone)."""
        for attempt in (1, 2):
            ours, theirs = socket.socketpair()
            try:
                assert self._control is not None and self._zygote is not None
                send_handle(self._control, theirs.fileno(), self._zygote.pid)
                header, _ = unpack(self._control.recv_bytes())
                return Worker(int(header["pid"]), Connection(ours.detach()))
            except (EOFError, OSError, ValueError, KeyError, AssertionError):
                ours.close()
                if attempt == 2:
                    raise SandboxError("the decode sandbox cannot start a worker") from None
                self._stop_zygote()
                self._start_zygote()
            finally:
                theirs.close()
        raise AssertionError("unreachable")

    def _alive(self, worker: Worker) -> Worker:
        """``worker``, or a fresh one if it died while idle (killed from outside, or lost in a
        SnapStart restore): an idle worker never writes, so anything to read means its end closed."""
        try:
            gone = worker.connection.poll(0)
        except OSError:
            gone = True
        return self._replace(worker) if gone else worker

    def _replace(self, worker: Worker) -> Worker:
        self.peak_worker_kb = max(self.peak_worker_kb, peak_rss_kb(worker.pid))
        worker.kill()
        self.replaced += 1
        fresh = self._fork()
        self._workers[self._workers.index(worker)] = fresh
        return fresh

    def decode(
        self,
        images: Sequence[bytes | Refusal],
        limits: DecodeLimits,
        batch_deadline_s: float | None = None,
    ) -> list[np.ndarray | Refusal]:
        """The 224x224 RGB pixels of each image, or why not, in order; images already refused stay
        refused. Each image has ``deadline_s``; with ``batch_deadline_s`` the whole batch has that
        too (an API request), and images still waiting then are refused unread."""
        results: list[np.ndarray | Refusal | None] = [
            item if isinstance(item, Refusal) else None for item in images
        ]
        waiting = deque(index for index, item in enumerate(images) if not isinstance(item, Refusal))
        self._crashed: set[int] = set()  # images whose worker died once: tried again, once
        idle = list(self._workers)
        busy: dict[Connection, tuple[Worker, int, float]] = {}
        header = {"max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels}
        batch_ends = time.monotonic() + batch_deadline_s if batch_deadline_s is not None else None
        while waiting or busy:
            while waiting and idle:
                index = waiting.popleft()
                if batch_ends is not None and time.monotonic() >= batch_ends:
                    results[index] = too_costly("and the rest of its request took too long")
                    continue
                worker = self._alive(idle.pop())
                worker.connection.send_bytes(pack(header, images[index]))  # type: ignore[arg-type]
                busy[worker.connection] = (worker, index, time.monotonic() + self.deadline_s)
            if busy:
                idle.extend(self._collect(busy, results, batch_ends, waiting))
        return results  # type: ignore[return-value]

    def _collect(
        self,
        busy: dict[Connection, tuple[Worker, int, float]],
        results: list,
        batch_ends: float | None,
        waiting: deque[int],
    ) -> list[Worker]:
        """Wait for the first answer or deadline; return the workers free again (fresh ones for
        those killed or lost). An image whose worker died is tried once more on a fresh worker (a
        worker killed from outside must not fail a good photo); a second death refuses it."""
        first_deadline = min(ends for _, _, ends in busy.values())
        if batch_ends is not None:
            first_deadline = min(first_deadline, batch_ends)
        ready = wait(list(busy), timeout=max(0.0, first_deadline - time.monotonic()))
        freed = []
        for connection in ready:
            worker, index, _ = busy.pop(connection)  # type: ignore[index]
            try:
                results[index], retire = _pixels(connection.recv_bytes())  # type: ignore[union-attr]
            except (EOFError, OSError, ValueError):  # it died (a crash, the memory cap) or garbled
                if index in self._crashed:
                    results[index] = too_costly("stopped its decoder")
                else:
                    self._crashed.add(index)
                    waiting.appendleft(index)
                retire = True
            freed.append(self._replace(worker) if retire else worker)
        now = time.monotonic()
        for connection, (worker, index, ends) in list(busy.items()):
            batch_over = batch_ends is not None and now >= batch_ends
            if now >= ends or batch_over:
                del busy[connection]
                why = f"takes longer than {self.deadline_s * 1000:.0f} ms"
                results[index] = too_costly(
                    "and the rest of its request took too long" if batch_over else why
                )
                freed.append(self._replace(worker))
        return freed

    def _stop_zygote(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._zygote is not None:
            with contextlib.suppress(ProcessLookupError):
                self._zygote.kill()
            self._zygote.wait(timeout=10)
            self._zygote = None

    def peaks_kb(self) -> dict[str, int]:
        """Peak resident memory of the sandbox's processes: the zygote, the busiest live worker and
        the busiest replaced one (``make hostile`` adds them to the function's own)."""
        live = max((peak_rss_kb(worker.pid) for worker in self._workers), default=0)
        zygote = peak_rss_kb(self._zygote.pid) if self._zygote is not None else 0
        return {"zygote": zygote, "worker": max(live, self.peak_worker_kb)}

    def pids(self) -> list[int]:
        return [worker.pid for worker in self._workers]

    def close(self) -> None:
        """Kill every worker and the zygote."""
        for worker in self._workers:
            worker.kill()
        self._workers = []
        self._stop_zygote()

    def __enter__(self) -> DecodeSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
