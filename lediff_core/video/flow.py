"""Optical flow between consecutive frames, with OpenCV's DIS (Kroeger et al., "Fast Optical Flow
using Dense Inverse Search", ECCV 2016), and the forward-backward occlusion test.

Convention (shared with ``lediff_core.qa.temporal``): **backward** flow [T-1, H, W, 2],
``flow[t-1][y, x] = (dx, dy)`` in pixels such that ``frames[t][y, x] ~ frames[t-1][y + dy, x + dx]``
(where a pixel of frame t came from in frame t-1); forward flow is the same from t-1 to t.

The guide frames are display-referred 0..1 (sRGB-encoded, or tone-mapped/log-encoded HDR): DIS works
on 8-bit grayscale, made here with the Rec.709 weights applied to the encoded values.

OpenCV is imported only when flow is asked for (``lediff_core.io.opencv``).
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import torch

from .. import LEDiffError
from ..color import REC709_LUMA
from ..io.opencv import opencv
from ..qa.temporal import warp

# MEDIUM, DIS's most accurate preset, refined down to full resolution: the preset stops at half
# resolution, which smears motion across object edges by several pixels at 64x48 and misses the
# background a moving object uncovers. It costs about 5x the preset's time (docs/benchmarks.md,
# benchmarks/bench_flow.py).
PRESET = "MEDIUM"
FINEST_SCALE = 0

# Sundaram et al. 2010 ("Dense point trajectories by GPU-accelerated large displacement optical
# flow"), as used by Lai et al. 2018: consistent where |w + w^|^2 < ALPHA (|w|^2 + |w^|^2) + BETA;
# a motion boundary where |grad u|^2 + |grad v|^2 > BOUNDARY_ALPHA |w|^2 + BOUNDARY_BETA
ALPHA, BETA = 0.01, 0.5
BOUNDARY_ALPHA, BOUNDARY_BETA = 0.01, 0.002

# The smallest frames DIS measures: OpenCV refuses a pair whose longer side is under 12 pixels
# ("The input image must have either width or height >= 12", dis_flow.cpp), and, measured with the
# MEDIUM preset (8x8 patches), one whose shorter side is under 8, with the same message.
MIN_SIDE, MIN_LONG_SIDE = 8, 12


class FlowSizeError(LEDiffError, ValueError):
    """Frames too small for optical flow; the message names them, their size and the minimum."""


def flow_measurable(height: int, width: int) -> bool:
    """Whether frames of this size are large enough for DIS (``MIN_SIDE``, ``MIN_LONG_SIDE``)."""
    return min(height, width) >= MIN_SIDE and max(height, width) >= MIN_LONG_SIDE


def check_flow_size(height: int, width: int, what: str = "the guide frames") -> None:
    """Refuse frames smaller than DIS measures, before OpenCV is asked (it would only assert).
    An error rather than no motion: video mode without motion would quietly be independent mode."""
    if not flow_measurable(height, width):
        raise FlowSizeError(
            f"{what} are {width}x{height} pixels, and optical flow (OpenCV's DIS) needs frames of at "
            f"least {MIN_SIDE} pixels on each side and {MIN_LONG_SIDE} on the longer one (e.g. "
            f"{MIN_LONG_SIDE}x{MIN_SIDE}): give larger frames, or use frames = independent, which "
            "measures no motion")


def _cv2():
    return opencv("optical flow")


def _gray8(frames) -> np.ndarray:
    f = frames.detach().float().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames, np.float32)
    if f.ndim != 4 or f.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected guide frames [T, H, W, C] with C = 1 or 3, got shape {tuple(f.shape)}")
    if not np.isfinite(f).all():
        raise ValueError("the guide frames have non-finite values (NaN/inf): flow needs display-referred 0..1 "
                         "frames (tone-map HDR first)")
    g = f[..., 0] if f.shape[-1] == 1 else f[..., :3] @ np.asarray(REC709_LUMA, np.float32)
    return np.ascontiguousarray(np.round(np.clip(g, 0.0, 1.0) * 255.0).astype(np.uint8))


def _dis(cv2):
    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{PRESET}"))
    dis.setFinestScale(FINEST_SCALE)
    return dis


def _pairs(gray: np.ndarray, backward: bool, forward: bool,
           what: str = "the guide frames") -> tuple[torch.Tensor, torch.Tensor]:
    t, h, w = gray.shape
    if t > 1:
        check_flow_size(h, w, what)
    cv2 = _cv2()
    dis = _dis(cv2)
    bw = np.zeros((max(t - 1, 0), h, w, 2), np.float32)
    fw = np.zeros_like(bw)
    for i in range(1, t):
        # DIS's calc(I0, I1) gives u with I0(p) ~ I1(p + u(p)): backward flow is calc(frame t, frame t-1)
        if backward:
            bw[i - 1] = dis.calc(gray[i], gray[i - 1], None)
        if forward:
            fw[i - 1] = dis.calc(gray[i - 1], gray[i], None)
    return torch.from_numpy(bw), torch.from_numpy(fw)


def optical_flow(frames) -> torch.Tensor:
    """Backward flow float32 [T-1, H, W, 2] of guide frames [T, H, W, C] (display-referred 0..1,
    C = 1 or 3); T = 1 gives an empty [0, H, W, 2]. Two frames or more must be at least
    ``MIN_SIDE`` pixels a side and ``MIN_LONG_SIDE`` on the longer one (``FlowSizeError``)."""
    return _pairs(_gray8(frames), backward=True, forward=False)[0]


def forward_backward_flow(frames) -> tuple[torch.Tensor, torch.Tensor]:
    """(backward, forward) flow, each float32 [T-1, H, W, 2]: backward as ``optical_flow``; forward
    ``fw[t-1][y, x] = (dx, dy)`` with ``frames[t-1][y, x] ~ frames[t][y + dy, x + dx]``."""
    return _pairs(_gray8(frames), backward=True, forward=True)


def occlusion_mask(flow_bw: torch.Tensor, flow_fw: torch.Tensor, alpha: float = ALPHA, beta: float = BETA,
                   motion_boundaries: bool = True) -> torch.Tensor:
    """[T-1, H, W] bool, True where the pixel of frame t is visible in frame t-1 (its flow can be
    trusted), the test of Sundaram et al. 2010 that Lai et al. 2018 use:

    - forward-backward consistency: following the backward flow w to frame t-1 and the forward
      flow w^ found there back must return (nearly) to the start,
      ``|w + w^|^2 < alpha (|w|^2 + |w^|^2) + beta``;
    - and, with ``motion_boundaries``, not on a motion boundary of the backward flow,
      ``|grad u|^2 + |grad v|^2 <= 0.01 |w|^2 + 0.002`` (central differences): a patch-based flow
      such as DIS smears motion over the background an object uncovers, where the first test
      alone can pass;
    - pixels whose backward flow leaves the frame (by more than half a pixel) are not visible either."""
    bw = torch.as_tensor(flow_bw, dtype=torch.float32)
    fw = torch.as_tensor(flow_fw, dtype=torch.float32)
    if bw.shape != fw.shape or bw.ndim != 4 or bw.shape[-1] != 2:
        raise ValueError(f"backward and forward flow must both be [T-1, H, W, 2], got {tuple(bw.shape)} and "
                         f"{tuple(fw.shape)}")
    n, h, w, _ = bw.shape
    if n == 0:
        return torch.zeros(0, h, w, dtype=torch.bool)
    back = warp(fw.permute(0, 3, 1, 2), bw).permute(0, 2, 3, 1)  # w^ at p + w(p)
    lhs = ((bw + back) ** 2).sum(-1)
    rhs = alpha * ((bw ** 2).sum(-1) + (back ** 2).sum(-1)) + beta
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    px, py = xs + bw[..., 0], ys + bw[..., 1]
    inside = (px > -0.5) & (px < w - 0.5) & (py > -0.5) & (py < h - 0.5)  # lands on a pixel of frame t-1
    valid = (lhs < rhs) & inside
    if motion_boundaries and h > 1 and w > 1:  # (a gradient needs two pixels a side)
        grads = torch.gradient(bw, dim=(1, 2))  # d/dy and d/dx of (u, v), each [T-1, H, W, 2]
        grad_sq = sum((g ** 2).sum(-1) for g in grads)
        valid &= grad_sq <= BOUNDARY_ALPHA * (bw ** 2).sum(-1) + BOUNDARY_BETA
    return valid


# the last shot's flow is kept up to this size (about 55 frames of 1080p, 2000 of 768x384); larger
# shots are measured again when asked again, rather than holding gigabytes after the graph
KEEP_BYTES = 1 << 30
_last_shot: dict = {}  # {"key": ..., "flow": ..., "visible": ...} of the last flow_with_visibility call
_last_lock = threading.Lock()


def flow_with_visibility(guide, what: str = "the guide frames") -> tuple[torch.Tensor, torch.Tensor]:
    """(backward flow [T-1, H, W, 2], visibility [T-1, H, W] bool) of guide frames: what the warping
    error (``lediff_core.qa.temporal.warping_error``) takes as ``flow`` and ``valid``.

    The last shot's result is kept (one entry of at most ``KEEP_BYTES``, replaced by the next shot) and returned
    again, as copies, for guide frames with the same 8-bit grayscale, which is all DIS sees: one
    video graph asks for the same clip's motion in Highlight Bracket, Shadow Bracket and Blend with
    LDR, and the flow is most of their time (docs/benchmarks.md). ``clear_flow_cache`` frees it.
    ``what`` names the frames in a ``FlowSizeError``."""
    gray = _gray8(guide)
    key = (gray.shape, hashlib.blake2b(gray.tobytes(), digest_size=32).digest())
    with _last_lock:
        if _last_shot.get("key") == key:
            return _last_shot["flow"].clone(), _last_shot["visible"].clone()
    bw, fw = _pairs(gray, backward=True, forward=True, what=what)
    visible = occlusion_mask(bw, fw)
    with _last_lock:
        _last_shot.clear()
        if bw.nbytes + visible.nbytes <= KEEP_BYTES:
            _last_shot.update(key=key, flow=bw, visible=visible)
    return bw.clone(), visible.clone()


def clear_flow_cache() -> None:
    """Forget the last shot's flow (``flow_with_visibility``)."""
    with _last_lock:
        _last_shot.clear()


def hdr_guide(frames, low_percentile: float = 0.5, high_percentile: float = 99.5) -> torch.Tensor:
    """Guide frames [T, H, W, 1] in 0..1 for the flow of linear HDR frames [T, H, W, 3]: log2
    luminance mapped linearly from the clip's ``low_percentile`` to its ``high_percentile``, one
    mapping for the whole clip (a per-frame exposure would itself flicker and mislead the flow), so
    that the bright sky keeps its structure where a display tone curve would flatten it."""
    f = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames).float().cpu()
    if f.ndim != 4 or f.shape[-1] < 3:
        raise ValueError(f"expected linear HDR frames [T, H, W, 3], got shape {tuple(f.shape)}")
    if not torch.isfinite(f).all():
        raise ValueError("the HDR frames have non-finite values (NaN/inf)")
    y = (f[..., :3] * torch.tensor(REC709_LUMA)).sum(-1).clamp_min(2.0 ** -20)
    v = torch.log2(y)
    lo, hi = np.percentile(v.numpy(), [low_percentile, high_percentile])
    return ((v - float(lo)) / max(float(hi - lo), 1e-6)).clamp(0, 1)[..., None]
