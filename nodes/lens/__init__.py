"""Lens nodes over ``lediff_core.lens``: Glare (``glare``) and Motion Blur (``motion``)."""

from . import glare, motion

NODES = [*glare.NODES, *motion.NODES]
