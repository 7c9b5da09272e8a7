"""File nodes: Save EXR, EXR Layer (extra named layers for Save EXR) and Load EXR (``exr``), Save
EXR Sequence and Load EXR Sequence, frames as a folder of EXRs (``sequence``), Save HDR Image for
Ultra HDR / AVIF / JPEG XL (``display``), Save HDR Video for HDR10/HLG masters (``video``), and the
one saving path they share: numbering, publishing, metadata, previews (``savers``). Over
``lediff_core.io``."""

from . import display, exr, sequence, video

NODES = [*exr.NODES, *sequence.NODES, *display.NODES, *video.NODES]
