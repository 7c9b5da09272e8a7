"""A simulated camera that turns a linear HDR reference into the 8-bit LDR photo an inverse tone
mapper receives, and the inverse of its response (for the no-hallucination baseline).

The camera follows HDRCNN's virtual camera, which LEDiff's training also uses (HDR.md, LEDIFF.md):
- exposure: the reference is scaled so that a chosen share of pixels clips (a pixel clips when its
  largest channel reaches 1 after scaling; HDRCNN draws the share from 5-15 %);
- response: the sigmoid family ``f(E) = (1 + a) E^n / (E^n + a)`` on ``E = min(s H, 1)``, with
  ``n ~ N(0.9, 0.1)`` and ``a ~ N(0.6, 0.1)``; ``f(0) = 0`` and ``f(1) = 1`` for every member, and
  the random draw keeps an evaluation from rewarding a method for inverting the exact sRGB curve
  ("metric cheating");
- 8-bit quantisation (round to nearest), and optionally JPEG compression.
Everything random comes from one ``numpy.random.Generator`` seeded by the caller.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np

CLIP_SHARE_RANGE = (0.05, 0.15)
N_MEAN, N_STD, N_RANGE = 0.9, 0.1, (0.6, 1.3)
A_MEAN, A_STD, A_RANGE = 0.6, 0.1, (0.3, 1.0)


@dataclasses.dataclass(frozen=True)
class Camera:
    exposure: float  # linear scale applied to the reference before clipping
    n: float  # sigmoid exponent
    a: float  # sigmoid shoulder
    clip_share: float  # share of pixels the exposure was chosen to clip
    jpeg_quality: int | None = None  # None: lossless (PNG)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def response(exposed: np.ndarray, n: float, a: float) -> np.ndarray:
    """Camera response ``(1 + a) E^n / (E^n + a)`` for E in [0, 1]."""
    e = np.power(np.clip(exposed, 0.0, 1.0), n)
    return (1.0 + a) * e / (e + a)


def inverse_response(ldr: np.ndarray, n: float, a: float) -> np.ndarray:
    """Exposure E from a response value I in [0, 1]: ``E^n = a I / (1 + a - I)`` (closed form)."""
    i = np.clip(ldr, 0.0, 1.0)
    return np.power(a * i / (1.0 + a - i), 1.0 / n)


def exposure_for_clip_share(hdr: np.ndarray, share: float) -> float:
    """The scale s such that ``share`` of the pixels have max(RGB) * s >= 1."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"clip share {share} must be in [0, 1)")
    peak = np.max(hdr, axis=-1).ravel()
    level = float(np.quantile(peak, 1.0 - share)) if share > 0 else float(peak.max())
    if not np.isfinite(level) or level <= 0:
        raise ValueError("the reference has no positive pixels to expose")
    return 1.0 / level


def sample_camera(hdr: np.ndarray, rng: np.random.Generator, clip_share: float | None = None,
                  jpeg_quality: int | None = None) -> Camera:
    """A random camera for ``hdr`` (the draws are clipped to ranges that keep the curve monotonic
    and camera-like)."""
    share = float(rng.uniform(*CLIP_SHARE_RANGE)) if clip_share is None else float(clip_share)
    n = float(np.clip(rng.normal(N_MEAN, N_STD), *N_RANGE))
    a = float(np.clip(rng.normal(A_MEAN, A_STD), *A_RANGE))
    return Camera(exposure_for_clip_share(hdr, share), n, a, share, jpeg_quality)


def capture(hdr: np.ndarray, camera: Camera) -> np.ndarray:
    """The 8-bit photo (uint8 HxWx3) the camera takes of a linear HDR image."""
    hdr = np.maximum(np.asarray(hdr, np.float32), 0.0)  # references may hold tiny negatives
    signal = response(np.minimum(hdr * camera.exposure, 1.0), camera.n, camera.a)
    ldr = np.round(signal * 255.0).astype(np.uint8)
    if camera.jpeg_quality is not None:
        ldr = jpeg_round_trip(ldr, camera.jpeg_quality)
    return ldr


def jpeg_round_trip(ldr: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(ldr).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def crop_to_multiple(image: np.ndarray, multiple: int = 8) -> np.ndarray:
    """Centre crop to a multiple of ``multiple`` pixels (what the SD VAE's 8x latent needs)."""
    h, w = image.shape[:2]
    nh, nw = h - h % multiple, w - w % multiple
    if nh == 0 or nw == 0:
        raise ValueError(f"image of {w}x{h} is smaller than {multiple} pixels")
    top, left = (h - nh) // 2, (w - nw) // 2
    return image[top:top + nh, left:left + nw]


def downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter downscale of linear data by an integer factor (averaging light is physical)."""
    if factor <= 1:
        return image
    h, w = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    return image[:h, :w].reshape(h // factor, factor, w // factor, factor, -1).mean(axis=(1, 3)).astype(image.dtype)
