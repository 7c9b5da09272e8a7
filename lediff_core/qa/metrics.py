"""Full-reference HDR quality metrics on linear Rec.709 images (the pack's working space).

One entry point, :func:`compute_metric` (and :func:`compute_metric_regions` for the whole image,
the highlights and the shadows side by side), for six metrics:

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
``fvvdp``
    FovVideoVDP from ``pyfvvdp`` (the same lab's earlier metric, achromatic, non-foveated) on its
    ``standard_hdr_linear`` display, the same way. Score in JOD; map: its raw difference map.
``pu21_piqe`` (no reference)
    PU21-PIQE as DiffHDR's evaluation computes what LEDiff's Table 1 reports: the test alone,
    scaled so its 99.9th percentile of luminance is 1000 cd/m^2 (the mean over the images for a
    set: :func:`piqe_scale`), PU21 banding_glare of luminance, / 600, clipped to 0..1, three equal
    channels, then PIQE (Venkatanath et al. 2015, MATLAB's ``piqe``) from ``pypiqe``. Lower is
    better (0..100). The scaling and region choices do not apply. Map: PIQE's distorted blocks.

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
``crf``
    ``align``, then the SI-HDR CRF correction (Hanji et al. 2022, ``lediff_core.qa.crf``): the test
    is mapped onto the reference by a degree-3 polynomial of PQ luminance and a regularised one of
    chroma, fitted by least squares, so that tone-curve and colour differences count less than lost
    or wrong structure. The authors recommend it for comparing single-image HDR reconstructions.

Regions (``region`` / :func:`region_masks`, from the LDR photo the method was given):

``image``
    every pixel.
``highlights``
    the pixels clipped in the photo (a channel at or above ``HIGHLIGHT_THRESHOLD`` = 0.99 of the
    display-encoded 0..1 range, i.e. 8-bit codes 253-255), grown by ``REGION_DILATION`` = 2 pixels
    (a 5x5 square) to take in the transition around them: the region LEDiff's Table 1 scores.
``shadows``
    the pixels crushed to black (every channel at or below ``SHADOW_THRESHOLD`` = 0.01, codes 0-2),
    grown the same way.
A map metric is reduced over the region's pixels: PU21-PSNR's mean squared error, the mean of
PU21-SSIM's map (pixels whose window lies inside the image), the mean of HDR-FLIP's map. ColorVideoVDP
and FovVideoVDP pool over the whole image by design, so for a region the test's pixels outside it
are replaced by the reference's: the score sees only the region's differences. A region with no
pixels scores NaN.

flip-evaluator, cvvdp, pyfvvdp and pypiqe are imported only when their metric is asked for; a missing library
raises :class:`MetricUnavailableError` naming the pip command that installs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import binary_dilation, correlate1d

from .. import LEDiffError
from ..color import REC709_LUMA, check_image_size
from .pu21 import PU21_PEAK, pu21_encode

METRICS = ("pu21_psnr", "pu21_ssim", "hdr_flip", "cvvdp", "fvvdp", "pu21_piqe")
NO_REFERENCE = ("pu21_piqe",)
VIDEO_METRICS = ("cvvdp", "fvvdp")  # also score a clip as one video (compute_clip_metric)
SCALINGS = ("align", "absolute", "crf")
REGIONS = ("image", "highlights", "shadows")
HIGHER_IS_BETTER = {"pu21_psnr": True, "pu21_ssim": True, "hdr_flip": False, "cvvdp": True, "fvvdp": True,
                    "pu21_piqe": False}
UNITS = {"pu21_psnr": "dB", "pu21_ssim": "", "hdr_flip": "", "cvvdp": "JOD", "fvvdp": "JOD", "pu21_piqe": ""}

HIGHLIGHT_THRESHOLD = 0.99  # a channel at or above this (display-encoded 0..1) is clipped
SHADOW_THRESHOLD = 0.01  # every channel at or below this is crushed to black
REGION_DILATION = 2  # pixels the regions grow by (a square of side 2 * 2 + 1)

PIQE_PEAK_NITS = 1000.0  # the mean 99.9th percentile of luminance PU21-PIQE scales to
PIQE_PU21_DIVISOR = 600.0  # PU21 values / 600, clipped to 0..1, is PIQE's input
FVVDP_DISPLAY = "standard_hdr_linear"

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
MIN_SIZE = {"pu21_psnr": 1, "pu21_ssim": 2 * SSIM_RADIUS + 1, "hdr_flip": 1, "cvvdp": 2, "fvvdp": 2,
            "pu21_piqe": 1}
MIN_SIZE_WHY = {"pu21_ssim": f" by pu21_ssim (its {2 * SSIM_RADIUS + 1}x{2 * SSIM_RADIUS + 1} window must fit)",
                "cvvdp": " by cvvdp (its pyramid needs 2 pixels)", "fvvdp": " by fvvdp (its pyramid needs 2 pixels)"}

INSTALL_HINTS = {
    "hdr_flip": "pip install flip-evaluator  (or: pip install -r requirements.txt in the pack's folder)",
    "cvvdp": "pip install --no-deps -r requirements-metrics.txt  (in the pack's folder; --no-deps keeps "
    "ComfyUI's torch and torchvision)",
}
INSTALL_HINTS["fvvdp"] = INSTALL_HINTS["pu21_piqe"] = INSTALL_HINTS["cvvdp"]
_LIBRARIES = {"hdr_flip": "flip_evaluator", "cvvdp": "pycvvdp", "fvvdp": "pyfvvdp", "pu21_piqe": "pypiqe"}


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


def _checked(name: str, a) -> np.ndarray:
    """One HxWx3 image as float64 with negatives set to 0, or an error naming what is wrong."""
    a = np.asarray(a)
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
    # Negative values are out-of-gamut noise for a luminance metric; none of the metrics accepts them.
    return np.maximum(a.astype(np.float64), 0.0)


def _check_pair(test: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    test, reference = _checked("test", test), _checked("reference", reference)
    if test.shape != reference.shape:
        raise ValueError(
            f"test {test.shape[1]}x{test.shape[0]} and reference {reference.shape[1]}x"
            f"{reference.shape[0]} differ in size: resize or crop the test to the reference first"
        )
    return test, reference


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
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    test, reference = _check_pair(test, reference)
    if scaling == "absolute":
        return test, reference, "absolute cd/m^2"
    s = align_scale(test, reference)
    k = display_scale(reference)
    test, reference = test * (s * k), reference * k
    note = f"align: test x{s:.4g}, then x{k:.4g} to {DISPLAY_PEAK_NITS:g} cd/m^2"
    if scaling == "crf":
        from .crf import crf_correct

        test, fit = crf_correct(test, reference)
        note = f"{note}; {fit.describe()}"
    return test, reference, note


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


def _import(metric: str):
    import importlib

    try:
        return importlib.import_module(_LIBRARIES[metric])
    except ImportError as e:
        raise MetricUnavailableError(
            f"metric {metric!r} needs a library that is not installed ({e}): {INSTALL_HINTS[metric]}"
        ) from e


def missing_libraries(metrics) -> dict[str, str]:
    """{metric: why} for each of ``metrics`` whose library does not import, so that a long run (the
    evaluation's workflows) can refuse before it starts rather than fail when it scores."""
    missing = {}
    for metric in metrics:
        if metric in _LIBRARIES:
            try:
                _import(metric)
            except MetricUnavailableError as e:
                missing[metric] = str(e.__cause__ or e)
    return missing


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


_VDP_CACHE: dict = {}


def _vdp(metric: str, device):
    """The cvvdp/fvvdp metric object for ``device`` (built once: building it reads its tables)."""
    library = _import(metric)
    device = torch.device("cpu") if device is None else torch.device(device)
    key = (metric, str(device))
    if key not in _VDP_CACHE:
        if metric == "cvvdp":
            _VDP_CACHE[key] = library.cvvdp(display_name=CVVDP_DISPLAY, heatmap="raw", quiet=True, device=device)
        else:
            _VDP_CACHE[key] = library.fvvdp(display_name=FVVDP_DISPLAY, heatmap="raw", quiet=True, device=device)
    return _VDP_CACHE[key], device


def vdp(test: np.ndarray, reference: np.ndarray, metric: str = "cvvdp", device=None,
        fps: float = 0.0) -> tuple[float, np.ndarray | None]:
    """ColorVideoVDP or FovVideoVDP (JOD) of absolute linear BT.709 images in cd/m^2 on their
    standard_hdr_linear display; ``device`` a torch device (CPU when None). HxWx3 is an image;
    FxHxWx3 with ``fps`` > 0 is a clip (frames at that rate). Map: the first frame's raw heatmap."""
    model, device = _vdp(metric, device)
    t = torch.from_numpy(np.ascontiguousarray(test, dtype=np.float32)).to(device)
    r = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32)).to(device)
    order = "FHWC" if t.ndim == 4 else "HWC"
    with torch.no_grad():
        jod, stats = model.predict(t, r, dim_order=order, frames_per_second=fps)
    heat = stats.get("heatmap")
    heat = None if heat is None else heat[0, 0, 0].float().cpu().numpy()
    return float(jod), heat


