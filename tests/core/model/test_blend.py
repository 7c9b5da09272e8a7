"""LEDiff's LDR blend and exposure anchoring against closed-form cases."""

from __future__ import annotations

import math

import pytest
import torch

from lediff_core.model.blend import (
    PRESETS,
    BlendPreset,
    anchor_exposure,
    blend_with_ldr,
    fit_ldr_to_hdr,
    overexposure_mask,
)

RELEASED = PRESETS["released"]
SUPP = PRESETS["supplementary"]


def scene_ldr(h=8, w=16, t=0.05):
    """sRGB-encoded LDR [1, h, w, 3]: distinct unclipped values, a clipped row, a half-clipped row.

    Row 0 is fully clipped (m = 1), row 1 has its red channel at 1 - t/2 (m = 0.5); the remaining
    rows stay below 1 - t (m = 0) with values spread over 0.02..0.9.
    """
    base = torch.linspace(0.02, 0.9, h * w, dtype=torch.float64).view(h, w)
    ldr = torch.stack([base, 0.5 * base + 0.05, base**1.3], dim=-1)
    ldr[0] = 1.0
    ldr[1, :, 0] = 1.0 - t / 2
    return ldr.unsqueeze(0).to(torch.float32)


def power_hdr(ldr, gamma, exposure):
    """HDR = LDR^gamma * 2^exposure, with very bright values (far above 1) where the LDR is clipped."""
    hdr = ldr.double() ** gamma * 2.0**exposure
    hdr[:, 0] = torch.linspace(40.0, 400.0, ldr.shape[2], dtype=torch.float64)[None, :, None]
    return hdr.to(torch.float32)


def sq_error(ldr, hdr, m, g, e):
    """Summed squared linear residual over the channel values of pixels with m == 0."""
    sel = (m == 0).expand_as(hdr)
    pred = ldr.double() ** g * 2.0**e
    return ((pred - hdr.double())[sel] ** 2).sum().item()


