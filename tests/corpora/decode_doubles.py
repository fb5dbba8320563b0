"""Decoders that misbehave on purpose, for the sandbox's tests and ``make hostile``: they run inside
the decode workers in place of ``imaging.to_pixels`` and prove the OS limits hold whatever the
format (dev only: the function's settings name its decoder, no request or variable can).

Bytes starting with ``HANG`` never return (asleep: no CPU), ``SPIN`` never return (on the CPU),
``ALLOCATE`` allocate without bound, ``CRASH`` segfault the worker, ``SLOW<ms>`` sleep that long
first, ``BURN<ms>`` use that much CPU time first (a slow but legitimate decode: it takes longer
the more the CPU is shared), ``PLANT`` subverts the worker that decodes it (every later image it
decodes comes out black, as a decoder exploit could make it lie), ``ESCAPE`` tries what an exploit
would (open a socket, fork, run a program, signal the zygote, leave its process group, make a memfd)
and refuses its image with the list of what worked, ``LIE`` writes a malformed answer on its socket
and ``DRIP`` a well-formed one a byte at a time; anything else decodes normally.
``without_pixel_decoding`` is ``to_pixels`` with Pillow's pixel decoders switched off: an image that
a test expects refused from its header alone answers 422 instead if any decoder ran.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time

import numpy as np
from PIL import ImageFile

from handler.errors import Code, Unprocessable
from handler.recognition import imaging

PATH = "tests.corpora.decode_doubles:decode"
WITHOUT_PIXEL_DECODING = "tests.corpora.decode_doubles:without_pixel_decoding"
HANG, SPIN, ALLOCATE, CRASH, PLANT, ESCAPE = b"HANG", b"SPIN", b"ALLOCATE", b"CRASH", b"PLANT", b"ESCAPE"
LIE, DRIP = b"LIE", b"DRIP"
SUBVERTED = {"yes": False}  # per worker process


def decode(data: bytes, limits: imaging.DecodeLimits):
    data = bytes(data)  # a worker's image is a mapped memfd: these doubles read it as bytes
    if data.startswith(HANG):
        while True:
            time.sleep(3600)
    if data.startswith(SPIN):
        while True:
            pass
    if data.startswith(ALLOCATE):
        held = []
        while True:
            held.append(bytearray(64 * 1024 * 1024))  # touched: counts as memory, not only address space
    if data.startswith((LIE, DRIP)):
        _lie(data)
    if data.startswith(ESCAPE):
        raise Unprocessable(f"escaped: {','.join(_escapes()) or 'none'}", Code.CORRUPT_IMAGE)
    if data.startswith(CRASH):
        ctypes.string_at(0)  # SIGSEGV in C, as a decoder bug would
    if data.startswith(PLANT):
        SUBVERTED["yes"] = True
        data = data[len(PLANT) :]
    elif SUBVERTED["yes"]:
        return np.zeros((*imaging.INPUT_SIZE, 3), dtype=np.uint8)
    slow = re.match(rb"SLOW(\d+)", data)
    if slow:
        time.sleep(int(slow.group(1)) / 1000)
        data = data[slow.end() :]
    burn = re.match(rb"BURN(\d+)", data)
    if burn:
        ends = time.process_time() + int(burn.group(1)) / 1000
        while time.process_time() < ends:
            pass
        data = data[burn.end() :]
    return imaging.to_pixels(data, limits)


def _fd(target: str) -> int:
    """This worker's descriptor whose link starts with ``target`` ("socket:", "/memfd:image")."""
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}").startswith(target):
                return int(name)
    raise OSError(f"no {target} descriptor")


def _frame(header: object) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("!I", len(encoded)) + encoded


def _lie(data: bytes) -> None:
    """Answer on the worker's own socket, behind the worker's back: ``LIE`` a refusal whose status is
    a list, ``DRIP`` a well-formed refusal one byte every 50 ms."""
    nonce = sys._getframe(2).f_locals["header"]["id"]  # decode_one's: the image being decoded
    sock = _fd("socket:")
    if data.startswith(LIE):
        os.write(sock, _frame({"id": nonce, "ok": False, "status": [413], "code": "x", "message": "m"}))
        return
    for byte in _frame({"id": nonce, "ok": False, "status": 422, "code": "corrupt_image", "message": "m"}):
        os.write(sock, bytes([byte]))
        time.sleep(0.05)


def _escapes() -> list[str]:
    """What a subverted decoder tried that worked (each attempt answers OSError when refused)."""
    attempts = {
        "socket": lambda: socket.socket().close(),
        "fork": lambda: os.fork() == 0 and os._exit(0),
        "exec": lambda: subprocess.run(["/bin/true"], check=False),
        "signal-zygote": lambda: os.kill(os.getppid(), 0),
        "setsid": os.setsid,
        "memfd": lambda: os.close(os.memfd_create("held")),
        "grow-image-memfd": lambda: os.posix_fallocate(_fd("/memfd:image"), 0, 1 << 30),
        "renice-zygote": lambda: os.setpriority(os.PRIO_PROCESS, os.getppid(), 19),
    }
    worked = []
    for name, attempt in attempts.items():
        try:
            attempt()
            worked.append(name)
        except OSError:
            pass
    return worked


def _no_pixels(self, *args, **kwargs):
    raise RuntimeError(f"the {self.format} pixel decoder ran")


def without_pixel_decoding(data: bytes, limits: imaging.DecodeLimits):
    load = ImageFile.ImageFile.load
    ImageFile.ImageFile.load = _no_pixels  # in this worker only
    try:
        return imaging.to_pixels(data, limits)
    finally:
        ImageFile.ImageFile.load = load
