"""Lens nodes over ``lediff_core.lens``: Lens Blur (``lens_blur``), Glare (``glare``) and Motion Blur
(``motion``)."""

from . import glare, lens_blur, motion

NODES = [*lens_blur.NODES, *glare.NODES, *motion.NODES]
