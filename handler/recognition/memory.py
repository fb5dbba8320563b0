"""Process-wide allocator settings, so memory a request freed goes back to the OS (glibc only).

Images decode in the sandbox's worker processes, which exit and take their memory with them; the
function's own process still allocates large blocks (a batch's pixel arrays, the model's tensors,
S3 bodies in the I/O threads). glibc gives each thread its own arena and, after a large block is
freed, raises its mmap threshold so the next large blocks come from those arenas, which it keeps.
A fixed threshold keeps every large allocation in its own mapping, returned at ``free``, and two
arenas bound what the threads can keep.
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
    return libc if libc is not None and hasattr(libc, "mallopt") else None


def configure() -> bool:
    """Fix the mmap threshold and cap the arenas; once, where the function starts. False off glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    libc.mallopt(M_ARENA_MAX, ARENA_MAX)
    return True
