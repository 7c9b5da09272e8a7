"""Temporal consistency of a video: warping frames along optical flow and the warping error.

The warping error is the measure of Lai et al., "Learning Blind Video Temporal Consistency" (ECCV
2018, eq. 7): the previous frame is warped to the current one along the flow of the *input* video,
and the squared difference is averaged over the pixels that flow can explain (not occluded):

    E_t = sum_i M_t(i) (V_t(i) - warp(V_{t-1})(i))^2 / sum_i M_t(i),    E = mean_t E_t.

Lai et al. score display-referred RGB; our frames are linear HDR of arbitrary scale, so ``V`` here
is **log2 luminance** (Rec.709 weights of ``lediff_core.color``): the error is in stops squared, a
constant exposure change of k stops scores exactly k^2, and a flicker is weighed the same in the
shadows as in the highlights. Luminance is floored at ``LUMINANCE_FLOOR`` (2^-20 of SDR white,
about 120 dB below it) before the logarithm, so that black (or slightly negative) pixels give a
finite value; a pixel that flickers between black and anything is then capped at 20 stops of
error rather than infinite.

Flow convention (``lediff_core.video.flow`` computes it): **backward** flow, ``flow[t-1][y, x] =
(dx, dy)`` in pixels such that ``frame[t][y, x] ~ frame[t-1][y + dy, x + dx]``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..color import REC709_LUMA

LUMINANCE_FLOOR = 2.0 ** -20


def _tensor(x, dtype=None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t if dtype is None else t.to(dtype)


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``x`` [N, C, H, W] (e.g. the previous frames, or latents) sampled at ``(x + dx, y + dy)`` for
    the backward ``flow`` [N, H, W, 2] (pixels): bilinear, positions outside the frame take the
    nearest border value. An integer flow is an exact shift (away from the borders)."""
    x = _tensor(x)
    flow = _tensor(flow).to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
    if x.ndim != 4:
        raise ValueError(f"warp expects x as [N, C, H, W], got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    if tuple(flow.shape) != (n, h, w, 2):
        raise ValueError(f"flow of shape {tuple(flow.shape)} does not match frames {tuple(x.shape)}: "
                         f"expected [{n}, {h}, {w}, 2]")
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=flow.dtype),
                            torch.arange(w, device=x.device, dtype=flow.dtype), indexing="ij")
    px, py = xs + flow[..., 0], ys + flow[..., 1]
    # align_corners=True: -1 and +1 are the centres of the first and last pixels, so pixel p maps to
    # 2 p / (size - 1) - 1 (a one-pixel side has only its centre: 0)
    gx = 2.0 * px / (w - 1) - 1.0 if w > 1 else torch.zeros_like(px)
    gy = 2.0 * py / (h - 1) - 1.0 if h > 1 else torch.zeros_like(py)
    grid = torch.stack([gx, gy], dim=-1)
    src = x if x.is_floating_point() else x.float()
    return F.grid_sample(src, grid.to(src.dtype), mode="bilinear", padding_mode="border", align_corners=True)


def log_luminance(frames: torch.Tensor) -> torch.Tensor:
    """log2 of the Rec.709 luminance of linear frames [T, H, W, 3] (or of [T, H, W, 1] luminance),
    floored at ``LUMINANCE_FLOOR``: [T, H, W] float64."""
    f = _tensor(frames, torch.float64)
    if f.ndim != 4 or f.shape[-1] not in (1, 3):
        raise ValueError(f"expected frames [T, H, W, 3] (linear RGB) or [T, H, W, 1] (luminance), got shape "
                         f"{tuple(f.shape)}")
    if not torch.isfinite(f).all():
        bad = sorted({int(t) for t in torch.nonzero(~torch.isfinite(f))[:, 0]})
        raise ValueError(f"frames {bad[:10]} have non-finite values (NaN/inf): fix the decode before measuring "
                         "temporal consistency")
    y = f[..., 0] if f.shape[-1] == 1 else f @ torch.tensor(REC709_LUMA, dtype=torch.float64)
    return torch.log2(torch.clamp(y, min=LUMINANCE_FLOOR))


def warping_error(frames, flow, valid=None, region=None) -> dict:
    """Warping error of Lai et al. (2018) on log2 luminance (module docstring), in stops squared.

    frames [T, H, W, 3] linear HDR (or [T, H, W, 1] luminance); flow [T-1, H, W, 2] backward flow of
    the input video; valid [T-1, H, W] bool, True where pixel of frame t is visible in frame t-1
    (``lediff_core.video.flow.occlusion_mask``; all True when None); region [T, H, W] bool, e.g. the
    clipped pixels of the LDR input, restricting the second score to region[t] of frame t.

    Returns {"overall": E, "region": E within the region (nan when no valid pixel of frames 1..T-1
    lies in it), "per_frame": [E_1 .. E_{T-1}], "per_frame_region": [...], "pairs": T-1}. A frame
    pair with no valid pixel scores nan and is left out of the means. A single frame (T = 1) has no
    pair: overall 0.0 (nothing can flicker), region nan, empty lists, pairs 0.
    """
    v = log_luminance(frames)
    t, h, w = v.shape
    flow = _tensor(flow, torch.float64)
    if tuple(flow.shape) != (t - 1, h, w, 2):
        raise ValueError(f"flow of shape {tuple(flow.shape)} does not match {t} frames of {w}x{h}: expected "
                         f"[{t - 1}, {h}, {w}, 2]")
    masks = torch.ones(t - 1, h, w, dtype=torch.bool) if valid is None else _tensor(valid).bool().cpu()
    if tuple(masks.shape) != (t - 1, h, w):
        raise ValueError(f"valid of shape {tuple(masks.shape)} does not match: expected [{t - 1}, {h}, {w}]")
    if region is not None:
        region = _tensor(region).bool().cpu()
        if tuple(region.shape) != (t, h, w):
            raise ValueError(f"region of shape {tuple(region.shape)} does not match: expected [{t}, {h}, {w}] "
                             "(one mask per frame)")
    if t < 2:
        return {"overall": 0.0, "region": math.nan, "per_frame": [], "per_frame_region": [], "pairs": 0}
    warped = warp(v[:-1, None], flow)[:, 0]
    sq = (v[1:] - warped) ** 2

    def masked_means(m: torch.Tensor) -> list[float]:
        counts = m.sum(dim=(1, 2))
        sums = (sq * m).sum(dim=(1, 2))
        return [float(s / c) if c > 0 else math.nan for s, c in zip(sums, counts, strict=True)]

    def mean(values: list[float]) -> float:
        finite = [x for x in values if not math.isnan(x)]
        return float(np.mean(finite)) if finite else math.nan

    per_frame = masked_means(masks)
    per_region = masked_means(masks & region[1:]) if region is not None else [math.nan] * (t - 1)
    return {"overall": mean(per_frame), "region": mean(per_region), "per_frame": per_frame,
            "per_frame_region": per_region, "pairs": t - 1}
