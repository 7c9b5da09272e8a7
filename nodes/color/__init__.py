"""Colour nodes: HDR Color Space (``spaces``), Tone Map (``tonemap``), OCIO Display/View and File
LUT (``ocio``). Over ``lediff_core.color``."""

from . import ocio, spaces, tonemap

NODES = [*tonemap.NODES, *spaces.NODES, *ocio.NODES]
