"""The other side of the decode sandbox: a zygote process, and the decode workers it forks.

``python -m handler.recognition.sandbox_worker DECODER FD MEMORY_BYTES`` starts the zygote: a fresh
interpreter that imports Pillow, numpy and the decoder once, then waits on the socket ``FD``. For
each socket the parent sends it (``SCM_RIGHTS``), it forks a worker and answers its pid. A worker
caps its own address space (``RLIMIT_AS``), takes no core dumps, and decodes one image per message
until its socket closes. Workers never see the model, the network or the parent's memory: they
are forked from this small, clean process, not from the function (which runs the model's threads).

Messages are length-prefixed frames (``Connection.send_bytes``): a JSON header, then raw bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import importlib
import json
import os
import resource
import signal
import struct
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle

import numpy as np

from handler.recognition.errors import Code, Refusal
from handler.recognition.imaging import DecodeLimits, register_decoders

HEADER = struct.Struct("!I")  # the JSON header's length, before the header and the payload
Decoder = Callable[[bytes, object], np.ndarray]


def pack(header: dict, payload: bytes = b"") -> bytes:
    encoded = json.dumps(header).encode()
    return HEADER.pack(len(encoded)) + encoded + payload


def unpack(frame: bytes, max_header: int = 4096) -> tuple[dict, memoryview]:
    """``(header, payload)`` of a frame; ``ValueError`` when it is not one (a worker gone wrong)."""
    if len(frame) < HEADER.size:
        raise ValueError("short frame")
    (size,) = HEADER.unpack_from(frame)
    if size > max_header or HEADER.size + size > len(frame):
        raise ValueError("bad header length")
    header = json.loads(bytes(frame[HEADER.size : HEADER.size + size]))
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    return header, memoryview(frame)[HEADER.size + size :]


PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4  # linux/prctl.h


def harden(dumpable: bool = True, die_with_parent: bool = False) -> None:
    """Linux process settings (no-ops elsewhere): ``dumpable=False`` forbids other processes of the
    same user (a subverted decoder) to read or write this one's memory through ``/proc`` or to
    attach to it; ``die_with_parent`` has the kernel kill this process when its parent dies."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        libc = None
    if libc is None or not hasattr(libc, "prctl"):
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
    except OSError:
        return 0


def load_decoder(path: str) -> Decoder:
    """``"package.module:function"`` -> the function (the parent names it; never a client)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _answer(decode: Decoder, header: dict, data: bytes) -> tuple[bytes, bool]:
    """One image's answer frame (it echoes the image's ``id`` and reports this worker's peak
    memory), and whether this worker retires after it (a MemoryError or a decoder bug)."""
    limits = DecodeLimits(max_bytes=int(header["max_bytes"]), max_pixels=int(header["max_pixels"]))
    said = {"id": header["id"]}

    def refused(status: int, code: str, message: str, retire: bool) -> tuple[bytes, bool]:
        refusal = {"ok": False, "status": status, "code": code, "message": message, "retire": retire}
        return pack({**said, **refusal, "peak_kb": peak_rss_kb()}), retire

    try:
        pixels = np.ascontiguousarray(decode(data, limits), dtype=np.uint8)
    except Refusal as error:
        return refused(int(error.status), str(error.code), error.message, retire=False)
    except MemoryError:  # the address-space cap: answer, then make way for a fresh worker
        message = "Decoding this image needs more memory than the service gives one image."
        return refused(413, Code.IMAGE_TOO_COSTLY, message, retire=True)
    except Exception:  # a decoder bug on odd input: the image's fault, not the service's
        return refused(422, Code.CORRUPT_IMAGE, "The image cannot be decoded.", retire=True)
    answer = {"ok": True, **said, "shape": list(pixels.shape), "peak_kb": peak_rss_kb()}
    return pack(answer, pixels.tobytes()), False


def serve_images(connection: Connection, decode: Decoder) -> None:
    """A worker's life: decode one image per message until the parent closes the socket."""
    while True:
        try:
            frame = connection.recv_bytes()
        except (EOFError, OSError):
            return
        header, data = unpack(frame)
        answer, retire = _answer(decode, header, bytes(data))
        connection.send_bytes(answer)
        if retire:
            return


def warm_up(decode: Decoder) -> None:
    """Decode a tiny JPEG and PNG once: the libraries' lazy set-up (and, in a fresh worker, the
    copy-on-write faults of the pages a decode touches) happens here, not on a request's image."""
    import io

    from PIL import Image

    limits = DecodeLimits(max_bytes=1 << 20, max_pixels=1 << 20)
    for kind in ("JPEG", "PNG"):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (90, 120, 150)).save(buffer, kind)
        with contextlib.suppress(Exception):  # a test double may refuse it: best effort
            decode(buffer.getvalue(), limits)


def become_worker(fd: int, decode: Decoder, memory_bytes: int) -> None:
    """In the forked child: limits first, then the loop; never returns into the zygote's code."""
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
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        warm_up(decode)  # while the function is busy elsewhere: a fresh fork per batch stays fast
        serve_images(Connection(fd), decode)
    finally:
        os._exit(0)


def zygote(control: Connection, decode: Decoder, memory_bytes: int) -> None:
    """Fork a worker for each socket the parent sends; answer each with the worker's pid."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps workers: no zombies
    harden(dumpable=False, die_with_parent=True)  # workers may not touch it; it dies with the function
    while True:
        try:
            fd = recv_handle(control)
        except (EOFError, OSError):  # the function is gone: so are we
            return
        pid = os.fork()
        if pid == 0:
            control.close()
            become_worker(fd, decode, memory_bytes)
        os.close(fd)
        control.send_bytes(pack({"pid": pid}))


def main(argv: list[str]) -> int:
    decoder, fd, memory_bytes = argv[0], int(argv[1]), int(argv[2])
    control = Connection(fd)
    try:
        decode = load_decoder(decoder)
        register_decoders()  # AVIF and HEIF too, once, before any fork: every worker shares them
        warm_up(decode)
        gc.freeze()  # what the zygote holds is never collected: fewer pages copied into each fork
    except Exception as error:  # said once, in the parent's start-up error
        control.send_bytes(pack({"ready": False, "error": f"{type(error).__name__}: {error}"}))
        return 1
    control.send_bytes(pack({"ready": True}))
    zygote(control, decode, memory_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
