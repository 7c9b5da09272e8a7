"""Warping, the warping error of Lai et al. (2018) and DIS optical flow, against closed forms:
integer shifts (exact np.roll), constant exposure changes ((Δ stops)^2), a moving square's
occlusions, a textured image shifted by a known amount, and the test clips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from lediff_core.qa.temporal import LUMINANCE_FLOOR, warp, warping_error
from lediff_core.video.flow import forward_backward_flow, occlusion_mask, optical_flow
from support.clips import CLIP_THRESHOLD, real_ldr_clip, synthetic_pan

LUMA = np.array([0.2126, 0.7152, 0.0722])  # ITU-R BT.709, written here independently


def texture(h, w, seed=0, sigma=2.0, channels=1):
    base = gaussian_filter(np.random.default_rng(seed).random((h, w, channels)), (sigma, sigma, 0))
    return ((base - base.min()) / (base.max() - base.min())).astype(np.float32)


def constant_flow(n, h, w, dx, dy):
    f = torch.zeros(n, h, w, 2)
    f[..., 0], f[..., 1] = dx, dy
    return f


# -- warp ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dx,dy", [(3, -2), (-5, 4), (0, 1)])
def test_integer_flow_is_an_exact_roll_away_from_the_borders(dx, dy):
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(2, 4, 24, 32)).astype(np.float32))  # latents too
    out = warp(x, constant_flow(2, 24, 32, dx, dy))
    # out[y, x] = in[y + dy, x + dx]  <=>  roll by (-dy, -dx)
    expected = np.roll(x.numpy(), (-dy, -dx), axis=(2, 3))
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    np.testing.assert_allclose(out.numpy()[inner], expected[inner], atol=1e-5)


def test_subpixel_flow_interpolates_linearly_and_borders_repeat():
    ramp = torch.arange(10, dtype=torch.float64).expand(1, 1, 6, 10).clone()  # value = x
    out = warp(ramp, constant_flow(1, 6, 10, 0.25, 0).double())
    np.testing.assert_allclose(out[0, 0, :, :9].numpy(), ramp[0, 0, :, :9].numpy() + 0.25, atol=1e-12)
    assert torch.allclose(out[0, 0, :, 9], torch.tensor(9.0, dtype=torch.float64))  # clamped at the edge
    far = warp(ramp, constant_flow(1, 6, 10, -40, 0).double())
    assert torch.all(far == 0)  # border padding: the first column


def test_warp_rejects_mismatched_flow():
    with pytest.raises(ValueError, match="does not match"):
        warp(torch.zeros(1, 3, 8, 8), torch.zeros(1, 8, 9, 2))


# -- warping error ---------------------------------------------------------------------------------

def shifted_sequence(frames=4, h=32, w=40, dx=2, dy=1, gains=None):
    """Frames of a textured HDR image moving so that frame t = frame t-1 sampled at (x+dx, y+dy)."""
    big = texture(h + 40, w + 40, channels=3).astype(np.float64) * 8 + 0.01
    out = []
    for t in range(frames):
        f = np.roll(big, (t * dy, t * dx), axis=(0, 1))  # f[p] = big[p - t d]
        out.append(f[20:20 + h, 20:20 + w] * (1.0 if gains is None else gains[t]))
    # frame t[p] = frame t-1[p - d]: the backward flow is (-dx, -dy)
    return np.stack(out), constant_flow(frames - 1, h, w, -dx, -dy)


def interior(t, h, w, margin=4):
    m = np.zeros((t, h, w), bool)
    m[:, margin:-margin, margin:-margin] = True
    return torch.from_numpy(m)


def test_moving_image_with_its_flow_has_no_warping_error():
    frames, flow = shifted_sequence()
    result = warping_error(frames, flow, valid=interior(3, 32, 40))
    assert result["overall"] == pytest.approx(0.0, abs=1e-12)
    assert result["pairs"] == 3 and len(result["per_frame"]) == 3
    assert math.isnan(result["region"])


def test_constant_brightness_change_scores_its_stops_squared():
    gains = [1.0, 2.0, 2.0, 2.0 * 2 ** -1.5]  # +1, 0, -1.5 stops
    frames, flow = shifted_sequence(gains=gains)
    result = warping_error(frames, flow, valid=interior(3, 32, 40))
    np.testing.assert_allclose(result["per_frame"], [1.0, 0.0, 2.25], atol=1e-10)
    assert result["overall"] == pytest.approx((1.0 + 0.0 + 2.25) / 3, abs=1e-10)


def test_wrong_flow_scores_the_squared_log_difference_of_the_unwarped_pixels():
    frames, _ = shifted_sequence(frames=2)
    flow = constant_flow(1, 32, 40, 0, 0)
    result = warping_error(frames, flow)
    y = np.log2(np.maximum(frames @ LUMA, LUMINANCE_FLOOR))
    assert result["overall"] == pytest.approx(np.mean((y[1] - y[0]) ** 2), rel=1e-9)
    assert result["overall"] > 0.01


def test_region_restricts_the_mask_to_the_pixels_of_frame_t():
    frames = np.full((3, 8, 10, 1), 1.0)
    frames[1, :, 5:] = 4.0  # right half of frame 1 two stops up
    frames[2, :, 5:] = 4.0
    frames[2, :4] = 0.5  # top half of frame 2: 1 stop below frame 1 on the left, 3 on the right
    region = np.zeros((3, 8, 10), bool)
    region[:, :, 5:] = True  # the right half ("clipped") in every frame
    result = warping_error(frames, torch.zeros(2, 8, 10, 2), region=torch.from_numpy(region))
    # pair 0->1: right half +2 stops, left half 0 -> overall 2 (half of 4), region 4
    # pair 1->2: top-left 1 stop down (1), top-right 3 stops down (9), bottom 0 -> overall (1+9)/4, region 9/2
    np.testing.assert_allclose(result["per_frame"], [2.0, 2.5])
    np.testing.assert_allclose(result["per_frame_region"], [4.0, 4.5])
    assert result["overall"] == pytest.approx(2.25)
    assert result["region"] == pytest.approx(4.25)


def test_luminance_uses_rec709_weights_and_floors_black():
    rgb = np.zeros((2, 4, 4, 3))
    rgb[0] = [1.0, 0.0, 0.0]  # Y = 0.2126
    rgb[1] = [0.0, 0.0, 1.0]  # Y = 0.0722
    result = warping_error(rgb, torch.zeros(1, 4, 4, 2))
    assert result["overall"] == pytest.approx(np.log2(0.2126 / 0.0722) ** 2)
    black = np.zeros((2, 4, 4, 1))
    black[1] = 1.0
    assert warping_error(black, torch.zeros(1, 4, 4, 2))["overall"] == pytest.approx(20.0 ** 2)  # 2^-20 floor


def test_single_frame_and_bad_input():
    result = warping_error(np.ones((1, 4, 4, 3)), torch.zeros(0, 4, 4, 2))
    assert result["overall"] == 0.0 and result["per_frame"] == [] and result["pairs"] == 0
    assert math.isnan(result["region"])
    bad = np.ones((3, 4, 4, 3))
    bad[2, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"frames \[2\] have non-finite"):
        warping_error(bad, torch.zeros(2, 4, 4, 2))
    with pytest.raises(ValueError, match="does not match"):
        warping_error(np.ones((3, 4, 4, 3)), torch.zeros(3, 4, 4, 2))
    with pytest.raises(ValueError, match="expected frames"):
        warping_error(np.ones((3, 4, 4)), torch.zeros(2, 4, 4, 2))


def test_occluded_pixels_are_left_out():
    frames, flow = shifted_sequence(frames=2)
    frames = frames.copy()
    frames[1, 10:14, 10:14] *= 16  # four stops brighter on 16 pixels
    every = warping_error(frames, flow, valid=interior(1, 32, 40))
    valid = interior(1, 32, 40).clone()
    valid[0, 10:14, 10:14] = False
    masked = warping_error(frames, flow, valid=valid)
    assert masked["overall"] == pytest.approx(0.0, abs=1e-12)
    assert every["overall"] == pytest.approx(16 * 4.0 ** 2 / interior(1, 32, 40).sum().item())


# -- optical flow ----------------------------------------------------------------------------------

def test_dis_recovers_a_known_shift_of_a_texture():
    big = texture(48 + 40, 64 + 40, seed=3)
    f0 = big[20:68, 20:84]
    f1 = np.roll(big, (2, -3), axis=(0, 1))[20:68, 20:84]  # f1[y, x] = f0[y - 2, x + 3]: flow (3, -2)
    flow = optical_flow(torch.from_numpy(np.stack([f0, f1])))
    assert flow.dtype == torch.float32 and flow.shape == (1, 48, 64, 2)
    inner = flow[0, 8:-8, 8:-8]
    assert (inner[..., 0] - 3).abs().max() < 0.25 and (inner[..., 1] + 2).abs().max() < 0.25


def test_dis_takes_rgb_and_a_single_frame():
    rgb = texture(48, 64, channels=3)
    assert optical_flow(torch.from_numpy(rgb[None])).shape == (0, 48, 64, 2)
    bw, fw = forward_backward_flow(torch.from_numpy(np.stack([rgb, rgb])))
    assert bw.shape == fw.shape == (1, 48, 64, 2) and bw.abs().max() < 0.05


def test_forward_backward_check_finds_what_a_moving_square_uncovers():
    h, w = 48, 64
    bg = texture(h, w, seed=5, sigma=1.5) * 0.5
    square = texture(h, w, seed=6, sigma=1.0) * 0.5 + 0.5

    def frame(x0):
        f = bg.copy()
        f[16:32, x0:x0 + 16] = square[16:32, 16:32]  # a textured square on a static background
        return f

    frames = torch.from_numpy(np.stack([frame(20), frame(26)]))  # the square moves 6 px right
    bw, fw = forward_backward_flow(frames)
    valid = occlusion_mask(bw, fw)
    assert valid.shape == (1, h, w) and valid.dtype == torch.bool
    # background uncovered behind the square (x 20..25 of frame 1) was hidden in frame 0
    uncovered = valid[0, 18:30, 21:25]
    assert uncovered.float().mean() < 0.5
    # static background far from the square and the square's inside are visible in frame 0
    assert valid[0, 38:46, 2:62].all() and valid[0, 2:8, 2:62].all()
    assert valid[0, 19:29, 30:38].float().mean() > 0.9
    # the closed form on exact flows: the same test
    exact_bw = torch.zeros(1, h, w, 2)
    exact_bw[0, 16:32, 26:42, 0] = -6
    exact_fw = torch.zeros(1, h, w, 2)
    exact_fw[0, 16:32, 20:36, 0] = 6
    exact = occlusion_mask(exact_bw, exact_fw, motion_boundaries=False)
    assert not exact[0, 16:32, 20:26].any() and exact[0, 16:32, 26:42].all() and exact[0, :15].all()
    # |grad w|^2 of the step from 0 to -6 (central differences: 3 px per pixel, 9 > 0.01 * 36 + 0.002)
    edges = occlusion_mask(exact_bw, exact_fw)
    assert not edges[0, 18:30, 25:27].any() and not edges[0, 18:30, 41:43].any()
    assert edges[0, 18:30, 28:40].all() and edges[0, :14].all()


def test_occlusion_mask_marks_flow_leaving_the_frame():
    bw = constant_flow(1, 8, 10, -3, 0)
    valid = occlusion_mask(bw, -bw)
    assert not valid[0, :, :3].any() and valid[0, :, 3:].all()


# -- test clips ------------------------------------------------------------------------------------

def test_synthetic_pan_moves_by_its_flow_and_clips_the_sun():
    hdr, ldr, flow, clipped = synthetic_pan(frames=5)
    assert hdr.shape == ldr.shape == (5, 48, 64, 3) and flow.shape == (4, 48, 64, 2)
    assert clipped.shape == (5, 48, 64) and clipped.any(axis=(1, 2)).all()
    assert hdr.max() > 1000  # the sun
    np.testing.assert_array_equal(hdr[1][:, :-2], hdr[0][:, 2:])  # frame t[y, x] = frame t-1[y, x + 2]
    assert warping_error(hdr, flow, valid=interior(4, 48, 64, 2))["overall"] == pytest.approx(0.0, abs=1e-10)
    np.testing.assert_array_equal(clipped, (ldr >= CLIP_THRESHOLD).any(-1))


def test_dis_follows_the_synthetic_pan():
    _, ldr, flow, _ = synthetic_pan(frames=3)
    est = optical_flow(torch.from_numpy(ldr))
    inner = (slice(None), slice(8, -8), slice(8, -8))
    err = (est[inner] - torch.from_numpy(flow)[inner]).norm(dim=-1)
    assert err.median() < 0.25


def test_real_clip_decodes_and_has_motion():
    clip = real_ldr_clip(frames=4)
    assert clip.shape == (4, 48, 64, 3) and clip.dtype == np.float32
    assert 0 <= clip.min() and clip.max() <= 1 and clip.max() > 0.9  # the bright sky
    flow = optical_flow(torch.from_numpy(clip))
    assert flow.norm(dim=-1).mean() > 0.2  # the bunny and the camera move
    # warping along the flow explains the next frame better than standing still
    lin = clip ** 2.2
    still = warping_error(lin, torch.zeros_like(flow))["overall"]
    assert warping_error(lin, flow)["overall"] < still


def test_missing_opencv_says_how_to_install_it():
    import subprocess
    import sys

    from support.common import REPO

    # a Python where `import cv2` fails (None in sys.modules blocks an import, as for a missing module)
    code = ("import sys; sys.modules['cv2'] = None\n"
            "import torch\nfrom lediff_core.video.flow import optical_flow\n"
            "try:\n    optical_flow(torch.zeros(2, 16, 16, 1))\nexcept ImportError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "install.py" in proc.stdout and "pip install opencv-python-headless" in proc.stdout
    assert "two cv2 distributions side by side" in proc.stdout


def test_the_same_shot_is_flowed_once():
    # one video graph asks for the same clip's motion three times (both brackets, Blend with LDR)
    import lediff_core.video.flow as flow

    frames = torch.from_numpy(synthetic_pan(frames=3)[1]).float()
    calls = []
    real = flow._pairs
    flow.clear_flow_cache()
    try:
        flow._pairs = lambda *a, **k: calls.append(1) or real(*a, **k)
        bw, visible = flow.flow_with_visibility(frames)
        bw[:] = 0  # the caller's copy: the kept result must not change
        again, visible_again = flow.flow_with_visibility(frames.clone())
        assert len(calls) == 1 and torch.equal(visible, visible_again)
        assert torch.equal(again, forward_backward_flow(frames)[0])  # what DIS gives, computed afresh
        flow.flow_with_visibility(frames.flip(0))  # another shot
        flow.flow_with_visibility(frames.flip(0))
        assert len(calls) == 3  # (forward_backward_flow above called _pairs once)
        flow.clear_flow_cache()
        flow.flow_with_visibility(frames.flip(0))
        assert len(calls) == 4
        # a shot larger than KEEP_BYTES is not kept
        flow.KEEP_BYTES, keep = 1000, flow.KEEP_BYTES
        try:
            flow.flow_with_visibility(frames)
            flow.flow_with_visibility(frames)
        finally:
            flow.KEEP_BYTES = keep
        assert len(calls) == 6
    finally:
        flow._pairs = real
        flow.clear_flow_cache()


@pytest.mark.parametrize("h,w", [(11, 11), (8, 8), (7, 64), (64, 7), (0, 0)])
def test_frames_under_the_flows_minimum_are_refused_by_name(h, w):
    """Frames under 12 px were OpenCV's bare "(-201:Incorrect size of input array)" from DIS."""
    frames = np.zeros((2, h, w, 3), np.float32)
    for flow in (optical_flow, forward_backward_flow):
        with pytest.raises(ValueError, match=rf"the guide frames are {w}x{h} pixels, and optical flow \(OpenCV's "
                                             r"DIS\) needs frames of at least 8 pixels on each side and 12 on the "
                                             r"longer one .* or use frames = independent"):
            flow(frames)
    assert optical_flow(frames[:1]).shape == (0, h, w, 2)  # one frame asks for no flow, at any size


