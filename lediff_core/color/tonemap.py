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


def aces_filmic(x: torch.Tensor) -> torch.Tensor:
    """Narkowicz's 2015 fit of the ACES reference rendering + output transform (per channel)."""
    x = x.clamp_min(0)
    return ((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14)).clamp(0, 1)


def reinhard(rgb: torch.Tensor, white: float) -> torch.Tensor:
    """Extended Reinhard on luminance: L (1 + L / white^2) / (1 + L); hue is preserved.

    ``white`` is the smallest luminance that maps to 1 (after exposure).
    """
    y = luminance(rgb).clamp_min(0)
    yd = y * (1 + y / (white * white)) / (1 + y)
    scale = torch.where(y > 0, yd / y.clamp_min(1e-30), torch.zeros_like(y))
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
    automatic exposure of each image. Pixels with a NaN or Inf channel come out ``NONFINITE_RGB``.
    """
    if operator not in OPERATORS:
        raise ValueError(f"unknown tone mapping operator {operator!r}; choose one of {OPERATORS}")
    x = rgb[..., :3].float()
    bad = nonfinite_pixels(x)[..., None]
    x = torch.where(bad, torch.zeros_like(x), x)
    stops = torch.full((x.shape[0],), float(exposure))
    if auto_exposure:
        stops = stops + auto_exposure_stops(x)
    x = x * torch.exp2(stops).to(x.device).view(-1, 1, 1, 1)
    if operator == "aces":
        display = aces_filmic(x)
    elif operator == "reinhard":
        display = reinhard(x, white)
    else:
        display = x.clamp(0, 1)
    marker = torch.tensor(NONFINITE_RGB, dtype=display.dtype, device=display.device)
    return torch.where(bad, marker, linear_to_srgb(display).clamp(0, 1))


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
