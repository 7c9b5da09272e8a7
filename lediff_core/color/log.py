"""Camera log encodings, the log encodings of HDR generators, and PU21: reversible 0..1 signals for
carrying scene-linear HDR through nodes that clamp to 0..1 (upscalers, inpainting, face restorers),
and back, and for the signals HDR LoRAs generate in (LTX-2.3's HDR IC-LoRA: LogC3 on Rec.709;
DiffHDR: log-gamma; X2HDR: its quadratic PU21).

One ``LogEncoding`` record per encoding: its node name, curve and inverse, linear gamut and what
it does outside its domain. The curves work on torch tensors (float64 recommended: callers in
``spaces`` compute in it) in the encoding's own gamut; ``spaces.convert_image`` applies the gamut.

Scene-linear scale: for the camera encodings the pack's linear values are taken as they are (0.18
is 18 % grey, 1.0 a 100 % reflector), as OpenColorIO's studio config and the cameras' own
transforms do; so do LTX-2's and DiffHDR's (1.0 is the white of the SDR frames they start from).
The PU21 curves encode absolute luminance: ``reference_white`` (the linear value of diffuse white)
maps to BT.2408's 203 cd/m2, as for PQ.

Domain: every camera curve here has a straight-line toe below its cut, and the line continues
below 0, so negative light (noise below black, colours outside the gamut) encodes to a finite
signal below the encoding's black and decodes back exactly; DiffHDR's curve (infinitely steep at 0)
is mirrored below 0 instead. None of them has a ceiling, so values above the signal's nominal 1
encode above 1 (an SDR node will clamp those: ``peak`` says which linear value reaches signal 1).
The PU21 curves have the same straight-line toe below their 0.005 cd/m2 floor, and stop at
10000 cd/m2, like PQ. So every finite input has a finite signal and every finite signal a light:
nothing is out of the domain. NaN stays NaN and +-Inf stays +-Inf through every curve;
``spaces.convert_image`` refuses them for these encodings (a clamping node would turn them into
ordinary codes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

# ---------------------------------------------------------------------------------------------
# ACEScct: Academy S-2016-001 (ACEScct, a quasi-logarithmic encoding of ACES data), section 4.
ACESCCT_CUT_LINEAR = 0.0078125  # X_BRK
ACESCCT_A = 10.5402377416545
ACESCCT_B = 0.0729055341958355
ACESCCT_CUT_SIGNAL = 0.155251141552511  # Y_BRK = A * X_BRK + B


def acescct_encode(x: torch.Tensor) -> torch.Tensor:
    log_part = (torch.log2(x.clamp(min=ACESCCT_CUT_LINEAR)) + 9.72) / 17.52
    return torch.where(x <= ACESCCT_CUT_LINEAR, ACESCCT_A * x + ACESCCT_B, log_part)


def acescct_decode(y: torch.Tensor) -> torch.Tensor:
    # S-2016-001 caps the decode at HALF_MAX (65504); not here, so encode -> decode is exact.
    return torch.where(y <= ACESCCT_CUT_SIGNAL, (y - ACESCCT_B) / ACESCCT_A, torch.exp2(y * 17.52 - 9.72))


# ---------------------------------------------------------------------------------------------
# ARRI LogC3 at EI 800 (ARRI, "ALEXA Log C Curve - Usage in VFX", 2017, table for SUP 3.x and
# later, exposure index 800; the "scene linear" variant, 0.18 grey -> 0.391007).
LOGC3_CUT = 0.010591
LOGC3_A = 5.555556
LOGC3_B = 0.052272
LOGC3_C = 0.247190
LOGC3_D = 0.385537
LOGC3_E = 5.367655
LOGC3_F = 0.092809
LOGC3_CUT_SIGNAL = LOGC3_E * LOGC3_CUT + LOGC3_F


def logc3_encode(x: torch.Tensor) -> torch.Tensor:
    log_part = LOGC3_C * torch.log10(LOGC3_A * x.clamp(min=LOGC3_CUT) + LOGC3_B) + LOGC3_D
    return torch.where(x > LOGC3_CUT, log_part, LOGC3_E * x + LOGC3_F)


def logc3_decode(y: torch.Tensor) -> torch.Tensor:
    log_part = (torch.pow(10.0, (y - LOGC3_D) / LOGC3_C) - LOGC3_B) / LOGC3_A
    return torch.where(y > LOGC3_CUT_SIGNAL, log_part, (y - LOGC3_F) / LOGC3_E)


# ---------------------------------------------------------------------------------------------
# ARRI LogC4 (ARRI, "ARRI LogC4 Logarithmic Color Space Specification", 2022, section 3).
LOGC4_A = (2.0**18 - 16) / 117.45
LOGC4_B = (1023 - 95) / 1023
LOGC4_C = 95 / 1023
LOGC4_S = (7 * math.log(2) * 2.0 ** (7 - 14 * LOGC4_C / LOGC4_B)) / (LOGC4_A * LOGC4_B)
LOGC4_T = (2.0 ** (14 * (-LOGC4_C / LOGC4_B) + 6) - 64) / LOGC4_A  # the cut, a small negative


def logc4_encode(x: torch.Tensor) -> torch.Tensor:
    log_part = (torch.log2(LOGC4_A * x.clamp(min=LOGC4_T) + 64) - 6) / 14 * LOGC4_B + LOGC4_C
    return torch.where(x >= LOGC4_T, log_part, (x - LOGC4_T) / LOGC4_S)


def logc4_decode(y: torch.Tensor) -> torch.Tensor:
    log_part = (torch.exp2(14 * (y - LOGC4_C) / LOGC4_B + 6) - 64) / LOGC4_A
    return torch.where(y >= 0, log_part, y * LOGC4_S + LOGC4_T)


# ---------------------------------------------------------------------------------------------
# Sony S-Log3 (Sony, "Technical Summary for S-Gamut3.Cine/S-Log3 and S-Gamut3/S-Log3", appendix:
# reflection in, 10-bit code value / 1023 out; 0.18 -> 420/1023).
SLOG3_CUT = 0.01125
SLOG3_CUT_CODE = 171.2102946929


def slog3_encode(x: torch.Tensor) -> torch.Tensor:
    log_part = (420 + torch.log10((x.clamp(min=SLOG3_CUT) + 0.01) / (0.18 + 0.01)) * 261.5) / 1023
    return torch.where(x >= SLOG3_CUT, log_part, (x * (SLOG3_CUT_CODE - 95) / SLOG3_CUT + 95) / 1023)


def slog3_decode(y: torch.Tensor) -> torch.Tensor:
    code = y * 1023
    log_part = torch.pow(10.0, (code - 420) / 261.5) * (0.18 + 0.01) - 0.01
    return torch.where(code >= SLOG3_CUT_CODE, log_part, (code - 95) * SLOG3_CUT / (SLOG3_CUT_CODE - 95))


# ---------------------------------------------------------------------------------------------
# PU21 (Mantiuk & Azimi, "PU21: A novel perceptually uniform encoding for adapting existing
# quality metrics for HDR", PCS 2021): the banding_glare variant, p1..p7 of the paper's Table 1.
# Also the encoding of lediff_core.qa's PU21 metrics.
PU21_BANDING_GLARE = (
    0.353487901,
    0.3734658629,
    8.277049286e-05,
    0.9062562627,
    0.09150303166,
    0.9099517204,
    596.3148142,
)
PU21_L_MIN = 0.005  # cd/m^2, the encoding's domain
PU21_L_MAX = 10000.0


def pu21_curve(luminance):
    """PU21 (banding_glare) of absolute luminance in cd/m^2 inside its domain [0.005, 10000]
    (numpy arrays or torch tensors; no clipping here)."""
    p1, p2, p3, p4, p5, p6, p7 = PU21_BANDING_GLARE
    yp = luminance**p4
    return p7 * (((p1 + p2 * yp) / (1.0 + p3 * yp)) ** p5 - p6)


def _pu21_inverse(v: torch.Tensor) -> torch.Tensor:
    p1, p2, p3, p4, p5, p6, p7 = PU21_BANDING_GLARE
    g = (v / p7 + p6) ** (1 / p5)
    return ((g - p1) / (p2 - p3 * g)) ** (1 / p4)


def _pu21_toe_slope() -> float:
    """dPU21/dL at the 0.005 cd/m2 floor: the slope of the straight toe below it."""
    p1, p2, p3, p4, p5, p6, p7 = PU21_BANDING_GLARE
    y = PU21_L_MIN**p4
    g = (p1 + p2 * y) / (1 + p3 * y)
    return p7 * p5 * g ** (p5 - 1) * (p2 - p1 * p3) / (1 + p3 * y) ** 2 * p4 * PU21_L_MIN ** (p4 - 1)


PU21_FLOOR = pu21_curve(PU21_L_MIN)
PU21_TOP = pu21_curve(PU21_L_MAX)  # signal 1
PU21_TOE_SLOPE = _pu21_toe_slope()


def pu21_signal_encode(nits: torch.Tensor) -> torch.Tensor:
    """Absolute light (cd/m2, <= 10000: the caller clips) -> PU21 / PU21(10000), so 10000 cd/m2 is
    signal 1; below 0.005 cd/m2 a straight line continues with the curve's slope there."""
    curve = pu21_curve(nits.clamp(min=PU21_L_MIN))
    v = torch.where(nits >= PU21_L_MIN, curve, PU21_FLOOR + PU21_TOE_SLOPE * (nits - PU21_L_MIN))
    return v / PU21_TOP


