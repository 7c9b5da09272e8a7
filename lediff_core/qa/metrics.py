"""Full-reference HDR quality metrics on linear Rec.709 images (the pack's working space).

One entry point, :func:`compute_metric`, for four metrics:

``pu21_psnr``
    PU21 (banding_glare) of each RGB channel, PSNR with peak 256 over all pixels and channels
    (higher is better, dB). Map: per-pixel RMS of the PU21 difference over the channels, / 256.
``pu21_ssim``
    SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, population
    statistics) of PU21-encoded luminance with data range 256; the score is the mean SSIM over the
    pixels whose window lies inside the image (higher is better, at most 1). Map: 1 - SSIM.
``hdr_flip``
    HDR-FLIP from NVIDIA's ``flip-evaluator`` (lower is better, 0 = identical). Map: FLIP error.
``cvvdp``
    ColorVideoVDP from ``cvvdp`` with its ``standard_hdr_linear`` display (1500 cd/m^2 peak,
    linear BT.709 input in cd/m^2), offline (the plain metric needs no download). Score in JOD
    (higher is better, 10 = identical). Map: cvvdp's raw difference map (0 = invisible).

Scaling (``scaling``):

``absolute``
    Inputs are already absolute linear light in cd/m^2; used as given.
``align`` (default)
    LEDiff's output has an arbitrary scale. (1) The test is scaled to the reference by the median
    of the per-pixel log-luminance ratio log(Y_ref / Y_test) over pixels whose luminance is
    positive and finite in both images: a least-absolute-deviation fit of one exposure in log
    space, robust to clipped or hallucinated highlights and to crushed shadows. (2) Both images are
    then multiplied by one factor that maps the reference's 99.9th percentile of luminance to
    1000 cd/m^2 (``DISPLAY_PEAK_NITS``): an HDR display's peak. Nothing is clipped by this
    mapping; each metric applies its own range (PU21 clips to 0.005..10000 cd/m^2, cvvdp's display
    model to its peak).

flip-evaluator and cvvdp are imported only when their metric is asked for; a missing library
raises :class:`MetricUnavailableError` naming the pip command that installs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import correlate1d

from .. import LEDiffError
from ..color import REC709_LUMA, check_image_size
from .pu21 import PU21_PEAK, pu21_encode

METRICS = ("pu21_psnr", "pu21_ssim", "hdr_flip", "cvvdp")
SCALINGS = ("align", "absolute")
HIGHER_IS_BETTER = {"pu21_psnr": True, "pu21_ssim": True, "hdr_flip": False, "cvvdp": True}
UNITS = {"pu21_psnr": "dB", "pu21_ssim": "", "hdr_flip": "", "cvvdp": "JOD"}

DISPLAY_PEAK_NITS = 1000.0
ALIGN_PERCENTILE = 99.9
CVVDP_DISPLAY = "standard_hdr_linear"

# SSIM constants of Wang et al. 2004
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # 11x11 window (what skimage's truncate=3.5 gives for sigma 1.5)
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# The smallest image (pixels on each side) a metric can score, and why: SSIM's mean is over the
# pixels whose whole window fits; ColorVideoVDP's Laplacian pyramid fails on a single pixel
# (measured with cvvdp 0.5: 1x1 raises IndexError, 2x2 scores).
MIN_SIZE = {"pu21_psnr": 1, "pu21_ssim": 2 * SSIM_RADIUS + 1, "hdr_flip": 1, "cvvdp": 2}
MIN_SIZE_WHY = {"pu21_ssim": f" by pu21_ssim (its {2 * SSIM_RADIUS + 1}x{2 * SSIM_RADIUS + 1} window must fit)",
                "cvvdp": " by cvvdp (its pyramid needs 2 pixels)"}

INSTALL_HINTS = {
    "hdr_flip": "pip install flip-evaluator  (or: pip install -r requirements.txt in the pack's folder)",
    "cvvdp": "pip install --no-deps -r requirements-metrics.txt  (in the pack's folder; --no-deps keeps "
    "ComfyUI's torch and torchvision)",
}


class MetricUnavailableError(LEDiffError, ImportError):
    """The library a metric needs is not installed; the message names the pip command."""


@dataclass
class MetricResult:
    score: float
    map: np.ndarray | None  # HxW (or HxWx3) difference/visibility map, 0 = no visible difference
    line: str  # one line for a log or a CSV comment


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec.709 relative luminance of an HxWx3 linear array (float64)."""
    w = np.asarray(REC709_LUMA, dtype=np.float64)
    return np.asarray(rgb, dtype=np.float64) @ w


