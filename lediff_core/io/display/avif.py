"""AVIF, 10-bit BT.2020 with the BT.2100 PQ or HLG transfer, through libavif in ``imagecodecs``.

Tagging (CICP, ITU-T H.273): primaries 9 (BT.2020), transfer 16 (PQ) or 18 (HLG), matrix 9
(BT.2020 non-constant luminance), full range, 4:4:4. PQ files also carry the content light level
(``clli``: MaxCLL/MaxFALL of the clipped image) and the mastering display (``mdcv``: BT.2020
primaries, D65, ``mastering_peak``), which ``imagecodecs`` cannot write, so they are added to the
finished file (``metadata.avif_with_metadata``). HLG is relative to the display's own peak and
carries neither (as broadcast HLG does not).

Reference white (BT.2408): the input's ``reference_white`` lands on 203 cd/m2 for PQ and on the
HLG signal 0.75 (scene light about 0.265) for HLG.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ...color.ocio import WORKING_SPACE, convert_linear
from ...color.quantize import curve_codes
from ...color.transfer import (
    HLG_REFERENCE_WHITE_SCENE,
    PQ_PEAK_NITS,
    PQ_REFERENCE_WHITE_NITS,
    hlg_decode,
    pq_decode,
)
from .metadata import avif_with_metadata, clli_box, mdcv_box
from .registry import DisplayFormat, Encoded, FormatError, Settings, check_image, encoder_threads, register

REC2020 = "Linear Rec.2020"
# H.273 code points
PRIMARIES_BT2020, TRANSFER_PQ, TRANSFER_HLG, MATRIX_BT2020_NCL = 9, 16, 18, 9
BITS = 10
# the mastering display announced in PQ files: ITU-R BT.2020 primaries and D65 white (chromaticity
# x, y), black at 0.0001 cd/m2 (the field's smallest non-zero value, an OLED mastering monitor's)
BT2020_PRIMARIES = ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046))
D65_WHITE = (0.3127, 0.3290)
MASTERING_MIN_NITS = 0.0001
# libavif's encoder speed (0 slowest .. 10 fastest). imagecodecs' default is the slowest end:
# measured here 132 s for a 512x256 image, against 2.4 s at 6 (avifenc's default) for a file
# within 2 % of the size.
SPEED = 6


def avif_options(transfer: int, quality: int) -> dict:
    """The ``imagecodecs.avif_encode`` keywords of our files (shared with the benchmark)."""
    return dict(level=quality, speed=SPEED, bitspersample=BITS, primaries=PRIMARIES_BT2020,
                transfer=transfer, matrix=MATRIX_BT2020_NCL, numthreads=encoder_threads())


@dataclass
class Signal:
    codes: np.ndarray  # [H, W, 3] uint16 BT.2100 code values
    over: int  # pixels above the peak
    peak: str  # the peak, in words
    properties: tuple[bytes, ...]  # AVIF item properties: clli + mdcv for PQ, none for HLG


@dataclass(frozen=True)
class SignalRange:
    """How BT.2020 linear light (reference white = 1.0) becomes a BT.2100 signal: ``scale`` takes
    it to the curve's units (cd/m2 for PQ, scene light E for HLG), ``limit`` is the clip in those
    units (the mastering peak, HLG's nominal peak E = 1), ``decode`` the curve's inverse."""

    scale: float
    limit: float
    decode: Callable[[torch.Tensor], torch.Tensor]
    peak: str  # the peak, in words


def signal_range(transfer: int, mastering_peak: float) -> SignalRange:
    """The mapping of the PQ (``TRANSFER_PQ``) or HLG (``TRANSFER_HLG``) files; shared with the HDR
    video masters (``lediff_core.io.video``)."""
    if transfer == TRANSFER_PQ:
        if not (0 < mastering_peak <= PQ_PEAK_NITS):
            raise FormatError(f"mastering_peak must be in (0, {PQ_PEAK_NITS:g}] cd/m2, got {mastering_peak}")
        return SignalRange(PQ_REFERENCE_WHITE_NITS, mastering_peak, pq_decode,
                           f"{mastering_peak:g} cd/m2 ({mastering_peak / PQ_REFERENCE_WHITE_NITS:.2f}x "
                           "reference white)")
    return SignalRange(HLG_REFERENCE_WHITE_SCENE, 1.0, hlg_decode,
                       f"HLG peak ({1 / HLG_REFERENCE_WHITE_SCENE:.2f}x reference white)")


def to_rec2020(rgb: np.ndarray, settings: Settings) -> torch.Tensor:
    """Working-space linear RGB [H, W, 3] -> BT.2020 linear light with reference white at 1.0
    (after ``check_image``'s checks). The 3x3 matrix goes through numpy: torch's matmul of an
    [H, W, 3] tensor took 23 ms for a 128x72 frame on this 2-core host under load (thread
    hand-offs), numpy's 0.04 ms."""
    t = check_image(rgb, settings).numpy()
    return torch.from_numpy(convert_linear(t, WORKING_SPACE, REC2020))


def encode_signal(rgb: np.ndarray, settings: Settings, transfer: int) -> Signal:
    """Working-space linear RGB -> 10-bit BT.2100 code values (the exactly rounded curve, through
    ``curve_codes``' tables), the pixels above the peak and, for PQ, the light-level boxes."""
    t = to_rec2020(rgb, settings)
    m = signal_range(transfer, settings.mastering_peak)
    brightest = t.amax(dim=-1)  # each pixel's largest component
    over = int((brightest > m.limit / m.scale).sum())
    properties = _pq_light_levels(brightest, settings.mastering_peak) if transfer == TRANSFER_PQ else ()
    return Signal(curve_codes(t.numpy(), m.decode, BITS, m.scale, m.limit), over, m.peak, properties)


def light_levels(brightest: torch.Tensor, peak_nits: float) -> tuple[int, int]:
    """(MaxCLL, MaxFALL) of a PQ image (CTA-861.3: the brightest pixel's largest component, and the
    average over pixels of the largest component), in cd/m2 after clipping to the peak, rounded up
    to whole cd/m2 as HDR10 states them. ``brightest``: each pixel's largest BT.2020 component,
    reference white = 1.0. Shared with the PQ PNG."""
    # clipped in cd/m2, in float64: a clip at peak / 203 would round the peak itself up a step
    nits = (brightest.double() * PQ_REFERENCE_WHITE_NITS).clamp(0, peak_nits)
    return math.ceil(float(nits.max())), math.ceil(float(nits.mean()))


def _pq_light_levels(brightest: torch.Tensor, peak_nits: float) -> tuple[bytes, bytes]:
    """``clli`` (``light_levels``) and ``mdcv`` (the mastering display: BT.2020 primaries - the
    file's container - D65, ``mastering_peak`` down to MASTERING_MIN_NITS)."""
    return (clli_box(*light_levels(brightest, peak_nits)),
            mdcv_box(BT2020_PRIMARIES, D65_WHITE, peak_nits, MASTERING_MIN_NITS))


def encode(rgb: np.ndarray, settings: Settings, exif: bytes | None = None, *, transfer: int) -> Encoded:
    import imagecodecs

    signal = encode_signal(rgb, settings, transfer)
    data = bytes(imagecodecs.avif_encode(signal.codes, **avif_options(transfer, settings.quality)))
    if exif or signal.properties:
        data = avif_with_metadata(data, exif or None, signal.properties)
    return Encoded(data, signal.over, signal.peak)


register(DisplayFormat("avif_pq", ".avif", partial(encode, transfer=TRANSFER_PQ),
                       "10-bit AVIF, BT.2020 primaries, PQ (absolute, 203 cd/m2 reference white)",
                       check_options=lambda settings: signal_range(TRANSFER_PQ, settings.mastering_peak)))
register(DisplayFormat("avif_hlg", ".avif", partial(encode, transfer=TRANSFER_HLG),
                       "10-bit AVIF, BT.2020 primaries, HLG (relative, 75 % reference white)"))
