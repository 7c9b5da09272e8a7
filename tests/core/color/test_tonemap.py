"""Tone mapping and transfer functions against closed forms and published values."""

from __future__ import annotations

import torch

from lediff_core.color import linear_to_srgb, luminance, srgb_to_linear
from lediff_core.color.tonemap import AUTO_EXPOSURE_KEY, auto_exposure_stops, tone_map


def const(value, h=4, w=5):
    return torch.full((1, h, w, 3), float(value))


def test_srgb_published_values_and_round_trip():
    # IEC 61966-2-1: 0.5 encoded is 0.214041 linear; the linear segment below 0.04045
    assert abs(srgb_to_linear(torch.tensor(0.5)).item() - 0.2140411) < 1e-6
    assert abs(srgb_to_linear(torch.tensor(0.02)).item() - 0.02 / 12.92) < 1e-9
    x = torch.linspace(-4, 40, 1001, dtype=torch.float64)
    assert torch.allclose(srgb_to_linear(linear_to_srgb(x)), x, rtol=1e-12, atol=1e-14)
    assert srgb_to_linear(torch.tensor(2.0)).item() > 1  # extended, not clamped


def test_luminance_weights_sum_to_one():
    assert torch.allclose(luminance(const(3.0)), torch.full((1, 4, 5, 1), 3.0))


def test_clip_operator_is_exposure_then_srgb():
    out = tone_map(const(0.5), "clip", exposure=-1)
    assert torch.allclose(out, linear_to_srgb(const(0.25)))
    assert abs(tone_map(const(100.0), "clip").max().item() - 1.0) < 1e-6
    assert out.shape == (1, 4, 5, 3)


def test_aces_curve_at_known_points():
    # Narkowicz's fit: f(x) = x(2.51x + 0.03) / (x(2.43x + 0.59) + 0.14); f(1) = 2.54 / 3.16
    out = tone_map(const(1.0), "aces")
    assert torch.allclose(out, linear_to_srgb(torch.tensor(2.54 / 3.16)).expand_as(out), atol=1e-6)
    assert tone_map(const(0.0), "aces").max().item() == 0.0
    assert abs(tone_map(const(1e4), "aces").min().item() - 1.0) < 1e-6


def test_reinhard_white_point_maps_to_one_and_keeps_hue():
    grey = tone_map(const(4.0), "reinhard", white=4.0)
    assert torch.allclose(grey, torch.ones_like(grey))
    # L = 1, white = 4: L (1 + L/16) / (1 + L) = 17/32
    colour = torch.tensor([[[[2.0, 1.0, 0.5]]]])
    scale = 1 / luminance(colour).item()
    out = tone_map(colour * scale, "reinhard", white=4.0)
    expected = linear_to_srgb(colour * scale * 17 / 32)
    assert torch.allclose(out, expected, atol=1e-6)


def test_auto_exposure_maps_log_average_to_middle_grey():
    img = torch.cat([const(8.0), const(0.001)])
    stops = auto_exposure_stops(img)
    assert torch.allclose(torch.exp2(stops) * torch.tensor([8.0, 0.001]),
                          torch.full((2,), AUTO_EXPOSURE_KEY), rtol=1e-5)
    # two halves at 1 and 16: log-average is 4
    half = torch.cat([const(1.0, 4, 2), const(16.0, 4, 2)], dim=2)
    assert abs(torch.exp2(auto_exposure_stops(half)).item() * 4 - AUTO_EXPOSURE_KEY) < 1e-6
    assert auto_exposure_stops(const(0.0)).item() == 0.0


def test_input_is_not_modified_and_negative_values_are_safe():
    img = torch.randn(2, 8, 8, 3) * 100
    before = img.clone()
    for op in ("aces", "reinhard", "clip"):
        out = tone_map(img, op, auto_exposure=True)
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert torch.equal(img, before)


FLOAT32_MAX = torch.finfo(torch.float32).max
EXPOSURE_MAX = 32.0  # Tone Map's widget maximum (nodes/color/tonemap.py; the host test checks the schema)


def test_light_beyond_float32_after_exposure_is_white_not_nan():
    """exposure +32 on bright pixels (or any exposure on values near float32's maximum) used to
    overflow inside ACES (x^2 -> inf, inf/inf -> NaN) and Reinhard (L/white^2 -> inf), so the
    promised sRGB picture in 0..1 held NaN: now overflowing light displays as white."""
    white = linear_to_srgb(torch.tensor(1.0)).item()
    values = [FLOAT32_MAX, FLOAT32_MAX / 2, 1e20, 1e10, 0.0, -FLOAT32_MAX]
    img = torch.tensor(values).view(1, 1, -1, 1).expand(1, 2, len(values), 3).contiguous()
    for op in ("aces", "reinhard", "clip"):
        for exposure in (EXPOSURE_MAX, 0.0):
            for reinhard_white in (0.01, 4.0, 1e6):  # the white widget's range
                out = tone_map(img, op, exposure=exposure, white=reinhard_white)
                assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1, (op, exposure)
                n = 4 if exposure == EXPOSURE_MAX else 3  # 1e10 x 2^32 overflows ACES' x^2 too
                assert torch.allclose(out[:, :, :n], torch.full_like(out[:, :, :n], white), atol=1e-6), \
                    (op, exposure, reinhard_white, out[0, 0, :, 0])
                assert out[:, :, 4:].max().item() == 0.0  # black and negative light stay black


def test_auto_exposure_past_128_stops_keeps_black_pixels_black():
    """A very dark image (1e-38) gets about +123 stops of automatic exposure; plus the widget's
    +32, 2^155 overflows float32 and 0 x inf was NaN on the black pixels."""
    img = torch.zeros((1, 2, 2, 3))
    img[0, 0, 0] = 1e-38
    img[0, 1, 1] = 1e-30
    for op in ("aces", "reinhard", "clip"):
        out = tone_map(img, op, exposure=EXPOSURE_MAX, auto_exposure=True)
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1, op
        assert out[0, 0, 1].max().item() == 0.0 and out[0, 1, 1].min().item() > 0.99, (op, out)
