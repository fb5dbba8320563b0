"""The other side of the decode sandbox: a zygote process, and the one-image workers it forks.

``python -m handler.recognition.sandbox_worker DECODER FD MEMORY_BYTES CPU_SECONDS`` starts the
zygote: a fresh interpreter that imports Pillow, numpy and the decoder once, then waits on the
socket ``FD``. For each socket the parent sends it (``SCM_RIGHTS``) it forks a worker, and answers
nothing: the worker speaks for itself on that socket.

A worker lives for **one image**. It caps its own address space (``RLIMIT_AS``) and CPU time
(``RLIMIT_CPU``: past it the kernel kills it), takes no core dumps, gives up the system calls a
decoder never needs (``seccomp``), warms its decoder up, and says
it is ready (its pid) before it has seen any untrusted byte. The image then arrives as a ``memfd``
(the parent's one copy of it), mapped read-only here: the decoder reads the parent's pages. The
224x224 pixels go back on the socket, and the worker waits to be killed, so whatever a decoder
exploit did to it dies with it and no later image, of any caller, meets it.

Frames, both ways: a 4-byte big-endian length, then a JSON header. An image request carries its
``memfd`` with the frame; an answer that says ``"ok": true`` is followed by exactly the pixels.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import importlib
import io
import json
import math
import mmap
import os
import resource
import signal
import socket
import struct
import sys
from collections.abc import Callable

import numpy as np

from handler.errors import Code, Refusal
from handler.recognition import seccomp
from handler.recognition.imaging import INPUT_SIZE, NEEDS_MEMORY, DecodeLimits, register_decoders

FRAME = struct.Struct("!I")  # the JSON header's length
MAX_HEADER = 4096
PIXELS_SHAPE = (*INPUT_SIZE, 3)
PIXELS_BYTES = math.prod(PIXELS_SHAPE)
Decoder = Callable[[bytes | mmap.mmap, DecodeLimits], np.ndarray]
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4  # linux/prctl.h


def send_header(sock: socket.socket, header: dict, fd: int | None = None) -> None:
    """One frame; ``fd`` travels with its first byte (``SCM_RIGHTS``)."""
    encoded = json.dumps(header).encode()
    frame = FRAME.pack(len(encoded)) + encoded
    sent = socket.send_fds(sock, [frame], [fd]) if fd is not None else 0
    sock.sendall(frame[sent:])


def receive_exactly(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from the socket; ``EOFError`` if it closes first."""
    while view:
        got = sock.recv_into(view)
        if not got:
            raise EOFError("the socket closed")
        view = view[got:]


def receive_header(
    sock: socket.socket, max_header: int = MAX_HEADER, with_fd: bool = False
) -> tuple[dict, int | None]:
    """One frame's header (and the descriptor sent with it); ``ValueError`` if it is not a frame."""
    prefix, fd = bytearray(FRAME.size), None
    if with_fd:
        data, fds, _, _ = socket.recv_fds(sock, FRAME.size, 1)
        if not data:
            raise EOFError("the socket closed")
        prefix[: len(data)], fd = data, (fds[0] if fds else None)
        receive_exactly(sock, memoryview(prefix)[len(data) :])
    else:
        receive_exactly(sock, memoryview(prefix))
    (size,) = FRAME.unpack(prefix)
    if size > max_header:
        raise ValueError("a header longer than allowed")
    encoded = bytearray(size)
    receive_exactly(sock, memoryview(encoded))
    header = json.loads(bytes(encoded))
    if not isinstance(header, dict):
        raise ValueError("a header that is not an object")
    return header, fd


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library already loaded into this process (no ``find_library``: it runs ``ldconfig``)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "prctl") else None


def harden(dumpable: bool = True, die_with_parent: bool = False) -> None:
    """Linux process settings (no-ops elsewhere): ``dumpable=False`` forbids other processes of the
    same user (a subverted decoder) to read or write this one's memory through ``/proc`` or to
    attach to it; ``die_with_parent`` has the kernel kill this process when its parent dies."""
    libc = _libc()
    if libc is None:
        return
    if not dumpable:
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    if die_with_parent:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def peak_rss_kb(pid: int | str = "self") -> int:
    """A process's peak resident memory (``VmHWM``, kB); 0 when it is gone or off Linux."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), 0)
    except (OSError, ValueError):
        return 0


def load_decoder(path: str) -> Decoder:
    """``"package.module:function"`` -> the function (the parent names it; never a client)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _mapped(fd: int, size: int) -> bytes | mmap.mmap:
    """The image's bytes: the parent's memfd, mapped read-only (no copy)."""
    if size <= 0 or os.fstat(fd).st_size < size:
        return b""
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ)


