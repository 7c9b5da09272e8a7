"""The temporal consistency of a batch of linear HDR frames, as HDR Stats reports it: the warping
error (``lediff_core.qa.temporal``, Lai et al. 2018, in stops squared) along the optical flow
(``flow``) of the LDR frames, or of a log encoding of the HDR when there are none, overall and in
the clipped pixels (docs/nodes.md, HDR Stats)."""

from __future__ import annotations

import numpy as np
import torch

from ..qa.temporal import warping_error
from .flow import MIN_LONG_SIDE, MIN_SIDE, flow_measurable, flow_with_visibility, hdr_guide


def clip_warping_error(image: torch.Tensor, ldr: torch.Tensor | None,
                       clip_threshold: float) -> tuple[str, tuple[float, float]]:
    """The warping error of the frames ``image`` [T, H, W, C]: a summary line and the two numbers
    (overall, in the clipped pixels; nan, for no clipped pixel, becomes 0; frames too small for the
    flow give 0, 0 and say so). ``ldr``: the LDR frames (display-encoded 0..1), used for the flow and
    the clipped pixels (any channel at or above ``clip_threshold``) when there is one per frame;
    otherwise the flow comes from the HDR and "clipped" means above SDR white."""
    hdr = image[..., :3].float().cpu()
    h, w = hdr.shape[1:3]
    if not flow_measurable(h, w):  # a statistic, not a failure: say why it is missing
        return (f"Temporal ({image.shape[0]} frames): not measured, the frames are {w}x{h} pixels and the optical "
                f"flow needs at least {MIN_SIDE} on each side and {MIN_LONG_SIDE} on the longer one"), (0.0, 0.0)
    if ldr is not None and ldr.shape[0] == image.shape[0]:
        guide = ldr[..., :3].float().cpu()
        region = (guide >= clip_threshold).any(-1)
        source, clipped_word = "the LDR frames", "clipped"
    else:  # no LDR video: flow from a log encoding of the HDR, "clipped" = above SDR white
        guide = hdr_guide(hdr)
        region = (hdr > 1.0).any(-1)
        source, clipped_word = "the HDR frames", "above SDR white"
    flow, valid = flow_with_visibility(guide)
    result = warping_error(hdr, flow, valid=valid, region=region)
    overall = 0.0 if np.isnan(result["overall"]) else result["overall"]
    in_region = 0.0 if np.isnan(result["region"]) else result["region"]
    share = 100.0 * float(valid.float().mean())
    region_text = (f"{in_region:.4f} stops^2 in {clipped_word} pixels" if not np.isnan(result["region"])
                   else f"no {clipped_word} pixels")
    line = (f"Temporal ({image.shape[0]} frames, flow from {source}): warping error {overall:.4f} stops^2, "
            f"{region_text} ({share:.0f} % of pixels visible in the previous frame)")
    return line, (overall, in_region)
