"""Blend the LDR input back into a LEDiff HDR where the LDR is not clipped, and anchor exposure.

LEDiff's supplementary material describes a post-process for inverse tone mapping: the
diffusion model is only needed where the LDR input is over-exposed, so elsewhere the (gamma
expanded, re-exposed) LDR is used directly::

    m   = clip((max_c(LDR) - 1 + t) / t, 0, 1)        soft over-exposure mask, LDR sRGB-encoded
    g,e = argmin sum (LDR^g * 2^e - HDR)^2            over the unclipped samples, g in [g_lo, g_hi]
    out = (1 - m) * LDR^g * 2^e + m * HDR

What the released code does (a ``optimize_gamma_exp`` helper in LEDiff's
``examples/text_to_image/test_hdr_itm.py``; read in the public forks amirg-ltx/LEDiff and
TheMann77/LEDiff, whose copies of it are identical; it is defined there but never called):

* the least squares runs on **linear** values (residual ``LDR**g * 2**e - HDR``), not on logs;
* the samples are every channel value of the pixels whose mask is exactly 0 (``1 - m == 1``),
  one residual per channel, with a single (g, e) shared by the three channels;
* the fit is scipy's bounded ``least_squares`` (trust-region reflective) started at (2.4, 0)
  with g in [2.4, 2.6] and e unbounded; the mask threshold there is 0.05.

What this module does (pure torch, no scipy):

* The same objective, on the same samples: linear residuals over the channel values of pixels
  with m == 0. In addition, samples whose HDR value is <= 0 or not finite, and LDR values <= 0,
  are left out. LEDiff's HDR is exp() of its decoder, so it is > 0 and the first exclusion only
  matters for other HDR sources; an LDR value of 0 gives a residual that does not depend on
  (g, e), so dropping it does not move the optimum, and dropping it lets a black LDR be
  recognised as "nothing to fit".
* For a fixed g the best exposure has a closed form, 2^e = sum(a h) / sum(a^2) with a = LDR^g,
  so the problem is a 1-D bounded minimisation over g of the profile error. It is solved by a
  13-point grid over [g_lo, g_hi] followed by Brent's method in the bracket around the best
  grid point; the range ends are candidates, so a true gamma outside the range lands
  exactly on the bound. Unlike a local solver started at ``gamma_init`` this finds the best g in
  the range even when the profile error has more than one dip; on ordinary images (one dip)
  both give the same answer. ``gamma_init`` is kept in the API (and the presets) for parity
  with the released code; here it is the fallback g.
* If all valid LDR samples have the same value, g is not identifiable (every g fits equally
  well once e is re-solved), so g = ``gamma_init`` (clipped to the range) and e is its best fit.
* If an image has no valid sample at all (all pixels clipped, a black LDR, or no positive HDR
  where the LDR is unclipped) there is nothing to calibrate the LDR with: that image's HDR is
  returned unchanged, the returned mask is 1 everywhere (it is the weight actually applied to
  the HDR), and g = ``gamma_init`` (clipped to the range), e = 0 are placeholders.

Nothing here clamps the HDR or the output; only the mask is in 0..1. The LDR is clamped to 0..1
inside the power term only: the power of a negative value is NaN for a fractional g, and every
pixel with a channel >= 1 has m = 1, so its LDR term gets weight 0 anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..color import luminance

# Each evaluation of the profile error is a pass over every distinct LDR sample (millions for a
# continuous-valued LDR), so the grid is kept coarse and Brent's method refines it.
_GRID_POINTS = 13
_BRENT_RTOL = 1e-9
_BRENT_MAX_STEPS = 100
_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class BlendPreset:
    """Mask threshold t and the bounds/start of the gamma fit."""

    threshold: float
    gamma_range: tuple[float, float]
    gamma_init: float

    def __post_init__(self) -> None:
        _check_threshold(self.threshold)
        _check_gamma(self.gamma_range, self.gamma_init)


def _check_threshold(threshold: float) -> None:
    if not (0.0 < float(threshold) <= 1.0):
        raise ValueError(f"mask threshold must be in (0, 1], got {threshold}")


def _check_gamma(gamma_range: tuple[float, float], gamma_init: float) -> None:
    lo, hi = (float(v) for v in gamma_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo <= hi):
        raise ValueError(f"gamma_range must be (low, high) with 0 < low <= high, got {gamma_range}")
    if not math.isfinite(float(gamma_init)):
        raise ValueError(f"gamma_init must be finite, got {gamma_init}")


PRESETS = {
    # What the released inference script's (unused) helper hard-codes.
    "released": BlendPreset(0.05, (2.4, 2.6), 2.4),
    # What the supplementary material states.
    "supplementary": BlendPreset(0.10, (1.8, 2.4), 2.0),
}


# Pixels per band of rows that the fit and the blend convert to float64 at once: a 24-megapixel
# photo in one piece would need gigabytes of float64 copies, a band about 100 MB.
BAND_PIXELS = 1 << 20


def _bands(height: int, width: int) -> list[slice]:
    rows = max(1, BAND_PIXELS // max(width, 1))
    return [slice(y, min(y + rows, height)) for y in range(0, height, rows)]


def _work_dtype(device: torch.device) -> torch.dtype:
    # Sums over millions of samples and near-zero residuals want float64; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def _result_dtype(t: torch.Tensor) -> torch.dtype:
    return t.dtype if t.is_floating_point() else torch.float32


def _check_image(name: str, x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[-1] < 3:
        raise ValueError(f"{name} must be an IMAGE [B, H, W, C] with C >= 3, got shape {tuple(x.shape)}")


def _check_pair(ldr: torch.Tensor, hdr: torch.Tensor) -> None:
    _check_image("LDR", ldr)
    _check_image("HDR", hdr)
    if ldr.shape[:3] != hdr.shape[:3]:
        raise ValueError(
            f"LDR shape {tuple(ldr.shape)} and HDR shape {tuple(hdr.shape)} differ in batch, height or "
            "width; resize the LDR to the HDR's size (e.g. an upscale/resize node on the LDR) and give "
            "both the same batch size"
        )


def overexposure_mask(ldr: torch.Tensor, threshold: float) -> torch.Tensor:
    """Soft over-exposure mask m [B, H, W, 1] of an sRGB-encoded LDR [B, H, W, C] in 0..1.

    m is 0 where every channel is <= 1 - t, 1 where any channel reaches 1, linear in between.
    """
    _check_image("LDR", ldr)
    _check_threshold(threshold)
    peak = ldr[..., :3].amax(dim=-1, keepdim=True)
    # (peak - (1 - t)) rather than (peak - 1 + t): a value stored exactly at 1 - t then gives 0.
    return ((peak - (1.0 - float(threshold))) / float(threshold)).clamp(0.0, 1.0)


class _Profile:
    """Profile error of one image's fit as a function of g, with e solved in closed form.

    a = LDR^g depends only on the LDR value, so the samples are grouped by distinct LDR value:
    with n_k samples of value l_k whose HDR mean is hbar_k,
        sum_i (a_i s - h_i)^2 = sum_k n_k (l_k^g s - hbar_k)^2 + (within-group spread of h),
    and the last term depends on neither g nor s. The argmin is unchanged, and an 8-bit LDR has
    at most 256 groups however large the image.
    """

    def __init__(self, groups: tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
        values, self.count, hdr_sum = groups
        self.hbar = hdr_sum / self.count
        self.log_l = values.log()
        self.identifiable = values.numel() > 1
        # A continuous-valued LDR has (almost) no repeated values; skip multiplying by ones.
        self.weighted = bool((self.count > 1).any())

    @staticmethod
    def groups(ldr_values: torch.Tensor, hdr_values: torch.Tensor, counts: torch.Tensor | None = None):
        """(distinct LDR values, their sample counts, the sums of their HDR values); ``counts``
        weights the samples (merging the groups of several images)."""
        values, inverse = torch.unique(ldr_values, return_inverse=True)
        weights = torch.ones_like(hdr_values) if counts is None else counts
        count = torch.zeros_like(values).index_add_(0, inverse, weights.to(values.dtype))
        return values, count, torch.zeros_like(values).index_add_(0, inverse, hdr_values)

    @classmethod
    def merged(cls, groups: list) -> _Profile:
        """One profile for the samples of several images (their groups merged)."""
        values, count, hdr_sum = (torch.cat(parts) for parts in zip(*groups, strict=True))
        return cls(cls.groups(values, hdr_sum, count))

    def scale(self, g: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(s, a): the best 2^e at gamma g and the powered group values a = l^g (a fresh tensor)."""
        a = self.log_l.mul(g).exp_()
        na = a * self.count if self.weighted else a
        saa = torch.dot(na, a).clamp_min(torch.finfo(a.dtype).tiny)
        return torch.dot(na, self.hbar) / saa, a

    def error(self, g: float) -> float:
        # Summed squares of the residuals themselves, not sum(h^2) - sum(ah)^2 / sum(a^2): the
        # latter cancels catastrophically near a good fit, which is exactly where g is resolved.
        s, a = self.scale(g)
        r = a.mul_(s).sub_(self.hbar)
        return float(torch.dot(r * self.count, r) if self.weighted else torch.dot(r, r))


