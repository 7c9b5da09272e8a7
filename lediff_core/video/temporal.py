"""Temporal blending of the denoiser's predictions along the flow of the input frames.

At every sampling step each frame's prediction of the clean latent is pulled towards the previous
frame's (already blended) prediction, warped along the flow, wherever the previous frame sees the
same content: x0'[t] = (1 - s m[t]) x0[t] + s m[t] warp(x0'[t-1]), with m the visibility mask and
s = ``STRENGTH``. The filter runs forward through the shot (causal), so a chunk of a long clip can
continue from the last frame of the chunk before it (``anchor``: that frame's finished latent).

The map is affine in the predictions, so blending the guided (CFG) prediction equals blending the
conditional and unconditional ones and guiding afterwards. ``stabilise`` runs the same filter over
decoded linear HDR frames (Blend with LDR, frames = video); ``shot_motion`` measures the motion.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..qa.temporal import warp
from .flow import flow_with_visibility

STRENGTH = 0.6  # s: how much of a visible pixel's prediction comes from the previous frame


def temporal_blend(denoised: torch.Tensor, flows: torch.Tensor, valid: torch.Tensor,
                   anchor: torch.Tensor | None = None, strength: float = STRENGTH) -> torch.Tensor:
    """Blend the predictions ``denoised`` [n, C, h, w] of consecutive frames.

    ``flows`` [m, h, w, 2] / ``valid`` [m, h, w] are the backward flows (latent pixels) into each
    frame from the one before it: m = n - 1 without ``anchor``, m = n with it (the first entry then
    leads from ``anchor`` [1, C, h, w] to frame 0)."""
    n = denoised.shape[0]
    if flows.shape[0] != n - (anchor is None) or valid.shape[0] != flows.shape[0]:
        raise ValueError(f"{n} frames need {n - (anchor is None)} flows, got {flows.shape[0]} (valid {valid.shape[0]})")
    out = []
    prev = anchor
    offset = 0 if anchor is not None else -1
    for t in range(n):
        x = denoised[t : t + 1]
        if prev is not None:
            i = t + offset
            w = strength * valid[i].to(x.device, x.dtype)
            moved = warp(prev.to(x.dtype), flows[i : i + 1].to(x.device, x.dtype))
            x = (1 - w) * x + w * moved
        out.append(x)
        prev = x
    return torch.cat(out)


def latent_guides(latents: torch.Tensor, rgb_factors, rgb_bias=None, upscale: int = 4) -> torch.Tensor:
    """Guide images [T, h*upscale, w*upscale, 3] in 0..1 for optical flow between latents [T, C, h, w]:
    the latent format's linear latent-to-RGB approximation (what ComfyUI's previews use), mapped
    from -1..1 to 0..1 and enlarged so the flow has patches to work with."""
    factors = torch.as_tensor(rgb_factors, dtype=torch.float32)
    if factors.shape[0] != latents.shape[1]:
        raise ValueError(f"latent-to-RGB factors are for {factors.shape[0]} channels, the latent has "
                         f"{latents.shape[1]}")
    rgb = torch.einsum("tchw,cr->trhw", latents.float().cpu(), factors)
    if rgb_bias is not None:
        rgb = rgb + torch.as_tensor(rgb_bias, dtype=torch.float32).view(1, 3, 1, 1)
    rgb = F.interpolate(rgb, scale_factor=upscale, mode="bilinear", align_corners=False)
    return ((rgb + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Flow [T, H, W, 2] (pixels of an H x W image) -> [T, h, w, 2] in the pixels of an h x w grid
    of the same picture (area-averaged, the displacements scaled by w/W and h/H)."""
    h, w = size
    small = F.interpolate(flow.permute(0, 3, 1, 2), size=(h, w), mode="area")
    scale = torch.tensor([w / flow.shape[2], h / flow.shape[1]], dtype=small.dtype).view(1, 2, 1, 1)
    return (small * scale).permute(0, 2, 3, 1).contiguous()


def shot_motion(guides: torch.Tensor, size: tuple[int, int],
                what: str = "the guide frames") -> tuple[torch.Tensor, torch.Tensor]:
    """(flows [T-1, h, w, 2], visible [T-1, h, w] in 0..1) of a shot, on a grid of ``size`` = (h, w)
    (the latent's): DIS flow between the guide frames [T, H, W, C] (display-referred 0..1: the
    input frames, or ``latent_guides``), resized to the grid, and the fraction of each grid cell
    that passes the forward-backward occlusion test. ``what`` names the guides in a
    ``flow.FlowSizeError``."""
    backward, visible = flow_with_visibility(guides, what)
    return resize_flow(backward, size), F.interpolate(visible.float().unsqueeze(1), size=size, mode="area")[:, 0]


def stabilise(hdr: torch.Tensor, guides: torch.Tensor, strength: float = STRENGTH,
              what: str = "the guide frames") -> torch.Tensor:
    """Linear HDR frames [T, H, W, C] blended along the motion of ``guides`` [T, H, W, 3] (their LDR
    input, display-referred 0..1) with ``temporal_blend``: what the decoder still makes differently
    of the same content from frame to frame (it sees the latent move by fractions of a latent
    pixel) is averaged along the motion. Linear, unclamped, frame 0 unchanged."""
    if guides.shape[:3] != hdr.shape[:3]:
        raise ValueError(f"the guide frames {tuple(guides.shape)} and the HDR frames {tuple(hdr.shape)} differ "
                         "in count or size")
    if hdr.shape[0] < 2:
        return hdr
    flows, visible = shot_motion(guides, tuple(hdr.shape[1:3]), what)
    out = temporal_blend(hdr.permute(0, 3, 1, 2), flows, visible, strength=strength)
    return out.permute(0, 2, 3, 1).contiguous()
