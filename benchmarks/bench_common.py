"""Shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time


def timed(fns, repeat):
    """Median seconds of each function, the functions interleaved in every round so that drift
    (page-cache write-back of large files, CPU frequency, other load) affects all of them alike."""
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, t in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]
