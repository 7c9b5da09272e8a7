"""Quality nodes: Exposure Strip, HDR Stats, HDR Metrics (``quality``). Over ``lediff_core.qa``."""

from . import quality

NODES = quality.NODES
