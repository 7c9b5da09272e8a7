"""LEDiff HDR core: pure torch/numpy code with no ComfyUI imports.

The ComfyUI nodes in ``nodes/`` are thin adapters over this package, so everything here can be
used (and tested) without a ComfyUI host.
"""

__version__ = "0.1.0"
SOFTWARE = f"lediff-hdr {__version__}"
