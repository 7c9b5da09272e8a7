"""Panoramas: equirectangular (lat-long) maths and image-based lighting.

Owns the pixel/direction maps and bilinear lookup of equirect images in Blender's convention
(``equirect``) and the lighting preview, a diffuse and a mirror sphere lit by an equirect HDR
(``ibl``). Seamless (horizontally wrapping) denoising and decoding belong to the model's tiling and
to the nodes. May import ``lediff_core.color``; never ComfyUI, ``nodes`` or ``lediff_runner``.
"""