def test_the_flows_minimum_is_opencvs_own():
    """Not stricter than OpenCV: DIS (the pack's preset) measures frames at the minimum, 12x8 and
    8x12, and refuses them one pixel under it, asked directly."""
    from lediff_core.video.flow import _cv2, _dis

    cv2 = _cv2()
    for h, w in ((8, 12), (12, 8)):
        frames = texture(h, w)[None].repeat(2, 0)
        assert optical_flow(frames).shape == (1, h, w, 2)
    for h, w in ((8, 11), (11, 8), (7, 12), (12, 7)):
        gray = np.zeros((h, w), np.uint8)
        with pytest.raises(cv2.error, match="width or height >= 12"):
            _dis(cv2).calc(gray, gray, None)


def test_a_batchs_warping_error_as_hdr_stats_reports_it():
    """clip_warping_error: flow from the LDR frames (still here: identical LDR frames), the HDR one
    stop brighter in the second frame scores (1 stop)^2 overall and in the LDR's clipped pixels;
    frames too small for the flow are not measured and say why."""
    from lediff_core.video.consistency import clip_warping_error

    ldr = torch.from_numpy(texture(32, 40, channels=3)).clamp(0.05, 1)
    hdr = torch.stack([ldr, ldr * 2])
    line, (overall, clipped) = clip_warping_error(hdr, torch.stack([ldr, ldr]), CLIP_THRESHOLD)
    assert overall == pytest.approx(1.0, abs=1e-4) and clipped == pytest.approx(1.0, abs=1e-4)
    assert line.startswith("Temporal (2 frames, flow from the LDR frames): warping error 1.0000 stops^2, "
                           "1.0000 stops^2 in clipped pixels (")
    line, numbers = clip_warping_error(torch.ones(2, 6, 20, 3), None, CLIP_THRESHOLD)
    assert numbers == (0.0, 0.0) and line == ("Temporal (2 frames): not measured, the frames are 20x6 pixels and "
                                              "the optical flow needs at least 8 on each side and 12 on the longer one")
