"""Glare: bloom and streaks of bright light, from a point-spread function applied in linear light.

The method (docs/lens.md):

- **Which light glares.** Each pixel's brightness is its largest colour channel ``M``; the part
  above ``threshold`` (linear units, 1 = diffuse white) glares, with a soft knee of half-width
  ``k = knee * threshold`` so that no edge appears where a gradient crosses the threshold:
  ``excess = 0`` for ``M <= T - k``, ``M - T`` for ``M >= T + k`` and ``(M - T + k)^2 / (4k)`` between
  (continuous, with a continuous slope). The pixel's RGB times ``intensity * excess / M`` is taken
  out of the pixel and spread by the PSF; everything else stays where it is.
- **Energy.** Every channel's PSF sums to 1, and the light a PSF would send past the frame's edge
  is kept in the frame (each source pixel's share is divided by the part of the PSF that lands
  inside the picture), so the sum of every channel is unchanged: glare moves light, it never adds
  or removes any. Nothing is clamped; negative pixels glare nowhere (their ``excess`` is 0).
- **The PSF** (the lens's response to a point), in the same shape at every ``radius`` (like a
  diffraction pattern, which scales with wavelength and f-number), smoothly windowed to 0 at
  ``radius`` by ``(1 - (r/R)^2)^2``:

  * *diffraction streaks of the aperture*: Fraunhofer diffraction of a straight edge spreads light
    along the edge's normal, with an intensity falling as ``1/a^2`` along it (the Fourier transform
    of a step falls as ``1/k``). A regular aperture of ``n`` blades has ``n`` edges whose normals are
    ``2 pi / n`` apart; the pattern is point-symmetric (the intensity of the transform of a real
    aperture), so each normal gives a streak both ways: **n streaks for an even n** (opposite edges
    are parallel and share their streaks) and **2n for an odd n** (a 5-blade lens gives a 10-pointed
    star). Here each streak line is ``1 / (1 + (a/a0)^2)`` along (``a0 = radius / 16``) times a
    Gaussian across (``sigma = 0.5 + radius / 256`` pixels), and since diffraction scales with the
    wavelength, the red channel's streaks are longer and the blue's shorter (``WAVELENGTHS_NM``:
    the dominant wavelengths of the Rec.709 primaries, relative to green's). ``blades = 0`` is a
    round aperture: its Airy rings are finer than these sizes, so only the scatter remains.
  * *a wide veiling scatter*: the ``1/theta^2`` falloff of the glare of the eye and of lenses
    (Stiles-Holladay; CIE 135/1), as ``1 / (1 + (r/r0)^2)`` with ``r0 = radius / 32`` (at least one
    pixel), the same in every channel.

  ``streaks`` is the share of the spread light that goes into the streaks, the rest into the scatter.
- **Convolution** by FFT (``torch.fft``), zero-padded so that nothing wraps around: the transform
  is at least the image plus the PSF's reach on each axis (a PSF reaching further than the image
  is cut where it could not land on the image anyway, so a radius larger than the picture costs no
  more than one as large as it). One channel of one image at a time, so memory is a few planes of
  the padded size (docs/benchmarks.md).

NaN/Inf pixels are refused (one of them would spread over the whole picture), as are negative or
non-finite settings and a radius under one pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import LEDiffError
from ..color import check_finite, check_image_size
from .bokeh import edge_normals
from .fft import fft_size, kernel_spectrum

# the dominant wavelengths (nm) of the Rec.709 red, green and blue primaries (their hue on the
# spectrum locus); diffraction patterns scale with the wavelength
WAVELENGTHS_NM = (611.0, 549.0, 464.0)
MAX_BLADES = 16
MAX_RADIUS = 8192


class GlareSettingsError(LEDiffError, ValueError):
    """A glare setting out of its range: the message names it, its value and the range."""


@dataclass(frozen=True)
class Glare:
    """The glare of one lens (module docstring): ``intensity`` (0..1, the share of the light above
    the threshold that is spread), ``threshold`` (linear, 1 = diffuse white), ``knee`` (0..1, the
    soft knee's half-width as a share of the threshold), ``radius`` (pixels, the PSF's reach),
    ``blades`` (aperture blades, 0 = round, else 3..``MAX_BLADES``), ``rotation`` (degrees, of the
    aperture, clockwise; 0: a corner straight up, as Lens Blur's bokeh), ``streaks`` (0..1, the share
    of spread light in the streaks), ``spectral`` (streaks scaled by wavelength per channel)."""

    intensity: float = 0.1
    threshold: float = 1.0
    knee: float = 0.5
    radius: float = 128.0
    blades: int = 6
    rotation: float = 0.0
    streaks: float = 0.5
    spectral: bool = True

    def __post_init__(self):
        for name, lo, hi in (("intensity", 0.0, 1.0), ("knee", 0.0, 1.0), ("streaks", 0.0, 1.0),
                             ("threshold", 0.0, math.inf), ("radius", 1.0, MAX_RADIUS)):
            value = getattr(self, name)
            if not (math.isfinite(value) and lo <= value <= hi):
                raise GlareSettingsError(f"glare {name} is {value}; it must be a finite number in {lo}..{hi}")
        if not math.isfinite(self.rotation):
            raise GlareSettingsError(f"glare rotation is {self.rotation}; give a finite angle in degrees")
        if self.blades != 0 and not 3 <= self.blades <= MAX_BLADES:
            raise GlareSettingsError(f"aperture blades is {self.blades}; give 0 (a round aperture) or 3..{MAX_BLADES}")

    def streak_angles(self) -> list[float]:
        """Angles (radians, from +x towards +y, i.e. downwards in the picture) of the streak lines,
        each a streak both ways: the normals of the blades' edges, ``n`` lines (2n streaks) for an
        odd ``n``, ``n / 2`` (n streaks) for an even one, none for a round aperture."""
        n = self.blades
        if n == 0:
            return []
        # the aperture turned as Lens Blur's bokeh polygon (0: a corner straight up), so one rotation
        # gives a bokeh and streaks of the same lens; opposite normals of an even n share a line
        return edge_normals(n, self.rotation)[:n if n % 2 else n // 2]

    def psf_values(self, dx: torch.Tensor, dy: torch.Tensor, channel: int) -> torch.Tensor:
        """The PSF of colour ``channel`` (0, 1, 2) at pixel offsets ``dx``, ``dy`` (tensors of one
        shape, float64), normalised to sum 1 over the offsets given (streaks and scatter each sum
        to their share)."""
        r_max = self.radius
        r2 = dx * dx + dy * dy
        window = torch.clamp(1 - r2 / (r_max * r_max), min=0) ** 2
        r0 = max(r_max / 32, 1.0)
        scatter = window / (1 + r2 / (r0 * r0))
        angles = self.streak_angles()
        if not angles or self.streaks == 0:
            return scatter / scatter.sum()
        scale = WAVELENGTHS_NM[channel] / WAVELENGTHS_NM[1] if self.spectral else 1.0
        a0 = max(r_max / 16, 1.0) * scale
        sigma = (0.5 + r_max / 256) * scale
        lines = torch.zeros_like(dx)
        for phi in angles:
            along = dx * math.cos(phi) + dy * math.sin(phi)
            across = -dx * math.sin(phi) + dy * math.cos(phi)
            lines = lines + torch.exp(-0.5 * (across / sigma) ** 2) / (1 + (along / a0) ** 2)
        lines = lines * window
        return self.streaks * lines / lines.sum() + (1 - self.streaks) * scatter / scatter.sum()

    def reach(self, height: int, width: int) -> tuple[int, int]:
        """How far (pixels, in y and x) the PSF is evaluated on an image of this size: its radius,
        cut to where light can still land on the picture."""
        r = math.ceil(self.radius)
        return min(r, height - 1), min(r, width - 1)

    def kernel(self, height: int, width: int, device=None) -> torch.Tensor:
        """The PSF as a centred float64 kernel [3, 2 ry + 1, 2 rx + 1] (``reach``), each channel
        summing to 1: what the FFT path applies (for a direct convolution, and the tests)."""
        ry, rx = self.reach(height, width)
        dy, dx = torch.meshgrid(torch.arange(-ry, ry + 1, dtype=torch.float64, device=device),
                                torch.arange(-rx, rx + 1, dtype=torch.float64, device=device), indexing="ij")
        return torch.stack([self.psf_values(dx, dy, c) for c in range(3)])


def bright_share(rgb: torch.Tensor, threshold: float, knee: float) -> torch.Tensor:
    """[..., 1]: the share of each pixel of linear ``rgb`` [..., 3] above ``threshold`` with a soft
    knee (module docstring), in 0..1; 0 for pixels with no positive channel."""
    m = rgb[..., :3].amax(dim=-1, keepdim=True)
    k = knee * threshold
    if k > 0:
        soft = (m - threshold + k).clamp(min=0) ** 2 / (4 * k)
        excess = torch.where(m >= threshold + k, m - threshold, soft)
    else:
        excess = (m - threshold).clamp(min=0)
    return torch.where(m > 0, excess / torch.where(m > 0, m, torch.ones_like(m)), torch.zeros_like(m))


class _FFTKernel:
    """One channel's PSF transformed once for a padded size, applied to many planes."""

    def __init__(self, kernel: torch.Tensor, height: int, width: int, dtype):
        ry, rx = (kernel.shape[0] - 1) // 2, (kernel.shape[1] - 1) // 2
        self.size = (fft_size(height + ry), fft_size(width + rx))
        self.spectrum = kernel_spectrum(kernel.to(dtype), self.size)
        self.shape = (height, width)
        # the share of each source pixel's PSF that lands inside the picture (the PSF is point-
        # symmetric, so its correlation with the frame is its convolution with it)
        self.inside = self.apply(torch.ones(height, width, device=kernel.device, dtype=dtype))

    def apply(self, plane: torch.Tensor) -> torch.Tensor:
        h, w = self.shape
        out = torch.fft.irfft2(torch.fft.rfft2(plane, s=self.size) * self.spectrum, s=self.size)
        return out[:h, :w]


