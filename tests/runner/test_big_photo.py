"""A photo bigger than the memory, on the defaults: the shipped photo_to_hdr workflow runs in a child
process whose memory is capped (tests/support/big_photo.py) a fixed budget above what the host holds after
start-up. One piece of VAE Encode and of the bracket denoiser would need more than the budget (the
nodes log their estimate), so the nodes must choose tiles by themselves; the EXR and the Ultra HDR
JPEG must be written.

Before automatic tiling the same run failed in VAE Encode with the CPU allocator's "can't allocate
memory" (measured with this child at 2048x1024 under 2000 MB, and at the size and budget below).
The budget includes the models ComfyUI loads during the run (the fixture checkpoint's CLIP and VAE).
The fixture models are small, so the photo and the budget are scaled to them; the nodes' estimates
scale with the models' widths (docs/benchmarks.md has the SD-sized figures).
"""

from __future__ import annotations

import os
import re

import numpy as np
import OpenEXR
from PIL import Image

from support.big_photo import run_child

PHOTO = (1280, 640)
BUDGET_MB = 1200


def test_a_photo_bigger_than_the_memory_runs_photo_to_hdr_on_the_defaults(tmp_path):
    log, result = run_child(tmp_path, "photo_to_hdr", PHOTO, BUDGET_MB)
    needs = dict(re.findall(r"LOG lediff (VAE Encode|Highlight Bracket|HDR Decode): tiling a "
                            r"1280x640 image in \d+ px tiles \(one piece needs about ([\d.]+ [MG]iB)", log))
    assert {"VAE Encode", "Highlight Bracket"} <= set(needs), log[-4000:]
    out = os.path.join(tmp_path, "output", "LEDiff")
    with OpenEXR.File(os.path.join(out, "photo_to_hdr_00001.exr")) as f:
        rgb = f.channels()["RGB"].pixels
    assert rgb.shape[:2] == (PHOTO[1], PHOTO[0]) and np.isfinite(rgb).all() and rgb.max() > 1
    with Image.open(os.path.join(out, "photo_to_hdr_ultrahdr_00001.jpg")) as jpeg:
        assert jpeg.size == PHOTO
    assert result["peak_growth_mb"] < BUDGET_MB


def test_an_image_that_does_not_fit_even_in_tiles_gets_an_error_with_its_size_and_the_fix(tmp_path):
    log, _ = run_child(tmp_path, "decode", (8192, 8192), 700)  # 800 MB of output alone
    error = next(line for line in log.splitlines() if line.startswith("ERROR"))
    assert "HDR Decode ran out of memory on a 8192x8192 image even in 256 px tiles" in error
    assert re.search(r"one piece needs about [\d.]+ GiB, [\d.]+ [MG]iB free now\)", error)
    assert "Free memory" in error and "smaller image" in error
    # it chose tiles, then went through smaller ones before giving up, and said so
    assert "LOG lediff HDR Decode: tiling a 8192x8192 image" in log
    assert "retrying in 256 px tiles" in log