def _brent(f, left: float, right: float, x: float, fx: float) -> tuple[float, float]:
    """Brent's minimiser (parabolic steps, golden-section fallback) in [left, right], from x."""
    golden = 1.0 - _INV_PHI
    w = v = x
    fw = fv = fx
    step = prev_step = 0.0
    for _ in range(_BRENT_MAX_STEPS):
        mid = 0.5 * (left + right)
        tol1 = _BRENT_RTOL * abs(x) + 1e-12
        if abs(x - mid) <= 2.0 * tol1 - 0.5 * (right - left):
            break
        parabolic = False
        if abs(prev_step) > tol1:
            r = (x - w) * (fx - fv)
            q = (x - v) * (fx - fw)
            p = (x - v) * q - (x - w) * r
            q = 2.0 * (q - r)
            p = -p if q > 0 else p
            q = abs(q)
            # Accept the parabola's vertex only if it lies inside the bracket and the step is
            # less than half the one before last, which guarantees progress.
            if abs(p) < abs(0.5 * q * prev_step) and q * (left - x) < p < q * (right - x):
                prev_step, step = step, p / q
                parabolic = True
                if (x + step) - left < 2.0 * tol1 or right - (x + step) < 2.0 * tol1:
                    step = tol1 if x < mid else -tol1
        if not parabolic:
            prev_step = (left - x) if x >= mid else (right - x)
            step = golden * prev_step
        u = x + (step if abs(step) >= tol1 else math.copysign(tol1, step))
        fu = f(u)
        if fu <= fx:
            if u >= x:
                left = x
            else:
                right = x
            v, fv, w, fw, x, fx = w, fw, x, fx, u, fu
        else:
            if u < x:
                left = u
            else:
                right = u
            if fu <= fw or w == x:
                v, fv, w, fw = w, fw, u, fu
            elif fu <= fv or v in (x, w):
                v, fv = u, fu
    return x, fx


