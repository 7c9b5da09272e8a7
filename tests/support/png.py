"""A PNG chunk reader written for the tests from the PNG specification (W3C, third edition, 2025),
independent of the pack's writer (``lediff_core/io/display/png.py``): the datastream's layout
(section 5: signature, length, type, body, CRC-32 of type and body), the header, and the HDR
chunks' fields as the specification defines them:

- ``cICP``: four bytes, H.273 colour primaries, transfer characteristics, matrix coefficients and
  the full-range flag;
- ``mDCV``: the mastering display's primaries (x, y of R, G, B: six two-byte integers in units of
  0.00002), white point (two more), maximum and minimum luminance (four-byte integers in units of
  0.0001 cd/m2);
- ``cLLI``: MaxCLL and MaxFALL, four-byte integers in units of 0.0001 cd/m2.

Chromium reads these by their final names (``mDCV``, ``cLLI``; the drafts' ``mDCv``/``cLLi`` it
ignores, measured with Debian's Chromium 156).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
HDR_CHUNKS = (b"cICP", b"mDCV", b"cLLI")


@dataclass(frozen=True)
class PngInfo:
    width: int
    height: int
    bit_depth: int
    colour_type: int  # 2: truecolour (RGB)
    cicp: tuple[int, int, int, int] | None  # primaries, transfer, matrix, full range
    primaries: tuple[tuple[float, float], ...] | None  # mDCV: R, G, B (x, y)
    white: tuple[float, float] | None  # mDCV
    mastering_nits: tuple[float, float] | None  # mDCV: (max, min) cd/m2
    max_cll: float | None  # cLLI, cd/m2
    max_fall: float | None  # cLLI, cd/m2
    order: tuple[bytes, ...]  # the chunk types in file order


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk, each CRC checked; the stream must end with IEND."""
    assert data[:8] == SIGNATURE, "not a PNG signature"
    out, i = [], 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i:i + 4])
        assert length <= 2**31 - 1, "a chunk length over 2**31 - 1 (section 5.3)"
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + length]
        (crc,) = struct.unpack(">I", data[i + 8 + length:i + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r}"
        out.append((kind, body))
        i += 12 + length
    assert out and out[-1][0] == b"IEND" and i == len(data), "no IEND at the end"
    return out


def read_info(data: bytes) -> PngInfo:
    """The header and the HDR chunks, with the ordering rules the specification sets for them
    (IHDR first; cICP, mDCV, cLLI at most once each and before the first IDAT)."""
    found = chunks(data)
    order = tuple(kind for kind, _ in found)
    assert order[0] == b"IHDR"
    first_idat = order.index(b"IDAT")
    for kind in HDR_CHUNKS:
        assert order.count(kind) <= 1, f"{kind!r} twice"
        if kind in order:
            assert order.index(kind) < first_idat, f"{kind!r} after IDAT"
    body = dict(found)
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", body[b"IHDR"])
    cicp = primaries = white = mastering = max_cll = max_fall = None
    if b"cICP" in body:
        assert len(body[b"cICP"]) == 4
        cicp = tuple(body[b"cICP"])
    if b"mDCV" in body:
        values = struct.unpack(">8H2I", body[b"mDCV"])
        xy = [v * 0.00002 for v in values[:8]]
        primaries = ((xy[0], xy[1]), (xy[2], xy[3]), (xy[4], xy[5]))
        white = (xy[6], xy[7])
        mastering = (values[8] * 0.0001, values[9] * 0.0001)
    if b"cLLI" in body:
        cll, fall = struct.unpack(">2I", body[b"cLLI"])
        max_cll, max_fall = cll * 0.0001, fall * 0.0001
    return PngInfo(width, height, depth, colour, cicp, primaries, white, mastering, max_cll, max_fall, order)


def rewrite(data: bytes, edit) -> bytes:
    """The PNG with each chunk replaced by ``edit(type, body)``: a (type, body) pair, or None to
    drop it (CRCs recomputed). The tests make untagged or re-tagged copies with it."""
    out = [SIGNATURE]
    for kind, body in chunks(data):
        changed = edit(kind, body)
        if changed is not None:
            kind, body = changed
            out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
    return b"".join(out)


def untagged(data: bytes) -> bytes:
    """The same pixels without cICP, mDCV and cLLI: a plain 16-bit PNG, which readers take as sRGB."""
    return rewrite(data, lambda kind, body: None if kind in HDR_CHUNKS else (kind, body))
