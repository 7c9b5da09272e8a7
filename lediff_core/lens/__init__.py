"""Lens: what a camera's optics and shutter do to the light, computed on linear HDR, where a
highlight keeps the energy that a tone-mapped 8-bit picture has lost (LEDiff: "DoF rendering effects
require linear HDR data"; docs/lens.md).

Owns depth of field: the thin-lens circle of confusion from a depth map, a focus distance and an
aperture, and the bokeh kernels (a disc or an n-blade polygon, cat's-eye vignetting) and the
aperture's orientation that Glare's streaks share (``bokeh``),
and Lens Blur, a layered scatter of each pixel's light over its circle of confusion with occlusion,
by tiles with a margin (``lens_blur``); the glare of bright light (``glare``: a point-spread function
of the aperture's diffraction streaks and a wide veiling scatter, applied by FFT convolution to the
light above a threshold, so that the total light is unchanged); and motion blur of clips along their
optical flow across the shutter interval (``motion``); the FFT helpers Lens Blur and Glare share
(``fft``). Torch tensors on a device the caller picks; the HDR is never clamped.

May import ``lediff_core.color`` (the image checks) and ``lediff_core.video`` (the optical flow of a
clip); never ComfyUI, ``nodes`` or ``lediff_runner``.
"""
