"""CRF correction before scoring single-image HDR reconstructions (the ``crf`` scaling).

Source: Hanji, Mantiuk, Eilertsen, Hajisharif and Unger, "Comparison of single image HDR
reconstruction methods — the caveats of quality assessment", SIGGRAPH 2022 Conference Proceedings
(doi:10.1145/3528233.3530729), and the description published with its authors' PU21 metrics
(gfxdisp/pu21, ``matlab/crf_correction.m`` and ``ex_sihdr.m``; written here from that description,
not from its code). A reconstruction that gets the structure right but the tone curve or colours
slightly wrong should not be punished as hard as one that loses detail; so before a metric runs,
the test is mapped onto the reference by a smooth monotone-ish function fitted by least squares:

- both images in absolute cd/m^2, floored at 0.005 cd/m^2 (PU21's lower end);
- converted to "Luv": Y (luminance) and the CIE 1976 chromaticity (u', v') scaled by 410/255 (the
  LogLuv code scale the description uses), from Rec.709 RGB through XYZ;
- luminance: a degree-3 polynomial in the PQ domain (ST 2084, 10000 cd/m^2 = 1), coefficients of
  x^3, x^2, x, 1 by ordinary least squares (no regularisation);
- chroma: one degree-3 polynomial of both (u, v) for each of u and v, in the linear domain, with
  the terms u^3, v^3, u^2, v^2, u v, u, v, 1; ridge-regularised towards the identity (the fit that
  changes nothing) with strength lambda * N / P (lambda = 0.01, N pixels, P = 8 terms), so the
  colours move only as far as the data insist;
- the corrected PQ luminance is kept between PQ(0.005 cd/m^2) and PQ's own range (1.0 = 10000
  cd/m^2, where the EOTF ends) and decoded; (u, v) and Y go back to Rec.709 RGB through XYZ
  (XYZ kept within 1e-4..1e8 as the description does; negative RGB set to 0, which every metric
  does anyway).

torch float64 inside, numpy arrays in and out (PQ from ``lediff_core.color.transfer``, the RGB/XYZ matrix from
``lediff_core.color.chromaticities``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..color import REC709_CHROMATICITIES
from ..color.chromaticities import rgb_to_xyz_matrix
from ..color.transfer import pq_decode, pq_encode
from .pu21 import PU21_L_MIN

CRF_DEGREE = 3
CRF_CHROMA_LAMBDA = 0.01
CRF_FLOOR_NITS = PU21_L_MIN  # 0.005 cd/m^2
UV_SCALE = 410.0 / 255.0
XYZ_RANGE = (1e-4, 1e8)

_RGB_TO_XYZ = rgb_to_xyz_matrix(REC709_CHROMATICITIES)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)


@dataclass
class CRFFit:
    luminance: np.ndarray  # 4 coefficients of the PQ-domain polynomial, highest power first
    chroma: np.ndarray  # 8x2: the (u, v) polynomial's coefficients (terms in chroma_terms' order)

    def describe(self) -> str:
        a3, a2, a1, a0 = (float(c) for c in self.luminance)
        return f"crf: PQ luminance {a3:+.3g}x^3 {a2:+.3g}x^2 {a1:+.3g}x {a0:+.3g}"


# All the work is in torch float64 (one thread pool: numpy's BLAS and torch's OpenMP threads
# taking turns on a small machine cost more than the arithmetic); arrays in and out are numpy.


def _tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64))


def rgb_to_luv(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Y, uv) of linear Rec.709 RGB in cd/m^2 (float64 tensor ..x3): Y luminance (N), uv = (u', v')
    x 410/255 (N x 2); XYZ kept within XYZ_RANGE."""
    xyz = (rgb.reshape(-1, 3) @ _tensor(_RGB_TO_XYZ.T)).clamp_(*XYZ_RANGE)
    d = xyz[:, 0] + 15.0 * xyz[:, 1] + 3.0 * xyz[:, 2]
    uv = torch.stack([4.0 * xyz[:, 0] / d, 9.0 * xyz[:, 1] / d], dim=-1).mul_(UV_SCALE)
    return xyz[:, 1], uv


