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
from support.crf_reference import M, pq, pq_inv, reference_crf
from support.exr_files import read_hdri


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
