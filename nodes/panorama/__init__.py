"""Panorama nodes: Seamless Panorama (``seamless``; the bracket nodes use its wrap too) and Preview
Lighting (``lighting``). Over ``lediff_core.panorama``."""

from . import lighting, seamless

NODES = [*seamless.NODES, *lighting.NODES]
