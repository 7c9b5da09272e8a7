"""The simulated camera and the baselines of the evaluation (pure numpy/torch, real HDRIs)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lediff_core.io.exr import read_exr
from lediff_core.qa.baselines import banterle, inverse_camera, inverse_reinhard, srgb
from lediff_core.qa.camera import (
    Camera,
    capture,
    crop_to_multiple,
    downscale,
    exposure_for_clip_share,
    inverse_response,
    response,
    sample_camera,
)
from support.common import HDRI_DIR, HDRIS


def hdri(name="courtyard.exr", factor=4):
    return downscale(np.maximum(read_exr(os.path.join(HDRI_DIR, name)).rgb, 0), factor)


def test_response_family_endpoints_monotonic_and_closed_form_inverse():
    e = np.linspace(0, 1, 1001)
    for n, a in [(0.9, 0.6), (0.7, 0.4), (1.2, 0.9)]:
        f = response(e, n, a)
        assert f[0] == 0 and f[-1] == pytest.approx(1.0, abs=1e-12)
        assert np.all(np.diff(f) > 0)
        # the closed-form inverse undoes the curve
        np.testing.assert_allclose(inverse_response(f, n, a), e, atol=1e-9)
    # HDRCNN's sigmoid at its mean parameters, by hand: (1.6 * 0.5^0.9) / (0.5^0.9 + 0.6)
    assert response(np.array(0.5), 0.9, 0.6) == pytest.approx(1.6 * 0.5**0.9 / (0.5**0.9 + 0.6))


@pytest.mark.parametrize("name", HDRIS[:4])
@pytest.mark.parametrize("share", [0.05, 0.15])
def test_exposure_clips_the_chosen_share_of_pixels(name, share):
    hdr = hdri(name)
    camera = Camera(exposure_for_clip_share(hdr, share), 0.9, 0.6, share)
    ldr = capture(hdr, camera)
    clipped = np.mean(ldr.max(axis=-1) == 255)
    # 8-bit rounding also saturates pixels just below the clip level: a little more than the share
    assert share <= clipped <= share + 0.03
    assert ldr.dtype == np.uint8


def test_cameras_are_seeded_random_and_not_srgb():
    hdr = hdri()
    a = sample_camera(hdr, np.random.default_rng(7))
    b = sample_camera(hdr, np.random.default_rng(7))
    c = sample_camera(hdr, np.random.default_rng(8))
    assert a == b and a != c
    cams = [sample_camera(hdr, np.random.default_rng(s)) for s in range(200)]
    n = np.array([x.n for x in cams])
    shares = np.array([x.clip_share for x in cams])
    assert abs(n.mean() - 0.9) < 0.03 and 0.05 <= shares.min() and shares.max() <= 0.15
    # the photo is not an sRGB encoding of the exposed scene (no trivially invertible curve)
    ldr = capture(hdr, a).astype(np.float64) / 255
    srgb_photo = srgb(capture(hdr, a))
    exposed = np.minimum(hdr * a.exposure, 1)
    assert np.abs(srgb_photo - exposed).mean() > 5 * np.abs(inverse_response(ldr, a.n, a.a) - exposed).mean()


def test_jpeg_option_degrades_the_photo_by_its_quality():
    hdr = crop_to_multiple(hdri(factor=8), 8)
    camera = Camera(exposure_for_clip_share(hdr, 0.1), 0.9, 0.6, 0.1)
    plain = capture(hdr, camera).astype(int)
    diffs = [np.abs(plain - capture(hdr, Camera(**{**camera.as_dict(), "jpeg_quality": q}))).mean()
             for q in (95, 80, 50)]
    assert 0 < diffs[0] < diffs[1] < diffs[2] < 12


def test_inverse_camera_recovers_unclipped_light_and_keeps_clipped_at_the_clip_level():
    hdr = hdri()
    camera = sample_camera(hdr, np.random.default_rng(3))
    ldr = capture(hdr, camera)
    rec = inverse_camera(ldr, camera)
    unclipped = (ldr.max(axis=-1) < 250) & (hdr.min(axis=-1) * camera.exposure > 0.05)
    rel = np.abs(rec - hdr)[unclipped] / hdr[unclipped]
    assert np.median(rel) < 0.01  # 8-bit quantisation only
    clipped = ldr.max(axis=-1) == 255
    assert np.max(rec[clipped]) == pytest.approx(1 / camera.exposure, rel=1e-6)  # no hallucination


def test_banterle_inverts_reinhard_and_expands_only_highlights():
    white = 16.0
    scene = np.geomspace(1e-3, white, 200)
    displayed = scene * (1 + scene / white**2) / (1 + scene)  # Reinhard's global operator
    np.testing.assert_allclose(inverse_reinhard(displayed, white), scene, rtol=1e-9)
    ldr = np.zeros((2, 2, 3), np.uint8)
    ldr[0, 0], ldr[0, 1], ldr[1, 0] = 255, 20, (255, 128, 0)
    out = banterle(ldr, white)
    assert out[0, 0] == pytest.approx(np.full(3, white), rel=1e-5)  # white expands to W
    assert out[0, 1] == pytest.approx(srgb(ldr)[0, 1], rel=0.01)  # dark pixels keep their value
    lin = srgb(ldr)[1, 0]
    assert out[1, 0, 0] / out[1, 0, 1] == pytest.approx(lin[0] / lin[1], rel=1e-5)  # hue kept
    assert np.all(out[1, 1] == 0)
