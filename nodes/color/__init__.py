"""Colour nodes: HDR Color Space (``spaces``) and Tone Map (``tonemap``). Over ``lediff_core.color``."""

from . import spaces, tonemap

NODES = [*tonemap.NODES, *spaces.NODES]