def pu21_signal_decode(signal: torch.Tensor) -> torch.Tensor:
    """Inverse of ``pu21_signal_encode`` for signals <= 1 (the caller clips)."""
    v = signal * PU21_TOP
    curve = _pu21_inverse(v.clamp(min=PU21_FLOOR))
    return torch.where(v >= PU21_FLOOR, curve, PU21_L_MIN + (v - PU21_FLOOR) / PU21_TOE_SLOPE)


# ---------------------------------------------------------------------------------------------
# X2HDR's "PU21" (X2HDR/X2HDR on GitHub, utils/util_hdr.py and train/text2hdr/library/hdr_utils.py,
# commit 5002bc1f): not the paper's rational curve above but a quadratic in log2 luminance,
# V = a x^2 + b x with x = log2(L / 0.005), a = 0.001908, b = 0.0078, per RGB channel of absolute
# light clipped to [0.005, 10000] cd/m2 (V(10000) = 0.99922); its decode clips V to 0..1 and the light
# to [0.005, 10000]. Training scales each HDR image so its maximum is 4000 cd/m2 (scale_to_L_peak).
X2HDR_A = 0.001908
X2HDR_B = 0.0078
X2HDR_TOE_SLOPE = X2HDR_B / (PU21_L_MIN * math.log(2))  # dV/dL at the 0.005 cd/m2 floor


