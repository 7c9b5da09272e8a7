"""Motion blur against references written here: a still scene is unchanged, a bright square moving
at a known speed is blurred to the area-sampled box of the length it travels while the shutter is
open, the light of a frame is kept, the pack's DIS flow on a real HDR pan gives the blur of the
pan's exact motion, and the HDR-vs-LDR contrast (the 8-bit picture's streak has lost the light)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lediff_core.lens.motion import MotionBlurSettingsError, auto_samples, clip_flow, motion_blur, sample_times
from support.clips import synthetic_pan


def constant_flow(n, h, w, dx, dy):
    f = torch.zeros(n, h, w, 2)
    f[..., 0], f[..., 1] = dx, dy
    return f


def moving_square(frames=3, h=32, w=64, speed=8, size=4, value=50.0):
    """A bright square moving right by ``speed`` pixels a frame on black, and its exact flow."""
    clip = torch.zeros(frames, h, w, 3)
    for t in range(frames):
        clip[t, 12:12 + size, 10 + speed * t:10 + speed * t + size] = value
    # backward flow (where a pixel of frame t was in frame t-1) is -speed; forward flow +speed
    return clip, constant_flow(frames - 1, h, w, -speed, 0), constant_flow(frames - 1, h, w, speed, 0)


def area_box(length):
    """The weights on whole pixels of a unit pixel moved uniformly over ``length`` pixels (an even
    integer), centred: a pixel square convolved with a box, integrated over each pixel."""
    weights = np.ones(length + 1)
    weights[0] = weights[-1] = 0.5
    return weights / length


@pytest.mark.parametrize("shutter, samples", [(180.0, 4), (360.0, 8), (180.0, 0)])
def test_a_moving_square_is_blurred_to_a_box_of_the_distance_it_travels(shutter, samples):
    clip, bw, fw = moving_square()
    out = motion_blur(clip, bw, fw, shutter, samples)
    length = round(8 * shutter / 360)  # pixels travelled while the shutter is open
    for t in range(3):
        row = clip[t, 13, :, 0].numpy().astype(np.float64)
        expected = np.convolve(row, area_box(length), mode="same")
        # N samples of whole pixels are the area-sampled box exactly; the automatic count (length + 1,
        # positions 0.8 px apart) within 2 % of the light
        assert np.allclose(out[t, 13, :, 0].numpy(), expected, atol=1e-4 if samples else 1.0), t
        assert torch.equal(out[t, :12], torch.zeros_like(out[t, :12]))  # nothing moves vertically
    assert torch.allclose(out.sum(dim=(1, 2, 3)), clip.sum(dim=(1, 2, 3)))


def test_a_still_scene_is_unchanged_and_the_shutter_samples_are_centred():
    gen = torch.Generator().manual_seed(0)
    clip = (10 * torch.rand(4, 16, 24, 3, generator=gen)).expand(4, -1, -1, -1).contiguous()
    zero = torch.zeros(3, 16, 24, 2)
    assert torch.allclose(motion_blur(clip, zero, zero, 270.0, 5), clip, atol=1e-5)
    assert torch.equal(motion_blur(clip, zero, zero, 0.0, 5), clip)
    assert sample_times(180.0, 4) == pytest.approx([-0.1875, -0.0625, 0.0625, 0.1875])
    assert auto_samples(constant_flow(1, 4, 4, 3, 4), constant_flow(1, 4, 4, 3, 4), 360.0) == 6
    one = clip[:1]
    assert torch.equal(motion_blur(one, zero[:0], zero[:0], 180.0), one)  # one frame: no motion to blur


def test_light_that_moves_past_the_edge_leaves_the_frame_and_the_rest_is_kept():
    clip, bw, fw = moving_square(speed=8)
    clip[:, 20, 62] = 100.0  # a light at the right edge, moving right with the scene
    out = motion_blur(clip, bw, fw, 360.0, 8)
    lost = float(clip[1].sum() - out[1].sum())
    # the edge light's positions run from 4 px left to 4 px right: 2.5 of its 8 samples' bilinear
    # shares land past column 63 (3 of them fully at 64.5+, less half of the one at 63.5)
    assert lost == pytest.approx(3 * 100.0 * (2.5 / 8 + 0), rel=1e-5)


def test_the_packs_flow_on_a_real_hdr_pan_gives_the_pans_blur():
    hdr, _, flow, _ = synthetic_pan(frames=4, size=(64, 48), step_px=2)
    frames = torch.from_numpy(hdr)
    exact_bw = torch.from_numpy(flow)  # content moves left 2 px a frame: backward flow (+2, 0)
    measured_bw, measured_fw = clip_flow(frames)
    assert float((measured_bw[..., 0] - 2).abs().median()) < 0.1
    blurred = motion_blur(frames, measured_bw, measured_fw, 360.0, 4)
    # the reference: each frame averaged over a uniform 2-pixel move (+-1 px), the box written here
    ref = np.stack([np.apply_along_axis(lambda r: np.convolve(r, area_box(2), mode="same"), 1, f) for f in hdr])
    inner = (slice(1, 3), slice(8, 40), slice(8, 56))
    err = np.abs(blurred.numpy()[inner] - ref[inner]) / (np.abs(ref[inner]) + 1e-3)
    assert np.median(err) < 0.02
    exact = motion_blur(frames, exact_bw, -exact_bw, 360.0, 4).numpy()
    assert np.median(np.abs(exact[inner] - ref[inner]) / (np.abs(ref[inner]) + 1e-3)) < 1e-5


def test_hdr_blur_keeps_a_moving_lights_energy_that_the_8bit_picture_lost():
    clip, bw, fw = moving_square(value=400.0)
    ldr = clip.clamp(0, 1)  # the 8-bit picture holds the light at white (1.0 is exact in 8 bits)
    streak_hdr = motion_blur(clip, bw, fw, 180.0, 4)[1, 13]
    streak_ldr = motion_blur(ldr, bw, fw, 180.0, 4)[1, 13]
    # a light of 400 smeared over 4 more pixels stays far above white at every pixel of its streak
    assert float(streak_hdr[16:24, 0].min()) == pytest.approx(400 / 8)
    # while the 8-bit one turns grey: 7/8 of white at its brightest, where the HDR keeps 350
    assert float(streak_hdr[16:24, 0].max()) == pytest.approx(350.0)
    assert float(streak_ldr[16:24, 0].max()) == pytest.approx(0.875)
    assert float(streak_ldr[16, 0]) == pytest.approx(1 / 8)
    assert float(streak_hdr.sum()) == pytest.approx(400 * float(streak_ldr.sum()), rel=1e-5)


def test_bad_input_is_refused_with_the_fix():
    clip, bw, fw = moving_square()
    for angle in (-1.0, 721.0, float("nan")):
        with pytest.raises(MotionBlurSettingsError, match="shutter angle"):
            motion_blur(clip, bw, fw, angle)
    with pytest.raises(MotionBlurSettingsError, match="samples"):
        motion_blur(clip, bw, fw, 180.0, -2)
    with pytest.raises(ValueError, match="flow"):
        motion_blur(clip, bw[:1], fw, 180.0)
    clip[1, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN/Inf"):
        motion_blur(clip, bw, fw, 180.0)
    with pytest.raises(ValueError, match="optical flow"):
        clip_flow(torch.rand(2, 4, 4, 3))


def test_a_still_clip_through_the_packs_flow_is_unchanged():
    hdr, _, _, _ = synthetic_pan(frames=1, size=(64, 48))
    frames = torch.from_numpy(np.repeat(hdr, 3, axis=0))
    out = motion_blur(frames, *clip_flow(frames), 360.0, 0)
    assert torch.allclose(out, frames, rtol=1e-5, atol=1e-6)
