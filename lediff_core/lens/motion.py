"""Motion blur of a clip along its optical flow, in linear light (docs/lens.md).

A camera's frame integrates the light of the scene while the shutter is open: ``shutter_angle /
360`` of the frame interval, centred here on the frame's time (Blender's "center on frame"). Each
frame's light is moved along its motion across that interval and averaged over ``samples``
instants ``s_k = (shutter_angle / 360) ((k + 1/2) / N - 1/2)`` (frames; k = 0..N-1):

- **the motion** is the pack's optical flow (``lediff_core.video.flow``: OpenCV's DIS between
  guide frames, ``hdr_guide`` of the clip's own HDR). Before the frame (``s < 0``) a pixel ``p`` of
  frame t was at ``p - s w_b(p)``, with ``w_b`` the backward flow into frame t (where the pixel came
  from in frame t-1); after it (``s > 0``) it goes to ``p + s w_f(p)``, with ``w_f`` the forward flow
  to frame t+1. The first frame takes ``-w_f`` for its past and the last ``-w_b`` for its future
  (constant speed).
- **the light is splatted** (scattered, not gathered): each pixel's value, times ``1/N``, is
  shared bilinearly among the four pixels around each of its positions. The light of every pixel
  is kept (the sum of the frame is unchanged, but for light that moves past the frame's edge, which
  leaves it), a still scene is unchanged, and a bright light moving over black draws a streak of
  exactly the length it travelled while the shutter was open. What splatting cannot know is
  depth: a moving object's streak is added over the background behind it rather than hiding it,
  and the background it uncovers keeps the object's colour less its spread light (the sums of the
  two cancel); a clip whose blur matters for bright lights on dark ground, the HDR case, is the
  right use.
- ``samples = 0`` chooses enough samples that consecutive positions are at most one pixel apart
  (the longest motion of the frame + 1, at least 2, at most ``MAX_AUTO_SAMPLES``; fewer give
  separate copies, as a strobe would).

Linear HDR in, linear HDR out, never clamped; alpha and other channels past RGB are blurred alike.
A clip of one frame has no motion to measure: it is returned unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import LEDiffError
from ..color import check_finite, check_image_size
from ..video.flow import forward_backward_flow, hdr_guide

MAX_AUTO_SAMPLES = 128
MAX_SAMPLES = 1024


class MotionBlurSettingsError(LEDiffError, ValueError):
    """A motion-blur setting out of its range: the message names it, its value and the range."""


def clip_flow(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(backward, forward) flow [T-1, H, W, 2] of linear HDR ``frames`` [T, H, W, C], measured on
    the clip's ``hdr_guide`` (one log-luminance mapping for the whole clip)."""
    return forward_backward_flow(hdr_guide(frames[..., :3]))


def sample_times(shutter_angle: float, samples: int) -> list[float]:
    """The instants (frames, 0 = the frame's time) at which the shutter interval is sampled."""
    open_frames = shutter_angle / 360.0
    return [open_frames * ((k + 0.5) / samples - 0.5) for k in range(samples)]


def auto_samples(backward: torch.Tensor, forward: torch.Tensor, shutter_angle: float) -> int:
    """Samples that put consecutive positions of the fastest pixel at most one pixel apart."""
    half = shutter_angle / 720.0
    length = half * (backward.norm(dim=-1) + forward.norm(dim=-1))
    longest = float(length.max()) if length.numel() else 0.0
    return int(min(max(math.ceil(longest) + 1, 2), MAX_AUTO_SAMPLES))


def _splat_into(out: torch.Tensor, values: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                height: int, width: int, weight: float) -> None:
    """Add ``weight * values`` [H*W, C] at float positions ``x``, ``y`` [H*W] bilinearly into
    ``out`` [H*W, C]; corners outside the frame are dropped (that light leaves the picture)."""
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    for cx, cy, wgt in ((x0, y0, (1 - fx) * (1 - fy)), (x0 + 1, y0, fx * (1 - fy)),
                        (x0, y0 + 1, (1 - fx) * fy), (x0 + 1, y0 + 1, fx * fy)):
        keep = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height) & (wgt > 0)
        index = (cy * width + cx)[keep]
        out.index_add_(0, index, values[keep] * (weight * wgt[keep]).unsqueeze(-1))


def motion_blur(frames: torch.Tensor, backward: torch.Tensor, forward: torch.Tensor,
                shutter_angle: float = 180.0, samples: int = 0, device=None,
                on_frame: Callable[[int], None] | None = None) -> torch.Tensor:
    """``frames`` [T, H, W, C] (linear HDR) blurred along their motion (module docstring), float32
    on ``frames``' device, computed on ``device`` (default that one). ``backward``/``forward``: the
    flow [T-1, H, W, 2] (pixels) into and out of each frame (``clip_flow``). ``shutter_angle`` in
    degrees (0 = no blur, 360 = open the whole frame interval; up to 720 for a longer exposure
    than the frame interval); ``samples`` per frame, 0 = automatic. ``on_frame(i)`` is called after
    each frame."""
    check_image_size(frames, "frames")
    check_finite(frames, "frames", "motion blur spreads every pixel along its motion")
    if not (math.isfinite(shutter_angle) and 0 <= shutter_angle <= 720):
        raise MotionBlurSettingsError(f"shutter angle is {shutter_angle} degrees; give 0..720 (180 is the "
                                      "film look, 360 a shutter open the whole frame interval)")
    if not 0 <= samples <= MAX_SAMPLES:
        raise MotionBlurSettingsError(f"motion blur samples is {samples}; give 0 (automatic) or 1..{MAX_SAMPLES}")
    t, h, w, c = frames.shape
    if tuple(backward.shape) != (t - 1, h, w, 2) or tuple(forward.shape) != (t - 1, h, w, 2):
        raise ValueError(f"{t} frames of {w}x{h} need backward and forward flow [{t - 1}, {h}, {w}, 2], got "
                         f"{tuple(backward.shape)} and {tuple(forward.shape)}")
    device = torch.device(device) if device is not None else frames.device
    out = frames.to(dtype=torch.float32, copy=True)
    if t < 2 or shutter_angle == 0:
        return out
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    xs, ys = xs.reshape(-1), ys.reshape(-1)
    for i in range(t):
        past = backward[i - 1] if i > 0 else -forward[0]
        future = forward[i] if i < t - 1 else -backward[t - 2]
        past = past.to(device=device, dtype=torch.float32).reshape(-1, 2)
        future = future.to(device=device, dtype=torch.float32).reshape(-1, 2)
        n = samples or auto_samples(past, future, shutter_angle)
        values = frames[i].to(device=device, dtype=torch.float32).reshape(-1, c)
        acc = torch.zeros_like(values)
        for s in sample_times(shutter_angle, n):
            move = -s * past if s < 0 else s * future
            _splat_into(acc, values, xs + move[:, 0], ys + move[:, 1], h, w, 1.0 / n)
        out[i] = acc.reshape(h, w, c).to(out.device)
        if on_frame is not None:
            on_frame(i)
    return out
