"""The SI-HDR CRF correction (lediff_core.qa.crf, the metrics' ``crf`` scaling): a known monotone
polynomial in the PQ domain is undone; on real HDRIs the fit equals a straightforward
implementation written here from the published description (Hanji et al. 2022; gfxdisp/pu21's
crf_correction description: Luv with u'v' x 410/255, degree 3, luminance in PQ unregularised,
chroma in linear with cross term and ridge towards identity, lambda 0.01, strength lambda N / P);
and it does what the authors' example shows: a tone curve is forgiven, clipping is not."""

from __future__ import annotations

import numpy as np
import pytest

from lediff_core.qa import metrics as qm
from lediff_core.qa.crf import crf_correct
from support.exr_files import read_hdri

# ---- a straightforward implementation from the description (independent spellings) ----
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


# ---------------------------------------------------------------------------------------


def on_display(name, step=4):
    """A real HDRI with its 99.9th percentile of luminance at 1000 cd/m^2 (what align gives)."""
    ref = read_hdri(name, step).astype(np.float64)
    return ref * (1000.0 / np.percentile(ref @ M[1], 99.9))


def with_luminance(rgb, new_y):
    """``rgb`` with its luminance replaced, chromaticity kept."""
    y = rgb @ M[1]
    return rgb * (new_y / np.maximum(y, 1e-12))[..., None]


POLY = np.array([-0.2, 0.5, 0.6, 0.02])  # highest power first; monotone on [0, 1]: 0.6 + x - 0.6 x^2 > 0


def poly_inverse(e):
    grid = np.linspace(-0.2, 1.2, 200001)
    return np.interp(e, np.polyval(POLY, grid), grid)


def test_a_known_pq_polynomial_is_undone():
    """The test's PQ luminance is bent by the inverse of a known monotone cubic: the correction
    must find that cubic and give the score of the undistorted test."""
    ref = on_display("courtyard")
    rng = np.random.default_rng(5)
    test = np.maximum(ref * (1 + 0.03 * rng.standard_normal(ref.shape)), 0.01)  # the undistorted test
    y = np.maximum(test @ M[1], 0.005)
    distorted = with_luminance(test, pq_inv(poly_inverse(pq(y))))
    undistorted = qm.compute_metric(test, ref, "pu21_psnr", "absolute").score
    restored, fit = crf_correct(distorted, ref)
    assert qm.compute_metric(distorted, ref, "pu21_psnr", "absolute").score < undistorted - 5  # it did distort
    assert qm.compute_metric(restored, ref, "pu21_psnr", "absolute").score == pytest.approx(undistorted, abs=0.1)
    # the fitted cubic is the known one where the data are (PQ 1st to 99th percentile)
    x = np.linspace(*np.percentile(pq(np.maximum(distorted @ M[1], 0.005)), [1, 99]), 50)
    np.testing.assert_allclose(np.polyval(fit.luminance, x), np.polyval(POLY, x), atol=0.005)
    # through compute_metric's crf scaling (align first: nearly the identity here, the display
    # mapping exactly so)
    assert qm.compute_metric(distorted, ref, "pu21_psnr", "crf").score == pytest.approx(undistorted, abs=0.1)


@pytest.mark.parametrize("name", ["sunset", "interior"])
def test_fit_equals_a_straightforward_implementation_on_real_images(name):
    ref = on_display(name)
    # a plausible reconstruction: another tone curve, a colour cast, noise, clipped highlights
    rng = np.random.default_rng(2)
    test = 900 * (ref / 1000) ** 0.8 * np.array([1.05, 1.0, 0.93])
    test = np.minimum(test * (1 + 0.02 * rng.standard_normal(ref.shape)), np.percentile(test, 97)).clip(0)
    ours, _ = crf_correct(test, ref)
    theirs = reference_crf(test, ref)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    assert np.abs(ours - test).max() > 10  # it did change the image


def test_tone_curve_is_forgiven_clipping_is_not():
    """The authors' example: method A clips 5 % of the pixels (plus noise), method B applies a tone
    curve (no clipping); with the correction B scores nearly perfect, A stays below it."""
    ref = on_display("forest")
    rng = np.random.default_rng(0)
    noisy = ref + rng.standard_normal(ref.shape) * ref * 0.02
    a = np.minimum(noisy, np.percentile(ref, 95))
    b = 1000 * noisy.clip(0) ** 0.5 / (300**0.5 + noisy.clip(0) ** 0.5)
    psnr = {(m, s): qm.compute_metric(x, ref, "pu21_psnr", s).score for m, x in (("A", a), ("B", b))
            for s in ("absolute", "crf")}
    assert psnr[("B", "crf")] > psnr[("B", "absolute")] + 10, psnr
    assert psnr[("A", "absolute")] > psnr[("B", "absolute")]  # without the correction B looks worse
    assert psnr[("B", "crf")] > psnr[("A", "crf")] + 1.5, psnr
    assert "crf: PQ luminance" in qm.compute_metric(b, ref, "pu21_ssim", "crf").line