def _piqe_factor(levels) -> float:
    level = float(np.mean(levels))
    if not level > 0:
        raise ValueError(f"pu21_piqe: the {ALIGN_PERCENTILE}th percentile of luminance is {level} (a black image "
                         "has no quality to judge): check the decode")
    return PIQE_PEAK_NITS / level


def piqe_scale(images) -> float:
    """PU21-PIQE's factor: PIQE_PEAK_NITS over the mean of the images' 99.9th percentiles of
    luminance (one image or a sequence of HxWx3 linear arrays)."""
    images = [images] if np.ndim(images) == 3 else list(images)
    return _piqe_factor([np.percentile(luminance(np.maximum(i, 0.0)), ALIGN_PERCENTILE) for i in images])


def _piqe_input(y: np.ndarray, scale: float) -> np.ndarray:
    y = np.clip(pu21_encode(y * scale) / PIQE_PU21_DIVISOR, 0.0, 1.0).astype(np.float32)
    return np.repeat(y[..., None], 3, axis=-1)


def pu21_piqe_input(image: np.ndarray, scale: float) -> np.ndarray:
    """What PIQE sees in PU21-PIQE: PU21 of the scaled luminance / 600, clipped to 0..1, as three
    equal float32 channels (HxWx3)."""
    return _piqe_input(luminance(np.maximum(image, 0.0)), scale)


