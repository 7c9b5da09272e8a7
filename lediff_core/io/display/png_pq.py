"""16-bit PNG with the BT.2100 PQ transfer and BT.2020 primaries, tagged as the third edition of the
PNG specification (W3C, 2025) allows: ``cICP`` 9/16/0/1 (H.273: BT.2020 primaries, PQ, RGB
(identity matrix), full range), ``mDCV`` (the mastering display: BT.2020 primaries, D65,
``mastering_peak`` down to 0.0001 cd/m2) and ``cLLI`` (MaxCLL / MaxFALL of the clipped image),
plus the workflow in an ``eXIf`` chunk. Chromium shows such a PNG as HDR.

The signal is the AVIF PQ files' (``avif.signal_range``: reference white on 203 cd/m2, clipped at
``mastering_peak``), quantised at 16 bits from the ST 2084 curve evaluated in float64 (the 10-bit
lookup tables of ``curve_codes`` are too coarse for 16-bit steps). The file is written here
(``zlib``): Pillow cannot write 16-bit RGB PNGs.
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import torch

from ...color.transfer import PQ_PEAK_NITS, PQ_REFERENCE_WHITE_NITS, pq_encode
from .avif import BT2020_PRIMARIES, D65_WHITE, MASTERING_MIN_NITS, TRANSFER_PQ, signal_range, to_rec2020
from .registry import DisplayFormat, Encoded, FormatError, Settings, register

MAX_SIDE = 2**31 - 1  # PNG's width and height are 31-bit


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode(rgb: np.ndarray, settings: Settings, exif: bytes | None = None) -> Encoded:
    height, width = rgb.shape[:2]
    if height > MAX_SIDE or width > MAX_SIDE:
        raise FormatError(f"the image is {width}x{height}; PNG holds at most {MAX_SIDE} pixels a side")
    m = signal_range(TRANSFER_PQ, settings.mastering_peak)
    t = to_rec2020(rgb, settings).double()
    brightest = t.amax(dim=-1)
    over = int((brightest > m.limit / m.scale).sum())
    nits = (t * m.scale).clamp(0, m.limit)
    codes = torch.round(pq_encode(nits) * 65535).to(torch.int32).numpy().astype(">u2")
    light = brightest.clamp(0, m.limit / PQ_REFERENCE_WHITE_NITS)
    max_cll = math.ceil(float(light.max()) * PQ_REFERENCE_WHITE_NITS)
    max_fall = math.ceil(float(light.mean()) * PQ_REFERENCE_WHITE_NITS)
    rows = np.zeros((height, 1 + 6 * width), np.uint8)  # filter type 0 before each row
    rows[:, 1:] = codes.view(np.uint8).reshape(height, 6 * width)
    xy = [round(v / 0.00002) for pair in (*BT2020_PRIMARIES, D65_WHITE) for v in pair]
    data = b"".join((
        b"\x89PNG\r\n\x1a\n",
        _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)),
        _chunk(b"cICP", bytes((9, 16, 0, 1))),
        _chunk(b"mDCV", struct.pack(">8H2I", *xy, round(settings.mastering_peak * 10000),
                                    round(MASTERING_MIN_NITS * 10000))),
        _chunk(b"cLLI", struct.pack(">2I", max_cll * 10000, max_fall * 10000)),
        _chunk(b"eXIf", exif) if exif else b"",
        _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)),
        _chunk(b"IEND", b""),
    ))
    return Encoded(data, over, m.peak)


register(DisplayFormat("png_pq", ".png", encode,
                       f"16-bit PNG, BT.2020 primaries, PQ (cICP 9/16/0/1, mDCV, cLLI; peak up to "
                       f"{PQ_PEAK_NITS:g} cd/m2)",
                       check_options=lambda settings: signal_range(TRANSFER_PQ, settings.mastering_peak)))
