"""Glare by direct spatial convolution (``torch.nn.functional.conv2d``, zero padding), the border
share computed the same direct way: the reference the FFT path of ``lediff_core.lens.glare`` is
tested and benchmarked against."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lediff_core.lens.glare import Glare, bright_share


def direct_glare(img: torch.Tensor, glare: Glare, dtype=torch.float64) -> torch.Tensor:
    """``img`` [1, H, W, 3+] with ``glare`` applied by direct convolution: [H, W, 3] in ``dtype``."""
    rgb = img[0, ..., :3].to(dtype)
    h, w = rgb.shape[:2]
    k = glare.kernel(h, w).to(dtype)
    ry, rx = (k.shape[1] - 1) // 2, (k.shape[2] - 1) // 2
    spread = glare.intensity * bright_share(rgb, glare.threshold, glare.knee) * rgb
    out = rgb - spread
    for c in range(3):
        kernel = k[c].flip(0, 1)[None, None]  # conv2d correlates: flipped, it convolves
        inside = F.conv2d(torch.ones(1, 1, h, w, dtype=dtype), kernel, padding=(ry, rx))[0, 0]
        out[..., c] += F.conv2d((spread[..., c] / inside)[None, None], kernel, padding=(ry, rx))[0, 0]
    return out