def luv_to_rgb(y: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Linear Rec.709 RGB (N x 3, negatives set to 0) from rgb_to_luv's (Y, uv)."""
    u, v = uv[:, 0] / UV_SCALE, uv[:, 1] / UV_SCALE
    # X/Y = 9u / 4v and Z/Y = (12 - 3u - 20v) / 4v follow from u' = 4X/(X+15Y+3Z), v' = 9Y/(X+15Y+3Z)
    lo, hi = XYZ_RANGE
    x = torch.nan_to_num(9.0 * u / (4.0 * v) * y, nan=lo)
    z = torch.nan_to_num((12.0 - 3.0 * u - 20.0 * v) / (4.0 * v) * y, nan=lo)
    xyz = torch.stack([x, y, z], dim=-1).clamp_(lo, hi)
    return (xyz @ _tensor(_XYZ_TO_RGB.T)).clamp_(min=0.0)


def chroma_terms(uv: torch.Tensor) -> torch.Tensor:
    """The chroma polynomial's terms (N x 8): u^3, v^3, u^2, v^2, u v, u, v, 1."""
    u, v = uv[:, 0], uv[:, 1]
    uu, vv = u * u, v * v
    return torch.stack([uu * u, vv * v, uu, vv, u * v, u, v, torch.ones_like(u)], dim=-1)


def luminance_terms(x: torch.Tensor) -> torch.Tensor:
    """The luminance polynomial's terms (N x 4): x^3, x^2, x, 1."""
    xx = x * x
    return torch.stack([xx * x, xx, x, torch.ones_like(x)], dim=-1)


def _fit(terms: torch.Tensor, target: torch.Tensor, lam: float, identity: torch.Tensor) -> torch.Tensor:
    """argmin_W |terms W - target|^2 + s |W - identity|^2 with s = lam * N / P (normal equations)."""
    n, p = terms.shape
    s = lam * n / p
    gram = terms.T @ terms + s * torch.eye(p, dtype=terms.dtype)
    rhs = terms.T @ target.reshape(n, -1) + s * identity.reshape(p, -1)
    # lstsq, not solve: a flat image (one grey level) leaves the unregularised system singular, and
    # then the minimum-norm fit is as good as any (gelsd: the one CPU driver that handles rank loss)
    return torch.linalg.lstsq(gram, rhs, driver="gelsd").solution.reshape(identity.shape)


def _luv(rgb) -> tuple[torch.Tensor, torch.Tensor]:
    """(PQ of luminance, uv) of an HxWx3 image in cd/m^2, floored at CRF_FLOOR_NITS."""
    y, uv = rgb_to_luv(_tensor(rgb).clamp_(min=CRF_FLOOR_NITS))
    return pq_encode(y), uv


def _fit_luv(test: tuple, reference: tuple) -> CRFFit:
    (xt, uvt), (xr, uvr) = test, reference
    lum = _fit(luminance_terms(xt), xr, 0.0, torch.zeros(CRF_DEGREE + 1, dtype=torch.float64))
    identity = torch.zeros(8, 2, dtype=torch.float64)
    identity[5, 0] = identity[6, 1] = 1.0  # the u and v terms
    return CRFFit(lum.numpy(), _fit(chroma_terms(uvt), uvr, CRF_CHROMA_LAMBDA, identity).numpy())


def _apply_luv(test: tuple, fit: CRFFit, shape) -> np.ndarray:
    x, uv = test
    floor = float(pq_encode(torch.tensor(CRF_FLOOR_NITS, dtype=torch.float64)))
    signal = (luminance_terms(x) @ _tensor(fit.luminance)).clamp_(floor, 1.0)
    return luv_to_rgb(pq_decode(signal), chroma_terms(uv) @ _tensor(fit.chroma)).numpy().reshape(shape)


def fit_crf(test: np.ndarray, reference: np.ndarray) -> CRFFit:
    """The CRF correction's polynomials mapping ``test`` onto ``reference`` (HxWx3, cd/m^2)."""
    return _fit_luv(_luv(test), _luv(reference))


def apply_crf(test: np.ndarray, fit: CRFFit) -> np.ndarray:
    """``test`` (HxWx3, cd/m^2) through a fitted CRF correction; float64 HxWx3."""
    return _apply_luv(_luv(test), fit, np.shape(test))


def crf_correct(test: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, CRFFit]:
    """``test`` corrected onto ``reference`` (both HxWx3 linear Rec.709 in cd/m^2) and the fit."""
    luv = _luv(test)
    fit = _fit_luv(luv, _luv(reference))
    return _apply_luv(luv, fit, np.shape(test)), fit
