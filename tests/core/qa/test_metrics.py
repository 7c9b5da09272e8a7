"""HDR metrics (lediff_core.qa): PU21 against its published check values and pycvvdp's independent
encoder, each metric against its library or formula on the same inputs, the align rule, and a
distortion ladder on real HDR images (tests/data/hdri, CC0)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from lediff_core.qa import metrics as qm
from lediff_core.qa.pu21 import pu21_encode
from support.exr_files import read_hdri

# HDR.md's Rec.709 luminance (more digits than the pack's constant: an independent spelling)
Y_WEIGHTS = np.array([0.212656, 0.715158, 0.072186])
# BT.709-6 item 3.2 as published (4 digits): the luminance PU21-PIQE encodes. PIQE thresholds blocks, so
# the 4th digit of a weight can move its score by about 1 (measured): the arrays must be the same
BT709_Y = np.array([0.2126, 0.7152, 0.0722])


@pytest.fixture(scope="module")
def pair():
    """A real HDRI as reference (cd/m^2 after x100) and a noisy, slightly darker test."""
    ref = read_hdri("courtyard", 4) * 100.0
    rng = np.random.default_rng(1)
    test = (ref * (1 + 0.05 * rng.standard_normal(ref.shape))).clip(0).astype(np.float32)
    return test, ref


def test_pu21_published_check_values():
    got = pu21_encode(np.array([1.0, 100.0, 1000.0, 10000.0]))
    np.testing.assert_allclose(got, [36.54, 256.38, 420.10, 595.39], atol=0.006)


def test_pu21_matches_pycvvdp_encoder():
    from pycvvdp.utils import PU

    y = np.logspace(np.log10(0.001), np.log10(20000), 500)
    theirs = PU(type="banding_glare").encode(torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(pu21_encode(y), np.maximum(theirs, 0), rtol=1e-9, atol=1e-9)
    assert pu21_encode(np.array([0.0, -5.0, 1e6])).tolist() == pytest.approx(
        pu21_encode(np.array([0.005, 0.005, 10000.0])).tolist()
    )


def test_pu21_psnr_absolute_is_per_channel_psnr_peak_256(pair):
    from pycvvdp.utils import PU

    test, ref = pair
    pu = PU(type="banding_glare")
    d = pu.encode(torch.from_numpy(test.astype(np.float64))) - pu.encode(torch.from_numpy(ref.astype(np.float64)))
    expected = 20 * math.log10(256 / math.sqrt(float((d**2).mean())))
    got = qm.compute_metric(test, ref, "pu21_psnr", "absolute")
    assert got.score == pytest.approx(expected, abs=1e-6)
    assert got.map.shape == ref.shape[:2]
    assert "pu21_psnr" in got.line and "dB" in got.line


def test_pu21_ssim_matches_scikit_image(pair):
    from skimage.metrics import structural_similarity

    test, ref = pair
    pt, pr = pu21_encode(test @ Y_WEIGHTS), pu21_encode(ref @ Y_WEIGHTS)
    expected = structural_similarity(
        pt, pr, data_range=256, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    got = qm.compute_metric(test, ref, "pu21_ssim", "absolute")
    assert got.score == pytest.approx(expected, abs=2e-4)
    assert 0 < got.score < 1
    assert got.map.shape == ref.shape[:2]


def test_ssim_core_matches_scikit_image_exactly():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(3)
    a = gaussian_filter(rng.random((64, 80)), 2) * 256
    b = a + rng.normal(0, 8, a.shape)
    expected = structural_similarity(
        a, b, data_range=256, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert qm.ssim(a, b, 256)[0] == pytest.approx(expected, abs=1e-10)


def test_hdr_flip_is_flip_evaluator_on_the_same_inputs(pair):
    import flip_evaluator

    test, ref = pair
    err, mean, _ = flip_evaluator.evaluate(ref, test, "HDR", applyMagma=False)
    got = qm.compute_metric(test, ref, "hdr_flip", "absolute")
    assert got.score == pytest.approx(float(mean), rel=1e-6)
    np.testing.assert_allclose(got.map, np.asarray(err).reshape(got.map.shape), rtol=1e-6)
    # FLIP is not symmetric (its exposure range comes from the reference): the order matters
    clipped = np.minimum(ref, np.percentile(ref, 50))
    _, right, _ = flip_evaluator.evaluate(ref, clipped, "HDR", applyMagma=False)
    _, swapped, _ = flip_evaluator.evaluate(clipped, ref, "HDR", applyMagma=False)
    assert abs(right - swapped) > 0.1
    assert qm.compute_metric(clipped, ref, "hdr_flip", "absolute").score == pytest.approx(right, rel=1e-6)


@pytest.mark.parametrize(("metric", "module"), [("cvvdp", "pycvvdp"), ("fvvdp", "pyfvvdp")])
def test_vdp_metrics_are_their_libraries_on_the_same_inputs(pair, metric, module):
    import importlib

    test, ref = pair
    library = importlib.import_module(module)
    model = getattr(library, metric)(display_name="standard_hdr_linear", quiet=True, device=torch.device("cpu"))
    jod, _ = model.predict(torch.from_numpy(test), torch.from_numpy(ref), dim_order="HWC")
    got = qm.compute_metric(test, ref, metric, "absolute")
    assert got.score == pytest.approx(float(jod), abs=1e-4)
    assert 5 < got.score < 10
    assert got.map.shape == ref.shape[:2]
    same = qm.compute_metric(ref, ref, metric, "absolute")
    assert same.score == pytest.approx(10.0, abs=1e-3)


def test_align_recovers_an_arbitrary_exposure_despite_clipping():
    ref = read_hdri("forest", 4)
    y = ref @ Y_WEIGHTS
    clip_level = np.percentile(y, 90)
    test = np.minimum(ref, clip_level) / 37.0  # a tenth of the pixels clipped, arbitrary scale
    assert qm.align_scale(test, ref) == pytest.approx(37.0, rel=1e-4)
    # the display mapping puts the reference's 99.9th percentile at 1000 cd/m^2
    t, r, _ = qm.to_display(ref / 5, ref, "align")
    assert np.percentile(r @ Y_WEIGHTS, 99.9) == pytest.approx(1000.0, rel=1e-3)
    np.testing.assert_allclose(t, r, rtol=1e-6)
    # scaled copies of the reference score as identical under align, not under absolute
    assert qm.compute_metric(ref * 0.01, ref, "pu21_psnr").score > 100  # float32 rounding only
    assert qm.compute_metric(ref * 0.01, ref, "pu21_ssim").score == pytest.approx(1.0)
    assert qm.compute_metric(ref * 0.01 * 1000, ref * 1000, "pu21_psnr", "absolute").score < 30


def test_bad_inputs_name_the_problem():
    ref = np.ones((32, 32, 3), np.float32)
    with pytest.raises(ValueError, match="differ in size.*resize or crop"):
        qm.compute_metric(ref[:16], ref, "pu21_psnr")
    bad = ref.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 non-finite"):
        qm.compute_metric(bad, ref, "pu21_psnr")
    with pytest.raises(ValueError, match="metric must be one of"):
        qm.compute_metric(ref, ref, "psnr")
    with pytest.raises(ValueError, match="HxWx3"):
        qm.compute_metric(ref[..., :1], ref[..., :1], "pu21_psnr")
    with pytest.raises(ValueError, match="black"):
        qm.compute_metric(ref, ref * 0, "pu21_psnr")


@pytest.mark.parametrize(("metric", "module"), [("hdr_flip", "flip_evaluator"), ("cvvdp", "pycvvdp"),
                                                ("fvvdp", "pyfvvdp"), ("pu21_piqe", "pypiqe")])
def test_missing_library_names_the_pip_command(monkeypatch, metric, module):
    monkeypatch.setitem(sys.modules, module, None)  # what Python does for an absent package
    ref = np.ones((32, 32, 3), np.float32)
    with pytest.raises(qm.MetricUnavailableError, match="pip install"):
        qm.compute_metric(ref, ref, metric)


def _noise(ref, level, rng):
    return (ref * (1 + level * rng.standard_normal(ref.shape))).clip(0)


def _blur(ref, level, rng):
    return np.stack([gaussian_filter(ref[..., c], level) for c in range(3)], -1)


def _clip(ref, level, rng):
    return np.minimum(ref, np.percentile(ref @ Y_WEIGHTS, level))


LADDERS = {
    "noise": (_noise, [0.02, 0.08, 0.3]),
    "blur": (_blur, [0.7, 1.5, 3.0]),
    "clip": (_clip, [99.5, 97.0, 90.0]),
}


# one real image per ladder (each ladder costs about 12 metric runs)
@pytest.mark.parametrize(("image", "distortion"), [("courtyard", "noise"), ("sunset", "blur"), ("interior", "clip")])
def test_distortion_ladder_is_monotonic(image, distortion):
    """More noise / blur / clipping scores monotonically worse with every metric (the test is also
    given an arbitrary exposure, as LEDiff's output has, and scored with align)."""
    ref = read_hdri(image, 4)
    make, levels = LADDERS[distortion]
    tests = [(make(ref, lv, np.random.default_rng(7)) * 3.3).astype(np.float32) for lv in levels]
    for metric in (m for m in qm.METRICS if m not in qm.NO_REFERENCE):  # PIQE judges the test alone
        scores = [qm.compute_metric(t, ref, metric).score for t in tests]
        if not qm.HIGHER_IS_BETTER[metric]:
            scores = [-s for s in scores]
        assert scores[0] > scores[1] > scores[2], (metric, image, distortion, scores)


def test_pu21_piqe_is_pypiqe_on_the_recipe_arrays(pair):
    """The recipe written out here (DiffHDR's PU21-PIQE): the mean 99.9th percentile of luminance to
    1000 cd/m^2, PU21 banding_glare (pycvvdp's encoder) of luminance, / 600, clipped to 0..1, three
    channels; then pypiqe on that array."""
    import pypiqe
    from pycvvdp.utils import PU

    test, ref = pair
    pu = PU(type="banding_glare")
    images = [test, ref]
    k = 1000 / np.mean([np.percentile(i @ BT709_Y, 99.9) for i in images])
    for image in images:
        y = np.clip(pu.encode(torch.from_numpy(image @ BT709_Y * k)).numpy() / 600, 0, 1).astype(np.float32)
        expected = pypiqe.piqe(np.repeat(y[..., None], 3, -1))[0]
        got = qm.compute_metric(image, ref, "pu21_piqe", piqe_factor=qm.piqe_scale(images))
        assert got.score == pytest.approx(expected, abs=1e-3)
        assert 0 < got.score < 100 and got.map.shape == ref.shape[:2]
        assert got.line.startswith("pu21_piqe = ") and "no reference" in got.line
    # one image alone is its own set; the reference and the scaling do not matter
    alone = qm.compute_metric(test, test * 0 + 1, "pu21_piqe", "absolute").score
    k1 = 1000 / np.percentile(test @ BT709_Y, 99.9)
    y = np.clip(pu.encode(torch.from_numpy(test @ BT709_Y * k1)).numpy() / 600, 0, 1).astype(np.float32)
    assert alone == pytest.approx(pypiqe.piqe(np.repeat(y[..., None], 3, -1))[0], abs=1e-3)


def test_fvvdp_and_cvvdp_of_a_clip_are_the_libraries_on_the_frames():
    """A clip (frames x H x W x 3) at a frame rate is scored as a video, as calling each library on
    the same frames does."""
    import pycvvdp
    import pyfvvdp

    ref = np.stack([read_hdri("night", 8)[:, i:i + 48] * 100 for i in range(0, 16, 4)])
    rng = np.random.default_rng(4)
    test = (ref * (1 + 0.1 * rng.standard_normal(ref.shape))).clip(0).astype(np.float32)
    t, r = torch.from_numpy(test), torch.from_numpy(ref)
    for name, model in (("fvvdp", pyfvvdp.fvvdp(display_name="standard_hdr_linear", quiet=True)),
                        ("cvvdp", pycvvdp.cvvdp(display_name="standard_hdr_linear", quiet=True))):
        jod, _ = model.predict(t, r, dim_order="FHWC", frames_per_second=24)
        assert qm.vdp(test, ref, name, fps=24)[0] == pytest.approx(float(jod), abs=1e-4), name
