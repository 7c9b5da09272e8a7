"""Lat-long EXRs (lediff_core.io.exr's envmap attribute) read back by Debian's exrenvmap, an independent
reader: up at the top, longitude along the width."""

from __future__ import annotations

import subprocess

import numpy as np

from lediff_core.io.exr import read_exr, write_exr
from support.common import require_tool


def test_latlong_exr_is_read_as_an_environment_map_by_exrenvmap(tmp_path):
    """Up at the top, longitude along the width: a sky-blue top half and a green bottom half must
    land on the +Y (up) and -Y cube faces when OpenEXR's own exrenvmap converts the file."""
    h, w = 64, 128
    rgb = np.zeros((h, w, 3), np.float32)
    rgb[: h // 2] = [0.2, 0.4, 1.0]
    rgb[h // 2:] = [0.1, 0.8, 0.1]
    src, cube = str(tmp_path / "latlong.exr"), str(tmp_path / "cube.exr")
    write_exr(src, rgb, precision="half", compression="zip", envmap="latlong")
    subprocess.run([require_tool("exrenvmap"), "-c", "-w", "32", src, cube], check=True, capture_output=True)
    faces = read_exr(cube).rgb  # OpenEXR cube maps stack faces +X, -X, +Y, -Y, +Z, -Z vertically
    size = faces.shape[1]
    up, down = faces[2 * size:3 * size], faces[3 * size:4 * size]
    assert np.allclose(up.mean((0, 1)), [0.2, 0.4, 1.0], atol=0.02)
    assert np.allclose(down.mean((0, 1)), [0.1, 0.8, 0.1], atol=0.02)

