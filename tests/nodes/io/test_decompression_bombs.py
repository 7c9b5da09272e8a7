"""Decompression bombs through the nodes in a genuine ComfyUI: Load EXR and Load EXR Sequence refuse them
with the clear error the core raises (tests/core/io/test_decompression_bombs.py has the attacks)."""

from __future__ import annotations

import os

import pytest

from support.attacks import hdr_header, tiled_exr_bomb
from support.comfy_harness import GraphError


def test_load_exr_and_load_exr_sequence_refuse_bombs_with_the_clear_error(host):
    open(os.path.join(host.input_dir, "upload.exr"), "wb").write(tiled_exr_bomb())
    line = bytes([128, 128, 128, 129, 1, 1, 1, 255, 1, 1, 1, 63])
    open(os.path.join(host.input_dir, "upload.hdr"), "wb").write(hdr_header(16384, 16384) + line * 16384)
    graph = {"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "upload.exr", "layer": ""}},
             "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    with pytest.raises(GraphError, match="claims a 16384x16384 image.*decompression bomb"):
        host.run(graph)
    graph["1"]["inputs"]["image"] = "upload.hdr"
    with pytest.raises(GraphError, match="claims 16384x16384 pixels.*decompression bomb"):
        host.run(graph)
    folder = os.path.join(host.input_dir, "clip")
    os.makedirs(folder)
    for frame in (1001, 1002):
        open(os.path.join(folder, f"shot.{frame}.exr"), "wb").write(tiled_exr_bomb())
    seq = {"1": {"class_type": "LEDiffLoadEXRSequence", "inputs": {
        "sequence": "clip/shot.####.exr", "start": 0, "count": 0, "step": 1, "fps": 24.0, "layer": ""}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    with pytest.raises(GraphError, match=r"frame 1001 \(shot.1001.exr\).*decompression bomb"):
        host.run(seq)

