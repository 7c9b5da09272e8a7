"""16-bit PNG with BT.2020 primaries and a BT.2100 transfer (PQ or HLG), tagged as the third edition
of the PNG specification (W3C, 2025) allows:

- ``png_pq``: ``cICP`` 9/16/0/1 (H.273: BT.2020 primaries, PQ, RGB (identity matrix), full range),
  ``mDCV`` (the mastering display: BT.2020 primaries, D65, ``mastering_peak`` down to 0.0001 cd/m2)
  and ``cLLI`` (MaxCLL / MaxFALL of the clipped image, CTA-861.3);
- ``png_hlg``: ``cICP`` 9/18/0/1 (HLG) and nothing else: HLG is relative to the display's own peak,
  and carries no light levels (as the pack's HLG AVIF and video do not).

Both carry the workflow in an ``eXIf`` chunk and, as ComfyUI's PNGs do, in ``tEXt`` chunks
(``prompt``, ``workflow``: dropped on the frontend, the file restores its graph). Chromium reads
the three HDR chunks (by these final, upper-case names; the drafts' ``mDCv``/``cLLi`` it ignores)
and tone-maps the file for the screen from them (``tests/e2e/browser/test_hdr_png.py``).

The signals are the AVIF files' (``avif.signal_range``: reference white on 203 cd/m2 for PQ, clipped
at ``mastering_peak``; on the HLG signal 0.75, clipped at HLG's peak), quantised at 16 bits from the
BT.2100 curves evaluated in float64 (the 10-bit lookup tables of ``curve_codes`` are too coarse for
16-bit steps). The file is written here (``zlib``): Pillow cannot write 16-bit RGB PNGs. The image
data is converted a band of rows at a time into one zlib stream (memory stays near the float32
image's) and split into ``IDAT`` chunks of ``IDAT_SIZE`` bytes (a chunk holds at most 2**31 - 1).
"""

from __future__ import annotations

import struct
import zlib
from functools import partial

import numpy as np
import torch

from ...color.transfer import PQ_PEAK_NITS, hlg_encode, pq_encode
from .avif import (
    BT2020_PRIMARIES,
    D65_WHITE,
    MASTERING_MIN_NITS,
    PRIMARIES_BT2020,
    TRANSFER_HLG,
    TRANSFER_PQ,
    light_levels,
    signal_range,
    to_rec2020,
)
from .metadata import exif_text, st2086_fields
from .registry import DisplayFormat, Encoded, FormatError, Settings, register

MAX_SIDE = 2**31 - 1  # PNG's width and height are 31-bit
IDAT_SIZE = 1 << 20  # compressed bytes per IDAT chunk
BAND_PIXELS = 1 << 18  # pixels converted at a time
MATRIX_IDENTITY, FULL_RANGE = 0, 1  # cICP: RGB samples (no YCbCr matrix), full range
ENCODE = {TRANSFER_PQ: pq_encode, TRANSFER_HLG: hlg_encode}


def check_size(width: int, height: int) -> None:
    if width > MAX_SIDE or height > MAX_SIDE:
        raise FormatError(f"the image is {width}x{height}; a PNG holds at most {MAX_SIDE} pixels a side: "
                          "save an EXR (Save EXR) instead, or crop or downscale the image")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _light_levels(brightest: torch.Tensor, peak_nits: float) -> bytes:
    """``mDCV`` and ``cLLI`` (PNG 3rd edition: chromaticities of R, G, B, then white, in units of
    0.00002; luminances in units of 0.0001 cd/m2), with the AVIF files' MaxCLL/MaxFALL
    (``avif.light_levels``)."""
    max_cll, max_fall = light_levels(brightest, peak_nits)
    return (_chunk(b"mDCV", st2086_fields(BT2020_PRIMARIES, D65_WHITE, peak_nits, MASTERING_MIN_NITS))
            + _chunk(b"cLLI", struct.pack(">2I", max_cll * 10000, max_fall * 10000)))


def _text_chunks(exif: bytes) -> list[bytes]:
    """The workflow as ComfyUI's own PNGs carry it, so that dropping the file on the frontend restores
    the graph: a ``tEXt`` chunk per entry (keyword ``prompt``, ``workflow``, ...; the JSON as text,
    ASCII as ``json.dumps`` writes it)."""
    out = []
    for entry in exif_text(exif).values():
        key, sep, text = entry.partition(":")
        # a keyword is 1..79 Latin-1 characters (another extension's key may not be: Exif keeps it)
        if sep and 1 <= len(key) <= 79 and key.isascii():
            out.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + text.encode("latin-1", "replace")))
    return out


def encode(rgb: np.ndarray, settings: Settings, exif: bytes | None = None, *, transfer: int) -> Encoded:
    height, width = rgb.shape[:2]
    check_size(width, height)
    m = signal_range(transfer, settings.mastering_peak)
    t = to_rec2020(rgb, settings)
    brightest = t.amax(dim=-1)  # each pixel's largest component (exact in float32)
    over = int((brightest > m.limit / m.scale).sum())
    # the curve in float64 and the rows, a band of about BAND_PIXELS at a time, into one zlib
    # stream: memory stays that of the float32 image (the whole image in float64 and its
    # temporaries took 1.4 GB above the input for 4096x2048)
    compressor, pixels = zlib.compressobj(6), []
    rows_per_band = max(1, BAND_PIXELS // width)
    for top in range(0, height, rows_per_band):
        light = (t[top:top + rows_per_band].double() * m.scale).clamp(0, m.limit)
        codes = torch.round(ENCODE[transfer](light) * 65535).to(torch.int32).numpy().astype(">u2")
        rows = np.zeros((codes.shape[0], 1 + 6 * width), np.uint8)  # filter type 0 before each row
        rows[:, 1:] = codes.view(np.uint8).reshape(codes.shape[0], 6 * width)
        pixels.append(compressor.compress(rows.tobytes()))
    pixels = b"".join(pixels) + compressor.flush()
    data = b"".join((
        b"\x89PNG\r\n\x1a\n",
        _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)),
        _chunk(b"cICP", bytes((PRIMARIES_BT2020, transfer, MATRIX_IDENTITY, FULL_RANGE))),
        _light_levels(brightest, settings.mastering_peak) if transfer == TRANSFER_PQ else b"",
        _chunk(b"eXIf", exif) if exif else b"",
        *(_text_chunks(exif) if exif else ()),
        *(_chunk(b"IDAT", pixels[i:i + IDAT_SIZE]) for i in range(0, len(pixels), IDAT_SIZE)),
        _chunk(b"IEND", b""),
    ))
    return Encoded(data, over, m.peak)


register(DisplayFormat("png_pq", ".png", partial(encode, transfer=TRANSFER_PQ),
                       f"16-bit PNG, BT.2020 primaries, PQ (cICP 9/16/0/1, mDCV, cLLI; peak up to "
                       f"{PQ_PEAK_NITS:g} cd/m2)",
                       check_options=lambda settings: signal_range(TRANSFER_PQ, settings.mastering_peak),
                       check_size=check_size))
register(DisplayFormat("png_hlg", ".png", partial(encode, transfer=TRANSFER_HLG),
                       "16-bit PNG, BT.2020 primaries, HLG (cICP 9/18/0/1; relative, 75 % reference white)",
                       check_size=check_size))
