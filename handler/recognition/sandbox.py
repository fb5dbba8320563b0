"""The decode sandbox: the function never decodes untrusted bytes itself.

Every image is decoded in a worker process of its own, which decodes nothing else: whatever a
decoder leaves behind (its state, or an exploit) dies with its process, before any other image of
any caller. The kernel holds each worker to an address-space cap (``RLIMIT_AS``), a CPU-time limit
(``RLIMIT_CPU``) and a seccomp filter (``seccomp``); this process checks finer bounds, all on one
path (``_await``): the worker's **CPU time**, read from ``/proc`` (the work an image costs, however
the CPU is shared), **wall time** for liveness only (a decoder that sleeps uses no CPU), and an API
request's images together (a CPU budget and an end). Past a bound, over the memory cap, or crashed,
the image answers 413 ``image_too_costly``; the other images and the function are unaffected.

Workers are forked by a *zygote*, a fresh interpreter started before the model loads (forking the
function once the model's threads run could deadlock the child). ``size`` spares wait, forked and
warm; taking one asks the zygote for its successor at once, so the fork overlaps the decode and the
model call, and ``replenish`` waits for it before the answer leaves: Lambda freezes every process
once an answer is returned, so work left for later would run during the next request. The image
travels as a ``memfd`` (Lambda has no ``/dev/shm``): the body is copied once.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from handler.config import DecodeSettings
from handler.errors import (
    BadRequest,
    Code,
    PayloadTooLarge,
    Refusal,
    Unprocessable,
    UnsupportedMediaType,
    too_costly,
)
from handler.recognition.imaging import DecodeLimits
from handler.recognition.sandbox_worker import (
    FRAME,
    PIXELS_SHAPE,
    harden,
    peak_rss_kb,
    receive_header,
    send_header,
)

DEFAULT_DECODER = "handler.recognition.imaging:to_pixels"
START_TIMEOUT_S = 10.0  # the zygote imports Pillow and numpy: well under a second, even cold
FORK_TIMEOUT_S = 10.0  # a fork and a warm-up take milliseconds; silence this long means it is stuck
CHECK_S = 0.02  # how often a busy worker's CPU time and clock are checked
MAX_ANSWER_HEADER = 1024
# What the worker may never do to its image's memfd: write it, grow it, shrink it, or unseal it.
SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL
REFUSALS = {400: BadRequest, 413: PayloadTooLarge, 415: UnsupportedMediaType, 422: Unprocessable}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Workers reserve little: one thread, numpy's BLAS on one thread (its buffers are address space).
WORKER_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
# What the zygote (and so every worker) sees of the function's environment: no AWS credentials, no
# Runtime API address, nothing but what running Python and its libraries needs.
INHERITED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "TMPDIR", "OPENBLAS_CORETYPE",
             "OPENBLAS_L2_SIZE")  # fmt: skip


class SandboxError(RuntimeError):
    """The sandbox cannot start (a broken install): the function must not start either."""


class Lost(Exception):
    """A worker that died, or said something it must not: its image is tried once more."""


@dataclass(frozen=True)
class Bounds:
    """What one image, and one API request's images together, may cost."""

    cpu_s: float  # one image's CPU time
    wall_s: float  # one image's wall time: liveness only
    request_cpu_s: float  # an API request's images together
    request_wall_s: float

    @classmethod
    def for_settings(cls, settings: DecodeSettings) -> Bounds:
        return cls(
            cpu_s=settings.cpu_ms / 1000,
            wall_s=settings.wall_ms / 1000,
            request_cpu_s=settings.request_cpu_ms / 1000,
            request_wall_s=settings.request_deadline_ms / 1000,
        )


