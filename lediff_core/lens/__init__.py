"""Lens effects computed in linear light, where a highlight keeps its energy (LEDiff: "DoF rendering
effects require linear HDR data").

Owns depth of field: the thin-lens circle of confusion from a depth map, a focus distance and an
aperture, and the bokeh kernels (a disc or an n-blade polygon, cat's-eye vignetting) (``bokeh``),
and Lens Blur, a layered scatter of each pixel's light over its circle of confusion with occlusion,
by tiles with a margin, so memory stays bounded on big pictures (``lens_blur``). Torch tensors on a
device the caller picks; the HDR is never clamped.

May import ``lediff_core.color`` (the image checks); never ComfyUI, ``nodes`` or ``lediff_runner``.
"""
