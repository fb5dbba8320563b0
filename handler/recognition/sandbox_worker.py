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


def load_decoder(path: str) -> Decoder:
    """``"package.module:function"`` -> the function (the parent names it; never a client)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _answer(decode: Decoder, header: dict, data: bytes) -> tuple[bytes, bool]:
    """One image's answer frame, and whether this worker should retire after sending it."""
    limits = DecodeLimits(max_bytes=int(header["max_bytes"]), max_pixels=int(header["max_pixels"]))
    try:
        pixels = np.ascontiguousarray(decode(data, limits), dtype=np.uint8)
    except Refusal as error:
        refusal = {"status": int(error.status), "code": str(error.code), "message": error.message}
        return pack({"ok": False, **refusal}), False
    except MemoryError:  # the address-space cap: answer, then make way for a fresh worker
        message = "Decoding this image needs more memory than the service gives one image."
        refusal = {"status": 413, "code": Code.IMAGE_TOO_COSTLY, "message": message}
        return pack({"ok": False, **refusal, "retire": True}), True
    except Exception:  # a decoder bug on odd input: the image's fault, not the service's
        message = "The image cannot be decoded."
        refusal = {"status": 422, "code": Code.CORRUPT_IMAGE, "message": message}
        return pack({"ok": False, **refusal, "retire": True}), True
    return pack({"ok": True, "shape": list(pixels.shape)}, pixels.tobytes()), False


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


def become_worker(fd: int, decode: Decoder, memory_bytes: int) -> None:
    """In the forked child: limits first, then the loop; never returns into the zygote's code."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # Nothing a decoder prints reaches the function's logs (libtiff's warnings, or whatever a
        # subverted decoder would write); its answers are the socket's, checked by the parent.
        quiet = os.open(os.devnull, os.O_RDWR)
        for stream in (0, 1, 2):
            os.dup2(quiet, stream)
        os.close(quiet)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        serve_images(Connection(fd), decode)
    finally:
        os._exit(0)


def zygote(control: Connection, decode: Decoder, memory_bytes: int) -> None:
    """Fork a worker for each socket the parent sends; answer each with the worker's pid."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps workers: no zombies
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
    except Exception as error:  # said once, in the parent's start-up error
        control.send_bytes(pack({"ready": False, "error": f"{type(error).__name__}: {error}"}))
        return 1
    control.send_bytes(pack({"ready": True}))
    zygote(control, decode, memory_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
