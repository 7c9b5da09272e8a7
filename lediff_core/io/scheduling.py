"""Keeping an encoder from making the calling thread real-time.

SVT-AV1 (``libsvtav1``, the ``av1`` codec of Save HDR Video, bundled in PyAV's wheels) switches the
thread that opens an encoder to ``SCHED_FIFO`` priority 99 whenever the system lets it — a process
running as root with ``CAP_SYS_NICE`` (a bare-metal or privileged-container ComfyUI, a CI runner), or
an ``RLIMIT_RTPRIO`` of 99 — and never switches it back; the encoder's worker threads (about 40)
inherit the policy. Measured here as root: after one short encode the calling thread stays at
FIFO 99 for good, and 38 of the process's 40 threads run at FIFO 99 while it encodes. A ComfyUI
executor thread left at FIFO 99 outranks everything else on the machine: its next sampler run can
starve the server, the desktop and other users (the kernel leaves ordinary tasks 5 % of each
second); in this project's test suite it starved the browser tests until CI gave up.

``ordinary_scheduling()`` wraps a call into such an encoder: inside, the calling thread cannot
raise its own priority (``CAP_SYS_NICE`` is left out of its effective capabilities, which are
per thread on Linux, and the soft ``RLIMIT_RTPRIO`` is 0), so the encoder's request fails as it
would for an ordinary user — SVT-AV1 ignores the failure and encodes the same — and the threads it
starts inherit the ordinary policy. On leaving, the limit and the capability are put back, then
the thread's policy and priority if they changed anyway. Elsewhere than Linux it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager

CAP_SYS_NICE = 23
_CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    return libc if hasattr(libc, "capget") and hasattr(libc, "capset") else None


_LIBC = _libc() if sys.platform.startswith("linux") else None


def _capabilities():
    """The calling thread's capability sets (pid 0: this thread), or None where unreadable."""
    header, data = _CapHeader(_CAP_VERSION_3, 0), (_CapData * 2)()
    return (header, data) if _LIBC.capget(ctypes.byref(header), data) == 0 else None


def _set_capabilities(caps) -> bool:
    header, data = caps
    header.pid = 0
    return _LIBC.capset(ctypes.byref(header), data) == 0


@contextmanager
def ordinary_scheduling():
    """Within: the calling thread cannot make itself (or threads it starts) real-time; after: its
    scheduling policy and priority are what they were before. See the module's docstring."""
    if _LIBC is None:
        yield
        return
    import resource

    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    caps = _capabilities()
    nice_bit = 1 << CAP_SYS_NICE
    dropped = False
    if caps is not None and caps[1][0].effective & nice_bit:
        caps[1][0].effective &= ~nice_bit
        # where a sandbox refuses capset, the policy is still put back after the call
        dropped = _set_capabilities(caps)
    rtprio = resource.getrlimit(resource.RLIMIT_RTPRIO)
    if rtprio[0] != 0:
        resource.setrlimit(resource.RLIMIT_RTPRIO, (0, rtprio[1]))
    try:
        yield
    finally:
        if rtprio[0] != 0:
            resource.setrlimit(resource.RLIMIT_RTPRIO, rtprio)
        if dropped:
            caps[1][0].effective |= nice_bit
            _set_capabilities(caps)
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            os.sched_setscheduler(0, policy, param)