def x2hdr_pu21_encode(nits: torch.Tensor) -> torch.Tensor:
    """Absolute light (cd/m2, <= 10000: the caller clips) -> X2HDR's quadratic PU21 signal; below
    0.005 cd/m2 (where X2HDR clips to 0) a straight line continues with the curve's slope there."""
    x = torch.log2(nits.clamp(min=PU21_L_MIN) / PU21_L_MIN)
    return torch.where(nits >= PU21_L_MIN, X2HDR_A * x * x + X2HDR_B * x, X2HDR_TOE_SLOPE * (nits - PU21_L_MIN))


def x2hdr_pu21_decode(signal: torch.Tensor) -> torch.Tensor:
    """Inverse of ``x2hdr_pu21_encode`` for signals <= 1 (the caller clips); like X2HDR's decode, the
    light is clipped to 10000 cd/m2 (signals 0.99922..1 would reach 10061)."""
    x = (torch.sqrt(X2HDR_B * X2HDR_B + 4 * X2HDR_A * signal.clamp(min=0.0)) - X2HDR_B) / (2 * X2HDR_A)
    curve = (PU21_L_MIN * torch.exp2(x)).clamp(max=PU21_L_MAX)
    return torch.where(signal >= 0, curve, PU21_L_MIN + signal / X2HDR_TOE_SLOPE)