class Worker:
    """One decode process, for one image: its socket, and its pid once it said it is ready."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pid = 0
        self.pidfd = -1  # the process itself, whatever later reuses its pid number
        self.confined = False  # whether its seccomp filter is on (Linux x86_64 and aarch64)

    def wait_ready(self, timeout: float, forbidden: set[int]) -> None:
        """Read its "ready" (sent before it saw any image, so its pid can be trusted)."""
        if self.pid:
            return
        self.sock.settimeout(timeout)
        try:
            header, _ = receive_header(self.sock, MAX_ANSWER_HEADER)
        except (OSError, EOFError, ValueError) as error:
            raise Lost(f"not ready: {error}") from None
        pid = header.get("ready")
        if type(pid) is not int or pid <= 1 or pid in forbidden:
            raise Lost("not ready")
        try:
            self.pidfd = os.pidfd_open(pid)
        except OSError as error:
            raise Lost(f"not ready: {error}") from None
        self.pid, self.confined = pid, header.get("confined") is True

    def dead(self) -> bool:
        """An idle worker never writes: anything to read (its socket closed) means it is gone."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def send(self, nonce: int, data: bytes, limits: DecodeLimits, timeout: float) -> None:
        """The image in a memfd (its one copy), passed with the request frame; sealed first, so the
        worker can neither write it nor grow it (a memfd's pages are not its address space: an
        unsealed one would let it hold gigabytes of the function's memory outside its cap)."""
        fd = os.memfd_create("image", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            if os.write(fd, data) != len(data):  # a memfd takes all of it at once, or fails
                raise OSError("a short write")
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
            header = {
                "id": nonce,
                "size": len(data),
                "max_bytes": limits.max_bytes,
                "max_pixels": limits.max_pixels,
            }
            self.sock.settimeout(timeout)
            send_header(self.sock, header, fd)
        except OSError as error:
            raise Lost(f"not reading: {error}") from None
        finally:
            os.close(fd)

    def cpu_s(self) -> float:
        """CPU seconds it has used (user + system), read by the kernel's accounting, not its word."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        except (OSError, IndexError, ValueError):
            return 0.0

    def end(self) -> int:
        """SIGKILL it (through its pidfd: never another process that reused its pid) and, where no
        seccomp filter stops it forking, its process group; its peak resident memory (kB), read
        by the kernel, not taken from its answers."""
        peak = peak_rss_kb(self.pid) if self.pid else 0
        if self.pidfd >= 0:
            if not self.confined:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            os.close(self.pidfd)
            self.pidfd = -1
        self.sock.close()
        return peak


class _Request:
    """An API request's images together: the CPU its workers used (read here) and its end."""

    def __init__(self, bounds: Bounds) -> None:
        self.cpu_s = bounds.request_cpu_s
        self.ends = time.monotonic() + bounds.request_wall_s
        self._spent: dict[int, float] = {}  # worker pid -> its CPU time so far
        self._lock = threading.Lock()

    def charge(self, worker: Worker, cpu_s: float) -> None:
        with self._lock:
            self._spent[worker.pid] = cpu_s

    def over(self) -> str | None:
        with self._lock:
            spent = sum(self._spent.values())
        if spent > self.cpu_s:
            return f"and its request's other images used its {self.cpu_s * 1000:.0f} ms of decoding CPU time"
        if time.monotonic() > self.ends:
            return "and the rest of its request took too long"
        return None


class DecodeSandbox:
    """``size`` decode processes at a time, each under ``memory_bytes`` of address space and
    ``bounds``, running ``decoder``."""

    def __init__(
        self, workers: int, memory_bytes: int, bounds: Bounds, decoder: str = DEFAULT_DECODER
    ) -> None:
        self.size = max(1, workers)
        self.memory_bytes = memory_bytes
        self.bounds = bounds
        self.decoder = decoder
        self._zygote: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._spares: deque[Worker] = deque()
        self._lock = threading.RLock()  # the decode threads share the spares and the zygote
        self._threads = ThreadPoolExecutor(self.size, thread_name_prefix="decode")
        self._nonces = itertools.count(1)
        self.replaced = 0  # workers killed or lost mid-image so far (a metric, and the tests, read it)
        self.peak_worker_kb = 0  # the most resident memory any worker held (Linux)

    @classmethod
    def start(
        cls, workers: int, memory_bytes: int, bounds: Bounds, decoder: str = DEFAULT_DECODER
    ) -> DecodeSandbox:
        """Start the zygote and the spare workers, and wait until they are ready."""
        return cls.launch(workers, memory_bytes, bounds, decoder).ready()

    @classmethod
    def launch(
        cls, workers: int, memory_bytes: int, bounds: Bounds, decoder: str = DEFAULT_DECODER
    ) -> DecodeSandbox:
        """Start the zygote without waiting for it: it boots while the function imports the rest
        and loads the model; ``ready`` finishes. The function itself becomes non-dumpable here: no
        process of its user (a subverted worker) may read or write its memory or attach to it."""
        harden(dumpable=False)
        sandbox = cls(workers, memory_bytes, bounds, decoder)
        sandbox._launch_zygote()
        return sandbox

    @classmethod
    def for_settings(cls, settings: DecodeSettings, decoder: str = DEFAULT_DECODER) -> DecodeSandbox:
        """Launched (not yet ready) with the function's decode settings, running ``decoder`` (the
        tests and the hostile bench give their misbehaving doubles here)."""
        memory = settings.memory_mb * 1024 * 1024
        return cls.launch(settings.workers, memory, Bounds.for_settings(settings), decoder)

    def ready(self) -> DecodeSandbox:
        """Wait for the zygote, then for the spare workers (idempotent)."""
        with self._lock:
            if not self._spares:
                self._await_zygote()
                self._spares.extend(self._fork() for _ in range(self.size))
        self.replenish()
        return self

    # The zygote.

    def _launch_zygote(self) -> None:
        ours, theirs = socket.socketpair()
        inherited = {name: os.environ[name] for name in INHERITED if name in os.environ}
        environment = {**inherited, **WORKER_ENVIRONMENT, "PYTHONPATH": os.pathsep.join(sys.path)}
        cpu_limit = int(self.bounds.cpu_s) + 1  # the kernel's coarse bound (whole seconds), above ours
        self._zygote = subprocess.Popen(
            [sys.executable, "-m", "handler.recognition.sandbox_worker", self.decoder,
             str(theirs.fileno()), str(self.memory_bytes), str(cpu_limit)],
            pass_fds=(theirs.fileno(),), env=environment, stdin=subprocess.DEVNULL, close_fds=True,
        )  # fmt: skip
        theirs.close()
        self._control = ours

    def _await_zygote(self) -> None:
        assert self._control is not None
        self._control.settimeout(START_TIMEOUT_S)
        try:
            header, _ = receive_header(self._control)
        except (OSError, EOFError, ValueError) as error:
            raise SandboxError(f"the decode sandbox did not start: {error}") from None
        if header.get("ready") is not True:
            raise SandboxError(f"the decode sandbox cannot load its decoder: {header.get('error')}")

    def _restart_zygote(self) -> None:
        """A fresh zygote and fresh spares (those asked of the old one may never come)."""
        with self._lock:
            while self._spares:
                self._spares.popleft().end()
            self._stop_zygote()
            self._launch_zygote()
            self._await_zygote()
            self._spares.extend(self._fork() for _ in range(self.size))

    def _stop_zygote(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._zygote is not None:
            with contextlib.suppress(ProcessLookupError):
                self._zygote.kill()
            self._zygote.wait(timeout=10)
            self._zygote = None

    def _fork(self) -> Worker:
        """Ask the zygote for a worker on a new socket; it says "ready" on it when it is."""
        ours, theirs = socket.socketpair()
        try:
            assert self._control is not None
            self._control.settimeout(FORK_TIMEOUT_S)
            socket.send_fds(self._control, [b"w"], [theirs.fileno()])
        except (OSError, AssertionError):
            ours.close()
            raise SandboxError("the decode sandbox's zygote is gone") from None
        finally:
            theirs.close()
        return Worker(ours)

    # Workers.

    def _forbidden(self) -> set[int]:
        """Pids no worker may claim: ours and the zygote's (never signalled as a worker's)."""
        return {os.getpid(), self._zygote.pid if self._zygote else 0}

    def _take(self) -> Worker:
        """A ready spare, its successor asked for at once (it forks while this one decodes)."""
        for _ in range(self.size + 2):
            with self._lock:
                worker = self._spares.popleft() if self._spares else None
                try:
                    self._spares.append(self._fork())
                    worker = worker or self._fork()
                except SandboxError:
                    if worker is not None:
                        worker.end()
                    self._restart_zygote()
                    continue
            try:
                worker.wait_ready(FORK_TIMEOUT_S, self._forbidden())
            except Lost:
                worker.end()
                self._restart_zygote()
                continue
            if not worker.dead():  # killed while idle (a SnapStart restore, the OOM killer)
                return worker
            worker.end()
        raise SandboxError("the decode sandbox cannot start a worker")

    def replenish(self) -> None:
        """Wait until every spare is forked and warm: called before an answer leaves, so no fork
        or warm-up is left to run during the next event (Lambda freezes everything in between)."""
        with self._lock:
            spares = list(self._spares)
        for worker in spares:
            with contextlib.suppress(Lost):  # found again when it is taken
                worker.wait_ready(FORK_TIMEOUT_S, self._forbidden())

    # Decoding.

    def decode(
        self, images: Sequence[bytes | Refusal], limits: DecodeLimits, request: bool = False
    ) -> list[np.ndarray | Refusal]:
        """The 224x224 RGB pixels of each image, or why not, in order; images already refused stay
        refused. ``request``: the images are one API request's, under its budget together too."""
        budget = _Request(self.bounds) if request else None
        if len(images) <= 1:
            return [self._decode(image, limits, budget) for image in images]
        return list(self._threads.map(lambda image: self._decode(image, limits, budget), images))

    def _decode(
        self, image: bytes | Refusal, limits: DecodeLimits, budget: _Request | None
    ) -> np.ndarray | Refusal:
        """One image on a fresh worker; a worker lost mid-image (killed from outside, crashed)
        gets the image tried once more, on another fresh worker, within what is left of the same
        CPU time (so a decoder that crashes on purpose cannot double it)."""
        if isinstance(image, Refusal):
            return image
        why, spent = "stopped its decoder", 0.0
        for _ in range(2):
            if budget is not None and (over := budget.over()):
                return too_costly(f"Decoding this image {over}")
            worker = self._take()
            try:
                return self._run(worker, image, limits, budget, spent)
            except Lost as lost:
                self.replaced += 1
                why = f"stopped its decoder ({lost})"
            finally:
                cpu = worker.cpu_s()
                spent += cpu
                if budget is not None:
                    budget.charge(worker, cpu)
                self.peak_worker_kb = max(self.peak_worker_kb, worker.end())
        return too_costly(f"Decoding this image {why}")

    def _run(
        self, worker: Worker, image: bytes, limits: DecodeLimits, budget: _Request | None, spent: float
    ) -> np.ndarray | Refusal:
        nonce = next(self._nonces)
        started = time.monotonic()
        ends = started + self.bounds.wall_s
        if budget is not None:
            ends = min(ends, budget.ends)
        worker.send(nonce, image, limits, max(0.01, ends - time.monotonic()))
        return self._await(worker, _Answer(nonce), started, ends, budget, spent)

    def _await(
        self,
        worker: Worker,
        answer: _Answer,
        started: float,
        ends: float,
        budget: _Request | None,
        spent: float,
    ) -> np.ndarray | Refusal:
        """Read the worker's answer as it arrives, checking every bound until its last byte (a
        worker that drips its answer meets them too): the result, or why it was stopped."""
        worker.sock.setblocking(False)
        poller = select.poll()
        poller.register(worker.sock, select.POLLIN)
        while True:
            if poller.poll(CHECK_S * 1000):
                result = answer.read(worker.sock)
                if result is not None:
                    return result
            cpu = worker.cpu_s()
            if budget is not None:
                budget.charge(worker, cpu)
            why = None
            if spent + cpu > self.bounds.cpu_s:
                why = f"needs more than {self.bounds.cpu_s * 1000:.0f} ms of CPU time"
            elif budget is not None and (over := budget.over()):
                why = over
            elif time.monotonic() > ends:
                why = f"takes longer than {(ends - started) * 1000:.0f} ms"
            if why:
                self.replaced += 1
                return too_costly(f"Decoding this image {why}")

    def peaks_kb(self) -> dict[str, int]:
        """Peak resident memory of the sandbox's processes: the zygote, and the busiest worker."""
        zygote = peak_rss_kb(self._zygote.pid) if self._zygote is not None else 0
        return {"zygote": zygote, "worker": self.peak_worker_kb}

    @property
    def zygote_pid(self) -> int:
        return self._zygote.pid if self._zygote is not None else 0

    def close(self) -> None:
        """Kill every worker and the zygote."""
        with self._lock:
            while self._spares:
                self._spares.popleft().end()
            self._stop_zygote()
        self._threads.shutdown(wait=False)

    def __enter__(self) -> DecodeSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Answer:
    """A worker's answer for image ``nonce``, read as it arrives without blocking: the header's length,
    the header, then (``"ok": true``) exactly the pixels. Anything malformed, however, is ``Lost``."""

    def __init__(self, nonce: int) -> None:
        self.nonce = nonce
        self.buffer = bytearray(FRAME.size)
        self.got = 0
        self.sized = False  # the header's length is read, the header itself is in ``buffer``
        self.pixels: np.ndarray | None = None

    def read(self, sock: socket.socket) -> np.ndarray | Refusal | None:
        """Take what the socket holds; the result once the answer is complete, else None."""
        while True:
            view = memoryview(self.pixels).cast("B") if self.pixels is not None else memoryview(self.buffer)
            while self.got < len(view):
                try:
                    got = sock.recv_into(view[self.got :])
                except BlockingIOError:
                    return None
                except OSError as error:
                    raise Lost(str(error)) from None
                if not got:
                    raise Lost("the socket closed")
                self.got += got
            try:
                result = self._next()
            except Lost:
                raise
            except Exception as error:  # JSON of the wrong shape, too deep, ...
                raise Lost(f"a malformed answer ({type(error).__name__})") from None
            if result is not None:
                return result

    def _next(self) -> np.ndarray | Refusal | None:
        """The part just completed: move on to the next one (None), or finish."""
        self.got = 0
        if self.pixels is not None:
            return self.pixels
        if not self.sized:
            (size,) = FRAME.unpack(self.buffer)
            if not 0 < size <= MAX_ANSWER_HEADER:
                raise Lost("a header of the wrong size")
            self.buffer, self.sized = bytearray(size), True
            return None
        header = json.loads(bytes(self.buffer))
        if not isinstance(header, dict) or header.get("id") != self.nonce:
            raise Lost("an answer for another image")
        if header.get("ok") is True:
            self.pixels = np.empty(PIXELS_SHAPE, dtype=np.uint8)
            return None
        if header.get("ok") is not False:
            raise Lost("a malformed answer")
        return _refusal(header)


def _refusal(header: dict) -> Refusal:
    """A worker's refusal: a known status and code, and a short printable message."""
    status = header.get("status")
    kind = REFUSALS.get(status) if type(status) is int else None
    code, message = header.get("code"), header.get("message")
    if kind is None or not isinstance(code, str) or code not in Code.__members__.values():
        raise Lost("an unknown refusal")
    if not isinstance(message, str) or not message.isprintable() or len(message) > 300:
        raise Lost("a refusal without a proper message")
    return kind(message, Code(code))
