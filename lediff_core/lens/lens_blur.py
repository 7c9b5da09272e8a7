"""Lens Blur: depth of field on linear HDR, a scatter of each pixel's light over its circle of confusion.

**Circle of confusion** (thin lens): a point at distance ``s`` seen by a lens of focal length ``f``
and f-number ``N`` focused at ``S`` is spread over a disc of diameter
``c = (f / N) * f * |s - S| / (s * (S - f))`` on the sensor; in pixels, ``c / sensor_width * W``.
Lens Blur works with the *signed* radius (negative in front of the focus plane, positive behind):
it grows with distance, so it orders the picture by depth as well.

**Scatter by layers**: the signed radii are quantised to levels (every pixel up to 8 pixels, then
15 % steps; a pixel between two levels is shared between them linearly). For each level, from the
farthest to the nearest, the light of its pixels and their coverage (1 per pixel) are convolved
with that level's bokeh kernel (FFT) and laid *over* what is behind: ``acc = light + (1 - cover) *
acc``. A sharp foreground (coverage 1) therefore hides the blurred background that spreads behind
it, and a blurred foreground, whose coverage thins out at its edge, spreads over a sharp background.
The result is divided by the accumulated coverage, which restores the pixels where the sharper layer
behind has a hole (the part of the background the foreground hid: never recorded in the picture).
Light spreads over the bokeh's shape, coverage over the disc of the same area (mirror-symmetric:
folded back at the edges, a plane's coverage is exactly 1 everywhere, whatever the shape).

**Energy**: every kernel sums to 1, and light scattered past the picture's edge is folded back in
(reflected at the edge), so on a plane of one depth the sum of the light does not change (to
float32 rounding), whatever the shape (cat's-eye included), and an isolated out-of-focus highlight
keeps all of its energy. Where planes
overlap, the light a nearer plane hides is removed and the hidden background is filled in from
the layers' coverage, as above; the total then changes by what was hidden and uncovered.

**Memory**: the picture is processed by tiles of the output (``tile`` pixels square) with a margin
of the largest radius, so a step needs a few (tile + 2 x radius)^2 arrays, plus the picture itself
and its result; frames of a batch one after another.

Sources of the facts (not code): the thin-lens CoC formula is textbook optics (e.g. Potmesil &
Chakravarty 1981, "A lens and aperture camera model for synthetic image generation"); layered
depth of field with premultiplied light and coverage composited back to front follows the idea of
Kraus & Strengert 2007 ("Depth-of-Field Rendering by Pyramidal Image Processing") and Lee et al.
2008, with FFT convolutions instead of pyramids.
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
MIN_COVER = 1e-6  # coverage below this (only far outside every disc) leaves the light as it is
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
        return depth.float(), notes
    s = distances(depth, convention, near, far)
    check_distances(s, lens.focal_length_mm / 1000.0, "the depth map's distance")
    if focus_point is not None:
        focus_distance = focus_at_point(s[0], *focus_point)
        notes.append(f"focused at {focus_distance:.4g} (the depth at x {focus_point[0]}, y {focus_point[1]})")
    return signed_radius(s, focus_distance, lens, width, near, far), notes


def radius_levels(largest: float) -> list[float]:
    """The non-negative radii of the layers, up to at least ``largest``: 0, 1, ..., 8, then 15 %
    steps."""
    levels = [float(r) for r in range(min(LINEAR_LEVELS, math.ceil(largest)) + 1)]
    while levels[-1] < largest:
        levels.append(round(levels[-1] * LEVEL_RATIO, 3))
    return levels


def _membership(r: torch.Tensor, levels: list[float], i: int) -> torch.Tensor:
    """The share of each pixel of signed radius ``r`` that belongs to level ``i`` (linear between
    neighbouring levels)."""
    here = levels[i]
    w = torch.zeros_like(r)
    if i > 0:
        lo = levels[i - 1]
        w = torch.where((r >= lo) & (r <= here), (r - lo) / (here - lo), w)
    if i + 1 < len(levels):
        hi = levels[i + 1]
        w = torch.where((r >= here) & (r <= hi), (hi - r) / (hi - here), w)
    if len(levels) == 1:
        w = torch.ones_like(r)
    return w


def _fold(canvas: torch.Tensor, margin: int, size: int, dim: int) -> torch.Tensor:
    """Folds the ``margin`` bands on both sides of dimension ``dim`` back into the ``size`` pixels
    between them, reflected at the edge (pixel -1 onto 0, -2 onto 1, bouncing again for bands wider
    than the picture): light that left the frame comes back in, none is lost."""
    t = torch.arange(canvas.shape[dim], device=canvas.device) - margin
    t = torch.remainder(t, 2 * size)
    t = torch.where(t >= size, 2 * size - 1 - t, t)
    shape = list(canvas.shape)
    shape[dim] = size
    return torch.zeros(shape, dtype=canvas.dtype, device=canvas.device).index_add_(dim, t, canvas)


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
    """FFTs of the level kernels by FFT size (shared by the tiles unless cat's-eye varies them), at
    most ``CACHE_BYTES`` of them: beyond, the oldest go."""

    CACHE_BYTES = 256 * 2**20

    def __init__(self, bokeh: Bokeh, device, dtype):
        self.bokeh, self.device, self.dtype, self.cache, self.bytes = bokeh, device, dtype, {}, 0

    def spectrum(self, radius: float, shape: tuple[int, int], position: tuple[float, float]) -> torch.Tensor:
        key = (radius, shape, position if self.bokeh.cat_eye else None)
        if key not in self.cache:
            while self.cache and self.bytes > self.CACHE_BYTES:
                old = self.cache.pop(next(iter(self.cache)))
                self.bytes -= old.numel() * old.element_size()
            k = bokeh_kernel(radius, self.bokeh, position, device=self.device, dtype=self.dtype)
            self.cache[key] = kernel_spectrum(k, shape)
            self.bytes += self.cache[key].numel() * self.cache[key].element_size()
        return self.cache[key]


def lens_blur_frame(rgb: torch.Tensor, radius: torch.Tensor, bokeh: Bokeh = Bokeh(), tile: int = 512,
                    device=None, on_tile: Callable[[], None] | None = None, dtype=torch.float32,
                    cat_eye_block: int = CAT_EYE_BLOCK) -> torch.Tensor:
    """Lens Blur of one picture. ``rgb`` [H, W, 3] linear light, ``radius`` [H, W] signed
    circle-of-confusion radii in pixels (finite; negative = in front of the focus). Returns [H, W, 3]
    float32 on ``rgb``'s device; the computation runs on ``device`` (default: ``rgb``'s) in ``dtype``:
    float32 FFTs leave an error of about 1e-6 of the brightest light within a tile's reach around
    every pixel of it, float64 about 1e-15 (for a sun 10^6 times brighter than the shadows beside it).
    ``on_tile()`` runs after each tile (progress, interrupts)."""
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
    hc, wc = h + 2 * margin, w + 2 * margin
    src = rgb.to(device=device, dtype=dtype)
    rad = radius.to(device=device, dtype=torch.float32)
    acc = torch.zeros(3, hc, wc, device=device, dtype=dtype)
    cover = torch.zeros(hc, wc, device=device, dtype=dtype)
    kernels = _Kernels(bokeh, device, dtype)
    discs = _Kernels(Bokeh(), device, dtype)
    for y0 in range(0, hc, tile):
        for x0 in range(0, wc, tile):
            th, tw = min(tile, hc - y0), min(tile, wc - x0)
            ch, cw = th + 2 * margin, tw + 2 * margin
            fft_shape = (fft_size(ch), fft_size(cw))  # zeros beyond the crop: still no wrap-around
            # the crop's rows in picture coordinates: canvas row c is picture row c - margin
            iy0, ix0 = y0 - 2 * margin, x0 - 2 * margin
            sy0, sx0, sy1, sx1 = max(iy0, 0), max(ix0, 0), min(iy0 + ch, h), min(ix0 + cw, w)
            if sy1 <= sy0 or sx1 <= sx0:
                if on_tile:
                    on_tile()
                continue
            light = torch.zeros(3, ch, cw, device=device, dtype=dtype)
            light[:, sy0 - iy0:sy1 - iy0, sx0 - ix0:sx1 - ix0] = src[sy0:sy1, sx0:sx1].permute(2, 0, 1)
            r = torch.full((ch, cw), math.nan, device=device)  # NaN: no pixel (outside the picture)
            r[sy0 - iy0:sy1 - iy0, sx0 - ix0:sx1 - ix0] = rad[sy0:sy1, sx0:sx1]
            present = ~torch.isnan(r)
            # cat's-eye: the kernel belongs to the *source* pixel; pixels are grouped in blocks of a
            # fixed grid, each scattered with the kernel at the block's centre, so every pixel's
            # light goes through one kernel whichever tile it lands in
            blocks = _blocks(y0 - margin, x0 - margin, ch, cw, hc, wc, cat_eye_block, margin, h, w) \
                if bokeh.cat_eye else []
            tile_acc = torch.zeros(3, th, tw, device=device, dtype=dtype)
            tile_cover = torch.zeros(th, tw, device=device, dtype=dtype)
            lo, hi = float(r[present].min()), float(r[present].max())
            for i in reversed(range(len(levels))):  # far to near
                if (i + 1 < len(levels) and levels[i + 1] <= lo) or (i > 0 and levels[i - 1] >= hi):
                    continue
                share = torch.where(present, _membership(torch.nan_to_num(r), levels, i), 0.0).to(dtype)
                if not bool(share.any()):
                    continue
                stack = torch.cat([light * share, share[None]])
                size = abs(levels[i])
                if size > 0 and bokeh.blades == 0 and not bokeh.cat_eye:
                    spectrum = kernels.spectrum(size, fft_shape, (0.0, 0.0))
                    stack = torch.fft.irfft2(torch.fft.rfft2(stack, s=fft_shape) * spectrum, s=fft_shape)
                elif size > 0 and not bokeh.cat_eye:
                    # a polygon: the light through it, the coverage (which decides occlusion and the
                    # division below) through the disc of the same area, whose light folded back at
                    # the edges covers a plane exactly once: so on one plane every pixel's light is
                    # kept, whatever the shape
                    spectrum = torch.fft.rfft2(stack, s=fft_shape)
                    spectrum = torch.cat([spectrum[:3] * kernels.spectrum(size, fft_shape, (0.0, 0.0)),
                                          spectrum[3:] * discs.spectrum(coverage_radius(size, bokeh), fft_shape,
                                                                        (0.0, 0.0))])
                    stack = torch.fft.irfft2(spectrum, s=fft_shape)
                elif size > 0:
                    # cat's-eye: the light through each block's kernel, the coverage through the disc
                    # as above
                    total = 0
                    for rows, cols, position in blocks:
                        if not bool(stack[3, rows, cols].any()):
                            continue
                        part = torch.zeros_like(stack[:3])
                        part[:, rows, cols] = stack[:3, rows, cols]
                        total = total + torch.fft.rfft2(part, s=fft_shape) * kernels.spectrum(size, fft_shape,
                                                                                                 position)
                    cover_spectrum = (torch.fft.rfft2(stack[3], s=fft_shape)
                                      * discs.spectrum(coverage_radius(size, bokeh), fft_shape, (0.0, 0.0)))
                    stack = torch.cat([torch.fft.irfft2(total, s=fft_shape),
                                       torch.fft.irfft2(cover_spectrum, s=fft_shape)[None]])
                stack = stack[:, margin:margin + th, margin:margin + tw]
                alpha = stack[3]
                tile_acc = stack[:3] + (1 - alpha) * tile_acc
                tile_cover = alpha + (1 - alpha) * tile_cover
            acc[:, y0:y0 + th, x0:x0 + tw] = tile_acc
            cover[y0:y0 + th, x0:x0 + tw] = tile_cover
            if on_tile:
                on_tile()
    acc = _fold(_fold(acc, margin, h, 1), margin, w, 2)
    cover = _fold(_fold(cover, margin, h, 0), margin, w, 1)
    out = torch.where(cover > MIN_COVER, acc / cover.clamp_min(MIN_COVER), acc)
    return out.permute(1, 2, 0).to(device=rgb.device, dtype=torch.float32)


def tiles_per_frame(h: int, w: int, largest: float, tile: int) -> int:
    """How many tiles ``lens_blur_frame`` visits for an h x w picture (for a progress bar)."""
    margin = kernel_size(radius_levels(largest)[-1]) // 2
    return math.ceil((h + 2 * margin) / tile) * math.ceil((w + 2 * margin) / tile)


def lens_blur(images: torch.Tensor, radius: torch.Tensor, bokeh: Bokeh = Bokeh(), tile: int = 512, device=None,
              on_tile: Callable[[], None] | None = None, dtype=torch.float32) -> torch.Tensor:
    """Lens Blur of a batch: ``images`` [B, H, W, C] (RGB used; extra channels dropped), ``radius``
    [B or 1, H, W] signed radii in pixels. Frames one after another. Returns [B, H, W, 3]."""
    if tile < 16:
        raise ValueError(f"tile is {tile}; use at least 16 pixels (512 is a good size)")
    if radius.shape[0] not in (1, images.shape[0]):
        raise ValueError(f"the radius map has {radius.shape[0]} frames, the images {images.shape[0]}: give one map "
                         "for all, or one per frame")
    out = [lens_blur_frame(images[b, ..., :3], radius[min(b, radius.shape[0] - 1)], bokeh, tile, device, on_tile,
                           dtype) for b in range(images.shape[0])]
    return torch.stack(out)