def _check_pair(test: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    test = np.asarray(test)
    reference = np.asarray(reference)
    for name, a in (("test", test), ("reference", reference)):
        if a.ndim != 3 or a.shape[-1] != 3:
            raise ValueError(
                f"{name} image must be HxWx3 linear RGB, got shape {tuple(a.shape)}: pass one image "
                "(not a batch) with three colour channels"
            )
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise ValueError(
                f"{name} image has {bad} non-finite values (NaN/inf): fix the decode or replace them before scoring"
            )
    if test.shape != reference.shape:
        raise ValueError(
            f"test {test.shape[1]}x{test.shape[0]} and reference {reference.shape[1]}x"
            f"{reference.shape[0]} differ in size: resize or crop the test to the reference first"
        )
    # Negative values are out-of-gamut noise for a luminance metric; none of the metrics accepts them.
    return (
        np.maximum(test.astype(np.float64), 0.0),
        np.maximum(reference.astype(np.float64), 0.0),
    )


def align_scale(test: np.ndarray, reference: np.ndarray) -> float:
    """Exposure factor for ``test``: exp(median(log(Y_ref / Y_test))) over pixels positive and
    finite in both (see the module docstring)."""
    yt, yr = luminance(test), luminance(reference)
    valid = (yt > 0) & (yr > 0) & np.isfinite(yt) & np.isfinite(yr)
    if not valid.any():
        raise ValueError(
            "align scaling needs pixels with positive luminance in both images; none found (is one "
            "image black?): use scaling=absolute for images already in cd/m^2"
        )
    return float(np.exp(np.median(np.log(yr[valid]) - np.log(yt[valid]))))


def display_scale(reference: np.ndarray) -> float:
    """Factor mapping the reference's 99.9th percentile of luminance to DISPLAY_PEAK_NITS."""
    level = float(np.percentile(luminance(reference), ALIGN_PERCENTILE))
    if not level > 0:
        raise ValueError(
            f"the reference's {ALIGN_PERCENTILE}th percentile of luminance is {level}: an (almost) "
            "black reference cannot be mapped to a display; use scaling=absolute"
        )
    return DISPLAY_PEAK_NITS / level


def to_display(test: np.ndarray, reference: np.ndarray, scaling: str = "align"):
    """Both images in absolute cd/m^2 as the metrics see them: (test, reference, note)."""
    test, reference = _check_pair(test, reference)
    if scaling == "absolute":
        return test, reference, "absolute cd/m^2"
    if scaling != "align":
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    s = align_scale(test, reference)
    k = display_scale(reference)
    return test * (s * k), reference * k, f"align: test x{s:.4g}, then x{k:.4g} to {DISPLAY_PEAK_NITS:g} cd/m^2"


def pu21_psnr(test: np.ndarray, reference: np.ndarray) -> tuple[float, np.ndarray]:
    """PU21-PSNR of absolute linear RGB (cd/m^2): PU21 of each channel, peak 256."""
    d = pu21_encode(test) - pu21_encode(reference)
    mse = float(np.mean(d * d))
    score = math.inf if mse == 0 else 10.0 * math.log10(PU21_PEAK**2 / mse)
    return score, (np.sqrt(np.mean(d * d, axis=-1)) / PU21_PEAK).astype(np.float32)


def _gaussian_window() -> np.ndarray:
    r = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    g = np.exp(-(r**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _gaussian_blur(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    # separable; borders reflected (they only affect the map's rim, not the score)
    return correlate1d(correlate1d(x, g, axis=0, mode="reflect"), g, axis=1, mode="reflect")


def ssim(test: np.ndarray, reference: np.ndarray, data_range: float) -> tuple[float, np.ndarray]:
    """SSIM of two HxW arrays (Wang et al. 2004, Gaussian window); score = mean over the pixels
    whose whole window lies inside the image, map = the full SSIM map (reflected borders)."""
    x = np.asarray(test, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    check_image_size(x, "test", MIN_SIZE["pu21_ssim"], batched=False, why=MIN_SIZE_WHY["pu21_ssim"])
    g = _gaussian_window()
    mx, my = _gaussian_blur(x, g), _gaussian_blur(y, g)
    vx = _gaussian_blur(x * x, g) - mx * mx
    vy = _gaussian_blur(y * y, g) - my * my
    cxy = _gaussian_blur(x * y, g) - mx * my
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    r = SSIM_RADIUS
    return float(s[r:-r, r:-r].mean()), s


def pu21_ssim(test: np.ndarray, reference: np.ndarray) -> tuple[float, np.ndarray]:
    """PU21-SSIM: SSIM of PU21-encoded luminance (cd/m^2), data range 256."""
    score, smap = ssim(pu21_encode(luminance(test)), pu21_encode(luminance(reference)), PU21_PEAK)
    return score, (1.0 - smap).astype(np.float32)


def _import(metric: str):
    try:
        if metric == "hdr_flip":
            import flip_evaluator

            return flip_evaluator
        import pycvvdp

        return pycvvdp
    except ImportError as e:
        raise MetricUnavailableError(
            f"metric {metric!r} needs a library that is not installed ({e}): {INSTALL_HINTS[metric]}"
        ) from e


def hdr_flip(test: np.ndarray, reference: np.ndarray) -> tuple[float, np.ndarray]:
    """HDR-FLIP (flip-evaluator) of linear Rec.709 images; exposures chosen by FLIP."""
    flip = _import("hdr_flip")
    err, mean, _ = flip.evaluate(
        np.ascontiguousarray(reference, dtype=np.float32),
        np.ascontiguousarray(test, dtype=np.float32),
        "HDR",
        applyMagma=False,
    )
    err = np.asarray(err, dtype=np.float32)
    if err.ndim == 3:
        err = err[..., 0]
    return float(mean), err


_CVVDP_CACHE: dict = {}


def cvvdp(test: np.ndarray, reference: np.ndarray, device=None) -> tuple[float, np.ndarray]:
    """ColorVideoVDP (JOD) of absolute linear BT.709 images in cd/m^2 on its standard_hdr_linear
    display; ``device`` a torch device (CPU when None)."""
    pycvvdp = _import("cvvdp")
    device = torch.device("cpu") if device is None else torch.device(device)
    key = (CVVDP_DISPLAY, str(device))
    metric = _CVVDP_CACHE.get(key)
    if metric is None:
        metric = pycvvdp.cvvdp(display_name=CVVDP_DISPLAY, heatmap="raw", quiet=True, device=device)
        _CVVDP_CACHE[key] = metric
    t = torch.from_numpy(np.ascontiguousarray(test, dtype=np.float32)).to(device)
    r = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32)).to(device)
    with torch.no_grad():
        jod, stats = metric.predict(t, r, dim_order="HWC")
    heat = stats.get("heatmap")
    heat = None if heat is None else heat[0, 0, 0].float().cpu().numpy()
    return float(jod), heat


def compute_metric(
    test: np.ndarray,
    reference: np.ndarray,
    metric: str,
    scaling: str = "align",
    device=None,
) -> MetricResult:
    """Score ``test`` against ``reference`` (float HxWx3 linear Rec.709) with one of METRICS.

    ``scaling``: ``align`` (default; arbitrary-scale test, see the module docstring) or
    ``absolute`` (both already in cd/m^2). ``device``: torch device for cvvdp (CPU when None).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    for name, image in (("test", test), ("reference", reference)):  # the layout: _check_pair
        check_image_size(image, name, MIN_SIZE[metric], batched=False, why=MIN_SIZE_WHY.get(metric, ""), channels=0)
    t, r, note = to_display(test, reference, scaling)
    if metric == "pu21_psnr":
        score, dmap = pu21_psnr(t, r)
    elif metric == "pu21_ssim":
        score, dmap = pu21_ssim(t, r)
    elif metric == "hdr_flip":
        score, dmap = hdr_flip(t, r)
    else:
        score, dmap = cvvdp(t, r, device=device)
    unit = UNITS[metric]
    better = "higher" if HIGHER_IS_BETTER[metric] else "lower"
    line = f"{metric} = {score:.4f}{(' ' + unit) if unit else ''} ({better} is better; {note})"
    return MetricResult(score=float(score), map=dmap, line=line)
