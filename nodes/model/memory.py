"""Memory for the heavy nodes (VAE Encode with the HDR VAE's vae, the bracket nodes, HDR Decode):
what is free on ComfyUI's device, the automatic tile choice (``tile_size`` 0) and the fallback when
a piece still runs out of memory, so that any photo size works on the defaults.

The policy is ``lediff_core.model.tiling.auto_tile``: one piece when its estimate fits the free
memory, else the largest tile that does; on an out-of-memory error the same job runs again with the
next smaller tile (``smaller_tile``), and only when the smallest tile fails too is the error
reported, with the image size, what one piece needs, what was free and the fix. Every decision to
tile is logged with its reason, as ComfyUI's own VAE logs its fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import comfy.model_management as mm
import torch

from ...lediff_core.io.limits import format_bytes
from ...lediff_core.model.tiling import (
    MIN_TILE_PIXELS,
    OutOfMemory,
    auto_tile,
    is_out_of_memory,
    process_headroom,
    smaller_tile,
)

log = logging.getLogger("lediff")


def free_memory(device: torch.device) -> int:
    """What ComfyUI reports free on ``device``; on a CPU also no more than this process may still
    allocate under its own limits (ulimit, cgroup), which ComfyUI's figure (the machine's available
    RAM) does not know."""
    free = int(mm.get_free_memory(device))
    if device.type == "cpu":
        room = process_headroom()
        if room is not None:
            free = min(free, room)
    return free


def run_tiled(what: str, image_size: tuple[int, int], latent_size: tuple[int, int], tile_size: int,
              need: Callable[[int, int], float], device: torch.device, run: Callable[[int], object],
              scale: int = 8, smallest_pixels: int = MIN_TILE_PIXELS):
    """``run(tile)`` (tile in latent pixels, 0 = one piece) with the tile chosen automatically when
    ``tile_size`` is 0 (else ``tile_size`` image pixels), and again with smaller tiles while it runs
    out of memory. ``need(rows, cols)``: bytes for one piece of that many latent pixels.
    ``image_size`` (width, height) in image pixels, for the messages."""
    h, w = latent_size
    smallest = max(1, smallest_pixels // scale)
    free = free_memory(device)
    if tile_size:
        tile = tile_size // scale
        tile = 0 if tile >= max(h, w) else tile
    else:
        tile = auto_tile(h, w, need, free, smallest=smallest)
        if tile:
            log.info("%s: tiling a %dx%d image in %d px tiles (one piece needs about %s, %s free)",
                     what, *image_size, tile * scale, format_bytes(need(h, w)), format_bytes(free))
    while True:
        try:
            return run(tile)
        except Exception as e:  # ComfyUI's interrupt is a BaseException and passes
            if not is_out_of_memory(e):
                raise
            failed, tile = tile, smaller_tile(tile, h, w, smallest)
            mm.soft_empty_cache()
            if tile is None:
                raise OutOfMemory(
                    f"{what} ran out of memory on a {image_size[0]}x{image_size[1]} image even in "
                    f"{failed * scale} px tiles (one piece needs about {format_bytes(need(h, w))}, "
                    f"{format_bytes(free_memory(device))} free now). Free memory (close other programs, "
                    "unload models, run ComfyUI with --lowvram) or use a smaller image.") from None
            log.warning("%s ran out of memory on a %dx%d image %s; retrying in %d px tiles", what,
                        *image_size, f"in {failed * scale} px tiles" if failed else "in one piece", tile * scale)
