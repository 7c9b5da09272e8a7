"""Tile blending: every output pixel is a convex combination of the tiles covering it, so a
tile-wise exact function is reproduced exactly, across the left/right edge too."""

from __future__ import annotations

import pytest
import torch

from lediff_core.model.tiling import blend_tiles, decode_tiled, tile_count


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
