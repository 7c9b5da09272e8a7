"""Integer code values of a monotone transfer curve, exactly and in a few table lookups.

``curve_codes(x, decode, bits, scale, limit)`` is
``round(encode(clamp(x * scale, 0, limit)) * (2**bits - 1))``
for the curve whose inverse is ``decode`` (signal 0..1 -> linear), without evaluating ``encode``
per value. Code ``k`` starts at the linear threshold ``decode((k - 0.5) / (2**bits - 1))``,
computed once in float64; a value's code is the number of thresholds at or below it. That count
comes from a table indexed by the value's float32 bit pattern (sign, exponent and the top
``32 - SHIFT - 9`` mantissa bits): the code at the bucket's lower edge, plus one if the value
reaches the one threshold that may lie inside the bucket. Buckets are at most 2**-10 (0.098 %)
wide relative to the value; the smallest relative code step of the BT.2100 curves is 0.90 % (PQ)
and 0.39 % (HLG) at 10 bits, 0.22 % and 0.098 % at 12 bits, and the table is built with a check
that no bucket holds two thresholds (more bits need a smaller SHIFT).

The result is the exact rounding of the exact curve (in float64) of each float32 input, which is
closer to the formula than evaluating it in float32, and about four times faster on CPU than
evaluating PQ or HLG in torch (0.09 s against 0.36 s for 6 M values). ``x`` may be a numpy array or
a torch tensor on any device (the tables are copied there once): the same integer and float32
comparisons give the same codes everywhere. No ComfyUI imports.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

SHIFT = 13  # bucket = float32 bits >> SHIFT: 10 mantissa bits kept
_BUCKETS = 1 << (32 - SHIFT)
_FINITE = 0x7F800000 >> SHIFT  # first bucket of +Inf / NaN bit patterns


def curve_codes(x, decode: Callable[[torch.Tensor], torch.Tensor], bits: int,
                scale: float = 1.0, limit: float = float("inf")):
    """Code values of float32 ``x`` under the curve whose inverse is ``decode``, applied to
    ``x * scale``: values below 0 get code 0, values above ``limit`` (in the curve's units) the
    code of ``limit``. ``x`` must be finite. A numpy ``x`` gives uint16 codes; a torch ``x`` gives
    int16 codes on its device."""
    if isinstance(x, torch.Tensor):
        base, inner = _device_table(decode, bits, float(scale), float(limit), x.device)
        x = x.to(torch.float32).contiguous()
        # the bit pattern's top 19 bits, as numpy's uint32 shift (the mask undoes the sign's
        # spread); index_select takes int32 indices (take would need int64: twice the traffic)
        bucket = (x.view(torch.int32) >> SHIFT).bitwise_and_(_BUCKETS - 1).view(-1)
        codes = base.index_select(0, bucket)
        codes += x.view(-1) >= inner.index_select(0, bucket)
        return codes.view(x.shape)
    base, inner = _table(decode, bits, float(scale), float(limit))
    x = np.ascontiguousarray(x, dtype=np.float32)
    # the bucket index straight into the index type numpy's take works in (its own conversion of
    # uint32 indices is a third of the time)
    bucket = np.empty(x.shape, np.intp)
    np.right_shift(x.view(np.uint32), SHIFT, out=bucket, casting="unsafe")
    codes = base.take(bucket)
    codes += x >= inner.take(bucket)
    return codes


@lru_cache(maxsize=16)
def _device_table(decode, bits: int, scale: float, limit: float, device: torch.device):
    base, inner = _table(decode, bits, scale, limit)
    return torch.from_numpy(base.astype(np.int16)).to(device), torch.from_numpy(inner).to(device)


@lru_cache(maxsize=16)
def _table(decode, bits: int, scale: float, limit: float) -> tuple[np.ndarray, np.ndarray]:
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

    base = np.zeros(_BUCKETS, np.uint16)  # negative values (sign bit set) stay at code 0
    inner = np.full(_BUCKETS, np.inf, np.float32)
    base[:_FINITE] = below[:-1]
    inner[:_FINITE] = inner32
    base[_FINITE:_BUCKETS // 2] = len(thresholds)  # +Inf and NaN patterns (refused upstream)
    return base, inner