# ---------------------------------------------------------------------------------------------
# DiffHDR's log-gamma (Yu et al., "DiffHDR: Re-Exposing LDR Videos with Video Diffusion Models",
# ECCV 2026, arXiv:2604.06161; Eyeline-Labs/DiffHDR on GitHub, utils/color_utils.py Lin_to_Log /
# Log_to_Lin, commit 989e0c58, and the ComfyUI port claussteinmassl/ComfyUI-DiffHDR, diffhdr/color.py):
# y = (ln(g x + 1) / ln(g M + 1))^(1/g), g = 2.2, M = 65536, on linear Rec.709 where the LDR
# frames' sRGB white is 1.0; DiffHDR clips x to M (signal 1) and takes x >= 0.
DIFFHDR_GAMMA = 2.2
DIFFHDR_MAX = 65536.0
DIFFHDR_NORM = math.log(DIFFHDR_GAMMA * DIFFHDR_MAX + 1.0)


def diffhdr_encode(x: torch.Tensor) -> torch.Tensor:
    # log1p keeps the digits near black; the curve is mirrored below 0 (its slope is infinite at 0,
    # so no straight toe fits), which keeps negative light invertible
    y = (torch.log1p(DIFFHDR_GAMMA * x.abs()) / DIFFHDR_NORM) ** (1 / DIFFHDR_GAMMA)
    return torch.copysign(y, x)


def diffhdr_decode(y: torch.Tensor) -> torch.Tensor:
    x = torch.expm1(y.abs() ** DIFFHDR_GAMMA * DIFFHDR_NORM) / DIFFHDR_GAMMA
    return torch.copysign(x, y)


# ---------------------------------------------------------------------------------------------
# Gamuts: published primaries, D65 white (x, y as an EXR chromaticities attribute stores them).
D65 = (0.3127, 0.3290)
# ARRI, "ALEXA Log C Curve - Usage in VFX", ARRI Wide Gamut (3)
AWG3_CHROMATICITIES = (0.6840, 0.3130, 0.2210, 0.8480, 0.0861, -0.1020, *D65)
# ARRI, "ARRI Wide Gamut 4 Specification", 2022
AWG4_CHROMATICITIES = (0.7347, 0.2653, 0.1424, 0.8576, 0.0991, -0.0308, *D65)
# Sony, "Technical Summary for S-Gamut3.Cine/S-Log3 and S-Gamut3/S-Log3"
SGAMUT3_CINE_CHROMATICITIES = (0.766, 0.275, 0.225, 0.800, 0.089, -0.087, *D65)


@dataclass(frozen=True)
class LogEncoding:
    """One log encoding: ``gamut`` is an OCIO linear space of ``ocio.LINEAR_SPACES`` (converted
    with OCIO's matrices) or D65 chromaticities (converted through XYZ with
    ``chromaticities.rgb_to_xyz_matrix``: same white as the working space, so no adaptation)."""

    name: str
    encode: Callable[[torch.Tensor], torch.Tensor]
    decode: Callable[[torch.Tensor], torch.Tensor]
    gamut: str | tuple
    gamut_name: str
    domain: str
    source: str
    absolute: bool = False  # PU21: light in cd/m2 (reference_white -> 203), signal 1 at the peak

    @property
    def peak(self) -> float:
        """The linear value (in the encoding's gamut; for PU21 with reference white 1) that
        encodes to signal 1: what survives a node that clamps to 0..1."""
        one = self.decode(torch.ones((), dtype=torch.float64))
        return float(one) / (203.0 if self.absolute else 1.0)


