"""Image-based-lighting preview: a white diffuse sphere and a mirror sphere lit by an equirect HDR.

The equirectangular convention (Blender's) is that of ``equirect.py``.

Preview camera
--------------
Orthographic, looking along +X (the direction at the image centre) with +Z up, so screen right is -Y.
The spheres stand in front of the panorama's centre as a viewer facing it would see them: the side of
the diffuse sphere facing the camera is lit by what is *behind* the camera (-X, the image's left/right
edges), and the centre of the mirror sphere reflects -X too; its rim reflects the image centre region.

Diffuse sphere
--------------
Irradiance from 9 spherical-harmonic coefficients, Ramamoorthi & Hanrahan, "An Efficient Representation
for Irradiance Environment Maps", SIGGRAPH 2001: ``E(n) = sum_lm A_l L_lm Y_lm(n)`` with the clamped-cosine
coefficients ``A_0 = pi, A_1 = 2pi/3, A_2 = pi/4``; a white Lambertian surface reflects ``E / pi``. For a
single direction the 9-term result is ``1/4 + c/2 + 5/32 (3c^2 - 1)`` times the true ``max(0, c)`` scale
(addition theorem), which is off by at most 3/32 (9.4 %) of the peak, at the terminator ``c = 0``.

All arithmetic that accumulates radiance is done in float64, so any finite float32 input stays NaN-free.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .equirect import sample_equirect

# Preview camera (see module docstring): orthographic, looking along +X, +Z up, screen right = -Y.
CAMERA_FORWARD = (1.0, 0.0, 0.0)
CAMERA_UP = (0.0, 0.0, 1.0)
CAMERA_RIGHT = (0.0, -1.0, 0.0)
# Sphere radius as a fraction of the square half-image each sphere occupies (leaves a margin).
SPHERE_RADIUS_FRACTION = 0.45

# Real SH normalisation constants for l <= 2 (Ramamoorthi & Hanrahan 2001, eq. 3).
_Y00 = 0.5 / math.sqrt(math.pi)  # 0.282095
_Y1 = math.sqrt(3.0 / (4.0 * math.pi))  # 0.488603
_Y2 = 0.5 * math.sqrt(15.0 / math.pi)  # 1.092548  (xy, yz, xz)
_Y20 = 0.25 * math.sqrt(5.0 / math.pi)  # 0.315392  (3z^2 - 1)
_Y22 = 0.25 * math.sqrt(15.0 / math.pi)  # 0.546274  (x^2 - y^2)
# Clamped-cosine convolution constants per band l = 0, 1, 2 for the 9 coefficients in SH9_ORDER.
_A = (math.pi,) + (2.0 * math.pi / 3.0,) * 3 + (math.pi / 4.0,) * 5
SH9_ORDER = ((0, 0), (1, -1), (1, 0), (1, 1), (2, -2), (2, -1), (2, 0), (2, 1), (2, 2))


def sh9_basis(d: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics Y_lm, l <= 2, of unit directions ``d`` [..., 3] -> [..., 9] (SH9_ORDER)."""
    x, y, z = d.unbind(-1)
    return torch.stack(
        (
            torch.full_like(x, _Y00),
            _Y1 * y,
            _Y1 * z,
            _Y1 * x,
            _Y2 * x * y,
            _Y2 * y * z,
            _Y20 * (3.0 * z * z - 1.0),
            _Y2 * x * z,
            _Y22 * (x * x - y * y),
        ),
        dim=-1,
    )


def _row_integrals(height: int) -> torch.Tensor:
    """Per-row integrals over theta of the theta factors of Y_lm times sin(theta) -> [H, 6].

    Columns: sin t, sin t * sin t, cos t * sin t, sin^2 t * sin t, sin t cos t * sin t, (3cos^2 t - 1) sin t.
    Row i covers theta in [i pi / H, (i + 1) pi / H]; antiderivatives are closed-form, so a constant
    environment projects exactly onto Y_00 (no sin(theta)-at-row-centre quadrature error).
    """
    edges = torch.arange(height + 1, dtype=torch.float64) * (math.pi / height)
    t0, t1 = edges[:-1], edges[1:]
    c0, c1, s0, s1 = torch.cos(t0), torch.cos(t1), torch.sin(t0), torch.sin(t1)
    return torch.stack(
        (
            c0 - c1,  # int sin t
            0.5 * (t1 - t0) - 0.25 * (torch.sin(2 * t1) - torch.sin(2 * t0)),  # int sin^2 t
            0.5 * (s1 * s1 - s0 * s0),  # int cos t sin t
            (c1**3 / 3.0 - c1) - (c0**3 / 3.0 - c0),  # int sin^3 t
            (s1**3 - s0**3) / 3.0,  # int sin^2 t cos t
            (c1 - c1**3) - (c0 - c0**3),  # int (3cos^2 t - 1) sin t
        ),
        dim=-1,
    )


