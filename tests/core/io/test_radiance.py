"""Radiance .hdr reading, against files built byte by byte from the format's description.

Expected values come from the reference decoding (Radiance's colr_color):
(mantissa + 0.5) * 2**(exponent - 136), with exponent 0 meaning black.
"""

from __future__ import annotations

import numpy as np
import pytest

from lediff_core.io.radiance import RadianceError, read_hdr
from lediff_core.io.readers import read_linear_image


def header(res=b"-Y 2 +X 3", extra=b""):
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n" + extra + b"\n" + res + b"\n"


def test_flat_pixels_decode_to_reference_values(tmp_path):
    pixels = bytes([128, 64, 32, 129,   0, 0, 0, 0,   255, 255, 255, 128,
                    1, 2, 3, 100,       10, 20, 30, 140, 128, 128, 128, 136])
    path = tmp_path / "flat.hdr"
    path.write_bytes(header() + pixels)
    img = read_hdr(str(path))
    expected = np.array([
        [[128.5 / 128, 64.5 / 128, 32.5 / 128], [0, 0, 0], [255.5 / 256, 255.5 / 256, 255.5 / 256]],
        [[1.5 * 2.0**-36, 2.5 * 2.0**-36, 3.5 * 2.0**-36], [10.5 * 16, 20.5 * 16, 30.5 * 16],
         [128.5, 128.5, 128.5]],
    ], dtype=np.float32)
    assert img.rgb.dtype == np.float32 and img.rgb.shape == (2, 3, 3)
    assert np.array_equal(img.rgb, expected)


def rle_scanline(width, comps):
    """New-style RLE scanline: marker then each component as (run|literal) packets."""
    out = bytes([2, 2, width >> 8, width & 255])
    for packets in comps:
        out += packets
    return out


def test_run_length_encoded_scanlines(tmp_path):
    w = 10
    # R: run of 10 x 200; G: literal 0..9; B: run 4 x 7 then literal 6 values; E: run 10 x 130
    r = bytes([128 + 10, 200])
    g = bytes([10]) + bytes(range(10))
    b = bytes([128 + 4, 7, 6, 1, 2, 3, 4, 5, 6])
    e = bytes([128 + 10, 130])
    line = rle_scanline(w, [r, g, b, e])
    path = tmp_path / "rle.hdr"
    path.write_bytes(header(b"-Y 2 +X 10") + line + line)
    img = read_hdr(str(path)).rgb
    f = 2.0 ** (130 - 136)
    row = np.stack([np.full(10, 200.5) * f, (np.arange(10) + 0.5) * f,
                    (np.array([7, 7, 7, 7, 1, 2, 3, 4, 5, 6]) + 0.5) * f], -1)
    assert np.array_equal(img, np.stack([row, row]).astype(np.float32))


def test_orientation_lines(tmp_path):
    values = (10, 20, 30, 40, 50, 60)
    data = b"".join(bytes([v, v, v, 136]) for v in values)  # decodes to v + 0.5
    grid = np.array([[10, 20, 30], [40, 50, 60]]) + 0.5
    cases = {
        b"-Y 2 +X 3": grid,
        b"+Y 2 +X 3": grid[::-1],
        b"-Y 2 -X 3": grid[:, ::-1],
        # columns are the slow axis: 2 columns (left to right) of 3 pixels (top to bottom)
        b"+X 2 -Y 3": np.array([[10, 40], [20, 50], [30, 60]]) + 0.5,
    }
    for res, expected in cases.items():
        path = tmp_path / "o.hdr"
        path.write_bytes(header(res) + data)
        assert np.array_equal(read_hdr(str(path)).rgb[..., 0], expected), res


def test_exposure_header_is_reported_not_applied(tmp_path):
    path = tmp_path / "e.hdr"
    path.write_bytes(header(b"-Y 1 +X 1", b"EXPOSURE=2.0\n") + bytes([128, 128, 128, 129]))
    img = read_linear_image(str(path))
    assert img.header["EXPOSURE"] == "2.0"
    assert img.rgb[0, 0, 0] == np.float32(128.5 / 128)


@pytest.mark.parametrize("payload, message", [
    (b"P6\n1 1\n255\n\0\0\0", "no '#\\?' signature"),
    (b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n", "never ends"),
    (header(b"-Y 2 +X 3") + bytes(10), "truncated"),
    (header(b"-Y 1 +X 10") + bytes([2, 2, 0, 10, 128 + 20, 5]) + bytes(40), "corrupt"),
    (header(b"-Y 1 +X 10") + bytes([2, 2, 0, 10, 128 + 10]), "truncated"),
    (b"#?RADIANCE\nFORMAT=32-bit_rle_xyze\n\n-Y 1 +X 1\n" + bytes(4), "only RGB"),
    (header(b"-Y x +X 3"), "bad resolution"),
    (header(b"-Y 100000 +X 100000"), "refusing"),
])
def test_bad_files_get_clear_errors(tmp_path, payload, message):
    path = tmp_path / "bad.hdr"
    path.write_bytes(payload)
    with pytest.raises(RadianceError, match=message):
        read_hdr(str(path))
