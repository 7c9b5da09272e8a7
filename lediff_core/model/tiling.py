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

from .. import LEDiffError


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


# --- when to tile: the one policy every heavy node uses -------------------------------------------

# Tiles are never chosen smaller than this many image pixels (a side): below it the overlap's share
# of the work explodes (a quarter tile on each side) and LEDiff's context gets too small.
MIN_TILE_PIXELS = 256
# Only this share of the free memory is planned for: allocators fragment and the host keeps buffers.
HEADROOM = 0.8


def auto_tile(h: int, w: int, need: Callable[[int, int], float], free: float, multiple: int = 8,
              smallest: int = 32) -> int:
    """The tile side (in the caller's units: latent pixels) for an ``h`` x ``w`` job, or 0 when it
    runs in one piece.

    ``need(rows, cols)`` is the memory in bytes that one piece of that size needs; ``free`` the
    memory that may be used. One piece when ``need(h, w)`` fits ``HEADROOM * free``; otherwise the
    largest square tile (a multiple of ``multiple``, at least ``smallest``) that fits, and
    ``smallest`` when even that does not (the caller's out-of-memory fallback and error then speak).
    """
    budget = HEADROOM * free
    if need(h, w) <= budget:
        return 0
    side = max(h, w)
    tile = max(smallest, (side // multiple) * multiple)
    while tile > smallest and need(min(tile, h), min(tile, w)) > budget:
        tile = max(smallest, ((tile * 3 // 4) // multiple) * multiple)
    return tile


def smaller_tile(tile: int, h: int, w: int, smallest: int) -> int | None:
    """The next tile to try after ``tile`` (0: one piece) ran out of memory, or None when there is
    none left: one piece -> half the longer side, then halving, down to ``smallest``."""
    nxt = max(h, w) // 2 if tile == 0 else tile // 2
    nxt -= nxt % 8
    if tile and tile <= smallest:
        return None
    return max(nxt, smallest)


def process_headroom() -> int | None:
    """Bytes this process may still allocate under its own limits (Linux): the address-space and
    data-segment limits (``ulimit -v``, ``ulimit -d``) less what it uses, and the cgroup's
    ``memory.max`` less ``memory.current`` (a container's or a systemd unit's ceiling). None when
    no limit is set. ComfyUI's free memory on a CPU is the machine's available RAM, which knows
    nothing of these ceilings."""
    import resource

    room = []
    status = _proc_status()
    for limit, field in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY and field in status:
            room.append(soft - status[field])
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            top = f.read().strip()
        if top != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                room.append(int(top) - int(f.read().strip()))
    except (OSError, ValueError):
        pass
    return max(0, min(room)) if room else None


def _proc_status() -> dict[str, int]:
    """/proc/self/status's memory fields in bytes (empty off Linux)."""
    fields = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                parts = value.split()
                if len(parts) == 2 and parts[1] == "kB":
                    fields[name] = int(parts[0]) * 1024
    except OSError:
        pass
    return fields


class OutOfMemory(LEDiffError, MemoryError):
    """A job that did not fit even in the smallest tiles; the message names the size, the need and the fix."""


def is_out_of_memory(error: BaseException) -> bool:
    """An allocation failure of any device: Python's MemoryError, torch's OutOfMemoryError (CUDA,
    XPU...) and the CPU allocator's RuntimeError ("DefaultCPUAllocator: can't allocate memory"),
    which ComfyUI's own out-of-memory test does not recognise."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)
