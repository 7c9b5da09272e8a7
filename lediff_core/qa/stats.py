"""Dynamic-range statistics of linear HDR images and a histogram of log2 luminance drawn as a plot;
``image_stats`` gives all of it for one image (and its LDR), as HDR Stats reports it.

Conventions: linear Rec.709, 1.0 = SDR (diffuse) white, luminance with the Rec.709 weights.
- ``robust_stops``: log2(P99 / P1) of the luminance of pixels with positive luminance (the 1st and
  99th percentiles ignore a few hot or dead pixels).
- ``peak_floor_stops``: log2(max / smallest positive luminance).
- ``above_white``: share of pixels (0..1) with any channel above 1.0, i.e. that an SDR camera or
  display at this exposure would clip. For an LDR (display-encoded 0..1) image this is the share
  with any channel at or above the clip threshold ("clipped").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..color import REC709_LUMA, srgb_to_linear
from .render import font, from_pil

LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.0


@dataclass
class RangeStats:
    robust_stops: float
    peak_floor_stops: float
    above_white: float  # share 0..1
    p_low: float  # luminance at LOW_PERCENTILE
    p_high: float
    peak: float
    floor: float
    log2_luminance: np.ndarray  # of pixels with positive luminance (for the histogram)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb[..., :3], dtype=np.float64) @ np.asarray(REC709_LUMA)


def range_stats(linear: np.ndarray, encoded: np.ndarray | None = None, clip_threshold: float = 0.99) -> RangeStats:
    """Statistics of an HxWx3 linear image. ``above_white`` counts channels above 1.0; for an LDR
    image pass its display-encoded values as ``encoded`` to count channels at or above
    ``clip_threshold`` there instead (the pixels the camera clipped)."""
    linear = np.asarray(linear)
    if linear.ndim != 3 or linear.shape[-1] < 3:
        raise ValueError(f"expected an HxWx3 image, got shape {tuple(linear.shape)}")
    if not np.isfinite(linear).all():
        raise ValueError("the image has non-finite values (NaN/inf): fix the decode before measuring it")
    y = luminance(linear)
    pos = y[y > 0]
    if encoded is None:
        above = float(np.mean((linear[..., :3] > 1.0).any(axis=-1)))
    else:
        above = float(np.mean((np.asarray(encoded)[..., :3] >= clip_threshold).any(axis=-1)))
    if pos.size == 0:
        return RangeStats(0.0, 0.0, above, 0.0, 0.0, 0.0, 0.0, np.zeros(0))
    lo, hi = np.percentile(pos, [LOW_PERCENTILE, HIGH_PERCENTILE])
    peak, floor = float(pos.max()), float(pos.min())
    return RangeStats(
        robust_stops=float(np.log2(hi / lo)),
        peak_floor_stops=float(np.log2(peak / floor)),
        above_white=above,
        p_low=float(lo),
        p_high=float(hi),
        peak=peak,
        floor=floor,
        log2_luminance=np.log2(pos),
    )


def describe(name: str, s: RangeStats, clipped_word: str) -> str:
    return f"{name}: {s.robust_stops:.1f} stops, {100 * s.above_white:.1f} % {clipped_word}"


HDR_COLOUR = (255, 170, 40)
LDR_COLOUR = (80, 160, 255)


def histogram_plot(
    series: list[tuple[str, RangeStats, tuple[int, int, int]]],
    width: int = 768,
    height: int = 384,
    bins_per_stop: int = 4,
) -> np.ndarray:
    """Histogram of log2 luminance for each (label, stats, colour), overlaid, as an HxWx3 float32
    picture: x = log2 luminance (0 = SDR white), y = share of pixels per bin; dashed lines mark
    each series' 1st/99th percentiles and a solid line SDR white."""
    data = [s.log2_luminance for _, s, _ in series if s.log2_luminance.size]
    if data:
        lo = float(np.floor(min(np.percentile(d, 0.1) for d in data)))
        hi = float(np.ceil(max(d.max() for d in data)))
    else:
        lo, hi = -8.0, 4.0
    lo, hi = min(lo, -1.0), max(hi, 1.0)
    edges = np.arange(lo, hi + 1e-9 + 1.0 / bins_per_stop, 1.0 / bins_per_stop)
    hists = []
    for _, s, _ in series:
        counts, _ = np.histogram(np.clip(s.log2_luminance, lo, hi), bins=edges)
        hists.append(counts / max(1, s.log2_luminance.size))
    top = max((h.max() for h in hists if h.size), default=1.0) or 1.0

    img = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(img)
    small = font(12)
    ml, mr, mt, mb = 48, 12, 28, 36  # margins: left, right, top, bottom
    pw, ph = width - ml - mr, height - mt - mb

    def x_of(v: float) -> float:
        return ml + (v - lo) / (hi - lo) * pw

    def y_of(share: float) -> float:
        return mt + ph - share / top * ph

    draw.rectangle([ml, mt, ml + pw, mt + ph], outline=(120, 120, 120))
    step = 1 if hi - lo <= 16 else 2 if hi - lo <= 32 else 4
    for v in range(int(np.ceil(lo / step) * step), int(hi) + 1, step):
        x = x_of(v)
        draw.line([x, mt + ph, x, mt + ph + 4], fill=(160, 160, 160))
        draw.text((x - 6, mt + ph + 6), f"{v:d}", fill=(200, 200, 200), font=small)
    for frac in (0.5, 1.0):
        y = y_of(top * frac)
        draw.text((4, y - 6), f"{100 * top * frac:.1f}%", fill=(200, 200, 200), font=small)
    draw.text(
        (ml + pw / 2 - 140, height - 16), "log2 luminance (stops; 0 = SDR white)", fill=(220, 220, 220), font=small
    )
    draw.line([x_of(0.0), mt, x_of(0.0), mt + ph], fill=(240, 240, 240), width=1)

    legend_x = ml + 8
    for (label, s, colour), h in zip(series, hists, strict=True):
        pts = []
        for i, share in enumerate(h):
            x0, x1 = x_of(edges[i]), x_of(edges[i + 1])
            pts += [(x0, y_of(share)), (x1, y_of(share))]
        if pts:
            draw.line(pts, fill=colour, width=2)
        if s.log2_luminance.size:
            for v in (np.log2(s.p_low), np.log2(s.p_high)):
                x = x_of(float(np.clip(v, lo, hi)))
                for y in range(mt, mt + ph, 8):
                    draw.line([x, y, x, y + 4], fill=colour)
        draw.rectangle([legend_x, 8, legend_x + 10, 18], fill=colour)
        text = f"{label}: {s.robust_stops:.1f} stops"
        draw.text((legend_x + 14, 6), text, fill=(230, 230, 230), font=small)
        legend_x += 24 + draw.textlength(text, font=small)
    return from_pil(img)


