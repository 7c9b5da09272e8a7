"""Equirectangular (lat-long) panoramas: pixel <-> direction maps and bilinear lookup.

Equirectangular convention (Blender/Cycles World "Environment Texture", equirectangular projection)
-------------------------------------------------------------------------------------------------
Verified in Blender's source:

* ``intern/cycles/kernel/camera/projection.h``: ``direction_to_equirectangular(dir)`` is
  ``direction_to_equirectangular_range(dir, (-2*pi, pi, -pi, pi))`` with
  ``u = (atan2(dir.y, dir.x) - range.y) / range.x`` and ``v = (acos(dir.z / |dir|) - range.w) / range.z``,
  i.e. ``u = 0.5 - atan2(y, x) / (2*pi)`` and ``v = 1 - acos(z) / pi = 0.5 + atan2(z, hypot(x, y)) / pi``
  (older Cycles wrote exactly that second form). The inverse uses ``phi = pi * (1 - 2u)``,
  ``theta = pi * (1 - v)`` and ``spherical_to_direction(theta, phi) = (sin t cos p, sin t sin p, cos t)``
  (``intern/cycles/util/projection.h``). ``svm_node_tex_environment`` (``kernel/svm/image.h``) feeds this
  ``uv`` to the image lookup unchanged.
* ``intern/cycles/scene/image_oiio.cpp`` (``oiio_load_pixels``) reads files with a negative scanline
  stride, so texture row 0 (``v = 0``) is the file's *bottom* scanline: ``v = 1`` is the top row.

Hence, for an image stored top row first (EXR, ComfyUI IMAGE): the top row is the zenith (+Z, Blender's
up), the bottom row the nadir, the image centre (``u = 0.5``) looks along **+X**, ``u = 0.25`` along +Y,
``u = 0.75`` along -Y and the left/right edges along -X. Moving right in the image turns clockwise seen
from above, which is what a viewer standing inside the sphere facing +X sees (+Y is on their left).
(A formula ``u = atan2(y, -x) / 2pi + 0.5`` sometimes quoted is half a turn off: it puts -X at the
centre; Blender's code puts +X there.)
"""

from __future__ import annotations

import math

import torch


def direction_to_equirect(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blender's equirect ``(u, v)`` in [0, 1] of directions ``d`` [..., 3] (z up; need not be unit).

    ``v = 1`` is the zenith (top row). atan2 forms are scale-invariant and finite for d = 0 (-> 0.5, 0.5).
    """
    x, y, z = d.unbind(-1)
    u = 0.5 - torch.atan2(y, x) / (2.0 * math.pi)
    v = 0.5 + torch.atan2(z, torch.hypot(x, y)) / math.pi
    return u, v


def equirect_to_direction(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unit directions [..., 3] (z up) for Blender equirect coordinates ``u``, ``v``."""
    phi = math.pi * (1.0 - 2.0 * u)
    theta = math.pi * (1.0 - v)
    s = torch.sin(theta)
    return torch.stack((s * torch.cos(phi), s * torch.sin(phi), torch.cos(theta)), dim=-1)


def equirect_pixel_directions(height: int, width: int, dtype=torch.float64) -> torch.Tensor:
    """Directions [height, width, 3] of pixel centres of an equirect image stored top row first."""
    u = (torch.arange(width, dtype=dtype) + 0.5) / width
    v = 1.0 - (torch.arange(height, dtype=dtype) + 0.5) / height
    return equirect_to_direction(u[None, :].expand(height, width), v[:, None].expand(height, width))


def sample_equirect(env: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of ``env`` [H, W, C] (top row first) in directions ``d`` [..., 3] -> [..., C].

    Pixel centres sit at ``u = (j + 0.5) / W``, ``v = 1 - (i + 0.5) / H``. Longitude wraps (the left and
    right edges are neighbours); latitude is clamped to the first/last row. The weights take ``d``'s
    dtype, so float64 directions give a float64 result (no overflow for extreme float32 values).
    """
    height, width = env.shape[-3], env.shape[-2]
    u, v = direction_to_equirect(d)
    x = u * width - 0.5
    y = (1.0 - v) * height - 0.5
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    fx = (x - x0).unsqueeze(-1)
    fy = (y - y0).unsqueeze(-1)
    x0 = x0.long()
    y0 = y0.long()
    cols = (x0 % width, (x0 + 1) % width)
    rows = (y0.clamp(0, height - 1), (y0 + 1).clamp(0, height - 1))
    flat = env.reshape(height * width, env.shape[-1])

    def at(r, c):
        return flat[(r * width + c).reshape(-1)].reshape(*r.shape, env.shape[-1]).to(fx.dtype)

    top = at(rows[0], cols[0]) * (1 - fx) + at(rows[0], cols[1]) * fx
    bottom = at(rows[1], cols[0]) * (1 - fx) + at(rows[1], cols[1]) * fx
    return top * (1 - fy) + bottom * fy
