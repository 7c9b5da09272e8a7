"""Noise warped along flow (lediff_core.video.noise) and the temporal blend of predictions
(lediff_core.video.temporal), against closed forms: moving noise by whole pixels is a shift, moving
it by fractions keeps it unit-variance white noise (where bilinear resampling would not), occluded
pixels get fresh noise, and the blend is the stated affine recursion."""

from __future__ import annotations

import torch

from lediff_core.qa.temporal import warp
from lediff_core.video.noise import shot_noise, warp_noise
from lediff_core.video.temporal import resize_flow, temporal_blend


def flow_of(h, w, dx, dy):
    return torch.tensor([dx, dy], dtype=torch.float32).expand(h, w, 2).clone()


def test_a_whole_pixel_shift_moves_the_noise_exactly():
    noise = torch.randn(4, 16, 24, generator=torch.Generator().manual_seed(1))
    valid = torch.ones(16, 24, dtype=torch.bool)
    out = warp_noise(noise, flow_of(16, 24, -3, 2), valid, torch.Generator().manual_seed(2))
    # frame t at (x, y) shows frame t-1 at (x - 3, y + 2)
    torch.testing.assert_close(out[:, :-2, 3:], noise[:, 2:, :-3], atol=1e-5, rtol=0)


def test_a_fractional_shift_keeps_unit_variance_white_noise():
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn(4, 96, 96, generator=gen)
    flow, valid = flow_of(96, 96, 0.5, 0.25), torch.ones(96, 96, dtype=torch.bool)
    out = warp_noise(noise, flow, valid, gen)[:, 4:-4, 4:-4]
    assert abs(float(out.mean())) < 0.02 and abs(float(out.std()) - 1) < 0.02
    # neighbouring pixels stay uncorrelated (white), and the noise follows its source
    assert abs(float((out[:, :, 1:] * out[:, :, :-1]).mean())) < 0.03
    bilinear = warp(noise[None], flow[None])[0, :, 4:-4, 4:-4]
    assert float(bilinear.std()) < 0.85  # the reason for warping this way: interpolation shrinks it
    # and given its source it is, on average, the source moved (the area-weighted mean of the four
    # pixels it straddles, which is the bilinear resampling): their covariance is its variance
    assert abs(float((out * bilinear).mean() / bilinear.var()) - 1) < 0.05


def test_occluded_pixels_get_fresh_noise_and_the_seed_decides_it():
    noise = torch.randn(4, 32, 32, generator=torch.Generator().manual_seed(4))
    valid = torch.ones(32, 32, dtype=torch.bool)
    valid[8:24, 8:24] = False
    first = warp_noise(noise, flow_of(32, 32, 0, 0), valid, torch.Generator().manual_seed(5))
    again = warp_noise(noise, flow_of(32, 32, 0, 0), valid, torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    torch.testing.assert_close(first[:, valid], noise[:, valid], atol=1e-5, rtol=0)
    fresh = first[:, ~valid]
    assert abs(float((fresh * noise[:, ~valid]).mean())) < 0.1 and abs(float(fresh.std()) - 1) < 0.1


def test_shot_noise_starts_from_the_given_frame_and_follows_the_flow():
    first = torch.randn(4, 8, 12, generator=torch.Generator().manual_seed(6))
    flows = torch.stack([flow_of(8, 12, -1, 0)] * 3)
    shot = shot_noise(first, flows, torch.ones(3, 8, 12, dtype=torch.bool), seed=7)
    assert shot.shape == (4, 4, 8, 12) and torch.equal(shot[0], first)
    torch.testing.assert_close(shot[3][:, :, 3:], first[:, :, :-3], atol=1e-5, rtol=0)


def test_temporal_blend_is_the_stated_recursion():
    d = torch.randn(3, 4, 6, 8, generator=torch.Generator().manual_seed(8))
    flows, valid = torch.zeros(2, 6, 8, 2), torch.ones(2, 6, 8)
    valid[1, :, :4] = 0  # frame 2's left half is not visible in frame 1
    out = temporal_blend(d, flows, valid, strength=0.6)
    torch.testing.assert_close(out[0], d[0])
    torch.testing.assert_close(out[1], 0.4 * d[1] + 0.6 * d[0])
    torch.testing.assert_close(out[2][..., 4:], 0.4 * d[2][..., 4:] + 0.6 * out[1][..., 4:])
    torch.testing.assert_close(out[2][..., :4], d[2][..., :4])
    anchor = torch.randn(1, 4, 6, 8)
    chained = temporal_blend(d, torch.zeros(3, 6, 8, 2), torch.ones(3, 6, 8), anchor, strength=0.5)
    torch.testing.assert_close(chained[0], 0.5 * d[0] + 0.5 * anchor[0])


def test_flow_of_an_enlarged_image_shrinks_back_to_its_pixels():
    big = flow_of(32, 48, 8.0, -4.0)[None]
    torch.testing.assert_close(resize_flow(big, (8, 12)), flow_of(8, 12, 2.0, -1.0)[None])
    torch.testing.assert_close(resize_flow(big, (16, 12)), flow_of(16, 12, 2.0, -2.0)[None])
