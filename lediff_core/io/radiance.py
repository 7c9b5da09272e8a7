"""Reading Radiance RGBE (``.hdr`` / ``.pic``) images.

Format facts (Greg Ward's RGBE, as documented with Radiance): a text header starting with ``#?``,
``KEY=value`` lines (``FORMAT=32-bit_rle_rgbe``), a blank line, a resolution line such as
``-Y 512 +X 1024`` (rows top to bottom, columns left to right), then scanlines of 4-byte pixels
(mantissas R, G, B and a shared exponent), either flat or run-length encoded per component.
A pixel decodes as ``(m + 0.5) * 2**(e - 136)``, the reference implementation's rounding, with
``e == 0`` meaning black. ``EXPOSURE=`` lines are reported in the header but not applied.
"""

from __future__ import annotations

import numpy as np

from .. import LEDiffError
from .exr import MAX_PIXELS, HDRImage


class RadianceError(LEDiffError, ValueError):
    """A file that is not a readable Radiance RGBE image; the message says what is wrong."""


def rgbe_to_float(rgbe: np.ndarray) -> np.ndarray:
    """[..., 4] uint8 RGBE -> [..., 3] float32 linear RGB."""
    e = rgbe[..., 3].astype(np.int32)
    scale = np.where(e > 0, np.ldexp(1.0, e - 136), 0.0)
    return ((rgbe[..., :3].astype(np.float64) + 0.5) * scale[..., None]).astype(np.float32)


def _parse_header(data: bytes, path: str) -> tuple[dict, tuple, int]:
    if not data.startswith(b"#?"):
        raise RadianceError(f"{path!r} is not a Radiance .hdr file (no '#?' signature)")
    end = data.find(b"\n\n")
    if end < 0:
        raise RadianceError(f"{path!r}: the header never ends (no blank line); the file is truncated")
    header = {}
    for line in data[:end].decode("latin-1").splitlines()[1:]:
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            header[key.strip()] = value.strip()
    fmt = header.get("FORMAT", "32-bit_rle_rgbe")
    if fmt != "32-bit_rle_rgbe":
        raise RadianceError(
            f"{path!r} is in format {fmt!r}; only RGB data (32-bit_rle_rgbe) is supported: "
            "convert XYZ files to RGB first"
        )
    line_end = data.find(b"\n", end + 2)
    if line_end < 0:
        raise RadianceError(f"{path!r}: no resolution line; the file is truncated")
    tokens = data[end + 2 : line_end].decode("latin-1").split()
    if (
        len(tokens) != 4
        or tokens[0] not in ("-Y", "+Y", "-X", "+X")
        or tokens[2] not in ("-Y", "+Y", "-X", "+X")
        or tokens[0][1] == tokens[2][1]
        or not (tokens[1].isdigit() and tokens[3].isdigit())
    ):
        raise RadianceError(f"{path!r}: bad resolution line {' '.join(tokens)!r}")
    return header, (tokens[0], int(tokens[1]), tokens[2], int(tokens[3])), line_end + 1


def _read_scanline(data: bytes, pos: int, width: int, path: str) -> tuple[np.ndarray, int]:
    """One scanline of ``width`` RGBE pixels starting at ``pos``; returns pixels and new position."""
    head = data[pos : pos + 4]
    if len(head) < 4:
        raise RadianceError(f"{path!r}: pixel data ends early; the file is truncated")
    if 8 <= width < 0x8000 and head[0] == 2 and head[1] == 2 and (head[2] << 8 | head[3]) == width:
        line = np.empty((4, width), dtype=np.uint8)  # component-wise run-length encoding
        pos += 4
        for c in range(4):
            x = 0
            while x < width:
                if pos >= len(data):
                    raise RadianceError(f"{path!r}: pixel data ends early; the file is truncated")
                count = data[pos]
                pos += 1
                if count > 128:
                    count -= 128
                    if x + count > width:
                        raise RadianceError(f"{path!r}: corrupt run-length data")
                    if pos >= len(data):
                        raise RadianceError(f"{path!r}: pixel data ends early; the file is truncated")
                    line[c, x : x + count] = data[pos]
                    pos += 1
                else:
                    if count == 0 or x + count > width:
                        raise RadianceError(f"{path!r}: corrupt run-length data")
                    if pos + count > len(data):
                        raise RadianceError(f"{path!r}: pixel data ends early; the file is truncated")
                    line[c, x : x + count] = np.frombuffer(data, np.uint8, count, pos)
                    pos += count
                x += count
        return line.T, pos
    # Flat pixels, possibly with the original format's (1, 1, 1, n) repeat markers.
    line = np.empty((width, 4), dtype=np.uint8)
    x, shift = 0, 0
    while x < width:
        px = data[pos : pos + 4]
        if len(px) < 4:
            raise RadianceError(f"{path!r}: pixel data ends early; the file is truncated")
        pos += 4
        if px[0] == 1 and px[1] == 1 and px[2] == 1:
            if x == 0:
                raise RadianceError(f"{path!r}: corrupt data (a repeat marker starts a scanline)")
            count = px[3] << shift
            if x + count > width:
                raise RadianceError(f"{path!r}: corrupt run-length data")
            line[x : x + count] = line[x - 1]
            x += count
            shift += 8
        else:
            line[x] = np.frombuffer(px, np.uint8)
            x += 1
            shift = 0
    return line, pos


def read_hdr(path: str) -> HDRImage:
    """Read a Radiance RGBE file into linear float32 RGB [H, W, 3] (top row first)."""
    with open(path, "rb") as f:
        data = f.read()
    header, (slow_axis, n_slow, fast_axis, n_fast), pos = _parse_header(data, path)
    if n_slow * n_fast == 0 or n_slow * n_fast > MAX_PIXELS:
        raise RadianceError(f"{path!r} claims {n_fast}x{n_slow} pixels; refusing empty or huge images")
    scan = np.empty((n_slow, n_fast, 4), dtype=np.uint8)
    for i in range(n_slow):
        scan[i], pos = _read_scanline(data, pos, n_fast, path)
    rgb = rgbe_to_float(scan)
    # Reorient the scan order to rows top-to-bottom, columns left-to-right.
    if slow_axis[1] == "X":
        rgb = rgb.transpose(1, 0, 2)
    y_axis, x_axis = (slow_axis, fast_axis) if slow_axis[1] == "Y" else (fast_axis, slow_axis)
    if y_axis[0] == "+":
        rgb = rgb[::-1]
    if x_axis[0] == "-":
        rgb = rgb[:, ::-1]
    return HDRImage(rgb=np.ascontiguousarray(rgb), header=header)
