"""HDR test clips with exact ground truth and known motion: a camera pan across an equirectangular
HDRI. A horizontal pan (yaw) is a pure horizontal shift of a lat-long map, so a crop of the map
that moves by whole map pixels is an HDR video whose every frame and optical flow are known
exactly (the evaluation and the video tests use it; the LDR comes from ``camera``)."""

from __future__ import annotations

import numpy as np


def _box_down(image: np.ndarray, factor: int) -> np.ndarray:
    h, w, c = image.shape
    return image.reshape(h // factor, factor, w // factor, factor, c).mean(axis=(1, 3))


def equirect_pan(pano: np.ndarray, frames: int = 8, size: tuple[int, int] = (64, 48), step_px: int = 2,
                 factor: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A pan to the right past the brightest point of ``pano`` (a linear HxWx3 lat-long map):
    ``frames`` frames of ``size`` = (width, height), each a crop of the map ``factor`` times larger,
    box-downscaled (averaging light), moving ``step_px * factor`` map pixels a frame and wrapping
    around the panorama. Content moves left by exactly ``step_px`` output pixels a frame.

    Returns (hdr [T, H, W, 3] float32, backward flow [T-1, H, W, 2] float32 = (+step_px, 0))."""
    pano = np.maximum(np.asarray(pano, np.float64)[..., :3], 0.0)  # references may hold tiny negatives
    if not np.isfinite(pano).all():
        raise ValueError("the panorama has non-finite values (NaN/inf)")
    width, height = size
    ph, pw, _ = pano.shape
    ch, cw = height * factor, width * factor
    if ch > ph or cw > pw:
        raise ValueError(f"{width}x{height} frames x factor {factor} do not fit the {pw}x{ph} panorama: use a "
                         "smaller size or factor")
    y = pano.mean(-1)
    row, col = np.unravel_index(int(np.argmax(y)), y.shape)
    top = int(np.clip(row - ch // 4, 0, ph - ch))  # brightest point in the upper part of the frame
    left = int(col - 0.4 * cw)
    hdr = []
    for t in range(frames):
        cols = np.arange(left + t * step_px * factor, left + t * step_px * factor + cw) % pw
        hdr.append(_box_down(pano[top:top + ch][:, cols], factor))
    flow = np.zeros((max(frames - 1, 0), height, width, 2), np.float32)
    flow[..., 0] = step_px
    return np.stack(hdr).astype(np.float32), flow