def decode_one(decode: Decoder, header: dict, image: bytes | mmap.mmap) -> tuple[dict, bytes]:
    """One image's answer header (it echoes the image's ``id``) and its pixels (empty for a
    refusal)."""
    limits = DecodeLimits(max_bytes=int(header["max_bytes"]), max_pixels=int(header["max_pixels"]))
    said: dict = {"id": header["id"]}
    try:
        pixels = np.ascontiguousarray(decode(image, limits), dtype=np.uint8)
        if pixels.shape != PIXELS_SHAPE:
            raise ValueError(f"the decoder returned {pixels.shape}")
        return {**said, "ok": True}, pixels.tobytes()
    except Refusal as error:
        refusal = {"status": int(error.status), "code": str(error.code), "message": error.message}
    except MemoryError:  # the address-space cap, met in Python
        refusal = {"status": 413, "code": Code.IMAGE_TOO_COSTLY.value, "message": NEEDS_MEMORY}
    except Exception:  # a decoder bug on odd input: the image's fault, not the service's
        refusal = {"status": 422, "code": Code.CORRUPT_IMAGE.value, "message": "The image cannot be decoded."}
    return {**said, "ok": False, **refusal}, b""


@functools.cache
def _warm_up_images() -> tuple[bytes, ...]:
    """A tiny JPEG and PNG, encoded once in the zygote (encoding them in every worker cost a ms)."""
    from PIL import Image

    images = []
    for kind in ("JPEG", "PNG"):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (90, 120, 150)).save(buffer, kind)
        images.append(buffer.getvalue())
    return tuple(images)


def warm_up(decode: Decoder) -> None:
    """Decode a tiny JPEG and PNG once: the libraries' lazy set-up and, in a fresh worker, most of
    the page faults a photo's decode meets (a 600x512 photo's first decode: 3.2 ms cold, 1.9 ms
    after this, 1.5 ms warm; warming with a photo-sized JPEG saved 0.4 ms more but cost 1.5 ms of
    CPU per worker, which a function on a share of a CPU pays too)."""
    limits = DecodeLimits(max_bytes=1 << 20, max_pixels=1 << 20)
    for image in _warm_up_images():
        with contextlib.suppress(Exception):  # a test double may refuse it: best effort
            decode(image, limits)


def _limit(memory_bytes: int, cpu_seconds: int) -> None:
    """The kernel's bounds on this process: address space, CPU seconds (SIGXCPU, then SIGKILL a
    second later: the parent's finer CPU check normally answers first), no core dumps."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))


def become_worker(sock: socket.socket, decode: Decoder, memory_bytes: int, cpu_seconds: int) -> None:
    """In the forked child: limits, warm-up, "ready", one image, then wait to be killed."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setpgid(0, 0)  # its own process group: killing it kills anything it started
        harden(die_with_parent=True)
        # Nothing a decoder prints reaches the function's logs (libtiff's warnings, or whatever a
        # subverted decoder would write); its answers are the socket's, checked by the parent.
        quiet = os.open(os.devnull, os.O_RDWR)
        for stream in (0, 1, 2):
            os.dup2(quiet, stream)
        os.close(quiet)
        _limit(memory_bytes, cpu_seconds)
        confined = seccomp.confine(os.getpid())  # no network, processes or signals beyond itself
        warm_up(decode)  # before "ready": the parent takes it warm, while it answered another event
        send_header(sock, {"ready": os.getpid(), "confined": confined})
        header, fd = receive_header(sock, with_fd=True)
        if fd is None:
            return
        answer, pixels = decode_one(decode, header, _mapped(fd, int(header.get("size", 0))))
        send_header(sock, answer)
        sock.sendall(pixels)
        sock.recv(1)  # the parent reads this process's CPU time, then kills it
    finally:
        os._exit(0)


def zygote(control: socket.socket, decode: Decoder, memory_bytes: int, cpu_seconds: int) -> None:
    """Fork a worker for each socket the parent sends, until the parent goes."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps workers: no zombies
    harden(dumpable=False, die_with_parent=True)  # workers may not touch it; it dies with the function
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(control, 1, 1)
        except OSError:
            return
        if not fds:  # the function is gone: so are we
            return
        if os.fork() == 0:
            control.close()
            become_worker(socket.socket(fileno=fds[0]), decode, memory_bytes, cpu_seconds)
        os.close(fds[0])


def main(argv: list[str]) -> int:
    decoder, fd, memory_bytes, cpu_seconds = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    control = socket.socket(fileno=fd)
    try:
        decode = load_decoder(decoder)
        register_decoders()  # AVIF and HEIF too, once, before any fork: every worker shares them
        warm_up(decode)
        gc.freeze()  # what the zygote holds is never collected: fewer pages copied into each fork
    except Exception as error:  # said once, in the parent's start-up error
        send_header(control, {"ready": False, "error": f"{type(error).__name__}: {error}"[:500]})
        return 1
    send_header(control, {"ready": True})
    zygote(control, decode, memory_bytes, cpu_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
