"""Glare against references written here: the PSF's physics (unit sum, point symmetry, the streak
count and directions of an n-blade aperture derived from the polygon's own edges, the 1/r^2
scatter), energy conservation on any picture, a point giving back the kernel, the FFT path against
a direct spatial convolution (torch.nn.functional.conv2d in float64), and the HDR-vs-LDR contrast:
the same glare on the tone-mapped 8-bit picture loses the highlight's energy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lediff_core.lens.fft import fft_size
from lediff_core.lens.glare import Glare, GlareSettingsError, _FFTKernel, apply_glare, bright_share
from support.glare_reference import direct_glare


def hdr_scene(h=48, w=64, seed=0):
    """A dim textured background with a few lights up to 500x diffuse white, some at the borders."""
    gen = torch.Generator().manual_seed(seed)
    img = 0.2 * torch.rand(1, h, w, 3, generator=gen)
    for y, x, v in ((10, 12, 500.0), (30, 40, 50.0), (0, 0, 80.0), (h - 1, w - 3, 120.0), (20, w - 1, 30.0)):
        img[0, y, x] = torch.tensor([v, 0.8 * v, 0.6 * v])
    return img


def ring(glare, radius, channel=1, steps=3600):
    theta = torch.arange(steps, dtype=torch.float64) * (2 * math.pi / steps)
    values = glare.psf_values(radius * torch.cos(theta), radius * torch.sin(theta), channel)
    return theta, values


def peak_angles(theta, values):
    """Angles (degrees) of the local maxima above half the largest value, on a circular profile."""
    v = values.numpy()
    is_peak = (v > np.roll(v, 1)) & (v >= np.roll(v, -1)) & (v > 0.5 * v.max())
    return np.degrees(theta.numpy()[is_peak])


def edge_normals(blades, rotation_deg):
    """Directions (degrees, 0..360, from +x towards +y: y points down) of the outward normals of a
    regular polygon's edges, from its vertices (the first straight up, -y, at rotation 0, turning
    clockwise in the picture, as Lens Blur's bokeh), and of their opposites (a diffraction pattern
    is point-symmetric)."""
    a = np.radians(rotation_deg) - np.pi / 2 + 2 * np.pi * np.arange(blades) / blades
    vx, vy = np.cos(a), np.sin(a)
    ex, ey = np.roll(vx, -1) - vx, np.roll(vy, -1) - vy
    normals = np.degrees(np.arctan2(-ex, ey)) % 360  # the edge rotated by -90 degrees, pointing outwards
    return np.unique(np.round(np.concatenate([normals, (normals + 180) % 360]), 6))


@pytest.mark.parametrize("blades, streak_count", [(5, 10), (6, 6), (7, 14), (8, 8)])
def test_an_n_blade_aperture_gives_n_or_2n_streaks_along_its_edge_normals(blades, streak_count):
    glare = Glare(radius=256, blades=blades, rotation=10.0, streaks=1.0, spectral=False)
    peaks = peak_angles(*ring(glare, 60.0))
    expected = edge_normals(blades, 10.0)
    assert len(peaks) == len(expected) == streak_count
    diff = (peaks[:, None] - expected[None, :] + 180) % 360 - 180
    assert np.abs(diff).min(axis=1).max() < 0.2


def test_the_psf_sums_to_one_is_point_symmetric_and_red_streaks_reach_further():
    glare = Glare(radius=40, blades=5)
    k = glare.kernel(200, 200)
    assert k.shape == (3, 81, 81)
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(k, k.flip(1, 2), atol=1e-15)
    # diffraction scales with the wavelength: along a streak, red holds more light far out than blue
    k = Glare(radius=100, blades=6, streaks=1.0).kernel(300, 300)
    yy, xx = torch.meshgrid(torch.arange(-100, 101), torch.arange(-100, 101), indexing="ij")
    far = (xx ** 2 + yy ** 2) > 30 ** 2
    red, green, blue = (float(k[c][far].sum()) for c in range(3))
    assert red > 1.1 * green > 1.2 * blue


def test_the_veiling_scatter_falls_as_one_over_r_squared():
    glare = Glare(radius=4096, blades=0)  # r0 = 128: the far field from 8 r0 on
    r = torch.tensor([1024.0, 1448.0], dtype=torch.float64)
    v = glare.psf_values(r, torch.zeros_like(r), 1)
    window = (1 - (r / 4096) ** 2) ** 2
    slope = math.log(float(v[1] / window[1]) / float(v[0] / window[0])) / math.log(1448 / 1024)
    assert slope == pytest.approx(-2.0, abs=0.05)


@pytest.mark.parametrize("settings", [dict(blades=5, radius=24), dict(blades=0, radius=8),
                                      dict(blades=6, radius=500, intensity=0.9, threshold=0.0, knee=0.0),
                                      dict(blades=3, radius=30, spectral=False, streaks=1.0)])
def test_glare_conserves_every_channels_light(settings):
    img = hdr_scene()
    out = apply_glare(img, Glare(**settings))
    assert out.shape == img.shape and out.dtype == torch.float32
    assert torch.allclose(out.double().sum(dim=(0, 1, 2)), img.double().sum(dim=(0, 1, 2)), rtol=2e-6)
    assert not torch.equal(out, img)


def test_a_point_gives_back_the_kernel():
    glare = Glare(intensity=0.3, threshold=1.0, knee=0.5, radius=20, blades=7, rotation=5.0)
    h = w = 2 * 20 + 1 + 10
    img = torch.zeros(1, h, w, 3)
    img[0, 25, 25] = torch.tensor([1000.0, 600.0, 200.0])
    out = apply_glare(img, glare)[0].double()
    k = glare.kernel(h, w)  # [3, 41, 41], entirely inside the picture around (25, 25)
    m = 1000.0  # the brightest channel
    share = 0.3 * (m - 1.0) / m
    expected = torch.zeros(h, w, 3, dtype=torch.float64)
    for c, value in enumerate((1000.0, 600.0, 200.0)):
        expected[5:46, 5:46, c] = share * value * k[c]
        expected[25, 25, c] += (1 - share) * value
    assert torch.allclose(out, expected, rtol=1e-4, atol=1e-6 * 1000)


@pytest.mark.parametrize("radius", [6, 23, 200])
def test_the_fft_path_equals_a_direct_convolution(radius):
    img = hdr_scene(40, 52, seed=1)
    glare = Glare(intensity=0.5, threshold=0.5, radius=radius, blades=5, rotation=17.0)
    fft = apply_glare(img, glare)[0].double()
    direct = direct_glare(img, glare)
    scale = float(img.abs().max())
    assert (fft - direct).abs().max() < 2e-6 * scale


def test_a_radius_larger_than_the_image_costs_no_more_than_the_image():
    k = _FFTKernel(Glare(radius=5000).kernel(30, 40)[1], 30, 40, torch.float32)
    assert k.size == (fft_size(30 + 29), fft_size(40 + 39))
    assert fft_size(4374) == 4374 and fft_size(4353) == 4374 and fft_size(1) == 1


def test_light_below_the_threshold_is_untouched_and_never_clamped():
    img = torch.full((1, 8, 8, 3), 0.4)
    img[0, 2, 3] = torch.tensor([-3.0, 0.2, 0.45])  # negative light travels as it is
    assert torch.equal(apply_glare(img, Glare(threshold=1.0, knee=0.5)), img)
    # the soft knee is continuous and reaches the hard excess at threshold + knee
    levels = torch.tensor([0.49, 0.5, 0.51, 1.0, 1.49, 1.5, 1.51, 10.0]).view(-1, 1).expand(-1, 3)
    share = bright_share(levels, 1.0, 0.5)[:, 0] * levels[:, 0]
    assert share[0] == 0 and share[1] == 0 and 0 < share[2] < 1e-3
    assert float(share[3]) == pytest.approx(0.125)
    assert float(share[5]) == pytest.approx(0.5) and float(share[7]) == pytest.approx(9.0)
    assert float(share[4]) == pytest.approx(0.49, abs=2e-4) and float(share[6]) == pytest.approx(0.51)
    # HDR above white stays above white: spreading never clips the highlight
    bright = torch.zeros(1, 32, 32, 3)
    bright[0, 16, 16] = 1e5
    assert float(apply_glare(bright, Glare(radius=8))[0, 16, 16, 0]) > 8e4


def srgb_8bit_round_trip(linear):
    """A tone-mapped 8-bit picture of linear light: clip to 0..1, sRGB-encode (IEC 61966-2-1, written
    here), quantise to 8 bits, decode back to linear: what glare on an LDR picture starts from."""
    x = np.clip(linear, 0.0, 1.0)
    enc = np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)
    q = np.round(enc * 255) / 255
    return np.where(q <= 0.04045, q / 12.92, ((q + 0.055) / 1.055) ** 2.4).astype(np.float32)


def test_hdr_glare_keeps_the_highlights_energy_that_the_8bit_picture_lost():
    img = torch.full((1, 64, 64, 3), 0.05)
    img[0, 30:34, 30:34] = 200.0  # a lamp, 200x diffuse white
    glare = Glare(intensity=0.2, threshold=1.0, knee=0.5, radius=24, blades=6)
    ldr = torch.from_numpy(srgb_8bit_round_trip(img.numpy()))
    halo = torch.ones(64, 64, dtype=torch.bool)
    halo[26:38, 26:38] = False  # the light outside the lamp and its first pixels
    hdr_halo = float((apply_glare(img, glare) - img)[0][halo].sum())
    ldr_halo = float((apply_glare(ldr, glare) - ldr)[0][halo].sum())
    # in linear HDR the lamp sends 0.2 x (200 - 1) of each of its 16 pixels' light around; at this
    # radius a sixth of it lands past the first pixels
    assert hdr_halo > 0.1 * 0.2 * 199 * 16 * 3
    # the 8-bit picture holds the lamp at 1.0: at the knee it spreads 0.2 x 0.125 of that
    assert 0 <= ldr_halo < hdr_halo / 1000
    assert float(ldr.sum()) < 0.07 * float(img.sum())  # the lamp held 94 % of the light


def test_bad_input_is_refused_with_the_fix():
    img = hdr_scene()
    img[0, 3, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN/Inf"):
        apply_glare(img, Glare())
    for bad, word in ((dict(intensity=1.5), "intensity"), (dict(radius=0.5), "radius"), (dict(blades=2), "blades"),
                      (dict(threshold=-1.0), "threshold"), (dict(knee=float("nan")), "knee"),
                      (dict(rotation=float("inf")), "rotation"), (dict(radius=1e9), "radius")):
        with pytest.raises(GlareSettingsError, match=word):
            Glare(**bad)
    rgba = torch.cat([hdr_scene(), torch.rand(1, 48, 64, 1)], dim=-1)
    out = apply_glare(rgba, Glare())
    assert torch.equal(out[..., 3], rgba[..., 3]) and not torch.equal(out[..., :3], rgba[..., :3])
    with pytest.raises(ValueError, match="0x0"):
        apply_glare(torch.zeros(1, 0, 0, 3), Glare())