def _column_integrals(width: int) -> torch.Tensor:
    """Per-column integrals over phi of 1, cos p, sin p, cos p sin p, cos 2p -> [W, 5].

    Column j covers u in [j/W, (j+1)/W], i.e. phi = pi (1 - 2u) in [pi (1 - 2(j+1)/W), pi (1 - 2j/W)].
    """
    edges = math.pi * (1.0 - 2.0 * torch.arange(width + 1, dtype=torch.float64) / width)
    hi, lo = edges[:-1], edges[1:]
    return torch.stack(
        (
            hi - lo,
            torch.sin(hi) - torch.sin(lo),
            torch.cos(lo) - torch.cos(hi),
            0.5 * (torch.sin(hi) ** 2 - torch.sin(lo) ** 2),
            0.5 * (torch.sin(2 * hi) - torch.sin(2 * lo)),
        ),
        dim=-1,
    )


# For each coefficient in SH9_ORDER: (constant, row-integral column, column-integral column), from writing
# x = sin t cos p, y = sin t sin p, z = cos t; e.g. xy = sin^2 t * cos p sin p, x^2 - y^2 = sin^2 t * cos 2p.
_SEPARABLE = (
    (_Y00, 0, 0),
    (_Y1, 1, 2),
    (_Y1, 2, 0),
    (_Y1, 1, 1),
    (_Y2, 3, 3),
    (_Y2, 4, 2),
    (_Y20, 5, 0),
    (_Y2, 4, 1),
    (_Y22, 3, 4),
)


def irradiance_sh9(env: torch.Tensor) -> torch.Tensor:
    """Project an equirect radiance map ``env`` [..., H, W, C] onto 9 real SH -> [..., 9, C] (float64).

    ``L_lm = integral L(w) Y_lm(w) dw`` over the sphere, each pixel being a patch of constant radiance
    whose solid angle (the sin(theta) weight) and basis functions are integrated exactly. Because every
    Y_lm with l <= 2 is a product of a theta factor and a phi factor, the integral separates into a
    contraction over columns then over rows: full resolution costs O(H W C), so no downsampling is
    needed. float64 keeps huge-but-finite float32 inputs from overflowing.
    """
    height, width = env.shape[-3], env.shape[-2]
    rows = _row_integrals(height).to(env.device)
    cols = _column_integrals(width).to(env.device)
    per_row = torch.einsum("...hwc,wk->...hkc", env.to(torch.float64), cols)  # [..., H, 5, C]
    coeffs = [k * torch.einsum("h,...hc->...c", rows[:, r], per_row[..., c, :]) for k, r, c in _SEPARABLE]
    return torch.stack(coeffs, dim=-2)


def diffuse_radiance(sh: torch.Tensor, n: torch.Tensor, clamp_negative: bool = True) -> torch.Tensor:
    """Outgoing radiance [..., C] of a white Lambertian surface with unit normals ``n`` [..., 3].

    ``E(n) / pi`` with ``E(n) = sum A_l L_lm Y_lm(n)`` (Ramamoorthi & Hanrahan 2001; A = pi, 2pi/3, pi/4),
    ``sh`` [9, C] from :func:`irradiance_sh9`. Truncating the clamped cosine at l = 2 rings slightly below
    zero (down to -4 % of a light's peak, facing away from it); irradiance cannot be negative, so those
    values are set to 0 unless ``clamp_negative`` is False. There is no upper clamp.
    """
    a = torch.tensor(_A, dtype=torch.float64, device=n.device)
    basis = sh9_basis(n.to(torch.float64)) * a
    irradiance = basis @ sh.to(torch.float64)
    if clamp_negative:
        irradiance = irradiance.clamp_min(0.0)
    return irradiance / math.pi


