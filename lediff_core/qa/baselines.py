"""Baselines an inverse tone mapper is compared against (HDR.md): each turns an 8-bit LDR photo
(uint8 HxWx3) into linear Rec.709 HDR (float32 HxWx3) with an arbitrary global scale (evaluations
align scales before scoring).

- ``inverse_camera``: the simulated camera's own response inverted exactly, divided by its
  exposure. It knows the camera but hallucinates nothing: clipped pixels stay at the clip level.
  It is the best reconstruction that does not invent the lost highlights.
- ``banterle``: Banterle et al. 2006, "Inverse tone mapping" (GRAPHITE): the photo is linearised as
  a display would (sRGB), its luminance L_d is expanded by inverting Reinhard et al.'s global
  operator ``L_d = L (1 + L / W^2) / (1 + L)``, i.e. ``L = W^2/2 (L_d - 1 + sqrt((1 - L_d)^2 +
  4 L_d / W^2))`` (the positive root), and colour follows the luminance ratio. Dark pixels keep
  their value (L ~ L_d) and white expands to W. Banterle's expand map (which limits the expansion to
  saturated regions) is left out: this is the global operator of that paper.
- ``srgb``: the photo decoded with the sRGB curve and nothing else (what a viewer shows).
"""

from __future__ import annotations

import numpy as np
import torch

from ..color import luminance, srgb_to_linear
from .camera import Camera, inverse_response

BANTERLE_WHITE = 16.0  # white expands to 16x diffuse white: 4 stops of headroom


def inverse_camera(ldr: np.ndarray, camera: Camera) -> np.ndarray:
    signal = np.asarray(ldr, np.float64) / 255.0
    return (inverse_response(signal, camera.n, camera.a) / camera.exposure).astype(np.float32)


def srgb(ldr: np.ndarray) -> np.ndarray:
    return srgb_to_linear(torch.from_numpy(np.asarray(ldr, np.float32) / 255.0)).numpy()


def inverse_reinhard(ld: np.ndarray, white: float) -> np.ndarray:
    """Scene luminance whose Reinhard (white-point) tone map is ``ld`` (closed form)."""
    w2 = white * white
    return 0.5 * w2 * (ld - 1.0 + np.sqrt((1.0 - ld) ** 2 + 4.0 * ld / w2))


def banterle(ldr: np.ndarray, white: float = BANTERLE_WHITE) -> np.ndarray:
    linear = srgb(ldr)
    ld = luminance(torch.from_numpy(linear)).numpy().astype(np.float64)
    expanded = inverse_reinhard(np.clip(ld, 0.0, 1.0), white)
    ratio = np.divide(expanded, ld, out=np.ones_like(ld), where=ld > 0)
    return (linear * ratio).astype(np.float32)


CAMERA_BASELINES = ("inverse_camera",)  # need the camera that took the photo (unknown for a real video)
BASELINES = {
    "inverse_camera": lambda ldr, camera: inverse_camera(ldr, camera),
    "banterle2006": lambda ldr, camera: banterle(ldr),
    "srgb": lambda ldr, camera: srgb(ldr),
}
