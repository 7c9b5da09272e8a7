"""Lens nodes: Lens Blur (HDR) (``lens_blur``). Over ``lediff_core.lens``."""

from . import lens_blur

NODES = lens_blur.NODES
