"""AVIF, 10-bit BT.2020 with the BT.2100 PQ or HLG transfer, through libavif in ``imagecodecs``.

Tagging (CICP, ITU-T H.273): primaries 9 (BT.2020), transfer 16 (PQ) or 18 (HLG), matrix 9
(BT.2020 non-constant luminance), full range, 4:4:4. ``imagecodecs`` exposes no content light
level (CLLI) or mastering display (MDCV) properties, so none are written; for PQ the signal is
clipped at the chosen mastering peak, which is what a CLLI/MDCV pair would have announced.

Reference white (BT.2408): the input's ``reference_white`` lands on 203 cd/m2 for PQ and on the
HLG signal 0.75 (scene light about 0.265) for HLG.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ..color.ocio import WORKING_SPACE, convert_linear
from ..color.quantize import curve_codes
from ..color.transfer import (
    HLG_REFERENCE_WHITE_SCENE,
    PQ_PEAK_NITS,
    PQ_REFERENCE_WHITE_NITS,
    hlg_decode,
    pq_decode,
)
from . import DisplayFormat, Encoded, FormatError, Settings, check_image, count_above, encoder_threads, register
from .metadata import avif_with_exif

REC2020 = "Linear Rec.2020"
# H.273 code points
PRIMARIES_BT2020, TRANSFER_PQ, TRANSFER_HLG, MATRIX_BT2020_NCL = 9, 16, 18, 9
BITS = 10
# libavif's encoder speed (0 slowest .. 10 fastest). imagecodecs' default is the slowest end:
# measured here 132 s for a 512x256 image, against 2.4 s at 6 (avifenc's default) for a file
# within 2 % of the size.
SPEED = 6


def avif_options(transfer: int, quality: int) -> dict:
    """The ``imagecodecs.avif_encode`` keywords of our files (shared with the benchmark)."""
    return dict(level=quality, speed=SPEED, bitspersample=BITS, primaries=PRIMARIES_BT2020,
                transfer=transfer, matrix=MATRIX_BT2020_NCL, numthreads=encoder_threads())


def encode_signal(rgb: np.ndarray, settings: Settings, transfer: int) -> tuple[np.ndarray, int, str]:
    """Working-space linear RGB -> 10-bit BT.2100 code values [H, W, 3] uint16 (the exactly
    rounded curve, through ``curve_codes``' tables), the number of pixels above the peak, and the
    peak in words."""
    t = convert_linear(check_image(rgb, settings), WORKING_SPACE, REC2020)
    if transfer == TRANSFER_PQ:
        peak_nits = settings.mastering_peak
        if not (0 < peak_nits <= PQ_PEAK_NITS):
            raise FormatError(f"mastering_peak must be in (0, {PQ_PEAK_NITS:g}] cd/m2, got {peak_nits}")
        scale, limit, decode = PQ_REFERENCE_WHITE_NITS, peak_nits, pq_decode
        peak = f"{peak_nits:g} cd/m2 ({peak_nits / PQ_REFERENCE_WHITE_NITS:.2f}x reference white)"
    else:
        scale, limit, decode = HLG_REFERENCE_WHITE_SCENE, 1.0, hlg_decode
        peak = f"HLG peak ({1 / HLG_REFERENCE_WHITE_SCENE:.2f}x reference white)"
    over = count_above(t, limit / scale)
    return curve_codes(t.numpy(), decode, BITS, scale, limit), over, peak


def encode(rgb: np.ndarray, settings: Settings, exif: bytes | None = None, *, transfer: int) -> Encoded:
    import imagecodecs

    codes, over, peak = encode_signal(rgb, settings, transfer)
    data = bytes(imagecodecs.avif_encode(codes, **avif_options(transfer, settings.quality)))
    if exif:
        data = avif_with_exif(data, exif)
    return Encoded(data, over, peak)


register(DisplayFormat("avif_pq", ".avif", partial(encode, transfer=TRANSFER_PQ),
                       "10-bit AVIF, BT.2020 primaries, PQ (absolute, 203 cd/m2 reference white)"))
register(DisplayFormat("avif_hlg", ".avif", partial(encode, transfer=TRANSFER_HLG),
                       "10-bit AVIF, BT.2020 primaries, HLG (relative, 75 % reference white)"))
