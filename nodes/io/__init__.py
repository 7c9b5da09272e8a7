"""File nodes: Save EXR, EXR Layer (extra named layers for Save EXR) and Load EXR (``exr``), Save
HDR Image for Ultra HDR / AVIF / JPEG XL (``display``), and the one saving path they share:
numbering, publishing, metadata, previews (``savers``). Over ``lediff_core.io``.
Save EXR Sequence and Load EXR Sequence (``sequence``): frames as a folder of EXRs."""

from . import display, exr, sequence

NODES = [*exr.NODES, *display.NODES, *sequence.NODES]
