"""Tile blending: every output pixel is a convex combination of the tiles covering it, so a
tile-wise exact function is reproduced exactly, across the left/right edge too."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lediff_core.model.tiling import blend_tiles, decode_tiled, tile_count
from support.common import REPO


def upsample(x):
    return torch.nn.functional.interpolate(x[:, :3], scale_factor=8)


@pytest.mark.parametrize("shape, tile, overlap, wrap", [
    ((2, 4, 24, 48), 16, 4, False), ((1, 4, 24, 48), 16, 4, True), ((1, 4, 20, 37), 12, 5, True),
    ((1, 4, 8, 8), 16, 4, True), ((1, 4, 17, 9), 8, 2, False),
])
def test_pointwise_functions_are_reproduced_exactly(shape, tile, overlap, wrap):
    z = torch.randn(shape)
    assert torch.allclose(decode_tiled(upsample, z, tile, overlap, wrap_x=wrap), upsample(z), atol=1e-6)


def test_tiles_cover_and_count_and_wrap():
    h, w, tile, overlap = 20, 37, 12, 4
    calls = []

    def produce(y0, y1, cols):
        calls.append((y0, y1, cols.tolist()))
        return torch.ones(1, 1, y1 - y0, len(cols))

    out = blend_tiles(produce, h, w, tile, overlap, wrap_x=True)
    assert torch.equal(out, torch.ones(1, 1, h, w))
    assert len(calls) == tile_count(h, w, tile, overlap, wrap_x=True)
    assert all(len(c) == tile for _, _, c in calls)  # every tile has the full tile width
    assert any(c[0] > c[-1] for _, _, c in calls)  # and one runs across the right edge to the left
    with pytest.raises(ValueError, match="smaller than the tile"):
        blend_tiles(produce, h, w, 8, 8)


# --- the automatic tile choice and the out-of-memory fallback's steps ----------------------------

def test_auto_tile_is_one_piece_when_it_fits_else_the_largest_tile_that_fits():
    from lediff_core.model.tiling import HEADROOM, auto_tile

    def need(rows, cols):  # 1 kB per latent pixel
        return 1000 * rows * cols

    assert auto_tile(100, 200, need, need(100, 200) / HEADROOM) == 0  # fits: one piece, no cost
    tile = auto_tile(100, 200, need, 50 * 50 * 1000 / HEADROOM, multiple=8, smallest=16)
    assert tile % 8 == 0 and 16 <= tile <= 50 and need(tile, tile) <= 50 * 50 * 1000
    # no tile at all fits: the smallest, and the caller's fallback speaks
    assert auto_tile(100, 200, need, 10, smallest=16) == 16


def test_smaller_tile_halves_down_to_the_smallest_then_gives_up():
    from lediff_core.model.tiling import smaller_tile

    steps, tile = [], 0
    while (tile := smaller_tile(tile, 100, 300, 32)) is not None:
        steps.append(tile)
    assert steps == [144, 72, 32]  # multiples of 8


def test_out_of_memory_errors_of_every_kind_are_recognised():
    from lediff_core.model.tiling import is_out_of_memory

    # the CPU allocator's own error under a ceiling, raised for real in a child process
    code = ("import resource, torch; from lediff_core.model.tiling import is_out_of_memory\n"
            "resource.setrlimit(resource.RLIMIT_DATA, (2**31, resource.RLIM_INFINITY))\n"
            "try:\n    torch.empty(2**33, dtype=torch.uint8)\n"
            "except RuntimeError as e:\n    print(is_out_of_memory(e), 'can\\'t allocate memory' in str(e))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["True", "True"]
    assert is_out_of_memory(MemoryError()) and is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch")) and not is_out_of_memory(ValueError("out of memory"))


def test_process_headroom_sees_a_ulimit_that_comfyuis_free_memory_does_not():
    code = ("import resource; from lediff_core.model.tiling import process_headroom, _proc_status;"
            "assert process_headroom() is None or process_headroom() > 2**32;"
            "resource.setrlimit(resource.RLIMIT_DATA, (_proc_status()['VmData'] + 2**30, resource.RLIM_INFINITY));"
            "print(process_headroom())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert abs(int(out.stdout) - 2**30) < 2**24  # 1 GiB less what the interpreter took since