def pu21_piqe(image: np.ndarray, scale: float | None = None) -> tuple[float, np.ndarray, float]:
    """PU21-PIQE of one linear image (lower is better); ``scale`` from :func:`piqe_scale` (of this
    image when None). Returns (score, map, scale); map: 1 on the blocks PIQE finds distorted
    (artifacts or noise)."""
    library = _import("pu21_piqe")
    y = luminance(np.maximum(image, 0.0))
    scale = _piqe_factor([np.percentile(y, ALIGN_PERCENTILE)]) if scale is None else scale
    score, artifacts, noise, _activity = library.piqe(_piqe_input(y, scale))
    return float(score), (np.asarray(artifacts) | np.asarray(noise)).astype(np.float32), scale


def region_masks(ldr, highlight_threshold: float = HIGHLIGHT_THRESHOLD, shadow_threshold: float = SHADOW_THRESHOLD,
                 dilation: int = REGION_DILATION) -> dict[str, np.ndarray]:
    """{region: HxW bool} for REGIONS from the LDR photo the method was given (HxWx3, uint8 codes or
    display-encoded floats 0..1): highlights = a channel clipped, shadows = every channel crushed,
    each grown by ``dilation`` pixels (see the module docstring)."""
    ldr = np.asarray(ldr)
    if ldr.ndim != 3 or ldr.shape[-1] < 3:
        raise ValueError(f"the LDR photo must be HxWx3, got shape {tuple(ldr.shape)}: pass the photo the "
                         "method was given")
    ldr = ldr[..., :3] / np.float32(255) if ldr.dtype == np.uint8 else ldr[..., :3].astype(np.float32)
    structure = np.ones((2 * dilation + 1,) * 2, bool) if dilation > 0 else None
    masks = {"image": np.ones(ldr.shape[:2], bool)}
    for name, raw in (("highlights", ldr.max(-1) >= highlight_threshold), ("shadows", ldr.max(-1) <= shadow_threshold)):
        masks[name] = binary_dilation(raw, structure) if structure is not None and raw.any() else raw
    return masks