def apply_glare(image: torch.Tensor, glare: Glare, device=None,
                on_step: Callable[[int], None] | None = None) -> torch.Tensor:
    """``image`` [B, H, W, C] (C >= 3, linear HDR) with ``glare`` applied to its RGB (other channels
    kept), float32 on ``image``'s device (computed on ``device``, default that one). ``on_step`` is
    called with the step's index after each channel of each image (3 B steps): progress, and where an
    interrupt may stop."""
    check_image_size(image, "image")
    check_finite(image, "image", "glare spreads every bright pixel over the picture, a NaN/Inf to all of it")
    device = torch.device(device) if device is not None else image.device
    dtype = torch.float32
    b, h, w, _ = image.shape
    out = image.to(dtype=dtype, copy=True)
    if glare.intensity == 0:
        return out
    # the PSF in float64 on the CPU (not every accelerator has float64), applied in float32
    kernels = [_FFTKernel(k.to(device=device, dtype=dtype), h, w, dtype) for k in glare.kernel(h, w)]
    for i in range(b):
        rgb = image[i, ..., :3].to(device=device, dtype=dtype)
        spread = glare.intensity * bright_share(rgb, glare.threshold, glare.knee) * rgb
        result = rgb - spread
        for c, kernel in enumerate(kernels):
            result[..., c] += kernel.apply(spread[..., c] / kernel.inside)
            if on_step is not None:
                on_step(3 * i + c)
        out[i, ..., :3] = result.to(out.device)
    return out
