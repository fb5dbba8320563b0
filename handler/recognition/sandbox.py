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
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.reduction import send_handle

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
from handler.recognition.sandbox_worker import HEADER, harden, pack, peak_rss_kb, unpack

DEFAULT_DECODER = "handler.recognition.imaging:to_pixels"
PIXELS_SHAPE = (*INPUT_SIZE, 3)
PIXELS_BYTES = int(np.prod(PIXELS_SHAPE))
START_TIMEOUT_S = 10.0  # the zygote imports Pillow and numpy: well under a second, even cold
FORK_TIMEOUT_S = 2.0  # the zygote answers a fork in milliseconds; silence means it is stuck
# A worker kept across batches is recycled after this many images, so nothing it might carry (a
# decoder's state, or a decoder exploit) lasts long; ``fresh_workers`` recycles after every batch.
MAX_IMAGES_PER_WORKER = 256
REFUSALS = {400: BadRequest, 413: PayloadTooLarge, 415: UnsupportedMediaType, 422: Unprocessable}
# Everything a worker may say: a small JSON header and, at most, the pixels. A longer frame, a
# malformed one, one that arrives late or answers another image means the worker is lost.
MAX_ANSWER_HEADER = 1024
MAX_ANSWER = HEADER.size + MAX_ANSWER_HEADER + PIXELS_BYTES
LENGTH = struct.Struct("!i")  # multiprocessing.Connection's frame length, which the worker uses
# Workers reserve little: one thread, numpy's BLAS on one thread (its buffers are address space).
WORKER_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
# What the zygote (and so every worker) sees of the function's environment: no AWS credentials, no
# Runtime API address, nothing but what running Python and its libraries needs.
INHERITED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "TMPDIR", "OPENBLAS_CORETYPE",
             "OPENBLAS_L2_SIZE")  # fmt: skip


class SandboxError(RuntimeError):
    """The sandbox cannot start (a broken install): the function must not start either."""


def too_costly(why: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"Decoding this image {why}; it is refused.", Code.IMAGE_TOO_COSTLY)


class Lost(Exception):
    """A worker that died, stalled on its socket, or said something it must not: kill, replace."""


@dataclass
class Worker:
    """One decode process, its socket (non-blocking: no read or write waits past a deadline), and
    what it has sent of its next answer so far."""

    pid: int
    sock: socket.socket
    inbox: bytearray = field(default_factory=bytearray)
    served: int = 0  # images it has decoded (a worker is recycled after MAX_IMAGES_PER_WORKER)

    def send(self, frame: bytes, until: float) -> None:
        """Write the whole frame by ``until``; a worker that does not read it in time is lost."""
        view, sent = memoryview(frame), 0
        while sent < len(view):
            try:
                sent += self.sock.send(view[sent:])
            except BlockingIOError:
                if not _ready(self.sock, select.POLLOUT, until):
                    raise Lost("not reading") from None
            except OSError as error:
                raise Lost(str(error)) from None

    def receive(self) -> bytes | None:
        """What the socket holds now; the whole answer once it is complete, else None."""
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return None
        except OSError as error:
            raise Lost(str(error)) from None
        if not chunk:
            raise Lost("closed")
        self.inbox += chunk
        if len(self.inbox) < LENGTH.size:
            return None
        (size,) = LENGTH.unpack_from(self.inbox)
        if not 0 < size <= MAX_ANSWER or len(self.inbox) > LENGTH.size + size:
            raise Lost("an answer of the wrong size")
        if len(self.inbox) < LENGTH.size + size:
            return None
        frame = bytes(self.inbox[LENGTH.size :])
        self.inbox.clear()
        return frame

    def kill(self) -> None:
        """SIGKILL the worker and anything it started, and close its socket."""
        kill_group(self.pid)
        self.sock.close()


