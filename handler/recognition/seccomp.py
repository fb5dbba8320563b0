"""A seccomp filter for decode workers: what a subverted decoder may no longer ask of the kernel.

A decoder needs memory, its own threads and its socket; it never needs to open a connection, start
a process, run a program, signal or inspect another process, or hold memory outside its address
space. ``confine`` installs a classic-BPF filter (``prctl(PR_SET_SECCOMP)``, no library needed) that
answers ``EPERM`` to those calls, so an exploit inside a worker is held to its own image:

- no ``socket``/``connect``/``bind``/``listen``/``accept``/``socketpair`` (no network, no new
  channels), no ``fork``/``vfork``, and ``clone`` only for threads (``CLONE_THREAD``); ``clone3``
  answers ``ENOSYS`` so the C library falls back to ``clone``;
- no ``execve``, ``ptrace``, ``process_vm_*``, ``pidfd_*``, ``setsid``/``setpgid`` (it cannot leave
  the process group that is killed with it), ``unshare``/``setns``, ``bpf``, ``perf_event_open``,
  ``userfaultfd``, ``io_uring_setup``, key rings, ``personality``;
- ``kill``/``tgkill``/``prlimit64``/``rt_*sigqueueinfo`` only aimed at itself (0 or its own pid);
  ``tkill`` never;
- no ``memfd_create`` (memory that its address-space cap would not count);
- no ``setpriority``, ``sched_setaffinity``/``setscheduler``/``setparam``/``setattr``,
  ``ioprio_set``: a worker could otherwise slow the function and every later worker for good (an
  unprivileged process cannot raise its priority back).

The filter is per architecture (x86_64 and aarch64, Lambda's two); elsewhere, or where the kernel
refuses it, ``confine`` returns False and the worker runs without it (the OS limits still hold).
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
ALLOW, KILL = 0x7FFF0000, 0x80000000
DENY, MISSING = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS  # SECCOMP_RET_ERRNO | errno
CLONE_THREAD = 0x00010000
X32_BIT = 0x40000000

# Per architecture: its audit id, the calls refused outright, those allowed only aimed at itself,
# clone and clone3.
ARCHITECTURES = {
    "x86_64": {
        "audit": 0xC000003E,
        "deny": (41, 42, 43, 49, 50, 53, 288, 57, 58, 59, 322, 101, 310, 311, 112, 109, 272, 308,
                 321, 298, 323, 425, 248, 249, 250, 135, 200, 424, 434, 438, 319,
                 141, 142, 144, 203, 251, 314),
        "self_only": (62, 234, 302, 129, 297),  # kill, tgkill, prlimit64, rt_(tg)sigqueueinfo
        "clone": 56, "clone3": 435,
    },
    "aarch64": {
        "audit": 0xC00000B7,
        "deny": (198, 203, 202, 200, 201, 199, 242, 221, 281, 117, 270, 271, 157, 154, 97, 268,
                 280, 241, 282, 425, 217, 218, 219, 92, 130, 424, 434, 438, 279,
                 140, 118, 119, 122, 30, 274),
        "self_only": (129, 131, 261, 138, 240),
        "clone": 220, "clone3": 435,
    },
}  # fmt: skip

LOAD, JEQ, JSET, JGE, RET = 0x20, 0x15, 0x45, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|…|K, BPF_RET|K
NR, ARCH, ARG0 = 0, 4, 16  # offsets in struct seccomp_data (args[0]'s low word: little-endian)


def program(machine: str, pid: int) -> list[tuple[int, int, int, int]]:
    """The filter for ``machine``, for the process ``pid``: (code, jump-if-true, jump-if-false, k)."""
    arch = ARCHITECTURES[machine]
    # Labels are resolved once the body is laid out: each jump is a forward offset (0-255).
    body: list[tuple[int, str | int, str | int, int]] = [(LOAD, 0, 0, ARCH), (JEQ, 0, "kill", arch["audit"]),
                                                         (LOAD, 0, 0, NR)]  # fmt: skip
    if machine == "x86_64":
        body.append((JGE, "deny", 0, X32_BIT))
    body += [(JEQ, "deny", 0, number) for number in arch["deny"]]
    body += [(JEQ, "self", 0, number) for number in arch["self_only"]]
    body += [(JEQ, "clone", 0, arch["clone"]), (JEQ, "missing", 0, arch["clone3"]), (RET, 0, 0, ALLOW)]
    labels = {"self": len(body)}
    body += [(LOAD, 0, 0, ARG0), (JEQ, "allow", 0, pid), (JEQ, "allow", "deny", 0)]
    labels["clone"] = len(body)
    body += [(LOAD, 0, 0, ARG0), (JSET, "allow", "deny", CLONE_THREAD)]
    for name, verdict in (("allow", ALLOW), ("deny", DENY), ("missing", MISSING), ("kill", KILL)):
        labels[name] = len(body)
        body.append((RET, 0, 0, verdict))

    def offset(at: int, target: str | int) -> int:
        return target if isinstance(target, int) else labels[target] - at - 1

    return [(code, offset(at, yes), offset(at, no), k) for at, (code, yes, no, k) in enumerate(body)]


def confine(pid: int) -> bool:
    """Install the filter on this process (and its future threads); False where it cannot be."""
    machine = platform.machine()
    if machine not in ARCHITECTURES:
        return False
    code = b"".join(struct.pack("=HBBI", *instruction) for instruction in program(machine, pid))
    filters = ctypes.create_string_buffer(code)

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Program(len(code) // 8, ctypes.addressof(filters))
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) == 0
