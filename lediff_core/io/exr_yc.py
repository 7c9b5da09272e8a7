"""Luminance/chroma ("YC") OpenEXR images to RGB, the way OpenEXR's RGBA interface reconstructs them.

OpenEXR's C++ ``RgbaOutputFile`` with ``WRITE_YC``/``WRITE_YCA`` stores ``Y`` (luminance, full
resolution) and ``RY = (R - Y) / Y``, ``BY = (B - Y) / Y`` sampled 2x2 (at even x and even y),
all half floats. ``RgbaInputFile`` turns them back into RGB; the Python bindings only hand out the
raw channels. This module reproduces the C++ reader's steps, learned from OpenEXR's documentation
and ``ImfRgbaYca``/``ImfRgbaFile`` (BSD-3; facts only, the code here is our own):

1. Chroma is upsampled separably, first along rows, then along columns: stored samples are kept,
   each missing one is a 14-tap symmetric filter over the stored samples 1, 3, ..., 13 pixels away
   (weights below). Beyond the image edge the first sample, respectively the last, is repeated.
2. ``R = (RY + 1) Y``, ``B = (BY + 1) Y``, ``G = (Y - wR R - wB B) / wG`` with the luminance weights
   (wR, wG, wB) of the file's chromaticities (Rec.709 when it has none); a pixel whose two chroma
   values are exactly 0 is grey (R = G = B = Y) so black-and-white images round-trip exactly.
3. Filter overshoot can make a pixel more saturated than its neighbours: a pixel whose saturation
   ``1 - min/max`` exceeds ``1 - (1 - m) / 4`` (m: mean saturation of its four diagonal
   neighbours) is desaturated towards its maximum component to that limit, keeping its luminance.

Every intermediate result is rounded to half like the C++ library does (it works in ``Rgba``
pixels); files whose Y/RY/BY channels are 32-bit float skip that rounding. OpenEXR only opens
2x2-sampled files whose data window has an even origin and even width and height; for other
sizes (which the C++ library refuses) we repeat the last sample at the edge. Measured against
Debian's libOpenEXR 3.1.5 (tests/core/io/test_exr_reading.py and the public OpenEXR sample images):
identical, except for 1-2 half-float ulps in about 1 value in 30000 (float summation order and
the float32 luminance weights of the C++ code).
"""

from __future__ import annotations

import numpy as np

# Interpolation weights for the samples 1, 3, 5, ..., 13 pixels away from a missing chroma sample.
RECONSTRUCTION_TAPS = np.array(
    [0.627123, -0.186077, 0.087929, -0.043159, 0.019597, -0.007540, 0.002128], np.float32
)
_REACH = len(RECONSTRUCTION_TAPS)  # samples needed on each side


def _rounder(half: bool):
    if half:
        return lambda a: a.astype(np.float16).astype(np.float32)
    return lambda a: a


def _taps(padded: np.ndarray, first: int, count: int, q) -> np.ndarray:
    """Missing samples at positions 2k+1 for k = first .. first+count-1 (k indexes the samples;
    ``padded`` carries ``_REACH`` repeated edge samples on each side): the taps applied in the C++
    order (far left ... near left, near right ... far right), accumulated in float32, rounded."""
    k = first + _REACH
    offsets = [(-t, t) for t in range(_REACH - 1, -1, -1)] + [(1 + t, t) for t in range(_REACH)]
    acc = padded[k + offsets[0][0] : k + offsets[0][0] + count] * RECONSTRUCTION_TAPS[offsets[0][1]]
    term = np.empty_like(acc)
    for offset, t in offsets[1:]:
        acc += np.multiply(padded[k + offset : k + offset + count], RECONSTRUCTION_TAPS[t], out=term)
    return q(acc)


def _pad(s: np.ndarray) -> np.ndarray:
    return np.concatenate([np.repeat(s[:1], _REACH, 0), s, np.repeat(s[-1:], _REACH, 0)])


