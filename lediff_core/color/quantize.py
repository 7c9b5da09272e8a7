"""Integer code values of a monotone transfer curve, exactly and in a few table lookups.

``curve_codes(x, decode, bits, scale, limit)`` is
``round(encode(clamp(x * scale, 0, limit)) * (2**bits - 1))``
for the curve whose inverse is ``decode`` (signal 0..1 -> linear), without evaluating ``encode``
per value. Code ``k`` starts at the linear threshold ``decode((k - 0.5) / (2**bits - 1))``,
computed once in float64; a value's code is the number of thresholds at or below it. That count
comes from a table indexed by the value's float32 bit pattern (sign, exponent and the top
``32 - SHIFT - 9`` mantissa bits): the code at the bucket's lower edge, plus one if the value
reaches the one threshold that may lie inside the bucket. Both live in one int32 entry,
``(base << SHIFT) + 2**SHIFT - t``, with ``t`` the low ``SHIFT`` bits of the inner threshold's float32
(``2**SHIFT`` where there is none): adding the value's own low bits ``v`` and shifting right by
``SHIFT`` gives ``base + (v >= t)``, since non-negative float32s order as their bit patterns (one
gather, an add and a shift). Buckets are at most 2**-10 (0.098 %)
wide relative to the value; the smallest relative code step of the BT.2100 curves is 0.90 % (PQ)
and 0.39 % (HLG) at 10 bits, 0.22 % and 0.098 % at 12 bits, and the table is built with a check
that no bucket holds two thresholds (more bits need a smaller SHIFT).

The result is the exact rounding of the exact curve (in float64) of each float32 input, which is
closer to the formula than evaluating it in float32, and about four times faster on CPU than
evaluating PQ or HLG in torch (0.09 s against 0.36 s for 6 M values). ``x`` may be a numpy array or
a torch tensor on any device (the tables are copied there once): the same integer operations give
the same codes everywhere. No ComfyUI imports.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

SHIFT = 13  # bucket = float32 bits >> SHIFT: 10 mantissa bits kept
_BUCKETS = 1 << (32 - SHIFT)
_FINITE = 0x7F800000 >> SHIFT  # first bucket of +Inf / NaN bit patterns
_LOW = (1 << SHIFT) - 1  # the bits below the bucket


def curve_codes(x, decode: Callable[[torch.Tensor], torch.Tensor], bits: int,
                scale: float = 1.0, limit: float = float("inf")):
    """Code values of float32 ``x`` under the curve whose inverse is ``decode``, applied to
    ``x * scale``: values below 0 get code 0, values above ``limit`` (in the curve's units) the
    code of ``limit``. ``x`` must be finite. A numpy ``x`` gives uint16 codes; a torch ``x`` gives
    int16 codes on its device."""
    if isinstance(x, torch.Tensor):
        table = device_table(decode, bits, scale, limit, x.device)
        return table_codes(x.to(torch.float32).contiguous(), table).to(torch.int16)
    table = _table(decode, bits, float(scale), float(limit))
    x = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    # the bucket index straight into the index type numpy's take works in (its own conversion of
    # uint32 indices is a third of the time); the logical shift leaves no sign bits to mask
    bucket = np.empty(x.shape, np.intp)
    np.right_shift(x, SHIFT, out=bucket, casting="unsafe")
    codes = table.take(bucket)
    codes += (x & _LOW).astype(np.int32)
    codes >>= SHIFT
    return codes.astype(np.uint16)


def device_table(decode, bits: int, scale: float, limit: float, device: torch.device) -> torch.Tensor:
    """``curve_codes``' table for ``table_codes``, on ``device`` (copied there once)."""
    return _device_table(decode, bits, float(scale), float(limit), torch.device(device))


def table_codes(x: torch.Tensor, table: torch.Tensor, out: torch.Tensor | None = None,
                scratch: torch.Tensor | None = None) -> torch.Tensor:
    """The codes (int32, ``x``'s shape) of contiguous float32 ``x`` from ``device_table``'s
    ``table``: ``(table[bucket] + low bits) >> SHIFT`` (the module docstring), into ``out`` when
    given, with ``scratch`` (int64, ``x``'s size) for the bucket index (``gather``'s index type:
    it gathers faster than ``index_select`` with int32 indices). Four passes and one gather."""
    pattern = x.view(torch.int32)
    if scratch is None:
        scratch = torch.empty(x.shape, dtype=torch.int64, device=x.device)
    if out is None:
        out = torch.empty(x.shape, dtype=torch.int32, device=x.device)
    # the bit pattern's top 19 bits, as an unsigned shift would give them (the mask undoes the
    # sign's spread)
    bucket = torch.bitwise_right_shift(pattern, SHIFT, out=scratch.view(x.shape)).bitwise_and_(_BUCKETS - 1)
    torch.gather(table, 0, bucket.view(-1), out=out.view(-1))
    return out.add_(pattern & _LOW).bitwise_right_shift_(SHIFT)


@lru_cache(maxsize=16)
def _device_table(decode, bits: int, scale: float, limit: float, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(_table(decode, bits, scale, limit)).to(device)


@lru_cache(maxsize=16)
def _table(decode, bits: int, scale: float, limit: float) -> np.ndarray:
    code_max = (1 << bits) - 1
    steps = torch.arange(1, code_max + 1, dtype=torch.float64) - 0.5
    thresholds = decode(steps / code_max).numpy()
    if np.any(np.diff(thresholds) <= 0):
        raise ValueError("curve_codes needs a strictly increasing curve")
    thresholds = thresholds[thresholds <= limit] / scale  # clamping = no code above the limit's

    edges = (np.arange(_FINITE + 1, dtype=np.uint64) << SHIFT).astype(np.uint32)
    edges = edges.view(np.float32).astype(np.float64)  # lower edge of each finite bucket (+ Inf)
    below = np.searchsorted(thresholds, edges, side="right")  # thresholds <= lower edge
    inside = np.searchsorted(thresholds, edges[1:], side="left") - below[:-1]  # in (lo, next lo)
    if inside.max(initial=0) > 1:
        raise ValueError(f"curve_codes: a code step of this curve at {bits} bits is finer than the "
                         f"table's buckets (2**-{32 - SHIFT - 9}); raise its resolution (SHIFT)")
    nxt = np.append(thresholds, np.inf)[below[:-1]]
    inner64 = np.where(inside == 1, nxt, np.inf)
    # x >= t (float64) <=> x >= the smallest float32 not below t
    inner32 = inner64.astype(np.float32)
    inner32 = np.where(inner32.astype(np.float64) < inner64, np.nextafter(inner32, np.float32(np.inf)),
                       inner32)

    base = np.zeros(_BUCKETS, np.int64)  # negative values (sign bit set) stay at code 0
    inner = np.full(_BUCKETS, np.inf, np.float32)
    base[:_FINITE] = below[:-1]
    inner[:_FINITE] = inner32
    base[_FINITE:_BUCKETS // 2] = len(thresholds)  # +Inf and NaN patterns (refused upstream)
    # one int32 entry per bucket: (base << SHIFT) + 2**SHIFT - (the inner threshold's low bits),
    # 2**SHIFT where the bucket holds none (or the sign is set)
    edges = np.arange(_BUCKETS, dtype=np.int64) << SHIFT
    inner_low = np.clip(inner.view(np.int32).astype(np.int64) - edges, 0, 1 << SHIFT)
    inner_low[_BUCKETS // 2:] = 1 << SHIFT
    return ((base << SHIFT) + (1 << SHIFT) - inner_low).astype(np.int32)
