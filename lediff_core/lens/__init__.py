"""Lens: what a camera's optics and shutter do to the light, computed on linear HDR (docs/lens.md).

Owns the glare of bright light (``glare``: a point-spread function of the aperture's diffraction
streaks and a wide veiling scatter, applied by FFT convolution to the light above a threshold, so
that the total light is unchanged) and motion blur of clips along their optical flow across the
shutter interval (``motion``). Both work in linear light, where a highlight keeps the energy that a
tone-mapped 8-bit picture has lost, and never clamp.

May import ``lediff_core.color`` (the image checks) and ``lediff_core.video`` (the optical flow of a
clip); never ComfyUI, ``nodes`` or ``lediff_runner``.
"""
