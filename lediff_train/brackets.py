"""Exposure brackets simulated from linear HDR, as LEDiff's training data was made (LEDIFF.md,
"Training recipe"), and the random views (perspective views of panoramas, crops) they are taken of.

- Exposures per view from the HDR-FLIP rule on Rec.709 luminance Y: ``e- = log2(2.118874 / Y_max)``,
  ``e+ = log2(2.118874 / median(Y[Y > 0]))``, ``e0 = (e- + e+) / 2``; or a fixed step of ``ev_step``
  stops either side of that midpoint.
- Each bracket ``E = min(2^e H, 1)`` goes through HDRCNN's sigmoid camera of ``lediff_core.qa.camera``
  (``(1 + a) E^n / (E^n + a)``, n and a drawn once per view so the three brackets share one camera),
  then 8 bits, optionally JPEG.
All randomness comes from the caller's ``numpy.random.Generator``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lediff_core.panorama.equirect import sample_equirect
from lediff_core.qa import camera
from lediff_core.qa.metrics import luminance

HDRFLIP_WHITE = 2.118874  # the HDR-FLIP exposure rule's constant
BLACK_LEVEL = 1e-6  # a view whose brightest luminance is at or below this is black
MAX_CLIPPED_SHARE = 0.95  # a view whose middle bracket clips more pixels than this is skipped
PITCH_RANGE_DEG = (-30.0, 30.0)  # perspective views of panoramas: modest tilt, horizon in view
FOV_RANGE_DEG = (60.0, 90.0)  # horizontal = vertical field of view of the square views


def hdrflip_exposures(hdr: np.ndarray) -> tuple[float, float, float]:
    """(e-, e0, e+) in stops for linear HDR [H, W, 3] by the HDR-FLIP rule; ValueError when no
    pixel has positive luminance."""
    y = luminance(hdr)
    positive = y[y > 0]
    if positive.size == 0 or not np.isfinite(positive).all():
        raise ValueError("the HDR view has no positive (finite) luminance to expose")
    e_minus = math.log2(HDRFLIP_WHITE / float(positive.max()))
    e_plus = math.log2(HDRFLIP_WHITE / float(np.median(positive)))
    return e_minus, (e_minus + e_plus) / 2.0, e_plus


def bracket_exposures(hdr: np.ndarray, ev_step: float | None = None) -> tuple[float, float, float]:
    """(e-, e0, e+): the rule's, or with ``ev_step`` stops either side of the rule's midpoint."""
    e_minus, e0, e_plus = hdrflip_exposures(hdr)
    if ev_step is None:
        return e_minus, e0, e_plus
    if not ev_step > 0:
        raise ValueError(f"ev_step must be a positive number of stops, got {ev_step}")
    return e0 - ev_step, e0, e0 + ev_step


def draw_camera(rng: np.random.Generator) -> tuple[float, float]:
    """(n, a) of the sigmoid camera, drawn like ``lediff_core.qa.camera.sample_camera`` draws them."""
    n = float(np.clip(rng.normal(camera.N_MEAN, camera.N_STD), *camera.N_RANGE))
    a = float(np.clip(rng.normal(camera.A_MEAN, camera.A_STD), *camera.A_RANGE))
    return n, a


def expose(hdr: np.ndarray, e: float, n: float, a: float, jpeg: int | None = None) -> np.ndarray:
    """The uint8 photo ``round(255 * f(min(2^e H, 1)))`` (computed in float64), optionally JPEG'd."""
    exposed = np.minimum(np.asarray(hdr, np.float64) * (2.0 ** e), 1.0)
    ldr = np.round(255.0 * camera.response(exposed, n, a)).astype(np.uint8)
    if jpeg is not None:
        ldr = camera.jpeg_round_trip(ldr, jpeg)
    return ldr


def clipped_share(hdr: np.ndarray, e: float) -> float:
    """Share of pixels whose largest channel reaches 1 at exposure ``e`` (they clip)."""
    return float(np.mean(np.max(hdr, axis=-1).astype(np.float64) * (2.0 ** e) >= 1.0))


