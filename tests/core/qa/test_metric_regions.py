"""Metrics over the highlights and shadows of the LDR photo (lediff_core.qa.metrics.region_masks,
compute_metric_regions): the masks against a definition written here with other scipy tools, each
metric's region score against its formula on the masked pixels, and what a region can and cannot
see (a difference inside the highlights only leaves the shadows perfect)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import maximum_filter

from lediff_core.qa import metrics as qm
from lediff_core.qa.camera import Camera, capture
from support.exr_files import read_hdri

Y_WEIGHTS = np.array([0.212656, 0.715158, 0.072186])


@pytest.fixture(scope="module")
def scene():
    """A real HDRI in cd/m^2, the 8-bit photo a camera took of it (highlights clipped, shadows
    crushed), and a test that differs from the reference only in the photo's clipped pixels."""
    ref = read_hdri("sunset", 4) * 100.0
    peak = ref.max(-1)
    camera = Camera(exposure=1 / np.quantile(peak, 0.9), n=0.9, a=0.6, clip_share=0.1)
    photo = capture(ref, camera)
    rng = np.random.default_rng(3)
    # clipped, and not within the shadows' reach (a dark silhouette may touch the sun)
    clipped = (photo.max(-1) >= 253) & ~(maximum_filter((photo.max(-1) <= 2).astype(np.uint8), size=5) > 0)
    test = ref.copy()
    test[clipped] *= 1 + 0.3 * rng.standard_normal((int(clipped.sum()), 3))
    return ref, photo, np.maximum(test, 0)


def test_masks_follow_the_documented_definition(scene):
    _, photo, _ = scene
    masks = qm.region_masks(photo)
    # 0.99 of 255 is 252.45: codes 253-255 are clipped; 0.01 x 255 = 2.55: codes 0-2 are black
    hi = maximum_filter((photo.max(-1) >= 253).astype(np.uint8), size=5) > 0
    lo = maximum_filter((photo.max(-1) <= 2).astype(np.uint8), size=5) > 0
    np.testing.assert_array_equal(masks["highlights"], hi)
    np.testing.assert_array_equal(masks["shadows"], lo)
    assert masks["image"].all()
    assert 0.05 < hi.mean() < 0.4 and lo.any()
    # the same photo as display-encoded floats (what ComfyUI's Load Image gives) picks the same pixels
    again = qm.region_masks(photo.astype(np.float32) / 255)
    np.testing.assert_array_equal(again["highlights"], hi)


def test_region_scores_are_each_formula_on_the_region(scene):
    import torch
    from pycvvdp.utils import PU

    ref, photo, test = scene
    masks = qm.region_masks(photo)
    pu = PU(type="banding_glare")
    d2 = ((pu.encode(torch.from_numpy(test.astype(np.float64))) - pu.encode(torch.from_numpy(ref.astype(np.float64))))
          .numpy() ** 2).mean(-1)
    psnr = qm.compute_metric_regions(test, ref, "pu21_psnr", photo, "absolute")
    for name in qm.REGIONS:
        mse = d2[masks[name]].mean()
        expected = math.inf if mse == 0 else 20 * np.log10(256 / np.sqrt(mse))
        assert psnr[name].score == pytest.approx(expected, rel=1e-9), name
    assert psnr["shadows"].score == math.inf  # nothing differs there
    assert psnr["highlights"].score < psnr["image"].score
    assert "[highlights]" in psnr["highlights"].line and "pixels" in psnr["highlights"].line
    # the whole-image entry is compute_metric's score
    assert psnr["image"].score == qm.compute_metric(test, ref, "pu21_psnr", "absolute").score

    flip = qm.compute_metric_regions(test, ref, "hdr_flip", photo, "absolute")
    assert flip["highlights"].score == pytest.approx(float(flip["image"].map[masks["highlights"]].mean()), rel=1e-6)
    assert flip["highlights"].score > flip["image"].score
    ssim = qm.compute_metric_regions(test, ref, "pu21_ssim", photo, "absolute")
    inside = np.zeros(masks["image"].shape, bool)
    inside[5:-5, 5:-5] = True
    expected = 1 - ssim["image"].map[masks["highlights"] & inside].mean(dtype=np.float64)
    assert ssim["highlights"].score == pytest.approx(expected, abs=1e-6)
    # (an SSIM window reaches 5 pixels beyond its centre: the shadows see a little of the highlights)
    assert ssim["highlights"].score < ssim["image"].score < ssim["shadows"].score == pytest.approx(1.0, abs=1e-3)
    # for a pooled metric the test is the reference outside the region
    vdp = qm.compute_metric_regions(test, ref, "cvvdp", photo, "absolute")
    assert vdp["image"].score == pytest.approx(qm.compute_metric(test, ref, "cvvdp", "absolute").score, abs=1e-6)
    kept = np.where(masks["highlights"][..., None], test, ref)
    assert vdp["highlights"].score == pytest.approx(qm.compute_metric(kept, ref, "cvvdp", "absolute").score,
                                                    abs=1e-6)
    assert vdp["shadows"].score == pytest.approx(10.0, abs=1e-3)


def test_empty_regions_and_no_reference_metrics_are_nan(scene):
    ref, photo, test = scene
    grey = np.full(photo.shape, 128, np.uint8)  # nothing clipped, nothing crushed
    out = qm.compute_metric_regions(test, ref, "pu21_psnr", grey, "crf")
    assert math.isnan(out["highlights"].score) and math.isnan(out["shadows"].score)
    assert math.isfinite(out["image"].score) and "crf" in out["image"].line
    piqe = qm.compute_metric_regions(test, ref, "pu21_piqe", photo)
    assert math.isfinite(piqe["image"].score) and math.isnan(piqe["highlights"].score)
    with pytest.raises(ValueError, match="LDR photo"):
        qm.compute_metric_regions(test, ref, "pu21_psnr", None)
    with pytest.raises(ValueError, match="does not match"):
        qm.compute_metric(test, ref, "pu21_psnr", region=np.ones((4, 4), bool))