_TOE = "straight-line toe below {cut}, continued below 0 (negative light encodes below black, invertibly)"

LOG_ENCODINGS = {
    e.name: e
    for e in (
        LogEncoding("ACEScct (AP1)", acescct_encode, acescct_decode, "ACEScg", "ACES AP1 (ACES white)",
                    _TOE.format(cut="linear 0.0078125"), "Academy S-2016-001"),
        LogEncoding("ARRI LogC3 (EI 800, AWG3)", logc3_encode, logc3_decode, AWG3_CHROMATICITIES,
                    "ARRI Wide Gamut 3", _TOE.format(cut="linear 0.010591"),
                    'ARRI, "ALEXA Log C Curve - Usage in VFX" (SUP 3.x, EI 800)'),
        LogEncoding("ARRI LogC4 (AWG4)", logc4_encode, logc4_decode, AWG4_CHROMATICITIES, "ARRI Wide Gamut 4",
                    _TOE.format(cut=f"linear {LOGC4_T:.6f}"), 'ARRI, "LogC4 Logarithmic Color Space Specification"'),
        LogEncoding("Sony S-Log3 (S-Gamut3.Cine)", slog3_encode, slog3_decode, SGAMUT3_CINE_CHROMATICITIES,
                    "S-Gamut3.Cine", _TOE.format(cut="linear 0.01125"),
                    'Sony, "Technical Summary for S-Gamut3.Cine/S-Log3 and S-Gamut3/S-Log3"'),
        LogEncoding("PU21 (banding_glare, Rec.709)", pu21_signal_encode, pu21_signal_decode, "Linear Rec.709 (sRGB)",
                    "Rec.709/sRGB (D65), the working space",
                    "straight-line toe below 0.005 cd/m2; clipped at 10000 cd/m2 (signal 1)",
                    "Mantiuk & Azimi, PCS 2021 (banding_glare), per RGB channel / PU21(10000)", absolute=True),
        LogEncoding("X2HDR PU21 (Rec.709)", x2hdr_pu21_encode, x2hdr_pu21_decode, "Linear Rec.709 (sRGB)",
                    "Rec.709/sRGB (D65), the working space",
                    "straight-line toe below 0.005 cd/m2 (X2HDR clips there); clipped at 10000 cd/m2 (signal 0.99922)",
                    "X2HDR/X2HDR utils/util_hdr.py (commit 5002bc1f): a x^2 + b x of log2(L/0.005), per RGB channel",
                    absolute=True),
        # LTX-2's HDR IC-LoRA (Lightricks/LTX-2, packages/ltx-core/src/ltx_core/hdr.py, commit 400fd310;
        # ComfyUI-LTXVideo hdr.py, LTXVHDRDecodePostprocess): ARRI's LogC3 EI 800 constants on linear
        # Rec.709 primaries (no ARRI Wide Gamut), input clipped to >= 0 and the signal to 0..1, the
        # signal mapped to the VAE's -1..1 (ComfyUI's VAE Decode hands it back as 0..1).
        LogEncoding("LTX-2.3 HDR LoRA (LogC3 EI 800, Rec.709)", logc3_encode, logc3_decode, "Linear Rec.709 (sRGB)",
                    "Rec.709/sRGB (D65), the working space", _TOE.format(cut="linear 0.010591"),
                    "Lightricks LTX-2 ltx_core/hdr.py (commit 400fd310): ARRI LogC3 EI 800 on Rec.709"),
        LogEncoding("DiffHDR log-gamma (Rec.709)", diffhdr_encode, diffhdr_decode, "Linear Rec.709 (sRGB)",
                    "Rec.709/sRGB (D65), the working space",
                    "mirrored below 0 (negative light encodes below black, invertibly); no ceiling (DiffHDR "
                    "clips at 65536, signal 1)",
                    "Yu et al., DiffHDR (ECCV 2026); Eyeline-Labs/DiffHDR utils/color_utils.py (commit 989e0c58)"),
    )
}
