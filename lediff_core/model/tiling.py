"""Decoding large latents in overlapping tiles, in bounded memory.

Tiles are decoded one at a time and blended with weights that ramp down linearly across each
overlap (and not at the image border), so every output pixel is a convex combination of the tiles
covering it. Blending happens on the decoder's raw output, LEDiff's log-HDR, before exp(): mixing
logs avoids the halos that averaging linear HDR values of very different magnitude would give.

For 360-degree panoramas (``wrap_x``) the width axis is periodic: tiles run across the right edge
and continue on the left, so the left/right seam is blended like any interior seam.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def default_overlap(tile: int) -> int:
    """The overlap used with a tile size: a quarter tile (at least one pixel)."""
    return max(tile // 4, 1)


def _starts(length: int, tile: int, step: int) -> list[int]:
    """Tile starts covering [0, length) with tiles of ``tile`` (the last one flush with the end)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def _ramp(n: int, overlap: int, fade_start: bool, fade_end: bool) -> torch.Tensor:
    """Weights along one axis of a tile: rising over ``overlap`` at a faded start, falling at a faded end."""
    w = torch.ones(n)
    if overlap > 0:
        edge = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap  # > 0: no pixel left unweighted
        if fade_start:
            w[:overlap] = torch.minimum(w[:overlap], edge)
        if fade_end:
            w[-overlap:] = torch.minimum(w[-overlap:], edge.flip(0))
    return w


def blend_tiles(
    produce: Callable[[int, int, torch.Tensor], torch.Tensor],
    h: int,
    w: int,
    tile: int,
    overlap: int,
    scale: int = 1,
    wrap_x: bool = False,
    on_tile: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Blend ``produce(y0, y1, cols)`` over overlapping tiles of an h x w grid.

    ``produce`` returns the output for rows y0:y1 and the columns ``cols`` (a LongTensor: contiguous,
    or running across the right edge and on from the left when ``wrap_x``) as [B, C, rows*scale,
    len(cols)*scale]. Returns the blended [B, C, h*scale, w*scale] float32 result.
    """
    if overlap >= tile:
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile {tile}")
    step = tile - overlap
    periodic = wrap_x and w > tile
    cols = [i * step for i in range(math.ceil(w / step))] if periodic else _starts(w, tile, step)
    out = weight = None
    px_overlap = overlap * scale
    for y0 in _starts(h, tile, step):
        y1 = min(y0 + tile, h)
        for x0 in cols:
            idx = torch.arange(x0, min(x0 + tile, w) if not periodic else x0 + tile) % w
            piece = produce(y0, y1, idx).float()
            if out is None:
                out = torch.zeros(piece.shape[0], piece.shape[1], h * scale, w * scale, device=piece.device)
                weight = torch.zeros(1, 1, h * scale, w * scale, device=piece.device)
            th, tw = piece.shape[-2:]
            wy = _ramp(th, px_overlap, y0 > 0, y1 < h)
            wx = _ramp(tw, px_overlap, periodic or x0 > 0, periodic or x0 + tile < w)
            mask = (wy[:, None] * wx[None, :]).to(piece.device)
            px = (torch.arange(tw, device=piece.device) + x0 * scale) % (w * scale)
            rows = slice(y0 * scale, y0 * scale + th)
            out[:, :, rows].index_add_(3, px, piece * mask)
            weight[:, :, rows].index_add_(3, px, mask[None, None])
            del piece
            if on_tile is not None:
                on_tile()
    return out / weight


def decode_tiled(
    decode: Callable[[torch.Tensor], torch.Tensor],
    latent: torch.Tensor,
    tile: int,
    overlap: int,
    scale: int = 8,
    wrap_x: bool = False,
    on_tile: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Decode ``latent`` [B, C, h, w] in tiles of ``tile`` x ``tile`` latent pixels overlapping by
    ``overlap``; ``decode`` maps a latent tile to its [B, 3, th*scale, tw*scale] output."""
    h, w = latent.shape[-2:]

    def produce(y0, y1, cols):
        return decode(latent[:, :, y0:y1].index_select(3, cols.to(latent.device)))

    return blend_tiles(produce, h, w, tile, overlap, scale, wrap_x, on_tile)


def tile_count(h: int, w: int, tile: int, overlap: int, wrap_x: bool = False) -> int:
    step = tile - overlap
    n_cols = math.ceil(w / step) if wrap_x and w > tile else len(_starts(w, tile, step))
    return len(_starts(h, tile, step)) * n_cols
