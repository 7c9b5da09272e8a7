"""Bokeh kernels: the shape an out-of-focus point of light takes, as a normalised pixel kernel.

The aperture is a disc or a regular polygon of ``blades`` sides whose corners lie on the circle of
confusion (radius ``radius`` pixels), turned clockwise by ``rotation`` degrees (0: a corner straight
up; ``edge_normals``, which Glare's streaks share).
Cat's-eye (mechanical vignetting): off the optical axis the lens barrel cuts the aperture, so the
bokeh becomes the overlap of the aperture and a disc of the same radius shifted along the line from
the picture's centre; ``cat_eye`` (0..1) is the shift, in radii, at the picture's corner (it grows
linearly from 0 at the centre). The overlap is centred on the pixel, so the light is not displaced.
Each kernel sums to 1: a kernel moves light, it never adds or removes it (the dimming that comes
with real vignetting is left to the image).

Pixels are covered by area, from ``SUPERSAMPLE`` x ``SUPERSAMPLE`` samples each, so small kernels
keep their size and shape rather than snapping to whole pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SUPERSAMPLE = 8
MAX_BLADES = 16


@dataclass(frozen=True)
class Bokeh:
    """The aperture's shape: ``blades`` 0 for a disc, 3..16 for a polygon; ``rotation`` in degrees;
    ``cat_eye`` 0..1 (0: none)."""

    blades: int = 0
    rotation: float = 0.0
    cat_eye: float = 0.0

    def __post_init__(self):
        if self.blades != 0 and not 3 <= self.blades <= MAX_BLADES:
            raise ValueError(f"bokeh blades is {self.blades}; use 0 for a disc or 3 to {MAX_BLADES} for a polygon")
        if not (math.isfinite(self.rotation) and math.isfinite(self.cat_eye)) or not 0.0 <= self.cat_eye <= 1.0:
            raise ValueError(f"cat_eye is {self.cat_eye} (rotation {self.rotation}); cat_eye goes from 0 (none) to 1 "
                             "(at the corners, a shift of one radius)")


def kernel_size(radius: float) -> int:
    """Side of the square kernel array for a circle of confusion of ``radius`` pixels (odd)."""
    return 2 * math.ceil(radius - 1e-9) + 1 if radius > 0 else 1


def edge_normals(blades: int, rotation: float) -> list[float]:
    """The outward normals of the edges of a regular aperture of ``blades`` blades turned by
    ``rotation`` degrees (clockwise in the picture; 0: a corner straight up), as angles in radians
    from +x towards +y (y points down in a picture, so "up" is -pi/2). Lens Blur's bokeh polygon and
    Glare's diffraction streaks (which run along these normals) share this one orientation."""
    # the corners at rotation + 2 pi k / n from straight up; each edge's normal halfway between two
    return [math.radians(rotation) - math.pi / 2 + (k + 0.5) * 2 * math.pi / blades for k in range(blades)]


def _inside_aperture(x: torch.Tensor, y: torch.Tensor, radius: float, bokeh: Bokeh) -> torch.Tensor:
    """Bool: which points (pixels from the centre, y down) lie inside the aperture shape."""
    if bokeh.blades == 0:
        return x * x + y * y <= radius * radius
    apothem = radius * math.cos(math.pi / bokeh.blades)
    inside = torch.ones_like(x, dtype=torch.bool)
    for angle in edge_normals(bokeh.blades, bokeh.rotation):
        inside &= x * math.cos(angle) + y * math.sin(angle) <= apothem
    return inside


def bokeh_kernel(radius: float, bokeh: Bokeh = Bokeh(), position: tuple[float, float] = (0.0, 0.0),
                 size: int | None = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """The kernel [size, size] (default ``kernel_size(radius)``), centred, summing to 1, for a circle
    of confusion of ``radius`` pixels. ``position``: the pixel's place in the picture for cat's-eye,
    (x, y) from the centre in units of the half-diagonal (the corners are at length 1)."""
    size = size or kernel_size(radius)
    kernel = torch.zeros(size, size, dtype=torch.float64, device=device)
    c = size // 2
    if radius <= 0:
        kernel[c, c] = 1.0
        return kernel.to(dtype)
    s = SUPERSAMPLE
    offsets = (torch.arange(s, dtype=torch.float64, device=device) + 0.5) / s - 0.5
    coords = (torch.arange(size, dtype=torch.float64, device=device) - c)[:, None] + offsets[None, :]
    coords = coords.reshape(-1)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    px, py = position
    shift = bokeh.cat_eye * radius  # the shift at the corner, in pixels
    dx, dy = shift * px, shift * py
    # the aperture and the barrel's disc overlap around the midpoint of their centres: centre that
    inside = _inside_aperture(x + dx / 2, y + dy / 2, radius, bokeh)
    if shift:
        inside &= (x - dx / 2) ** 2 + (y - dy / 2) ** 2 <= radius * radius
    cover = inside.to(torch.float64).reshape(size, s, size, s).sum(dim=(1, 3))
    if cover.sum() == 0:  # a circle smaller than the samples' spacing: all its light in the pixel
        cover[c, c] = 1.0
    return (cover / cover.sum()).to(dtype)