def view_problem(hdr: np.ndarray, ev_step: float | None = None) -> str | None:
    """Why a view is unusable, or None: "non_finite" (NaN/Inf pixels), "black" (nothing above
    BLACK_LEVEL), "clipped" (flat: the rule's range is empty, or the middle bracket clips more than
    MAX_CLIPPED_SHARE of the pixels)."""
    if not np.isfinite(hdr).all():
        return "non_finite"
    y = luminance(hdr)
    if not y.max() > BLACK_LEVEL:
        return "black"
    e_minus, e0, e_plus = hdrflip_exposures(hdr)
    if not e_minus < e_plus:
        return "clipped"
    if ev_step is not None:
        e0 = bracket_exposures(hdr, ev_step)[1]
    if clipped_share(hdr, e0) > MAX_CLIPPED_SHARE:
        return "clipped"
    return None


def simulate_brackets(hdr: np.ndarray, rng: np.random.Generator, ev_step: float | None = None,
                      jpeg: int | None = None) -> tuple[list[np.ndarray], dict]:
    """Three uint8 [H, W, 3] brackets of linear ``hdr``, darkest first, taken with one random camera,
    and ``{"exposures": [e-, e0, e+], "camera": {"n", "a"}, "jpeg": q | None}``."""
    exposures = bracket_exposures(hdr, ev_step)
    n, a = draw_camera(rng)
    brackets = [expose(hdr, e, n, a, jpeg) for e in exposures]
    return brackets, {"exposures": [float(e) for e in exposures], "camera": {"n": n, "a": a},
                      "jpeg": None if jpeg is None else int(jpeg)}


def is_panorama(height: int, width: int) -> bool:
    """Equirect (lat-long) panoramas are 2:1."""
    return width == 2 * height


def view_directions(yaw: float, pitch: float, fov: float, size: int) -> np.ndarray:
    """Ray directions [size, size, 3] (z up, Blender's equirect frame) of a square pinhole view
    looking along yaw (radians, about +Z from +X towards +Y) and pitch (radians, up positive), with
    field of view ``fov`` (radians) across each side; row 0 is the top of the view."""
    forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    up = np.cross(right, forward)
    c = ((np.arange(size) + 0.5) / size * 2.0 - 1.0) * math.tan(fov / 2.0)
    x, y = c[None, :, None], -c[:, None, None]
    return forward + x * right + y * up


def perspective_view(panorama: np.ndarray, yaw: float, pitch: float, fov: float, size: int) -> np.ndarray:
    """A float32 [size, size, 3] perspective view of an equirect panorama (bilinear, unclamped)."""
    d = torch.from_numpy(view_directions(yaw, pitch, fov, size))
    env = torch.from_numpy(np.ascontiguousarray(panorama, dtype=np.float32))
    return sample_equirect(env, d).numpy().astype(np.float32)


def random_view(image: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A random size x size view: a perspective view for a 2:1 panorama (random yaw, pitch within
    PITCH_RANGE_DEG, field of view within FOV_RANGE_DEG), a random crop otherwise. Returns the view
    and its geometry (enough to cut it again). ValueError for a non-panorama smaller than the crop."""
    height, width = image.shape[:2]
    if is_panorama(height, width):
        yaw = float(rng.uniform(0.0, 360.0))
        pitch = float(rng.uniform(*PITCH_RANGE_DEG))
        fov = float(rng.uniform(*FOV_RANGE_DEG))
        view = perspective_view(image, math.radians(yaw), math.radians(pitch), math.radians(fov), size)
        return view, {"kind": "perspective", "yaw_deg": yaw, "pitch_deg": pitch, "fov_deg": fov}
    if height < size or width < size:
        raise ValueError(f"image of {width}x{height} is smaller than the {size}x{size} crop")
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    return np.ascontiguousarray(image[top:top + size, left:left + size], dtype=np.float32), {
        "kind": "crop", "top": top, "left": left}
