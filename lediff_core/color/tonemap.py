"""Tone mapping of linear HDR to display-referred sRGB in 0..1 (for previews and LDR nodes).

The input is never modified; clipping happens only in the display-referred result, which is the
point of tone mapping. NaN/Inf pixels are not hidden: they are painted ``NONFINITE_RGB`` (cyan) in
the result and left out of the automatic exposure, so one bad pixel neither vanishes into the
curve nor blanks the whole picture; the nodes log how many there were.
"""

from __future__ import annotations

import torch

from . import NONFINITE_RGB, linear_to_srgb, luminance, nonfinite_pixels

OPERATORS = ("aces", "reinhard", "clip")

# Log-average luminance mapped to this value by automatic exposure (Reinhard et al. 2002's "key").
AUTO_EXPOSURE_KEY = 0.18


def auto_exposure_stops(rgb: torch.Tensor) -> torch.Tensor:
    """Per-image exposure (stops) that maps the log-average luminance to middle grey.

    Returns a tensor of shape [B] for an input [B, H, W, C]. Non-positive and NaN/Inf pixels are
    ignored; an image without a positive finite pixel gets 0 stops.
    """
    y = luminance(rgb.float())[..., 0].flatten(1)
    positive = (y > 0) & torch.isfinite(y)
    logs = torch.where(positive, torch.log2(y.clamp_min(1e-30)), torch.zeros_like(y))
    count = positive.sum(dim=1)
    mean_log = logs.sum(dim=1) / count.clamp_min(1)
    stops = torch.log2(torch.tensor(AUTO_EXPOSURE_KEY)) - mean_log
    return torch.where(count > 0, stops, torch.zeros_like(stops))


# Narkowicz's curve passes 1 at x = (0.56 + sqrt(0.56^2 + 4 * 0.08 * 0.14)) / 0.16 = 7.24 and stays
# above it (the numerator minus the denominator, 0.08x^2 - 0.56x - 0.14, is positive beyond), so every
# input from here on displays as 1: capping there changes no output and keeps x^2 finite (float32's
# x^2 overflows from 1.8e19, and inf/inf is NaN).
ACES_SATURATION = 64.0
# After exposure, light is capped at this (float32's largest value / 2^8): luminance, a weighted sum
# of three channels, and Reinhard's products stay finite; anything this bright displays as 1 anyway.
LIGHT_CAP = 2.0 ** 120


def aces_filmic(x: torch.Tensor) -> torch.Tensor:
    """Narkowicz's 2015 fit of the ACES reference rendering + output transform (per channel)."""
    x = x.clamp(0, ACES_SATURATION)
    return ((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14)).clamp(0, 1)


def reinhard(rgb: torch.Tensor, white: float) -> torch.Tensor:
    """Extended Reinhard on luminance: L (1 + L / white^2) / (1 + L); hue is preserved.

    ``white`` is the smallest luminance that maps to 1 (after exposure). The pixel is scaled by
    (1 + L / white^2) / (1 + L), written for L > 1 as (1/L + 1/white^2) / (1/L + 1), which stays
    finite for any L (inf included).
    """
    if not (0 < white < float("inf")):
        raise ValueError(f"reinhard: white must be a positive number, got {white}")
    y = luminance(rgb).clamp_min(0)
    inv_white2 = min(1.0 / (white * white), 1e30)  # float32-finite for any white
    inv_y = 1 / y.clamp_min(1)
    scale = torch.where(y > 1, (inv_y + inv_white2) / (inv_y + 1), (1 + y * inv_white2) / (1 + y))
    scale = torch.where(y > 0, scale, torch.zeros_like(y))
    return (rgb.clamp_min(0) * scale).clamp(0, 1)


def tone_map(
    rgb: torch.Tensor,
    operator: str = "aces",
    exposure: float = 0.0,
    white: float = 4.0,
    auto_exposure: bool = False,
) -> torch.Tensor:
    """Linear HDR [B, H, W, C>=3] -> sRGB-encoded [B, H, W, 3] in 0..1.

    ``exposure`` is in stops (a factor 2**exposure); with ``auto_exposure`` it is added to the
    automatic exposure of each image. Pixels with a NaN or Inf channel come out ``NONFINITE_RGB``;
    light that the exposure takes beyond float32's range is brighter than anything, not NaN: it
    displays as 1 (white where every channel overflows), for any exposure and any finite input.
    """
    if operator not in OPERATORS:
        raise ValueError(f"unknown tone mapping operator {operator!r}; choose one of {OPERATORS}")
    x = rgb[..., :3].float()
    bad = nonfinite_pixels(x)[..., None]
    x = torch.where(bad, torch.zeros_like(x), x)
    stops = torch.full((x.shape[0],), float(exposure))
    if auto_exposure:
        stops = stops + auto_exposure_stops(x)
    # in two halves: 2**stops alone overflows float32 from 128 stops (auto exposure of a very dark
    # image plus the widget's 32), and 0 * inf would turn black pixels NaN; this way light overflows
    # to inf, never NaN, and the cap brings it back to a finite "brighter than anything"
    half = torch.exp2(stops / 2).to(x.device).view(-1, 1, 1, 1)
    x = (x * half * half).clamp(-LIGHT_CAP, LIGHT_CAP)
    if operator == "aces":
        display = aces_filmic(x)
    elif operator == "reinhard":
        display = reinhard(x, white)
    else:
        display = x.clamp(0, 1)
    marker = torch.tensor(NONFINITE_RGB, dtype=display.dtype, device=display.device)
    # display white is exactly 1: the sRGB curve gives 1.055 - 0.055 = 0.99999994 in float32,
    # which 8-bit savers (core's Save Image truncates) write as 254
    encoded = torch.where(display >= 1, torch.ones_like(display), linear_to_srgb(display).clamp(0, 1))
    return torch.where(bad, marker, encoded)


def thumbnail(rgb: torch.Tensor, max_side: int = 256) -> torch.Tensor:
    """A linear [B, h, w, C] thumbnail with its longer side at most ``max_side``.

    Each output pixel averages 2x2 samples spread over its k x k block (k the integer reduction
    factor): a cheap, little-aliased preview that reads a few samples per block, not the whole
    image, so previews cost next to nothing beside writing the file.
    """
    k = -(-max(rgb.shape[1], rgb.shape[2]) // max_side)
    if k == 1:
        return rgb
    h, w = rgb.shape[1] // k, rgb.shape[2] // k
    offsets = (k // 4, (3 * k) // 4)
    total = torch.zeros((rgb.shape[0], h, w, rgb.shape[3]), dtype=torch.float32, device=rgb.device)
    for oy in offsets:
        for ox in offsets:
            total += rgb[:, oy::k, ox::k][:, :h, :w]
    return total / 4
