"""A straightforward implementation of the SI-HDR CRF correction, written from its authors'
published description (Hanji et al., SIGGRAPH 2022; gfxdisp/pu21's crf_correction description:
Luv with u'v' x 410/255, degree 3, luminance in PQ unregularised, chroma in linear with the cross
term and a ridge towards the identity, lambda 0.01, strength lambda N / P), independent of
lediff_core.qa.crf: its own matrix, PQ spelling, Luv inverse through xy, and numpy's lstsq on the
explicit design matrices instead of the normal equations. The reference of tests/core/qa/test_crf.py
and the baseline of benchmarks/bench_metrics.py."""

from __future__ import annotations

import numpy as np

# Rec.709 D65 RGB -> XYZ from the primaries' xy (BT.709): the columns are the primaries' xyz scaled so
# RGB (1,1,1) is the white point at Y = 1. (The description lists it rounded to 6 digits:
# 0.412424 0.357579 0.180464 / 0.212656 0.715158 0.072186 / 0.019332 0.119193 0.950444.)
_xy = np.array([[0.64, 0.33], [0.30, 0.60], [0.15, 0.06]])
_cols = np.stack([_xy[:, 0] / _xy[:, 1], np.ones(3), (1 - _xy.sum(1)) / _xy[:, 1]])
M = _cols * np.linalg.solve(_cols, np.array([0.3127 / 0.3290, 1.0, (1 - 0.3127 - 0.3290) / 0.3290]))
assert np.allclose(M, [[0.412424, 0.357579, 0.180464], [0.212656, 0.715158, 0.072186],
                       [0.019332, 0.119193, 0.950444]], atol=1e-4)
# SMPTE ST 2084 in its published rational form
M1, M2, C1, C2, C3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32


def pq(nits):
    y = (nits / 10000.0) ** M1
    return ((C1 + C2 * y) / (1 + C3 * y)) ** M2


def pq_inv(e):
    p = e ** (1 / M2)
    return 10000.0 * (np.maximum(p - C1, 0) / (C2 - C3 * p)) ** (1 / M1)


def to_luv(rgb):
    xyz = np.clip(rgb.reshape(-1, 3) @ M.T, 1e-4, 1e8)
    s = xyz.sum(-1)
    x, y = xyz[:, 0] / s, xyz[:, 1] / s
    d = -2 * x + 12 * y + 3
    return xyz[:, 1], np.stack([4 * x / d, 9 * y / d], -1) * 410 / 255


def from_luv(lum, uv):
    u, v = uv[:, 0] * 255 / 410, uv[:, 1] * 255 / 410
    x, y = 9 * u / (6 * u - 16 * v + 12), 4 * v / (6 * u - 16 * v + 12)
    big_y = np.clip(lum, 1e-4, 1e8)
    big_x = np.clip(x / y * lum, 1e-4, 1e8)
    big_z = np.clip((1 - x - y) / y * lum, 1e-4, 1e8)
    return np.maximum(np.stack([big_x, big_y, big_z], -1) @ np.linalg.inv(M).T, 0)


def design(ch):
    """Columns: the cubes and squares of each channel, the pairwise products, the channels, 1."""
    cols = [ch[:, i] ** 3 for i in range(ch.shape[1])] + [ch[:, i] ** 2 for i in range(ch.shape[1])]
    cols += [ch[:, i] * ch[:, j] for i in range(ch.shape[1]) for j in range(i + 1, ch.shape[1])]
    cols += [ch[:, i] for i in range(ch.shape[1])] + [np.ones(len(ch))]
    return np.stack(cols, -1)


def ridge_lstsq(a, b, lam, w0):
    """Least squares of [a; sqrt(s) I] W = [b; sqrt(s) W0] (lstsq, not the normal equations)."""
    s = lam * a.shape[0] / a.shape[1]
    aa = np.vstack([a, np.sqrt(s) * np.eye(a.shape[1])])
    bb = np.vstack([b, np.sqrt(s) * w0])
    return np.linalg.lstsq(aa, bb, rcond=None)[0]


def reference_crf(test, ref):
    lt, uvt = to_luv(np.maximum(test, 0.005))
    lr, uvr = to_luv(np.maximum(ref, 0.005))
    a = design(pq(lt)[:, None])
    w = np.linalg.lstsq(a, pq(lr), rcond=None)[0]
    lum = pq_inv(np.clip(a @ w, pq(0.005), 1.0))
    c = design(uvt)
    w0 = np.zeros((c.shape[1], 2))
    w0[-3, 0] = w0[-2, 1] = 1  # the u and v columns
    uv = c @ ridge_lstsq(c, uvr, 0.01, w0)
    return from_luv(lum, uv).reshape(test.shape)