def _interpolate(samples: np.ndarray, count: int, axis: int, q) -> np.ndarray:
    """``count`` values along ``axis`` from ``samples`` stored at the even positions."""
    s = np.ascontiguousarray(np.moveaxis(samples, axis, 0))
    out = np.empty((count,) + s.shape[1:], np.float32)
    out[0::2] = s[: (count + 1) // 2]
    if count // 2:
        out[1::2] = _taps(_pad(s), 0, count // 2, q)
    return np.moveaxis(out, 0, axis)


def _to_rgb(y, ry, by, weights, q):
    wr, wg, wb = weights
    r = (ry + np.float32(1)) * y
    b = (by + np.float32(1)) * y
    g = q((y - r * wr - b * wb) / wg)  # from the unrounded R and B, like the C++ reader
    r, b = q(r), q(b)
    grey = (ry == 0) & (by == 0)
    return np.stack([np.where(grey, y, r), np.where(grey, y, g), np.where(grey, y, b)], -1)


def _saturation(rgb):
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hi, lo = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hi > 0, np.float32(1) - lo / np.where(hi > 0, hi, 1), np.float32(0))


def _fix_saturation(rows: np.ndarray, weights, q) -> np.ndarray:
    """``rows`` [H + 2, W, 3]: the image with one extra row above and below. Returns [H, W, 3]."""
    sat = _saturation(rows)
    sat = np.concatenate([sat[:, :1], sat, sat[:, -1:]], axis=1)  # repeat the edge columns
    above, below = sat[:-2], sat[2:]
    s_mean = np.minimum(
        np.float32(1),
        np.float32(0.25) * (above[:, :-2] + above[:, 2:] + below[:, :-2] + below[:, 2:]),
    )
    rgb = rows[1:-1]
    s = sat[1:-1, 1:-1]
    s_max = np.minimum(np.float32(1), np.float32(1) - (np.float32(1) - s_mean) * np.float32(0.25))
    fix = (s > s_mean) & (s > s_max)
    if not fix.any():
        return rgb
    px = rgb[fix]
    f = (s_max[fix] / s[fix])[:, None]
    peak = px.max(-1, keepdims=True)
    out = q(np.maximum(peak - (peak - px) * f, np.float32(0)))
    wr, wg, wb = weights
    y_in = px[:, 0] * wr + px[:, 1] * wg + px[:, 2] * wb
    y_out = out[:, 0] * wr + out[:, 1] * wg + out[:, 2] * wb
    positive = y_out > 0
    scale = np.where(positive, y_in / np.where(positive, y_out, 1), np.float32(1))
    out = np.where(positive[:, None], q(out * scale[:, None]), out)
    rgb = rgb.copy()
    rgb[fix] = out
    return rgb


# Rows reconstructed at a time: the temporaries (chroma rows, RGB before the saturation fix) stay
# a few MiB, whatever the image's size, and the result goes straight into the output.
BAND_ROWS = 32


def _chroma_rows(chroma: np.ndarray, r0: int, r1: int, height: int, width: int, q) -> np.ndarray:
    """Full-resolution chroma [r1 - r0, W, 2] of image rows r0 .. r1 - 1 (-1 <= r0, r1 <= H + 1)
    from the stored samples ``chroma`` [ceil(H/2), ceil(W/2), 2]: stored rows kept, missing ones
    interpolated, rows -1 and H as the C++ reader builds them (see yca_to_rgb). Only the sample
    rows the filter reaches are interpolated along x, so a band costs what its rows need."""
    n = chroma.shape[0]
    lo = (r0 - 1) // 2 - _REACH  # samples reached: k - 6 .. k + 7 around k = (r - 1) // 2
    hi = (r1 - 1) // 2 + _REACH + 1
    window = _interpolate(chroma[np.clip(np.arange(lo, hi), 0, n - 1)], width, axis=1, q=q)
    out = np.empty((r1 - r0, width, 2), np.float32)
    first_even = max(r0, 0) + (max(r0, 0) % 2)
    evens = np.arange(first_even, min(r1, height), 2)
    out[evens - r0] = window[evens // 2 - lo]
    first_odd = r0 if r0 % 2 else r0 + 1  # row -1 is odd: the same filter at k = -1
    odds = np.arange(first_odd, min(r1, height), 2)
    if len(odds):
        k0 = (int(odds[0]) - 1) // 2
        out[odds - r0] = _taps(window, k0 - lo - _REACH, len(odds), q)
    if r1 > height:  # row H copies the last row with chroma
        out[height - r0] = window[n - 1 - lo]
    return out


def yca_to_rgb(
    y: np.ndarray,
    ry: np.ndarray,
    by: np.ndarray,
    weights,
    subsampled: bool = True,
    half: bool = True,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """RGB [H, W, 3] float32 from ``y`` [H, W] and chroma ``ry``, ``by`` ([ceil(H/2), ceil(W/2)]
    when ``subsampled``, else [H, W]), half or float32. ``weights``: luminance weights (wR, wG,
    wB) of the file's chromaticities. The data window's origin must be even (OpenEXR requires it for 2x2 sampling),
    so array positions have the parity the C++ library's filter uses. ``half``: round every step
    to half like the C++ reader (the channels are half). ``out``: a float32 [H, W, 3] array to
    fill (one is allocated otherwise); the work goes BAND_ROWS rows at a time, so memory beyond
    the inputs and the output stays a few MiB."""
    q = _rounder(half)
    w = np.asarray(weights, np.float64)
    w = (w / w.sum()).astype(np.float32)  # OpenEXR's computeYw normalises the weights
    y, ry, by = (np.asarray(c) for c in (y, ry, by))  # half or float32: converted as needed
    h, width = y.shape
    if out is None:
        out = np.empty((h, width, 3), np.float32)
    if not subsampled:
        for a in range(0, h, BAND_ROWS):
            b = min(h, a + BAND_ROWS)
            out[a:b] = _to_rgb(*(np.asarray(c[a:b], np.float32) for c in (y, ry, by)), w, q)
        return out
    chroma = np.stack([ry, by], -1).astype(np.float32, copy=False)  # [ceil(H/2), ceil(W/2), 2]
    # The saturation fix also looks at rows -1 and H, which the C++ reader builds from clamped
    # rows: row -1 interpolates over row 0 repeated upwards; row H (even for an even height)
    # copies the last row with chroma, and takes the luminance of row H - 2.
    for a in range(0, h, BAND_ROWS):
        b = min(h, a + BAND_ROWS)
        rows = np.arange(a - 1, b + 1)  # the band and one row either side
        luma = y[np.where(rows < 0, 0, np.where(rows >= h, max(h - 2, 0), rows))].astype(np.float32)
        c = _chroma_rows(chroma, a - 1, b + 1, h, width, q)
        out[a:b] = _fix_saturation(_to_rgb(luma, c[..., 0], c[..., 1], w, q), w, q)
    return out
