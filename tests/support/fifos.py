"""For the tests that put a FIFO (named pipe) where a file is expected (issue 25): ``promptly`` runs a
call with a watchdog process that frees a reader blocked on the FIFOs, and fails the test if the call
blocked."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

TIMEOUT = 30  # seconds; the checks take milliseconds, a regression blocks forever

# Frees a reader blocked on the FIFOs (argv[2:]) after argv[1] seconds: opening a FIFO for writing
# wakes a reader waiting in open(), which then reads an empty file. Repeated, for readers that open
# again. A separate process, because a reader blocked inside a C extension (the OpenEXR bindings)
# holds the GIL: no thread of the test's own process would get to run.
WATCHDOG = """
import os, sys, time
time.sleep(float(sys.argv[1]))
end = time.monotonic() + 600
while time.monotonic() < end:
    for fifo in sys.argv[2:]:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    time.sleep(0.02)
"""


def promptly(call, *fifos):
    """``call()``'s result (or its exception); the test fails if it took more than TIMEOUT, which a
    FIFO opened by mistake would make forever but for the watchdog process."""
    watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(TIMEOUT), *fifos])
    start = time.monotonic()
    try:
        return call()
    finally:
        watchdog.kill()
        watchdog.wait()
        if time.monotonic() - start > TIMEOUT:
            pytest.fail(f"blocked for more than {TIMEOUT} s: a FIFO was opened ({fifos})")
