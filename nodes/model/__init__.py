"""Nodes of the LEDiff method: Load HDR VAE and Load Bracket Denoiser (``loaders``; the ComfyUI
models they build, with their device, dtype and tiling runtime, in ``runtime``; the ``models/lediff``
folder in ``paths``; each backbone's ComfyUI classes in ``backbones``), Highlight and Shadow Bracket
(``brackets``; their two passes on ComfyUI's sampler, with tiles and video mode, in ``sampling``),
Latent Exposure Fusion, HDR Decode and Blend with LDR (``hdr``). Over ``lediff_core.model``."""

from . import brackets, hdr, loaders

NODES = [*loaders.NODES, *brackets.NODES, *hdr.NODES]