def _minimise(f, lo: float, hi: float) -> float:
    """Minimise f over [lo, hi]: the best point of a grid, refined by Brent's method around it.

    The grid makes this global for anything that varies slower than the grid spacing, where a
    local solver started at one end could stop in the wrong dip.
    """
    if lo == hi:
        return lo
    grid = [lo + (hi - lo) * i / (_GRID_POINTS - 1) for i in range(_GRID_POINTS)]
    errs = [f(x) for x in grid]
    k = min(range(_GRID_POINTS), key=errs.__getitem__)
    left, right = grid[max(k - 1, 0)], grid[min(k + 1, _GRID_POINTS - 1)]
    x, fx = _brent(f, left, right, grid[k], errs[k])
    # Brent only returns a point that beat the grid's; at a range end (true gamma outside the
    # range) the bound itself is then kept exactly rather than a hair inside it.
    return x if fx < errs[k] else grid[k]


def _fit(
    ldr: torch.Tensor,
    hdr: torch.Tensor,
    mask: torch.Tensor,
    gamma_range: tuple[float, float],
    gamma_init: float,
    shared: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(g [B], e [B], fitted [B] bool) in the working dtype; see the module docstring. ``shared``:
    one fit for all images together (the frames of a shot), repeated for each.

    Images are converted to the working dtype one at a time, so a long batch of frames needs one
    frame's worth of float64, not the whole clip's."""
    _check_gamma(gamma_range, gamma_init)
    dtype = _work_dtype(hdr.device)
    lo, hi = float(gamma_range[0]), float(gamma_range[1])
    g_fallback = min(max(float(gamma_init), lo), hi)
    nothing = (g_fallback, 0.0, False)

    def band_groups(b: int, rows: slice):
        l3 = ldr[b, rows, :, :3].to(device=hdr.device, dtype=dtype)
        h3 = hdr[b, rows, :, :3].to(dtype)
        unclipped = (mask[b, rows].to(hdr.device) == 0).expand_as(h3)
        valid = unclipped & (l3 > 0) & torch.isfinite(l3) & (h3 > 0) & torch.isfinite(h3)
        return _Profile.groups(l3[valid], h3[valid]) if valid.any() else None

    def groups(b: int):
        # a big photo is grouped in bands of rows (bounded float64 memory), the bands' groups merged
        found = [gr for rows in _bands(hdr.shape[1], hdr.shape[2]) if (gr := band_groups(b, rows)) is not None]
        if len(found) <= 1:
            return found[0] if found else None
        values, count, hdr_sum = (torch.cat(parts) for parts in zip(*found, strict=True))
        return _Profile.groups(values, hdr_sum, count)

    def solve(prof: _Profile) -> tuple[float, float, bool]:
        # A single distinct LDR value cannot tell gammas apart: keep gamma_init, fit e only.
        g = _minimise(prof.error, lo, hi) if prof.identifiable else g_fallback
        s = float(prof.scale(g)[0])
        if s > 0 and math.isfinite(math.log2(s)):
            return g, math.log2(s), True
        return nothing

    if shared:
        found = [gr for gr in map(groups, range(hdr.shape[0])) if gr is not None]
        results = [solve(_Profile.merged(found)) if found else nothing] * hdr.shape[0]
    else:
        results = [solve(_Profile(gr)) if (gr := groups(b)) is not None else nothing for b in range(hdr.shape[0])]
    gs, es, ok = zip(*results, strict=True)
    opts = {"dtype": dtype, "device": hdr.device}
    return torch.tensor(gs, **opts), torch.tensor(es, **opts), torch.tensor(ok, device=hdr.device)


def fit_ldr_to_hdr(
    ldr: torch.Tensor,
    hdr: torch.Tensor,
    mask: torch.Tensor,
    gamma_range: tuple[float, float],
    gamma_init: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (g [B], e [B]) minimising sum (LDR^g * 2^e - HDR)^2 over samples where mask == 0.

    ``mask`` is the over-exposure mask m [B, H, W, 1]. An image with nothing to fit gets
    g = ``gamma_init`` (clipped to ``gamma_range``) and e = 0.
    """
    _check_pair(ldr, hdr)
    g, e, _ = _fit(ldr, hdr, mask, gamma_range, gamma_init)
    dtype = _result_dtype(hdr)
    return g.to(dtype), e.to(dtype)


def blend_with_ldr(
    ldr: torch.Tensor, hdr: torch.Tensor, preset: BlendPreset, shared: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out [B, H, W, 3], mask [B, H, W, 1], g [B], e [B]) of LEDiff's LDR blend.

    ``ldr`` is the sRGB-encoded input in 0..1 and ``hdr`` the linear HDR at any scale, with the
    same batch, height and width. out = (1 - m) * LDR^g * 2^e + m * HDR, so out is at the HDR's
    scale. The returned mask is the weight given to the HDR: the over-exposure mask, or all ones
    for an image that had nothing to fit (whose HDR then passes through unchanged).

    ``shared``: the batch is the frames of one shot, fitted together with one (g, e), so the
    brightness of the LDR part cannot pump from frame to frame. Frames are blended one at a time.
    """
    _check_pair(ldr, hdr)
    ldr = ldr.to(hdr.device)
    m = overexposure_mask(ldr, preset.threshold)
    g, e, fitted = _fit(ldr, hdr, m, preset.gamma_range, preset.gamma_init, shared)
    m = torch.where(fitted.view(-1, 1, 1, 1), m, torch.ones_like(m))

    dtype, res = g.dtype, _result_dtype(hdr)
    out = torch.empty(hdr.shape[:3] + (3,), dtype=res, device=hdr.device)
    for b in range(hdr.shape[0]):
        for rows in _bands(hdr.shape[1], hdr.shape[2]):  # pointwise: bands bound the float64 memory
            h3 = hdr[b, rows, :, :3].to(dtype)
            base = ldr[b, rows, :, :3].to(dtype).clamp(0.0, 1.0)
            ldr_term = base ** g[b] * torch.exp2(e[b])
            mb = m[b, rows]
            mixed = (1.0 - mb.to(dtype)) * ldr_term + mb.to(dtype) * h3
            # At the mask's ends take one side outright: bit-exact, and 0 * inf (an overflowing LDR
            # term, or a non-finite HDR value where the LDR is trusted) cannot turn into NaN.
            out[b, rows] = torch.where(mb == 1, h3, torch.where(mb == 0, ldr_term, mixed))
    return out, m, g.to(res), e.to(res)


def _percentile(sorted_values: torch.Tensor, percentile: float) -> torch.Tensor:
    # Linear interpolation between order statistics (numpy's default "linear" method).
    pos = percentile / 100.0 * (sorted_values.numel() - 1)
    i = int(math.floor(pos))
    j = min(i + 1, sorted_values.numel() - 1)
    frac = pos - i
    return sorted_values[i] + (sorted_values[j] - sorted_values[i]) * frac


def anchor_exposure(hdr: torch.Tensor, percentile: float, value: float,
                    shared: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each image so the given percentile (0-100) of its Rec.709 luminance equals ``value``.

    Returns (scaled [B, H, W, 3], scale [B]). Non-finite luminances are ignored; an image whose
    percentile luminance is not positive (e.g. all black) keeps scale 1. Nothing is clamped.
    ``shared``: the batch is the frames of one shot and gets one scale, which puts the median over
    the frames of their percentile luminances at ``value`` (frames without a positive one do not
    vote), so the exposure cannot pump from frame to frame.
    """
    _check_image("HDR", hdr)
    if not (0.0 <= float(percentile) <= 100.0):
        raise ValueError(f"percentile must be in 0..100, got {percentile}")
    if not (math.isfinite(float(value)) and float(value) > 0.0):
        raise ValueError(f"anchor value must be a positive finite number, got {value}")
    dtype = _work_dtype(hdr.device)

    def level(b: int) -> torch.Tensor | None:
        row = luminance(hdr[b, ..., :3].to(dtype))[..., 0].flatten()
        row = row[torch.isfinite(row)]
        if row.numel() == 0:
            return None
        q = _percentile(torch.sort(row).values, float(percentile))
        return q if q > 0 and torch.isfinite(float(value) / q) else None

    one = torch.ones((), dtype=dtype, device=hdr.device)
    levels = [level(b) for b in range(hdr.shape[0])]
    if shared:
        voting = [q for q in levels if q is not None]
        common = float(value) / torch.stack(voting).median() if voting else one
        scale = common.expand(hdr.shape[0]).clone()
    else:
        scale = torch.stack([one if q is None else float(value) / q for q in levels])
    res = _result_dtype(hdr)
    out = torch.empty(hdr.shape[:3] + (3,), dtype=res, device=hdr.device)
    for b in range(hdr.shape[0]):
        out[b] = hdr[b, ..., :3].to(dtype) * scale[b]
    return out, scale.to(res)
