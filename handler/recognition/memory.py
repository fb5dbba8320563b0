"""Process-wide allocator settings, so memory a request freed goes back to the OS (glibc only).

Decoders run in threads; glibc gives each thread its own arena and, after a large block is freed,
raises its mmap threshold so the next large blocks come from those arenas, which it keeps. A
fixed threshold keeps every large allocation (Pillow's image blocks, libwebp's buffers) in its
own mapping, returned at ``free``; ``release`` trims what the arenas still hold after a request.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters (malloc.h)
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 256 * 1024
ARENA_MAX = 2


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def configure() -> bool:
    """Fix the mmap threshold and cap the arenas; once, where the function starts. False off glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    libc.mallopt(M_ARENA_MAX, ARENA_MAX)
    return True


def release() -> None:
    """Give freed heap memory back to the OS (after a request that decoded large images)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
