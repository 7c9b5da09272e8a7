"""Shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time


def timed_rounds(fns, repeat):
    """Seconds of each function in each round ([function][round]), the functions interleaved in
    every round, in reversed order every other round (A B, B A, ...), so that drift (page-cache
    write-back of large files, CPU frequency, other load) affects all of them alike."""
    times = [[] for _ in fns]
    for r in range(repeat):
        order = list(zip(fns, times, strict=True))
        for fn, t in order[::-1] if r % 2 else order:
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return times


def timed(fns, repeat):
    """Median seconds of each function over interleaved rounds (see ``timed_rounds``)."""
    return [statistics.median(t) for t in timed_rounds(fns, repeat)]


def paired_ratio(numerator, denominator):
    """Median over rounds of numerator[i] / denominator[i]: each round's two timings were taken
    back to back, so a slow phase of the machine (seconds long on shared hosts) cancels out."""
    return statistics.median(n / d for n, d in zip(numerator, denominator, strict=True))