# --- mask -------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0.05, 0.10])
def test_mask_at_known_points(t):
    ldr = torch.tensor([[[[1.0, 1.0, 1.0], [1 - t, 1 - t, 1 - t], [1 - t / 2] * 3, [0.2, 0.1, 0.0]]]])
    m = overexposure_mask(ldr, t)
    assert m.shape == (1, 1, 4, 1)
    assert m[0, 0, 0, 0].item() == 1.0
    assert m[0, 0, 1, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert m[0, 0, 2, 0].item() == pytest.approx(0.5, abs=1e-5)
    assert m[0, 0, 3, 0].item() == 0.0


def test_mask_uses_the_max_channel_and_stays_in_0_1():
    ldr = torch.tensor([[[[0.2, 1.0, 0.3], [0.95, 0.0, 0.0], [0.0, 0.0, 0.975], [2.0, 0.0, -1.0]]]])
    m = overexposure_mask(ldr, 0.05)[0, 0, :, 0]
    assert m[0].item() == 1.0
    assert m[1].item() == pytest.approx(0.0, abs=1e-6)
    assert m[2].item() == pytest.approx(0.5, abs=1e-5)
    assert m[3].item() == 1.0  # clipped to 1, not 21


def test_mask_ignores_a_fourth_channel():
    ldr = torch.tensor([[[[0.1, 0.1, 0.1, 1.0]]]])
    assert overexposure_mask(ldr, 0.05).item() == 0.0


def test_presets_and_validation():
    assert RELEASED == BlendPreset(0.05, (2.4, 2.6), 2.4)
    assert SUPP == BlendPreset(0.10, (1.8, 2.4), 2.0)
    with pytest.raises(ValueError, match="threshold"):
        BlendPreset(0.0, (2.4, 2.6), 2.4)
    with pytest.raises(ValueError, match="gamma_range"):
        BlendPreset(0.05, (2.6, 2.4), 2.4)
    with pytest.raises(ValueError, match="threshold"):
        overexposure_mask(scene_ldr(), -0.1)


# --- fit and blend ----------------------------------------------------------------------------


def test_exact_power_law_is_recovered_and_blend_reproduces_it():
    ldr = scene_ldr()
    hdr = power_hdr(ldr, 2.5, 3.0)
    out, m, g, e = blend_with_ldr(ldr, hdr, RELEASED)
    assert g.shape == e.shape == (1,)
    assert g.item() == pytest.approx(2.5, abs=1e-4)
    assert e.item() == pytest.approx(3.0, abs=1e-4)
    assert torch.equal(m, overexposure_mask(ldr, RELEASED.threshold))

    unclipped = (m == 0).expand_as(hdr)
    assert unclipped.sum() > 0
    assert torch.allclose(out[unclipped], hdr[unclipped], rtol=1e-5, atol=1e-7)


def test_output_is_the_hdr_exactly_where_clipped_and_mixes_where_partial():
    ldr = scene_ldr()
    hdr = power_hdr(ldr, 2.5, 3.0)
    hdr[:, 1] = 5.0  # half-clipped row: an HDR value the LDR term does not predict
    out, m, g, e = blend_with_ldr(ldr, hdr, RELEASED)

    clipped = (m == 1).expand_as(hdr)
    assert torch.equal(out[clipped], hdr[clipped])
    assert out[:, 0].max().item() == pytest.approx(400.0)  # nothing clamped

    half = m[0, 1, :, 0]
    assert torch.allclose(half, torch.full_like(half, 0.5), atol=1e-5)
    ldr_term = ldr[0, 1].double() ** g.item() * 2.0 ** e.item()
    expect = (1 - half.double())[:, None] * ldr_term + half.double()[:, None] * 5.0
    assert torch.allclose(out[0, 1].double(), expect, rtol=1e-5)


def test_gamma_outside_the_range_lands_on_the_bound_with_the_best_exposure():
    ldr = scene_ldr()
    hdr = power_hdr(ldr, 3.0, 1.5)
    m = overexposure_mask(ldr, RELEASED.threshold)
    g, e = fit_ldr_to_hdr(ldr, hdr, m, RELEASED.gamma_range, RELEASED.gamma_init)
    assert g.item() == pytest.approx(2.6, abs=1e-6)

    # For a fixed g the linear least-squares exposure is 2^e = sum(a h) / sum(a^2), a = LDR^g.
    sel = (m == 0).expand_as(hdr)
    a = ldr.double()[sel] ** 2.6
    h = hdr.double()[sel]
    assert e.item() == pytest.approx(math.log2((a * h).sum().item() / (a * a).sum().item()), abs=1e-5)
    best = sq_error(ldr, hdr, m, 2.6, e.item())
    assert best < sq_error(ldr, hdr, m, 2.6, e.item() + 1e-3)
    assert best < sq_error(ldr, hdr, m, 2.6, e.item() - 1e-3)

    # and the lower bound, with the supplementary range
    hdr_low = power_hdr(ldr, 1.5, 0.0)
    m10 = overexposure_mask(ldr, SUPP.threshold)
    g_low, _ = fit_ldr_to_hdr(ldr, hdr_low, m10, SUPP.gamma_range, SUPP.gamma_init)
    assert g_low.item() == pytest.approx(1.8, abs=1e-6)


@pytest.mark.parametrize("quantised", [False, True])
def test_noisy_fit_is_the_minimum_over_a_fine_gamma_grid(quantised):
    ldr = scene_ldr(16, 32)
    if quantised:  # 8-bit code values: many samples share an LDR value
        ldr = torch.where(ldr < 1, torch.round(ldr * 255) / 255, ldr)
    gen = torch.Generator().manual_seed(0)
    noise = torch.exp(0.1 * torch.randn(ldr.shape, generator=gen, dtype=torch.float64))
    hdr = (power_hdr(ldr, 2.47, -1.0).double() * noise).float()
    m = overexposure_mask(ldr, RELEASED.threshold)
    g, e = fit_ldr_to_hdr(ldr, hdr, m, RELEASED.gamma_range, RELEASED.gamma_init)
    assert 2.4 <= g.item() <= 2.6

    sel = (m == 0).expand_as(hdr)
    h = hdr.double()[sel]

    def profile(gv):
        a = ldr.double()[sel] ** gv
        s = (a * h).sum() / (a * a).sum()
        return ((a * s - h) ** 2).sum().item()

    brute = min(profile(2.4 + 0.2 * i / 2000) for i in range(2001))
    assert sq_error(ldr, hdr, m, g.item(), e.item()) <= brute * (1 + 1e-6)


def test_batch_fits_are_per_image():
    ldr = torch.cat([scene_ldr(), scene_ldr().flip(2)])
    hdr = torch.cat([power_hdr(ldr[:1], 2.45, 3.0), power_hdr(ldr[1:], 2.55, -2.0)])
    out, m, g, e = blend_with_ldr(ldr, hdr, RELEASED)
    assert torch.allclose(g, torch.tensor([2.45, 2.55]), atol=1e-4)
    assert torch.allclose(e, torch.tensor([3.0, -2.0]), atol=1e-4)
    unclipped = (m == 0).expand_as(hdr)
    assert torch.allclose(out[unclipped], hdr[unclipped], rtol=1e-5, atol=1e-7)


def test_non_positive_hdr_samples_are_excluded_from_the_fit():
    ldr = scene_ldr()
    hdr = power_hdr(ldr, 2.5, 3.0)
    hdr[0, 4, :5] = 0.0
    hdr[0, 5, :5] = -3.0
    hdr[0, 6, 0, 1] = float("inf")
    out, m, g, e = blend_with_ldr(ldr, hdr, RELEASED)
    assert g.item() == pytest.approx(2.5, abs=1e-4)
    assert e.item() == pytest.approx(3.0, abs=1e-4)
    # Those pixels are unclipped, so they take the fitted LDR term, which is finite and positive.
    assert torch.isfinite(out).all()
    assert out[0, 4:6, :5].min() > 0


def test_constant_ldr_cannot_identify_gamma_so_gamma_init_is_used():
    ldr = torch.full((1, 4, 4, 3), 0.5)
    hdr = torch.full((1, 4, 4, 3), 3.0)
    out, m, g, e = blend_with_ldr(ldr, hdr, SUPP)
    assert g.item() == 2.0
    assert e.item() == pytest.approx(math.log2(3.0 / 0.5**2.0), abs=1e-6)
    assert torch.allclose(out, hdr)


def test_all_clipped_ldr_passes_the_hdr_through():
    ldr = torch.ones(1, 4, 6, 3)
    hdr = torch.linspace(0.5, 900.0, 72).view(1, 4, 6, 3)
    out, m, g, e = blend_with_ldr(ldr, hdr, RELEASED)
    assert torch.equal(out, hdr)
    assert torch.equal(m, torch.ones(1, 4, 6, 1))
    assert g.item() == pytest.approx(2.4) and e.item() == 0.0


def test_all_black_ldr_has_nothing_to_fit_and_passes_the_hdr_through():
    ldr = torch.zeros(2, 4, 6, 3)
    ldr[0] = scene_ldr(4, 6)[0]
    hdr = torch.linspace(0.01, 5.0, 144).view(2, 4, 6, 3)
    hdr[0] = power_hdr(ldr[:1], 2.5, 1.0)[0]
    out, m, g, e = blend_with_ldr(ldr, hdr, SUPP)
    assert torch.isfinite(out).all() and torch.isfinite(g).all() and torch.isfinite(e).all()
    # the black image: mask would be 0 everywhere, but there is nothing to fit, so the HDR wins
    assert overexposure_mask(ldr[1:], SUPP.threshold).max().item() == 0.0
    assert torch.equal(out[1], hdr[1])
    assert torch.equal(m[1], torch.ones(4, 6, 1))
    assert g[1].item() == 2.0 and e[1].item() == 0.0
    # the other image in the batch is fitted as usual (2.5 is outside 1.8..2.4)
    assert g[0].item() == pytest.approx(2.4, abs=1e-6)


def test_black_pixels_in_an_ordinary_ldr_are_finite():
    ldr = scene_ldr()
    ldr[0, 3:5] = 0.0
    hdr = power_hdr(ldr, 2.5, 3.0)
    hdr[0, 3:5] = 1e-3  # what a real HDR would have there, not LDR^g = 0
    out, m, g, e = blend_with_ldr(ldr, hdr, RELEASED)
    assert torch.isfinite(out).all()
    assert g.item() == pytest.approx(2.5, abs=1e-4)
    assert torch.equal(out[0, 3:5], torch.zeros(2, 16, 3))  # the LDR term says black


def test_fourth_channel_is_ignored_and_output_has_three():
    ldr = torch.cat([scene_ldr(), torch.rand(1, 8, 16, 1)], dim=-1)
    hdr = torch.cat([power_hdr(scene_ldr(), 2.5, 3.0), torch.full((1, 8, 16, 1), -7.0)], dim=-1)
    out, m, g, e = blend_with_ldr(ldr, hdr, RELEASED)
    assert out.shape == (1, 8, 16, 3)
    assert g.item() == pytest.approx(2.5, abs=1e-4)


def test_float64_inputs_keep_their_dtype():
    ldr = scene_ldr().double()
    hdr = power_hdr(scene_ldr(), 2.5, 3.0).double()
    out, m, g, e = blend_with_ldr(ldr, hdr, RELEASED)
    assert out.dtype == g.dtype == e.dtype == torch.float64


def test_shape_mismatch_is_a_clear_error():
    ldr = torch.zeros(1, 8, 16, 3)
    hdr = torch.zeros(1, 16, 32, 3)
    with pytest.raises(ValueError, match=r"\(1, 8, 16, 3\).*\(1, 16, 32, 3\).*resize the LDR"):
        blend_with_ldr(ldr, hdr, RELEASED)
    with pytest.raises(ValueError, match="resize the LDR"):
        fit_ldr_to_hdr(torch.zeros(2, 16, 32, 3), hdr, torch.zeros(2, 16, 32, 1), (2.4, 2.6), 2.4)
    with pytest.raises(ValueError, match="IMAGE"):
        blend_with_ldr(torch.zeros(8, 16, 3), hdr, RELEASED)


# --- exposure anchoring -----------------------------------------------------------------------


def grey(values):
    """A [1, 1, N, 3] image of grey pixels (luminance equals the value: the weights sum to 1)."""
    v = torch.tensor(values, dtype=torch.float32)
    return v.view(1, 1, -1, 1).expand(1, 1, -1, 3).contiguous()


def test_anchor_median_lands_on_value():
    img = grey([10.0, 1.0, 4.0, 3.0, 2.0])
    scaled, scale = anchor_exposure(img, 50, 0.18)
    assert scale.shape == (1,)
    assert scale.item() == pytest.approx(0.18 / 3.0, rel=1e-6)
    assert torch.allclose(scaled, img * (0.18 / 3.0), rtol=1e-6)


def test_anchor_percentile_interpolates_like_numpy_linear():
    _, scale = anchor_exposure(grey([1.0, 2.0, 3.0, 4.0]), 50, 1.0)
    assert scale.item() == pytest.approx(1 / 2.5, rel=1e-6)
    _, scale = anchor_exposure(grey([1.0, 2.0, 3.0, 4.0]), 0, 1.0)
    assert scale.item() == pytest.approx(1.0, rel=1e-6)


def test_anchor_percentile_100_is_the_max_and_uses_rec709_luminance():
    img = torch.tensor([[[[0.0, 2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.5]]]])
    scaled, scale = anchor_exposure(img, 100, 1.0)
    assert scale.item() == pytest.approx(1 / (0.7152 * 2.0), rel=1e-6)
    # values are not clamped: the red pixel's channel stays above what a display could show
    scaled2, _ = anchor_exposure(img, 0, 10.0)
    assert scaled2.max().item() > 1.0


def test_anchor_scales_each_image_and_leaves_black_ones_alone():
    img = torch.cat([grey([1.0, 2.0, 3.0]), grey([4.0, 8.0, 12.0]), grey([0.0, 0.0, 0.0])])
    scaled, scale = anchor_exposure(img, 50, 1.0)
    assert torch.allclose(scale, torch.tensor([0.5, 0.125, 1.0]), rtol=1e-6)
    assert torch.equal(scaled[2], img[2])
    assert torch.isfinite(scaled).all()


def test_anchor_validation():
    with pytest.raises(ValueError, match="percentile"):
        anchor_exposure(grey([1.0]), 101, 1.0)
    with pytest.raises(ValueError, match="positive"):
        anchor_exposure(grey([1.0]), 50, 0.0)


def test_a_big_photo_is_fitted_and_blended_in_bands_of_rows_like_in_one_piece(monkeypatch):
    """The float64 work runs in bands of rows (bounded memory for a 24-megapixel photo): the bands'
    groups merge into the one-piece fit (sums in another order: equal to rounding) and the blend is
    pointwise, so each band's pixels are the one-piece pixels."""
    import lediff_core.model.blend as blend

    gen = torch.Generator().manual_seed(4)
    ldr = (torch.rand(2, 37, 23, 3, generator=gen) * 255).round() / 255  # 8-bit values, repeated
    ldr[:, :5] = 1.0
    hdr = power_hdr(ldr, 2.2, 1.5) * (1 + 0.01 * torch.rand(ldr.shape, generator=gen))
    whole = blend_with_ldr(ldr, hdr, RELEASED)
    monkeypatch.setattr(blend, "BAND_PIXELS", 23 * 4)  # ten bands, the last one short
    assert len(blend._bands(37, 23)) == 10
    banded = blend_with_ldr(ldr, hdr, RELEASED)
    assert torch.equal(whole[1], banded[1])  # the mask
    assert torch.allclose(whole[2], banded[2], rtol=1e-12, atol=0) and torch.allclose(whole[3], banded[3], rtol=1e-12)
    assert torch.allclose(whole[0], banded[0], rtol=1e-6, atol=0)
