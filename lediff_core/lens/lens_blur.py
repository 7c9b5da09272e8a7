"""Lens Blur: depth of field on linear HDR, a scatter of each pixel's light over its circle of confusion.

**Circle of confusion** (thin lens): a point at distance ``s`` seen by a lens of focal length ``f``
and f-number ``N`` focused at ``S`` is spread over a disc of diameter
``c = (f / N) * f * |s - S| / (s * (S - f))`` on the sensor; in pixels, ``c / sensor_width * W``.
Lens Blur works with the *signed* radius (negative in front of the focus plane, positive behind):
it grows with distance, so it orders the picture by depth as well.

**Scatter by layers**: the signed radii are quantised to levels (every pixel up to 8 pixels, then
15 % steps; a pixel between two levels is shared between them linearly). Each level is a layer:
its pixels' light (premultiplied by their share) and coverage (their share). Before it is blurred,
the layer is *filled on* under the nearer pixels that hide it, as far as they hide it: a pixel of
which a share ``n`` belongs to nearer levels gets ``n`` times the layer's estimated light and
coverage per unit of the surfaces at its depth or behind (its own ratio where the pixel has some
of them, else a pull-push estimate from the nearest blocks of the picture that have: see
``fill_estimate``; computed only where a nearer pixel lies within the estimate's reach of the
layer's pixels, elsewhere it is 0). So the hidden background exists behind a foreground, with the
neighbourhood's light, and the farthest layer around a pixel covers it fully. Each filled layer's light and
coverage are convolved with that level's bokeh kernel (FFT), the light scattered past the picture's
edge folded back in (reflected at the edge), and the layers composited from the farthest to the
nearest with *over*: ``acc = light + (1 - cover) * acc``, with no division. A sharp foreground
(coverage 1) hides the blurred background behind it; a blurred foreground, whose coverage thins out
at its edge, spreads over a sharp background, dims it beside its edge and lets the background
hidden behind it show through inside its edge. Light spreads over the bokeh's shape, coverage over
the disc of the same area (mirror-symmetric: folded back at the edges, a plane's coverage is
exactly 1 everywhere, whatever the shape).

**Energy**: every kernel sums to 1 and the light past the edges is folded back in, so on a plane
of one depth (a level, or between two) the sum of the light does not change (to float32 rounding),
whatever the shape (cat's-eye included), and an isolated out-of-focus highlight keeps all of its
energy. Over a uniform background the picture is ``blur(F a) + (1 - blur(a)) B`` and the light is
kept exactly too (the coverage's blur keeps its sum; with cat's-eye to about 0.2 %, its kernel
changing from block to block). Over a textured background the total moves
by how far the fill's estimate of the hidden background differs from the background that the
foreground's blurred edge hides beside it (physically: light a foreground blocks from part of the
aperture is absorbed, and background the picture never recorded becomes visible): within 0.4 % on
random textures, up to +4 % where a 1000x highlight lies a few pixels from a foreground's edge (the
fill continues it under the edge; docs/lens.md has the measurements).

**Memory**: the picture is processed by tiles of the output (``tile`` pixels square; the tiles at
the picture's edges also take the band beyond it that folds back into them), each reading a crop
of the largest radius around it (the fill a crop wider by two of its coarsest blocks, aligned to
the picture, so that every tiling gives the same picture). A tile's result is folded and written
straight into the output: the peak is the picture, its radius map, the output and one tile's
working set (a few (tile + 2 x radius + 4 x fill block)^2 arrays); frames of a batch one after
another.

Sources of the facts (not code): the thin-lens CoC formula is textbook optics (e.g. Potmesil &
Chakravarty 1981, "A lens and aperture camera model for synthetic image generation"); layered
depth of field with premultiplied light and coverage composited back to front follows the idea of
Kraus & Strengert 2007 ("Depth-of-Field Rendering by Pyramidal Image Processing") and Lee et al.
2008, with FFT convolutions instead of pyramids for the blur; the fill of the hidden background
(disocclusion) by pull-push follows the idea of Kraus & Strengert's pyramidal hole filling and of
Gortler et al. 1996 ("The Lumigraph", pull-push).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .bokeh import Bokeh, bokeh_kernel, kernel_size
from .fft import fft_size, kernel_spectrum

DEPTH_CONVENTIONS = ("near = bright", "near = dark", "distance", "blur radius")
"""How a depth map's values read: ``near = bright`` (relative inverse depth, 0 = far .. 1 = near,
what Depth Anything and MiDaS give), ``near = dark`` (depth, 0 = near .. 1 = far), ``distance``
(the values are distances, the unit of the focus distance: a renderer's Z pass), ``blur radius``
(the values are the signed circle-of-confusion radius in pixels; negative = in front of the focus)."""

LINEAR_LEVELS = 8  # every radius up to 8 pixels is a level of its own
LEVEL_RATIO = 1.15  # above, levels 15 % apart
FILL_SLACK = 2  # blocks of the coarsest fill level read around a tile
CAT_EYE_BLOCK = 128  # cat's-eye: one kernel per block of 128 x 128 pixels (each block its own FFT)


@dataclass(frozen=True)
class Lens:
    """The camera: ``f_stop`` with ``focal_length_mm`` and ``sensor_width_mm`` (the picture's width
    on the sensor), or ``largest_blur`` pixels (the radius at the nearer or farther end of the depth
    range, whichever is larger; then f-stop is not used)."""

    f_stop: float = 2.8
    focal_length_mm: float = 50.0
    sensor_width_mm: float = 36.0
    largest_blur: float | None = None

    def __post_init__(self):
        for name in ("f_stop", "focal_length_mm", "sensor_width_mm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} is {value}; it must be a number above 0 (e.g. f/2.8, 50 mm on a 36 mm "
                                 "full-frame sensor)")
        if self.largest_blur is not None and not (math.isfinite(self.largest_blur) and self.largest_blur > 0):
            raise ValueError(f"largest_blur is {self.largest_blur} pixels; it must be above 0 (use a focus distance "
                             "on the subject and a small value, e.g. 2, for a shallow effect)")


def distances(depth: torch.Tensor, convention: str, near: float, far: float) -> torch.Tensor:
    """Distances (the unit of ``near``/``far``, e.g. metres) from a depth map, by its convention.
    ``near = bright`` maps 0..1 linearly in inverse distance (1/far .. 1/near: disparity), ``near =
    dark`` linearly in distance (near .. far); values outside 0..1 extrapolate. ``distance``
    returns the map itself."""
    if convention not in DEPTH_CONVENTIONS[:3]:
        raise ValueError(f"depth convention {convention!r}: expected one of {DEPTH_CONVENTIONS[:3]}")
    if convention == "distance":
        s = depth
    else:
        if not (math.isfinite(near) and math.isfinite(far) and 0 < near < far):
            raise ValueError(f"the depth range is near {near} to far {far}; it needs 0 < near < far")
        if convention == "near = bright":
            inverse = 1.0 / far + depth * (1.0 / near - 1.0 / far)
            if float(inverse.min()) <= 0:
                raise ValueError(
                    f"the depth map goes down to {float(depth.min()):.4g}, which with near = bright and the range "
                    f"{near}..{far} lies beyond infinity; normalise the map to 0..1 (0 = far) or raise far")
            s = 1.0 / inverse
        else:
            s = near + depth * (far - near)
    return s


def check_distances(s: torch.Tensor, focal_length_m: float, what: str) -> None:
    lowest = float(s.min())
    if not lowest > focal_length_m:
        raise ValueError(f"{what} reaches {lowest:.4g}, not beyond the focal length ({focal_length_m:.4g} m): nothing "
                         "that near can be focused. Check the depth convention and the range (near, far)")


def focus_at_point(s: torch.Tensor, x: float, y: float) -> float:
    """The focus distance picked at (x, y) (fractions of width and height) of a distance map
    [H, W]: the median over 5 x 5 pixels, so one noisy depth value does not decide it."""
    h, w = s.shape[-2:]
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise ValueError(f"the focus point is ({x}, {y}); it is a place in the picture, x and y from 0 to 1")
    cx, cy = min(int(x * w), w - 1), min(int(y * h), h - 1)
    window = s[..., max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3]
    return float(window.reshape(-1).median())


def signed_radius(s: torch.Tensor, focus: float, lens: Lens, width: int, near: float, far: float) -> torch.Tensor:
    """The signed circle-of-confusion radius in pixels (negative in front of the focus plane) of
    distances ``s`` for a picture ``width`` pixels wide (thin lens, see the module's docstring).
    With ``lens.largest_blur`` the radius is scaled so that the larger of the radii at ``near``
    and ``far`` is that many pixels."""
    f = lens.focal_length_mm / 1000.0
    if not (math.isfinite(focus) and focus > f):
        raise ValueError(f"the focus distance is {focus:.4g} m, not beyond the focal length ({f:.4g} m); focus "
                         "farther, or check the depth map's convention and range")
    check_distances(s, f, "the depth map's distance")

    def relative(d):  # c / (aperture diameter): |d - S| f / (d (S - f)), signed
        return (d - focus) * f / (d * (focus - f))

    if lens.largest_blur is not None:
        ends = max(abs(relative(torch.tensor(near, dtype=torch.float64))),
                   abs(relative(torch.tensor(far, dtype=torch.float64))))
        if float(ends) == 0:
            raise ValueError("the focus distance is the whole depth range (near = far = focus): nothing to blur")
        return (relative(s.double()) / float(ends) * lens.largest_blur).float()
    aperture_mm = lens.focal_length_mm / lens.f_stop
    diameter_mm = aperture_mm * relative(s.double())
    return (diameter_mm / lens.sensor_width_mm * width / 2.0).float()


def blur_radius_map(depth: torch.Tensor | None, height: int, width: int, convention: str, near: float, far: float,
                    lens: Lens, focus_distance: float, focus_point: tuple[float, float] | None = None
                    ) -> tuple[torch.Tensor, list[str]]:
    """The signed radius map [B, height, width] (B: the depth map's frames, 1 without one) in pixels
    from a depth map [B, H, W] (finite; any size: resized bilinearly to the picture, and a note says
    so) read by ``convention``, the range ``near``..``far``, the lens and the focus (a distance, or
    the depth at ``focus_point`` (x, y) of the first frame). Without a depth map the picture is one
    plane at ``far``. Returns the map and notes for the log."""
    notes = []
    if depth is None:
        s = torch.full((1, height, width), float(far), dtype=torch.float64)
        if lens.largest_blur is not None:
            return torch.full((1, height, width), float(lens.largest_blur)), notes
        return signed_radius(s, focus_distance, lens, width, near, far), notes
    if tuple(depth.shape[-2:]) != (height, width):
        notes.append(f"resized the depth map from {depth.shape[-1]}x{depth.shape[-2]} to the picture's "
                     f"{width}x{height} (bilinear)")
        depth = torch.nn.functional.interpolate(depth[:, None].float(), size=(height, width), mode="bilinear",
                                                align_corners=False)[:, 0]
    depth = depth.double()
    if convention == "blur radius":
        largest = float(depth.abs().max())
        if largest > max(height, width):
            raise ValueError(f"the blur-radius map holds radii up to {largest:.4g} pixels, larger than the picture "
                             f"({width}x{height}); its values are read as pixels of blur (negative: in front of the "
                             "focus), so scale the map down, or pick the depth convention it was made in")
        return depth.float(), notes
    s = distances(depth, convention, near, far)
    check_distances(s, lens.focal_length_mm / 1000.0, "the depth map's distance")
    if focus_point is not None:
        focus_distance = focus_at_point(s[0], *focus_point)
        notes.append(f"focused at {focus_distance:.4g} (the unit of near and far, e.g. metres; the depth at "
                     f"x {focus_point[0]}, y {focus_point[1]})")
    return signed_radius(s, focus_distance, lens, width, near, far), notes


def radius_levels(largest: float) -> list[float]:
    """The non-negative radii of the layers, up to at least ``largest``: 0, 1, ..., 8, then 15 %
    steps."""
    levels = [float(r) for r in range(min(LINEAR_LEVELS, math.ceil(largest)) + 1)]
    while levels[-1] < largest:
        levels.append(round(levels[-1] * LEVEL_RATIO, 3))
    return levels


def _behind(r: torch.Tensor, levels: list[float], i: int) -> torch.Tensor:
    """The share of each pixel of signed radius ``r`` held by level ``i`` and the levels behind it
    (a pixel between two levels is shared between them linearly): 0 in front of level ``i - 1``,
    rising to 1 at level ``i``. One minus it is what the nearer levels hold, which can hide level
    ``i`` there."""
    if i == 0:
        return torch.ones_like(r)
    if i == len(levels):
        return torch.zeros_like(r)
    return ((r - levels[i - 1]) / (levels[i] - levels[i - 1])).clamp(0.0, 1.0)


def _membership(r: torch.Tensor, levels: list[float], i: int) -> torch.Tensor:
    """The share of each pixel of signed radius ``r`` that belongs to level ``i`` (linear between
    neighbouring levels; the shares of a pixel sum to 1)."""
    return _behind(r, levels, i) - _behind(r, levels, i + 1)


TINY = 1e-30  # a divisor floor where the numerator is 0 too (no surface: no light)


def _upsample(x: torch.Tensor) -> torch.Tensor:
    """``x`` [C, h, w] at twice the size, bilinear (each new pixel 3/4 of the nearer old one and 1/4
    of the next on each axis, the edge's own value beyond the edge: ``interpolate``'s bilinear with
    ``align_corners=False``). The same operations on every pixel (a quarter scales exactly, then one
    rounding), so a part of ``x`` gives the same values, bit for bit, away from its edges."""
    c, h, w = x.shape
    tall = torch.empty(c, h, 2, w + 2, dtype=x.dtype, device=x.device)  # a column either side, for the next pass
    padded = torch.cat([x[:, :1], x, x[:, -1:]], 1)
    mid = padded[:, 1:-1] * 0.75
    torch.add(mid, padded[:, :-2], alpha=0.25, out=tall[:, :, 0, 1:-1])
    torch.add(mid, padded[:, 2:], alpha=0.25, out=tall[:, :, 1, 1:-1])
    tall = tall.view(c, 2 * h, w + 2)
    tall[:, :, 0], tall[:, :, -1] = tall[:, :, 1], tall[:, :, -2]
    out = torch.empty(c, 2 * h, w, 2, dtype=x.dtype, device=x.device)
    mid = tall[:, :, 1:-1] * 0.75
    torch.add(mid, tall[:, :, :-2], alpha=0.25, out=out[..., 0])
    torch.add(mid, tall[:, :, 2:], alpha=0.25, out=out[..., 1])
    return out.view(c, 2 * h, 2 * w)


def fill_estimate(x: torch.Tensor, depth: int, rows: slice, cols: slice) -> torch.Tensor:
    """Pull-push (Gortler et al. 1996) estimate of a layer behind the pixels that hide it. ``x``
    [5, H, W]: the layer's premultiplied light and coverage (membership x RGB, membership) and the
    share of each pixel held by this layer and those behind it (H and W multiples of 2^depth, the
    grid aligned to the picture's). Returns [4, rows, cols] (``rows``, ``cols`` at least two pixels
    from the border) the layer's light and coverage per unit of surface at its depth or behind:
    a pixel with some of that surface gives its own ratio; a pixel without, the estimate of the
    smallest blocks around it that have some. Pull: the sums over blocks of 2^l x 2^l pixels.
    Push, from the coarsest: each block's own ratio weighted by min(1, its surface in pixels), the
    rest from the coarser estimate interpolated bilinearly (3/4 the block, 1/4 its neighbour on
    each axis) over the blocks that have one. Zero where nothing lies within reach (about
    2^depth pixels)."""
    pyramid = [x]
    for _ in range(depth):
        rows_summed = pyramid[-1][:, 0::2] + pyramid[-1][:, 1::2]
        pyramid.append(rows_summed[..., 0::2] + rows_summed[..., 1::2])
    top = pyramid[-1]
    # the estimate (0 where nothing is known) and whether it is known, in one array for the bilinear
    est = torch.cat([top[:4] / top[4].clamp_min(TINY), (top[4] > 0).to(x.dtype)[None]])
    for lev in range(depth - 1, -1, -1):
        if lev == 0:  # the pixels, only where asked (with a block either side for the bilinear)
            r0, c0 = rows.start // 2 - 1, cols.start // 2 - 1
            est = est[:, r0:(rows.stop - 1) // 2 + 2, c0:(cols.stop - 1) // 2 + 2]
        up = _upsample(est)
        coarse = up[:4] / up[4].clamp_min(TINY)
        if lev == 0:
            coarse = coarse[:, rows.start - 2 * r0:rows.stop - 2 * r0, cols.start - 2 * c0:cols.stop - 2 * c0]
            here = x[:, rows, cols]
            # the pixel's own ratio where it has some of the surface, else the coarser estimate: its
            # light and coverage are 0 where it has none (a share of the layer lies at its depth), so
            # the own ratio is 0 there and the estimate adds to it (no 4-channel where)
            return (here[:4] / here[4].clamp_min(TINY)).add_(coarse * (here[4] == 0))
        level = pyramid[lev]
        trust = level[4].clamp(max=1.0)  # the block's surface in pixels, at most 1
        est = torch.empty_like(up)
        torch.add(coarse, trust * (level[:4] / level[4].clamp_min(TINY) - coarse), out=est[:4])
        torch.logical_or(level[4] > 0, up[4] > 0, out=est[4])
    here = x[:, rows, cols]
    return here[:4] / here[4].clamp_min(TINY)  # depth 0: the pixels themselves


def _span(values: torch.Tensor, row0: int = 0, col0: int = 0):
    """The rows and columns [start, stop) that hold the values above 0 of ``values`` [H, W] (at
    least 0; offset by ``row0``, ``col0``), or None if none is."""
    rows = (values.amax(1) > 0).nonzero()
    if rows.numel() == 0:
        return None
    cols = (values.amax(0) > 0).nonzero()
    return ((row0 + int(rows[0]), row0 + int(rows[-1]) + 1), (col0 + int(cols[0]), col0 + int(cols[-1]) + 1))


def _intersect(a: tuple[int, int], b: tuple[int, int]):
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo < hi else None


def _reach(lo: int, hi: int, depth: int) -> tuple[int, int]:
    """The pixels [lo, hi) along one axis where ``fill_estimate`` can be non-zero when the layer's
    pixels lie in [lo, hi): their blocks at the coarsest level, each push widening by one block of
    the level above on either side (the bilinear)."""
    a, b = lo >> depth, ((hi - 1) >> depth) + 1
    for _ in range(depth):
        a, b = 2 * a - 1, 2 * b + 1
    return a, b


def _cone(lo: int, hi: int, depth: int, size: int) -> tuple[int, int]:
    """The part [start, stop) of an axis ``size`` pixels long (a multiple of 2^depth) that
    ``fill_estimate`` reads for the pixels [lo, hi): on the grid of its coarsest blocks, the blocks
    of every level that the bilinear of the pixels asks for, and those that ask for them, so that
    computed on that part alone the estimate is the same there, bit for bit."""
    a, b = lo // 2 - 1, (hi - 1) // 2 + 2  # level 1: as fill_estimate reads it for the pixels
    for _ in range(depth - 1):
        a, b = (a - 1) // 2, b // 2 + 1
    cell = 2**depth
    return max(a * cell, 0), min(b * cell, size)


def _fold_into(part: torch.Tensor, start: int, size: int, lo: int, hi: int, dim: int) -> torch.Tensor:
    """Folds ``part``, which covers picture positions ``start`` .. along dimension ``dim`` (some
    beyond the edge of a picture ``size`` pixels long), into the positions ``lo .. hi`` it lands on,
    reflected at the edge (position -1 onto 0, -2 onto 1, bouncing again for bands wider than the
    picture): light that left the frame comes back in, none is lost."""
    t = torch.arange(start, start + part.shape[dim], device=part.device)
    t = torch.remainder(t, 2 * size)
    t = torch.where(t >= size, 2 * size - 1 - t, t) - lo
    shape = list(part.shape)
    shape[dim] = hi - lo
    return torch.zeros(shape, dtype=part.dtype, device=part.device).index_add_(dim, t, part)


def _spans(size: int, margin: int, tile: int) -> list[tuple[int, int]]:
    """The tiles of the picture along one axis: ``tile`` pixels (at least ``margin``), the last
    merged into the one before when narrower than ``margin``, so that the band of ``margin`` pixels
    beyond each edge folds back into the tile at that edge (one tile when the band is wider than the
    picture)."""
    step = max(tile, margin)
    bounds = list(range(0, size, step)) + [size]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < margin:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def coverage_radius(radius: float, bokeh: Bokeh) -> float:
    """The radius of the disc whose area is the aperture's (a polygon with its corners on the
    circle of ``radius``): the shape Lens Blur spreads coverage with."""
    n = bokeh.blades
    return radius if n == 0 else radius * math.sqrt(n * math.sin(2 * math.pi / n) / (2 * math.pi))


def _blocks(cy0: int, cx0: int, ch: int, cw: int, hc: int, wc: int, tile: int, margin: int, h: int, w: int):
    """The blocks of the canvas grid of ``tile`` that a crop at canvas
    (cy0, cx0) of ch x cw overlaps: (rows, cols) slices in the crop and the block centre's
    position for cat's-eye (from the picture's centre, in half-diagonals)."""
    half_diagonal = math.hypot(w, h) / 2
    out = []
    for by in range(max(cy0, 0) // tile * tile, min(cy0 + ch, hc), tile):
        for bx in range(max(cx0, 0) // tile * tile, min(cx0 + cw, wc), tile):
            ey, ex = min(by + tile, hc), min(bx + tile, wc)
            centre = ((bx + ex) / 2 - margin - w / 2, (by + ey) / 2 - margin - h / 2)
            rows = slice(max(by, cy0) - cy0, min(ey, cy0 + ch) - cy0)
            cols = slice(max(bx, cx0) - cx0, min(ex, cx0 + cw) - cx0)
            out.append((rows, cols, (round(centre[0] / half_diagonal, 4), round(centre[1] / half_diagonal, 4))))
    return out


class _Kernels:
    """FFTs of the level kernels (one FFT size for every tile of a picture; cat's-eye: per block),
    kept for the next tiles up to ``CACHE_BYTES``; beyond, computed again for each tile (keeping
    the first ones, not the latest: the tiles ask for the levels in the same order)."""

    CACHE_BYTES = 8 * 2**20

    def __init__(self, bokeh: Bokeh, device, dtype):
        self.bokeh, self.device, self.dtype, self.cache, self.bytes = bokeh, device, dtype, {}, 0

    def spectrum(self, radius: float, shape: tuple[int, int], position: tuple[float, float]) -> torch.Tensor:
        key = (radius, shape, position if self.bokeh.cat_eye else None)
        if key in self.cache:
            return self.cache[key]
        k = bokeh_kernel(radius, self.bokeh, position, device=self.device, dtype=self.dtype)
        spectrum = kernel_spectrum(k, shape)
        size = spectrum.numel() * spectrum.element_size()
        if self.bytes + size <= self.CACHE_BYTES:
            self.cache[key] = spectrum
            self.bytes += size
        return spectrum


def fill_depth(margin: int) -> int:
    """Pyramid levels of the background fill: its coarsest blocks are at least twice the largest
    radius (``margin``) wide, so that the fill reaches where the picture can show it (a blurred
    foreground uncovers the background up to its radius inside its edge, and the background's own
    blur gathers from as far again)."""
    return max(1, math.ceil(math.log2(max(2 * margin, 2))))


def lens_blur_frame(rgb: torch.Tensor, radius: torch.Tensor, bokeh: Bokeh = Bokeh(), tile: int = 512,
                    device=None, on_tile: Callable[[], None] | None = None, dtype=torch.float32,
                    cat_eye_block: int = CAT_EYE_BLOCK, out: torch.Tensor | None = None) -> torch.Tensor:
    """Lens Blur of one picture. ``rgb`` [H, W, 3] linear light, ``radius`` [H, W] signed
    circle-of-confusion radii in pixels (finite; negative = in front of the focus). Returns [H, W, 3]
    float32 on ``rgb``'s device; the computation runs on ``device`` (default: ``rgb``'s) in ``dtype``:
    float32 FFTs leave an error of about 1e-6 of the brightest light within a tile's reach around
    every pixel of it, float64 about 1e-15 (for a sun 10^6 times brighter than the shadows beside it).
    ``on_tile()`` runs after each tile (progress, interrupts); ``out`` (float32 [H, W, 3] on
    ``rgb``'s device) receives the result if given."""
    h, w = rgb.shape[:2]
    if radius.shape != (h, w):
        raise ValueError(f"the radius map is {tuple(radius.shape)}, the picture {h}x{w}: they must match")
    device = torch.device(device) if device is not None else rgb.device
    largest = float(radius.abs().max()) if radius.numel() else 0.0
    if largest > max(h, w):
        raise ValueError(f"the largest blur radius is {largest:.1f} pixels, larger than the picture ({w}x{h}); "
                         "lower the aperture (a higher f-stop, a shorter focal length, or a smaller largest_blur)")
    mags = radius_levels(largest)
    levels = [-m for m in reversed(mags[1:])] + mags  # near (negative) to far
    margin = kernel_size(mags[-1]) // 2
    depth = fill_depth(margin)
    cell = 2**depth
    slack = FILL_SLACK * cell  # what the fill of a crop's pixels depends on: the same in every tiling
    if out is None:
        out = torch.empty(h, w, 3, dtype=torch.float32, device=rgb.device)
    kernels = _Kernels(bokeh, device, dtype)
    discs = _Kernels(Bokeh(), device, dtype)
    rows_spans, cols_spans = _spans(h, margin, tile), _spans(w, margin, tile)

    def crop_length(spans, size):  # the longest crop: a tile, its bands beyond the edges, 2 margins
        return max(b - a + margin * ((a == 0) + (b == size) + 2) for a, b in spans)

    # one FFT size for all the tiles (zeros beyond each crop: no wrap-around), so one spectrum per level
    fft_shape = (fft_size(crop_length(rows_spans, h)), fft_size(crop_length(cols_spans, w)))
    for ty0, ty1 in rows_spans:
        for tx0, tx1 in cols_spans:
            # the tile's output, with the bands beyond the picture's edges that fold back into it
            oy0, oy1 = ty0 - (margin if ty0 == 0 else 0), ty1 + (margin if ty1 == h else 0)
            ox0, ox1 = tx0 - (margin if tx0 == 0 else 0), tx1 + (margin if tx1 == w else 0)
            ch, cw = oy1 - oy0 + 2 * margin, ox1 - ox0 + 2 * margin  # the crop whose light reaches it
            # the fill's crop: wider by the slack, on the fill's grid of blocks (aligned to the picture)
            fy0, fx0 = (oy0 - margin - slack) // cell * cell, (ox0 - margin - slack) // cell * cell
            fy1 = -((-(oy1 + margin + slack)) // cell) * cell
            fx1 = -((-(ox1 + margin + slack)) // cell) * cell
            rows, cols = slice(oy0 - margin - fy0, oy1 + margin - fy0), slice(ox0 - margin - fx0, ox1 + margin - fx0)
            sy0, sx0, sy1, sx1 = max(fy0, 0), max(fx0, 0), min(fy1, h), min(fx1, w)
            light = torch.zeros(3, fy1 - fy0, fx1 - fx0, device=device, dtype=dtype)
            light[:, sy0 - fy0:sy1 - fy0, sx0 - fx0:sx1 - fx0] = \
                rgb[sy0:sy1, sx0:sx1].to(device=device, dtype=dtype).permute(2, 0, 1)
            r = torch.full(light.shape[1:], math.nan, device=device)  # NaN: no pixel (outside the picture)
            r[sy0 - fy0:sy1 - fy0, sx0 - fx0:sx1 - fx0] = radius[sy0:sy1, sx0:sx1].to(device=device,
                                                                                        dtype=torch.float32)
            present = (~torch.isnan(r)).to(dtype)
            r = torch.nan_to_num(r)
            # cat's-eye: the kernel belongs to the *source* pixel; pixels are grouped in blocks of a
            # fixed grid, each scattered with the kernel at the block's centre, so every pixel's
            # light goes through one kernel whichever tile it lands in
            blocks = _blocks(oy0, ox0, ch, cw, h + 2 * margin, w + 2 * margin, cat_eye_block, margin, h, w) \
                if bokeh.cat_eye else []
            tile_acc = torch.zeros(3, ty1 - ty0, tx1 - tx0, device=device, dtype=dtype)
            # the layer (light, share) and the share at its depth or behind, over the fill's crop
            x = torch.empty(5, *light.shape[1:], device=device, dtype=dtype)
            farther, farther_level = torch.empty_like(x[4]), None  # the share behind the level after
            lo, hi = float(r[present > 0].min()), float(r[present > 0].max())
            for i in reversed(range(len(levels))):  # far to near
                if (i + 1 < len(levels) and levels[i + 1] <= lo) or (i > 0 and levels[i - 1] >= hi):
                    continue
                torch.mul(_behind(r, levels, i), present, out=x[4])
                torch.sub(x[4], farther if farther_level == i + 1 else _behind(r, levels, i + 1) * present, out=x[3])
                farther.copy_(x[4])  # the next (nearer) level's "behind the next"
                farther_level = i
                layer = _span(x[3])  # at least 0: the share behind falls level by level
                if layer is None:
                    continue
                # the layer goes on under the nearer pixels that hide it, as far as they hide it, with
                # its own light and its share among the surfaces at its depth or behind: the fill is 0
                # beyond the estimate's reach from the layer's pixels and where nothing nearer hides
                # it, so it is computed only where both are, over the blocks it depends on there
                nearer = present[rows, cols] - x[4, rows, cols]
                hidden = _span(nearer, rows.start, cols.start)
                need = None if hidden is None else [_intersect(hidden[k], _reach(*layer[k], depth)) for k in (0, 1)]
                if need is None or None in need:
                    if None in (_intersect(layer[0], (rows.start, rows.stop)),
                                _intersect(layer[1], (cols.start, cols.stop))):
                        continue  # neither the layer's pixels nor its fill in the crop
                    torch.mul(light[:, rows, cols], x[3, rows, cols], out=x[:3, rows, cols])
                    stack = x[:4, rows, cols]
                else:
                    (ny0, ny1), (nx0, nx1) = need
                    (sy0_, sy1_), (sx0_, sx1_) = _cone(ny0, ny1, depth, x.shape[1]), _cone(nx0, nx1, depth, x.shape[2])
                    both = (slice(min(sy0_, rows.start), max(sy1_, rows.stop)),
                            slice(min(sx0_, cols.start), max(sx1_, cols.stop)))  # the crop and what the fill reads
                    torch.mul(light[:, both[0], both[1]], x[3, both[0], both[1]], out=x[:3, both[0], both[1]])
                    stack = x[:4, rows, cols]
                    estimate = fill_estimate(x[:, sy0_:sy1_, sx0_:sx1_], depth, slice(ny0 - sy0_, ny1 - sy0_),
                                             slice(nx0 - sx0_, nx1 - sx0_))
                    near = (slice(ny0 - rows.start, ny1 - rows.start), slice(nx0 - cols.start, nx1 - cols.start))
                    estimate *= nearer[near]
                    if estimate.shape[1:] == stack.shape[1:]:
                        stack = stack + estimate
                    else:
                        stack = stack.clone()
                        stack[:, near[0], near[1]] += estimate
                size = abs(levels[i])
                if size > 0 and bokeh.blades == 0 and not bokeh.cat_eye:
                    spectrum = torch.fft.rfft2(stack, s=fft_shape)
                    spectrum *= kernels.spectrum(size, fft_shape, (0.0, 0.0))  # in place: one spectrum held
                    stack = torch.fft.irfft2(spectrum, s=fft_shape)
                elif size > 0 and not bokeh.cat_eye:
                    # a polygon: the light through it, the coverage (which decides occlusion) through
                    # the disc of the same area, which folded back at the edges covers a plane exactly
                    # once: so on one plane every pixel's light is kept, whatever the shape
                    spectrum = torch.fft.rfft2(stack, s=fft_shape)
                    spectrum[:3] *= kernels.spectrum(size, fft_shape, (0.0, 0.0))
                    spectrum[3:] *= discs.spectrum(coverage_radius(size, bokeh), fft_shape, (0.0, 0.0))
                    stack = torch.fft.irfft2(spectrum, s=fft_shape)
                elif size > 0:
                    # cat's-eye: the light through each block's kernel, the coverage through the disc
                    # as above
                    total = 0
                    for brows, bcols, position in blocks:
                        if not bool(stack[3, brows, bcols].any()):
                            continue
                        part = torch.zeros_like(stack[:3])
                        part[:, brows, bcols] = stack[:3, brows, bcols]
                        total = total + torch.fft.rfft2(part, s=fft_shape) * kernels.spectrum(size, fft_shape,
                                                                                                 position)
                    if isinstance(total, int):
                        continue  # no coverage in the crop (a hull of the layer's pixels held none): nothing
                    cover_spectrum = (torch.fft.rfft2(stack[3], s=fft_shape)
                                      * discs.spectrum(coverage_radius(size, bokeh), fft_shape, (0.0, 0.0)))
                    stack = torch.cat([torch.fft.irfft2(total, s=fft_shape),
                                       torch.fft.irfft2(cover_spectrum, s=fft_shape)[None]])
                stack = stack[:, margin:margin + oy1 - oy0, margin:margin + ox1 - ox0]
                # each layer's light past the picture's edge folded back in before the next is laid over
                if (oy0, oy1) != (ty0, ty1):
                    stack = _fold_into(stack, oy0, h, ty0, ty1, 1)
                if (ox0, ox1) != (tx0, tx1):
                    stack = _fold_into(stack, ox0, w, tx0, tx1, 2)
                tile_acc = stack[:3] + (1 - stack[3]) * tile_acc
            out[ty0:ty1, tx0:tx1] = tile_acc.permute(1, 2, 0).to(device=rgb.device, dtype=torch.float32)
            if on_tile:
                on_tile()
    return out


def tiles_per_frame(h: int, w: int, largest: float, tile: int) -> int:
    """How many tiles ``lens_blur_frame`` visits for an h x w picture (for a progress bar)."""
    margin = kernel_size(radius_levels(largest)[-1]) // 2
    return len(_spans(h, margin, tile)) * len(_spans(w, margin, tile))


def lens_blur(images: torch.Tensor, radius: torch.Tensor, bokeh: Bokeh = Bokeh(), tile: int = 512, device=None,
              on_tile: Callable[[], None] | None = None, dtype=torch.float32) -> torch.Tensor:
    """Lens Blur of a batch: ``images`` [B, H, W, C] (RGB used; extra channels dropped), ``radius``
    [B or 1, H, W] signed radii in pixels. Frames one after another. Returns [B, H, W, 3]."""
    if tile < 16:
        raise ValueError(f"tile is {tile}; use at least 16 pixels (512 is a good size)")
    if radius.shape[0] not in (1, images.shape[0]):
        raise ValueError(f"the radius map has {radius.shape[0]} frames, the images {images.shape[0]}: give one map "
                         "for all, or one per frame")
    out = torch.empty(*images.shape[:3], 3, dtype=torch.float32, device=images.device)
    for b in range(images.shape[0]):  # written into the batch's result: no second copy of it
        lens_blur_frame(images[b, ..., :3], radius[min(b, radius.shape[0] - 1)], bokeh, tile, device, on_tile, dtype,
                        out=out[b])
    return out