def image_stats(hdr: torch.Tensor, ldr: torch.Tensor | None = None,
                clip_threshold: float = 0.99) -> tuple[RangeStats, np.ndarray, str]:
    """HDR Stats of one image: the statistics of ``hdr`` (HxWxC linear), the histogram plot, and the
    summary line, e.g. ``LDR: 7.9 stops, 4.1 % clipped -> HDR: 14.2 stops, 3.0 % above SDR white (peak/
    floor 16.0 stops)``. With ``ldr`` (HxWxC display-encoded sRGB, linearised with the sRGB curve)
    its statistics come first in the plot and the line, clipped at ``clip_threshold``."""
    hdr_stats = range_stats(hdr[..., :3].float().cpu().numpy())
    series = [("HDR", hdr_stats, HDR_COLOUR)]
    line = describe("HDR", hdr_stats, "above SDR white") + f" (peak/floor {hdr_stats.peak_floor_stops:.1f} stops)"
    if ldr is not None:
        enc = ldr[..., :3].float().cpu()
        low = range_stats(srgb_to_linear(enc).numpy(), encoded=enc.numpy(), clip_threshold=clip_threshold)
        series.insert(0, ("LDR", low, LDR_COLOUR))
        line = describe("LDR", low, "clipped") + " \u2192 " + line
    return hdr_stats, histogram_plot(series), line

