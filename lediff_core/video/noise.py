"""Noise that follows the motion of a shot, and stays Gaussian.

Sampling every frame from its own noise makes hallucinated content flicker; one noise for all frames
makes it stick to the screen while the camera moves. Noise warped along the optical flow of the
input frames moves with the content instead. Warping noise the ordinary way (bilinear resampling)
averages neighbouring values and shrinks their variance, which a diffusion model renders as blur;
following "How I Warped Your Noise" (Chang et al., ICLR 2024), each noise pixel is treated as the
integral of finer white noise over its area:

1. up-sample the previous frame's noise ``k`` times per axis *conditionally*: every k x k block of
   sub-pixels is i.i.d. N(0, 1) given that the block's sum divided by k equals the pixel
   (sub = pixel / k + (z - mean(z)) per block, z ~ N(0, 1)); each sub-pixel then has unit variance;
2. move the sub-pixels along the flow (nearest sub-pixel: values are copied, never mixed);
3. sum each pixel's k x k sub-pixels and divide by k: a pixel whose sub-pixels came from distinct
   sources is exactly N(0, 1) again, correlated with the pixels it came from.

Pixels with no valid source (occluded in, or coming from outside, the previous frame) get fresh
noise. Where a flow stretches content (zooming in), sub-pixels repeat and the variance rises a
little; HIWYN's exact answer to that is a full area-partition of the warped pixels, which this
simpler nearest-sub-pixel version does not do.
"""

from __future__ import annotations

import torch

SUBPIXELS = 4  # k: sub-pixels per noise pixel and axis


def upsample_noise(noise: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """[C, h, w] -> [C, h*k, w*k] unit-variance sub-pixels whose k x k block sums / k give ``noise``."""
    c, h, w = noise.shape
    z = torch.randn((c, h, k, w, k), generator=generator, dtype=torch.float32)
    z = z - z.mean(dim=(2, 4), keepdim=True)
    sub = noise.float().view(c, h, 1, w, 1) / k + z
    return sub.reshape(c, h * k, w * k)


def warp_noise(noise: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor, generator: torch.Generator,
               k: int = SUBPIXELS) -> torch.Tensor:
    """The next frame's noise [C, h, w] from this frame's ``noise`` [C, h, w].

    ``flow`` [h, w, 2] is the backward flow in noise pixels (next frame at (x, y) shows this frame at
    (x + dx, y + dy)); ``valid`` [h, w] bool marks the pixels of the next frame visible in this one.
    Invalid pixels, and sub-pixels whose source lies outside the frame, take fresh noise from
    ``generator`` (which is also consumed for the up-sampling, so a seeded generator gives the same
    noise every run)."""
    c, h, w = noise.shape
    if flow.shape != (h, w, 2) or valid.shape != (h, w):
        raise ValueError(f"flow {tuple(flow.shape)} / valid {tuple(valid.shape)} do not match noise {c}x{h}x{w}")
    sub = upsample_noise(noise, k, generator)
    fresh = torch.randn((c, h, w), generator=generator, dtype=torch.float32)
    # source sub-pixel of every target sub-pixel: its centre moved by its pixel's flow
    flow_k = flow.float().repeat_interleave(k, 0).repeat_interleave(k, 1) * k
    ys = torch.arange(h * k, dtype=torch.float32).view(-1, 1).expand(h * k, w * k)
    xs = torch.arange(w * k, dtype=torch.float32).view(1, -1).expand(h * k, w * k)
    sy = torch.floor(ys + 0.5 + flow_k[..., 1]).long()
    sx = torch.floor(xs + 0.5 + flow_k[..., 0]).long()
    inside = (sy >= 0) & (sy < h * k) & (sx >= 0) & (sx < w * k)
    moved = sub[:, sy.clamp(0, h * k - 1), sx.clamp(0, w * k - 1)]
    # a pixel is taken over only if all its sub-pixels have a source inside the frame
    whole = inside.view(h, k, w, k).all(dim=3).all(dim=1)
    warped = moved.view(c, h, k, w, k).sum(dim=(2, 4)) / k
    keep = (valid.to(torch.bool) & whole).unsqueeze(0)
    return torch.where(keep, warped, fresh).to(noise.dtype)


def shot_noise(first: torch.Tensor, flows: torch.Tensor, valid: torch.Tensor, seed: int) -> torch.Tensor:
    """Noise for a shot [T, C, h, w]: ``first`` [C, h, w] for frame 0, then each frame's warped on.

    ``flows`` [T-1, h, w, 2] and ``valid`` [T-1, h, w] as in ``warp_noise``; ``seed`` seeds the
    generator of the sub-pixel and fresh noise."""
    generator = torch.Generator().manual_seed(int(seed) & 0xFFFFFFFFFFFFFFFF)
    frames = [first]
    for t in range(flows.shape[0]):
        frames.append(warp_noise(frames[-1], flows[t], valid[t], generator))
    return torch.stack(frames)