def kill_group(pid: int) -> None:
    """SIGKILL a worker's process group (it leads its own) and the worker itself, if still there."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


def _ready(sock: socket.socket, events: int, until: float) -> bool:
    poller = select.poll()
    poller.register(sock, events)
    return bool(poller.poll(max(0.0, until - time.monotonic()) * 1000))


def _refusal(header: dict) -> Refusal:
    """A worker's refusal: a known status and code, and a short printable message."""
    kind, code, message = REFUSALS.get(header.get("status")), header.get("code"), header.get("message")
    if kind is None or not isinstance(code, str) or code not in Code.__members__.values():
        raise Lost("an unknown refusal")
    if not isinstance(message, str) or not message.isprintable() or len(message) > 300:
        raise Lost("a refusal without a proper message")
    return kind(message, Code(code))


def _answer(frame: bytes, nonce: int) -> tuple[np.ndarray | Refusal, bool, int]:
    """A worker's answer for image ``nonce``: the pixels or a refusal, whether the worker retires,
    and its peak memory (kB). Anything else, however it is malformed, is ``Lost``."""
    try:
        header, payload = unpack(frame, max_header=MAX_ANSWER_HEADER)
    except (ValueError, RecursionError, UnicodeDecodeError) as error:
        raise Lost("a malformed answer") from error
    peak, retire = header.get("peak_kb", 0), header.get("retire", False)
    if header.get("id") != nonce or type(peak) is not int or type(retire) is not bool:
        raise Lost("an answer for another image")
    if header.get("ok") is True:
        if header.get("shape") != list(PIXELS_SHAPE) or len(payload) != PIXELS_BYTES:
            raise Lost("pixels of the wrong shape")
        return np.frombuffer(payload, dtype=np.uint8).reshape(PIXELS_SHAPE).copy(), retire, peak
    if header.get("ok") is not False or len(payload):
        raise Lost("a malformed answer")
    return _refusal(header), retire, peak


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
        self._unsettled: deque[Worker] = deque()  # asked of the zygote, pid not read yet
        self._doomed: list[int] = []  # retired workers' pids, killed at the next batch
        self._nonce = 0
        self.replaced = 0  # workers killed or lost and replaced so far (tests and logs read it)
        self.peak_worker_kb = 0  # the most resident memory any worker reported holding (Linux)

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
        and numpy) while the function imports the rest and loads the model. ``ready`` finishes.

        The function itself becomes non-dumpable here: no process of its user (a subverted decode
        worker) may read or write its memory through ``/proc`` or attach to it."""
        harden(dumpable=False)
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

    def _launch_zygote(self) -> None:
        ours, theirs = socket.socketpair()
        inherited = {name: os.environ[name] for name in INHERITED if name in os.environ}
        environment = {**inherited, **WORKER_ENVIRONMENT, "PYTHONPATH": os.pathsep.join(sys.path)}
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
        """A new worker from the zygote, ready to use."""
        worker = self._request_fork()
        self._settle()
        return worker

    def _request_fork(self, worker: Worker | None = None) -> Worker:
        """Ask the zygote for a worker on a new socket, without waiting for it to be forked (its pid
        arrives later: ``_settle``); ``worker``: reuse that object (a worker being replaced)."""
        for attempt in (1, 2):
            ours, theirs = socket.socketpair()
            try:
                assert self._control is not None and self._zygote is not None
                send_handle(self._control, theirs.fileno(), self._zygote.pid)
            except (OSError, AssertionError):
                ours.close()
                if attempt == 2:
                    raise SandboxError("the decode sandbox cannot start a worker") from None
                self._restart_zygote()
                continue
            finally:
                theirs.close()
            ours.setblocking(False)
            if worker is None:
                worker = Worker(0, ours)
            else:
                worker.pid, worker.sock, worker.served = 0, ours, 0
                worker.inbox.clear()
            self._unsettled.append(worker)
            return worker
        raise AssertionError("unreachable")

    def _settle(self) -> None:
        """Learn the pid of every worker asked for; a zygote that does not answer is restarted and
        asked again."""
        for attempt in (1, 2):
            try:
                while self._unsettled:
                    assert self._control is not None
                    if not self._control.poll(FORK_TIMEOUT_S):
                        raise TimeoutError("the zygote did not answer")
                    header, _ = unpack(self._control.recv_bytes(maxlength=MAX_ANSWER_HEADER))
                    self._unsettled[0].pid = int(header["pid"])
                    self._unsettled.popleft()
                return
            except (EOFError, OSError, ValueError, KeyError, TypeError, AssertionError):
                if attempt == 2:
                    raise SandboxError("the decode sandbox cannot start a worker") from None
                self._restart_zygote()

    def _restart_zygote(self) -> None:
        """A fresh zygote; every worker the old one had not forked yet is asked of the new one."""
        unanswered = list(self._unsettled)
        self._unsettled.clear()
        self._stop_zygote()
        self._launch_zygote()
        self._await_zygote()
        for worker in unanswered:
            worker.sock.close()
            self._request_fork(worker)

    def _alive(self, worker: Worker) -> Worker:
        """``worker``, or a fresh one if it died while idle (killed from outside, or lost in a
        SnapStart restore): an idle worker never writes, so anything to read means it is gone."""
        if _ready(worker.sock, select.POLLIN, 0):
            return self._replace(worker)
        return worker

    def _replace(self, worker: Worker) -> Worker:
        """Kill ``worker`` (lost, or past its deadline) and take a fresh one in its place, now."""
        self._retire(worker)
        self.replaced += 1
        self._settle()
        return worker

    def _retire(self, worker: Worker, now: bool = True) -> None:
        """Retire ``worker`` and ask the zygote for its successor on the same ``Worker`` object.
        ``now``: SIGKILL it at once (lost, or past its deadline; its peak memory is read first, as it
        could not report it); otherwise close its socket, which ends it, and SIGKILL it at the next
        batch (``_reap``), off the request's path."""
        self._settle()  # its pid, if it was still arriving
        if now:
            self.peak_worker_kb = max(self.peak_worker_kb, peak_rss_kb(worker.pid))
            worker.kill()
        else:
            self._doomed.append(worker.pid)
            worker.sock.close()
        self._request_fork(worker)

    def _rotate(self, used: set[int], fresh_workers: bool) -> None:
        """After a batch, the workers it used are replaced by fresh forks (``fresh_workers``, or
        after ``MAX_IMAGES_PER_WORKER`` images): no worker carries state, or a decoder exploit,
        for long. Cheap on the request's path: the forks happen in the zygote while the function
        answers."""
        for worker in self._workers:
            if id(worker) in used and (fresh_workers or worker.served >= MAX_IMAGES_PER_WORKER):
                self._retire(worker, now=False)

    def _reap(self) -> None:
        """SIGKILL the workers retired by the last batch (and anything they started)."""
        while self._doomed:
            kill_group(self._doomed.pop())

    def decode(
        self,
        images: Sequence[bytes | Refusal],
        limits: DecodeLimits,
        batch_deadline_s: float | None = None,
        fresh_workers: bool = True,
    ) -> list[np.ndarray | Refusal]:
        """The 224x224 RGB pixels of each image, or why not, in order; images already refused stay
        refused. Each image has ``deadline_s`` from its first try; with ``batch_deadline_s`` the
        whole batch has that too (an API request), and images still waiting then are refused
        unread. A worker lost mid-image (killed from outside, crashed) gets its image tried once
        more on a fresh worker, within the same deadline. With ``fresh_workers`` the workers this
        batch used are fresh forks before the next batch (about 2–5 ms more on the next image here:
        a new process's first decode); without, after ``MAX_IMAGES_PER_WORKER`` images."""
        now = time.monotonic()
        batch = _Batch(images, now + batch_deadline_s if batch_deadline_s is not None else None)
        self._reap()
        self._settle()
        idle = list(self._workers)
        while batch.waiting or batch.busy:
            while batch.waiting and idle:
                self._dispatch(batch, batch.waiting.popleft(), idle.pop(), limits)
            # The dispatch may have freed workers (a lost one replaced); the rest wait for answers.
            idle.extend(batch.freed)
            batch.freed.clear()
            if batch.busy:
                idle.extend(self._collect(batch))
        self._rotate(batch.used, fresh_workers)
        return batch.results  # type: ignore[return-value]

    def _dispatch(self, batch: _Batch, index: int, worker: Worker, limits: DecodeLimits) -> None:
        now = time.monotonic()
        ends = batch.deadline.setdefault(index, now + self.deadline_s)
        if batch.ends is not None and now >= batch.ends:
            batch.results[index] = too_costly("and the rest of its request took too long")
            batch.freed.append(worker)
            return
        if now >= ends:
            batch.results[index] = too_costly(f"takes longer than {self.deadline_s * 1000:.0f} ms")
            batch.freed.append(worker)
            return
        worker = self._alive(worker)
        self._nonce += 1
        header = {"id": self._nonce, "max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels}
        body = pack(header, batch.images[index])  # type: ignore[arg-type]
        try:
            worker.send(LENGTH.pack(len(body)) + body, min(ends, batch.ends or ends))
        except Lost:
            batch.lost(index, "stopped reading its image")
            batch.freed.append(self._replace(worker))
            return
        batch.busy[worker.sock.fileno()] = (worker, index, self._nonce)
        batch.used.add(id(worker))
        worker.served += 1

    def _collect(self, batch: _Batch) -> list[Worker]:
        """Wait for the first answer or deadline; return the workers free again (fresh ones for
        those killed or lost)."""
        first = min(batch.deadline[index] for _, index, _ in batch.busy.values())
        if batch.ends is not None:
            first = min(first, batch.ends)
        poller = select.poll()
        for fd in batch.busy:
            poller.register(fd, select.POLLIN)
        events = poller.poll(max(0.0, first - time.monotonic()) * 1000)
        freed = []
        for fd, _ in events:
            worker, index, nonce = batch.busy[fd]
            try:
                frame = worker.receive()
                if frame is None:
                    continue  # more of the answer is on its way
                batch.results[index], retire, peak = _answer(frame, nonce)
                self.peak_worker_kb = max(self.peak_worker_kb, peak)
            except Lost:
                batch.lost(index, "stopped its decoder")
                retire = True
            del batch.busy[fd]
            freed.append(self._replace(worker) if retire else worker)
        now = time.monotonic()
        for fd, (worker, index, _) in list(batch.busy.items()):
            batch_over = batch.ends is not None and now >= batch.ends
            if now >= batch.deadline[index] or batch_over:
                del batch.busy[fd]
                why = f"takes longer than {self.deadline_s * 1000:.0f} ms"
                batch.results[index] = too_costly(
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
        """Peak resident memory of the sandbox's processes: the zygote, and the busiest worker (as
        each worker reported it with its answers, or as read before it was replaced)."""
        self._settle()
        live = max((peak_rss_kb(worker.pid) for worker in self._workers), default=0)
        zygote = peak_rss_kb(self._zygote.pid) if self._zygote is not None else 0
        return {"zygote": zygote, "worker": max(live, self.peak_worker_kb)}

    def pids(self) -> list[int]:
        self._settle()
        return [worker.pid for worker in self._workers]

    def close(self) -> None:
        """Kill every worker and the zygote."""
        self._reap()
        with contextlib.suppress(SandboxError):
            self._settle()
        for worker in self._workers:
            if worker.pid:
                worker.kill()
            else:
                worker.sock.close()
        self._workers = []
        self._stop_zygote()

    def __enter__(self) -> DecodeSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Batch:
    """One ``decode`` call's state: its images, results, waiting and busy slots, deadlines."""

    def __init__(self, images: Sequence[bytes | Refusal], ends: float | None) -> None:
        self.images = images
        self.ends = ends
        self.results: list[np.ndarray | Refusal | None] = [
            item if isinstance(item, Refusal) else None for item in images
        ]
        self.waiting = deque(index for index, item in enumerate(images) if not isinstance(item, Refusal))
        self.busy: dict[int, tuple[Worker, int, int]] = {}  # socket fd -> (worker, image, nonce)
        self.deadline: dict[int, float] = {}  # image -> when its time is up (from its first try)
        self.retried: set[int] = set()
        self.freed: list[Worker] = []
        self.used: set[int] = set()  # the workers (by identity) that saw one of these images

    def lost(self, index: int, why: str) -> None:
        """Its worker was lost: try the image again once, else refuse it."""
        if index in self.retried:
            self.results[index] = too_costly(why)
        else:
            self.retried.add(index)
            self.waiting.appendleft(index)
