"""Exposure strips: one linear HDR image shown at several exposures, each panel as a camera would
record it (multiply by 2^EV, clip at 1 = SDR white, sRGB transfer function), side by side with a
label, optionally with the clipped pixels of the LDR input outlined so the recovered highlights
stand out. The strip is a picture for people: its panels are clipped and 8-bit on purpose; the HDR
data it is made from is not touched. NaN/Inf pixels are painted ``NONFINITE_RGB`` (cyan) on every
panel rather than clipped into a plausible colour: an HDR tool must not hide them."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..color import NONFINITE_RGB, check_image_size, linear_to_srgb, nonfinite_pixels
from .render import label_band

OUTLINE_RGB = (1.0, 0.0, 1.0)  # magenta: no natural scene colour hides it


def ev_steps(ev_min: float, ev_max: float, ev_step: float) -> list[float]:
    """ev_min, ev_min + step, ... up to ev_max inclusive (a single panel when min == max)."""
    if ev_step <= 0:
        raise ValueError(f"ev_step must be positive, got {ev_step}")
    if ev_max < ev_min:
        raise ValueError(f"ev_max ({ev_max}) is below ev_min ({ev_min}): swap them")
    n = int(np.floor((ev_max - ev_min) / ev_step + 1e-6)) + 1
    if n > 64:
        raise ValueError(f"{n} panels requested: raise ev_step or narrow ev_min..ev_max (at most 64)")
    return [round(ev_min + i * ev_step, 6) for i in range(n)]


def camera_view(linear: torch.Tensor, ev: float) -> torch.Tensor:
    """What an sRGB camera shows at exposure ``ev``: linear x 2^ev, clipped to 0..1, sRGB-encoded."""
    return linear_to_srgb((linear * (2.0**ev)).clamp(0.0, 1.0))


def clipped_mask(ldr: torch.Tensor, threshold: float) -> torch.Tensor:
    """HxW bool: LDR pixels (display-encoded 0..1) with any channel at or above ``threshold``."""
    return (ldr[..., :3] >= threshold).any(dim=-1)


def outline(mask: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Boundary pixels (inside edge, ``width`` pixels) of a HxW bool mask."""
    m = mask.float()[None, None]
    inv = 1.0 - m
    eroded = 1.0 - F.max_pool2d(inv, 2 * width + 1, stride=1, padding=width)
    return (m - eroded)[0, 0] > 0.5


def _resize(x: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """HxWxC resize ('area' averages linear light; 'nearest' for masks)."""
    if x.shape[0] == height and x.shape[1] == width:
        return x
    y = F.interpolate(x.permute(2, 0, 1)[None].float(), size=(height, width), mode=mode)
    return y[0].permute(1, 2, 0)


def exposure_strip(
    image: torch.Tensor,
    evs: list[float],
    ldr: torch.Tensor | None = None,
    clip_threshold: float = 0.99,
    panel_width: int = 512,
    gap: int = 4,
) -> torch.Tensor:
    """Contact sheet of one HxWx3 linear image at each EV in ``evs``: HxW'x3 float32 in 0..1.

    ``ldr`` (HxWx3 display-encoded, any size: resized to the image) outlines its clipped pixels.
    ``panel_width`` scales each panel to that width (0 keeps the image's own width).
    """
    check_image_size(image, "image", batched=False)
    if ldr is not None:
        check_image_size(ldr, "ldr", batched=False)
    img = image[..., :3].float().cpu()
    bad = nonfinite_pixels(img)
    img = torch.where(bad[..., None], torch.zeros_like(img), img)  # a NaN would spread when resizing
    h, w = img.shape[:2]
    if panel_width and panel_width != w:
        ph = max(1, round(h * panel_width / w))
        img, h, w = _resize(img, ph, panel_width, "area"), ph, panel_width
        bad = _resize(bad.float()[..., None], h, w, "area")[..., 0] > 0  # any bad pixel marks its panel pixel
    edge = None
    if ldr is not None:
        # mask at the LDR's own resolution, then any clipped pixel in a panel pixel marks it
        m = clipped_mask(ldr.float().cpu(), clip_threshold).float()[..., None]
        m = _resize(m, h, w, "area")[..., 0] > 0
        edge = outline(m, width=max(1, round(w / 256)))
    label_h = max(18, round(w / 16))
    panels = []
    for ev in evs:
        p = torch.where(bad[..., None], torch.tensor(NONFINITE_RGB), camera_view(img, ev))
        if edge is not None:
            p = torch.where(edge[..., None], torch.tensor(OUTLINE_RGB), p)
        band = torch.from_numpy(label_band(w, label_h, f"{ev:+g} EV", round(label_h * 0.7)))
        panels.append(torch.cat([band, p], dim=0))
    sep = torch.full((h + label_h, gap, 3), 0.125)
    out = [panels[0]]
    for p in panels[1:]:
        out += [sep, p]
    return torch.cat(out, dim=1).contiguous()