def sphere_geometry(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normals [size, size, 3] (float64, z up) and pixel coverage [size, size] of the preview sphere.

    The sphere of radius ``SPHERE_RADIUS_FRACTION * size`` pixels is centred in a size x size square and
    seen orthographically by the camera described in the module docstring: screen (sx, sy) on the unit
    disc has normal ``sx * right + sy * up - sqrt(1 - sx^2 - sy^2) * forward``. Coverage ramps over one
    pixel at the rim (cheap anti-aliasing); pixels outside get the rim normal so they stay finite.
    """
    radius = SPHERE_RADIUS_FRACTION * size
    offsets = torch.arange(size, dtype=torch.float64) + 0.5 - 0.5 * size
    sx = (offsets / radius)[None, :].expand(size, size)
    sy = (-offsets / radius)[:, None].expand(size, size)
    rho = torch.hypot(sx, sy)
    coverage = (radius * (1.0 - rho) + 0.5).clamp(0.0, 1.0)
    scale = rho.clamp_min(1.0)
    sx, sy = sx / scale, sy / scale
    toward = torch.sqrt((1.0 - sx * sx - sy * sy).clamp_min(0.0))
    basis = torch.tensor((CAMERA_RIGHT, CAMERA_UP, CAMERA_FORWARD), dtype=torch.float64)
    normals = torch.stack((sx, sy, -toward), dim=-1) @ basis
    return normals, coverage


def _mirror_environment(env: torch.Tensor, size: int) -> torch.Tensor:
    """Area-average ``env`` [H, W, C] so that its width is about 2 * size (about the mirror's sampling rate).

    At the mirror sphere's centre one preview pixel spans about 2 / radius radians; a much finer map would
    alias under bilinear lookup (a sun could vanish between samples). Area averaging keeps the energy.
    """
    height, width = env.shape[-3], env.shape[-2]
    factor = width // (2 * size)
    if factor <= 1:
        return env
    pooled = F.adaptive_avg_pool2d(env.permute(2, 0, 1)[None], (max(1, height // factor), max(1, width // factor)))
    return pooled[0].permute(1, 2, 0)


def render_spheres(env: torch.Tensor, size: int = 256, background: float = 0.0) -> torch.Tensor:
    """Preview [B, size, 2*size, 3] (float32, linear) of ``env`` [B, H, W, 3+] lighting two spheres.

    Left: white Lambertian sphere (SH9 irradiance / pi). Right: perfect mirror sphere (bilinear lookup
    of the reflected direction). Orthographic camera looking along +X, +Z up (module docstring).
    ``background`` fills the rest. A constant environment L shows L on both spheres. Negative input
    radiance (lossy-codec ringing, out-of-gamut values) is not light and is treated as 0; nothing is
    clamped from above -- tone mapping happens elsewhere. Input must be finite.
    """
    if env.ndim != 4 or env.shape[-1] < 3:
        raise ValueError(f"expected an environment [B, H, W, 3], got shape {tuple(env.shape)}")
    if size < 4:
        raise ValueError(f"size must be at least 4, got {size}")
    normals, coverage = sphere_geometry(size)
    normals, coverage = normals.to(env.device), coverage.to(env.device)
    forward = torch.tensor(CAMERA_FORWARD, dtype=torch.float64, device=env.device)
    # Mirror reflection of the viewing ray: r = f - 2 (f . n) n.
    reflected = forward - 2.0 * (normals @ forward)[..., None] * normals
    cov = coverage[..., None]
    out = []
    for image in env:
        radiance = image[..., :3].to(torch.float64).clamp_min(0.0)
        diffuse = diffuse_radiance(irradiance_sh9(radiance), normals)
        mirror = sample_equirect(_mirror_environment(radiance, size), reflected)
        halves = [cov * shade + (1.0 - cov) * background for shade in (diffuse, mirror)]
        out.append(torch.cat(halves, dim=1))
    return torch.stack(out).to(torch.float32)