def _psnr(mse: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(PU21_PEAK**2 / mse)


class _Scorer:
    """One metric on one scaled pair, reduced over any number of regions: the per-pixel work of a
    map metric is done once."""

    def __init__(self, metric: str, test: np.ndarray, reference: np.ndarray, device=None):
        self.metric, self.test, self.reference, self.device = metric, test, reference, device
        self.whole = None  # (score, map) of the whole image
        if metric == "pu21_psnr":
            d = pu21_encode(test) - pu21_encode(reference)
            self.pixels = np.mean(d * d, axis=-1)
            self.whole = _psnr(float(self.pixels.mean())), (np.sqrt(self.pixels) / PU21_PEAK).astype(np.float32)
        elif metric == "pu21_ssim":
            _, self.pixels = ssim(pu21_encode(luminance(test)), pu21_encode(luminance(reference)), PU21_PEAK)
            self.inside = np.zeros(self.pixels.shape, bool)
            self.inside[SSIM_RADIUS:-SSIM_RADIUS, SSIM_RADIUS:-SSIM_RADIUS] = True
            self.whole = float(self.pixels[self.inside].mean()), (1.0 - self.pixels).astype(np.float32)
        elif metric == "hdr_flip":
            self.whole = hdr_flip(test, reference)
            self.pixels = self.whole[1]

    def score(self, mask: np.ndarray | None) -> tuple[float, np.ndarray | None]:
        if mask is None or mask.all():
            if self.whole is None:
                self.whole = vdp(self.test, self.reference, self.metric, self.device)
            return self.whole
        if self.metric == "pu21_ssim":
            mask = mask & self.inside
        if not mask.any():
            return math.nan, self.whole[1] if self.whole else None
        if self.metric == "pu21_psnr":
            return _psnr(float(self.pixels[mask].mean())), self.whole[1]
        if self.metric in ("pu21_ssim", "hdr_flip"):
            return float(np.mean(self.pixels[mask], dtype=np.float64)), self.whole[1]
        kept = np.where(mask[..., None], self.test, self.reference)  # differences outside the region removed
        return vdp(kept, self.reference, self.metric, self.device)


def _line(metric: str, score: float, note: str, region: str = "image") -> str:
    unit = UNITS[metric]
    better = "higher" if HIGHER_IS_BETTER[metric] else "lower"
    where = "" if region == "image" else f" [{region}]"
    return f"{metric}{where} = {score:.4f}{(' ' + unit) if unit else ''} ({better} is better; {note})"


def _check(test, reference, metric):
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    for name, image in (("test", test), ("reference", reference)):  # the layout: _check_pair
        check_image_size(image, name, MIN_SIZE[metric], batched=False, why=MIN_SIZE_WHY.get(metric, ""), channels=0)


def _no_reference(test, reference, metric, piqe_factor):
    score, dmap, scale = pu21_piqe(_checked("test", test), piqe_factor)  # the reference is not looked at
    note = f"no reference: x{scale:.4g} to {PIQE_PEAK_NITS:g} cd/m^2 at the {ALIGN_PERCENTILE}th percentile"
    return MetricResult(score=score, map=dmap, line=_line(metric, score, note))


def compute_metric(
    test: np.ndarray,
    reference: np.ndarray,
    metric: str,
    scaling: str = "align",
    device=None,
    region: np.ndarray | None = None,
    piqe_factor: float | None = None,
) -> MetricResult:
    """Score ``test`` against ``reference`` (float HxWx3 linear Rec.709) with one of METRICS.

    ``scaling``: one of SCALINGS (see the module docstring). ``device``: torch device for
    cvvdp/fvvdp (CPU when None). ``region``: an HxW bool mask (from :func:`region_masks`) the score
    is restricted to; None = the whole image. ``piqe_factor``: pu21_piqe's scale for a set of
    images (:func:`piqe_scale`; this image's when None). pu21_piqe scores the test alone and
    ignores ``scaling`` and ``region``.
    """
    _check(test, reference, metric)
    if metric in NO_REFERENCE:
        return _no_reference(test, reference, metric, piqe_factor)
    t, r, note = to_display(test, reference, scaling)
    score, dmap = _Scorer(metric, t, r, device).score(None if region is None else _mask(region, t))
    return MetricResult(score=float(score), map=dmap, line=_line(metric, score, note))


def _mask(region, image) -> np.ndarray:
    region = np.asarray(region, bool)
    if region.shape != image.shape[:2]:
        raise ValueError(f"region mask {region.shape[1] if region.ndim > 1 else '?'}x{region.shape[0]} does not "
                         f"match the image's {image.shape[1]}x{image.shape[0]}: make it from the same photo")
    return region


def compute_metric_regions(
    test: np.ndarray,
    reference: np.ndarray,
    metric: str,
    ldr=None,
    scaling: str = "align",
    device=None,
    regions=REGIONS,
    piqe_factor: float | None = None,
) -> dict[str, MetricResult]:
    """:func:`compute_metric` over each of ``regions`` of the LDR photo ``ldr`` (HxWx3, see
    :func:`region_masks`), side by side: {region: MetricResult}. The scaling (and CRF fit) is done
    once, on the whole image; a no-reference metric scores ``image`` only (NaN elsewhere).
    ``ldr`` may be None when ``regions`` is just ("image",)."""
    _check(test, reference, metric)
    regions = tuple(regions)
    unknown = set(regions) - set(REGIONS)
    if unknown:
        raise ValueError(f"regions must be among {REGIONS}, got {sorted(unknown)}")
    if ldr is None and set(regions) - {"image"}:
        raise ValueError("the highlight and shadow regions come from the LDR photo the method was given: pass it "
                         "(ldr), or ask for the image region only")
    if metric in NO_REFERENCE:
        whole = _no_reference(test, reference, metric, piqe_factor)
        return {name: whole if name == "image" else
                MetricResult(math.nan, None, _line(metric, math.nan, "no reference: no region scores", name))
                for name in regions}
    t, r, note = to_display(test, reference, scaling)
    masks = region_masks(ldr) if ldr is not None else {"image": np.ones(t.shape[:2], bool)}
    scorer = _Scorer(metric, t, r, device)
    out = {}
    for name in regions:
        mask = _mask(masks[name], t)
        score, dmap = scorer.score(mask)
        where = f"; {int(mask.sum())} pixels" if name != "image" else ""
        out[name] = MetricResult(float(score), dmap, _line(metric, score, note + where, name))
    return out


def compute_clip_metric(test: np.ndarray, reference: np.ndarray, metric: str, fps: float, scaling: str = "align",
                        device=None) -> MetricResult:
    """cvvdp or fvvdp of a clip (F x H x W x 3 linear Rec.709, test and reference) as one video at
    ``fps`` frames a second. The scaling is the clip's: one exposure, one display factor and one
    CRF fit over all its frames, as if they were one image."""
    if metric not in VIDEO_METRICS:
        raise ValueError(f"a clip is scored as a video by {VIDEO_METRICS}, not {metric!r}")
    test, reference = np.asarray(test), np.asarray(reference)
    if test.ndim != 4 or test.shape != reference.shape:
        raise ValueError(f"a clip is F x H x W x 3 for test and reference alike, got {test.shape} and "
                         f"{reference.shape}: give both clips the same frames and size")
    f, h, w, c = test.shape
    t, r, note = to_display(test.reshape(f * h, w, c), reference.reshape(f * h, w, c), scaling)
    score, heat = vdp(t.reshape(f, h, w, c), r.reshape(f, h, w, c), metric, device, fps)
    return MetricResult(score, heat, _line(metric, score, f"{f} frames at {fps:g} fps as one video; {note}"))
