"""Save HDR Image's master formats (lediff_core/io/display: radiance_hdr, png_pq, tiff_*), read back
by decoders we did not write: OpenImageIO's oiiotool (Debian's openimageio-tools) and OpenCV for the
Radiance file, a PNG chunk reader written here plus Pillow and OpenCV for the 16-bit PQ PNG, and
oiiotool plus tifffile for the TIFFs; the pack's own readers for the round trips. Expected values
come from the formats' definitions written here (RGBE: ``m * 2**(e - 136)``; ST 2084 from
tests/support/color.py), not from the encoders."""

from __future__ import annotations

import re
import struct
import subprocess

import cv2
import numpy as np
import pytest

from lediff_core.io.display import FORMATS, FormatError, Settings
from lediff_core.io.radiance import read_hdr
from support.common import require_tool


def write(tmp_path, name, data) -> str:
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def oiio_pixels(path) -> np.ndarray:
    """[H, W, C] float64 from ``oiiotool --dumpdata`` (its own decoder, as text)."""
    text = subprocess.run([require_tool("oiiotool"), "--dumpdata", path], capture_output=True, text=True,
                          check=True).stdout
    width, height, channels = map(int, re.search(r":\s+(\d+) x\s+(\d+), (\d+) channel", text).groups())
    # integer files: "codes (normalised values)"; the codes are taken
    values = [[float(v) for v in line.split(":", 1)[1].split("(")[0].split()]
              for line in text.splitlines() if line.strip().startswith("Pixel (")]
    return np.array(values).reshape(height, width, channels)


def hdr_image(h, w, seed=0):
    """Noise over seven decades, flat patches (runs for the RLE), a black row and values far above 1."""
    rng = np.random.default_rng(seed)
    rgb = (10.0 ** rng.uniform(-3, 4, (h, w, 3))).astype(np.float32)
    rgb[:, w // 3: w // 2] = (2.5, 40.0, 0.25)
    rgb[min(1, h - 1)] = 0
    rgb[0, 0] = (8000.0, 20000.0, 3.0)
    return rgb


# ---- Radiance .hdr

@pytest.mark.parametrize("h,w", [(6, 8), (5, 300), (3, 5), (2, 32768)])  # RLE widths and flat ones
def test_radiance_read_back_by_oiiotool_opencv_and_the_pack(tmp_path, h, w):
    rgb = hdr_image(h, w)
    encoded = FORMATS["radiance_hdr"].encode(rgb, Settings(), None)
    path = write(tmp_path, "x.hdr", encoded.data)
    assert encoded.over_peak == 0
    # independent decoders (m * 2**(e - 136), no centring): each component truncated to the
    # pixel's shared exponent, so it lies in [value - step, value] with step = 2**(e - 136) <= max / 128
    oiio = oiio_pixels(path)
    ocv = cv2.imread(path, cv2.IMREAD_UNCHANGED)[..., ::-1].astype(np.float64)
    assert np.allclose(oiio, ocv, rtol=1e-8, atol=1e-9)  # oiiotool prints 9 decimals
    step = rgb.max(-1, keepdims=True) / 128
    assert np.all(ocv <= rgb) and np.all((rgb - ocv < step) | (rgb == 0))
    assert ocv[0, 0, 1] > 19000  # far above reference white, kept
    # the pack's reader centres each mantissa (+ 0.5 step): within half a step of the input
    ours = read_hdr(path).rgb
    assert np.all(np.abs(ours - rgb) <= step / 2 + 1e-7 * rgb)
    assert np.all(ours[min(1, h - 1)] == 0)
    assert read_hdr(path).header["PRIMARIES"] == "0.640 0.330 0.300 0.600 0.150 0.060 0.3127 0.3290"


def test_radiance_scanlines_are_run_length_encoded(tmp_path):
    rgb = np.zeros((16, 256, 3), np.float32)
    rgb[:, 100:] = (1.0, 0.5, 0.25)
    data = FORMATS["radiance_hdr"].encode(rgb, Settings(), None).data
    pixels = data[data.index(b"-Y 16 +X 256\n") + len(b"-Y 16 +X 256\n"):]
    assert pixels.count(b"\x02\x02\x01\x00") == 16  # a new-style marker per scanline
    assert len(pixels) < 16 * 256 * 4 / 20  # flat would be 4 bytes a pixel
    assert np.array_equal(oiio_pixels(write(tmp_path, "r.hdr", data)), rgb)  # exact: powers of two


def test_radiance_reference_white_and_negatives(tmp_path):
    rgb = np.array([[[2.0, 4.0, 8.0], [-1.0, 0.5, 3.0]]], np.float32).repeat(4, 0)
    encoded = FORMATS["radiance_hdr"].encode(rgb, Settings(reference_white=2.0), None)
    assert "4 pixel(s) with negative components" in encoded.peak
    decoded = oiio_pixels(write(tmp_path, "n.hdr", encoded.data))
    assert np.allclose(decoded[0, 0], [1, 2, 4]) and decoded[0, 1, 0] == 0
    assert np.allclose(decoded[0, 1, 1:], [0.25, 1.5], rtol=1 / 128)


def test_radiance_refuses_nan():
    rgb = np.ones((4, 4, 3), np.float32)
    rgb[1, 1] = np.nan
    with pytest.raises(FormatError, match="1 pixel"):
        FORMATS["radiance_hdr"].encode(rgb, Settings(), None)


# ---- 16-bit PQ PNG

def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk, CRCs checked (PNG spec section 5)."""
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, i = [], 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i:i + 4])
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + length]
        assert struct.unpack(">I", data[i + 8 + length:i + 12 + length])[0] == zlib.crc32(kind + body)
        chunks.append((kind, body))
        i += 12 + length
    return chunks


def test_png_pq_chunks_and_pixels_through_opencv_and_pillow(tmp_path):
    from PIL import Image

    from lediff_core.color import REC709_CHROMATICITIES
    from lediff_core.color.chromaticities import rgb_to_xyz_matrix, xyz_to_rgb_matrix
    from support.color import pq_eotf

    rng = np.random.default_rng(3)
    rgb = (10.0 ** rng.uniform(-2, 0.6, (24, 40, 3))).astype(np.float32)  # up to 4x white: 812 cd/m2
    rgb[0, 0] = (20.0, 20.0, 20.0)  # above the peak: clipped and counted
    encoded = FORMATS["png_pq"].encode(rgb, Settings(), b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")
    assert encoded.over_peak == 1
    chunks = dict(png_chunks(encoded.data))
    assert list(dict(png_chunks(encoded.data)))[0] == b"IHDR" and b"eXIf" in chunks
    assert struct.unpack(">IIBB", chunks[b"IHDR"][:10]) == (40, 24, 16, 2)
    assert chunks[b"cICP"] == bytes((9, 16, 0, 1))
    xy = struct.unpack(">8H2I", chunks[b"mDCV"])
    assert xy[:8] == (35400, 14600, 8500, 39850, 6550, 2300, 15635, 16450)  # BT.2020 R, G, B, D65
    assert xy[8:] == (1000 * 10000, 1)
    # BT.2020 linear light from the input (matrix from both sets of primaries, built here)
    rec2020 = (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290)
    to2020 = xyz_to_rgb_matrix(rec2020) @ rgb_to_xyz_matrix(REC709_CHROMATICITIES)
    nits = np.clip(rgb.astype(np.float64) @ to2020.T * 203, 0, 1000)
    max_cll, max_fall = struct.unpack(">2I", chunks[b"cLLI"])
    assert max_cll == 1000 * 10000
    assert max_fall / 10000 == np.ceil(nits.max(-1).mean())
    path = write(tmp_path, "p.png", encoded.data)
    codes = cv2.imread(path, cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert codes.dtype == np.uint16
    with Image.open(path) as image:  # Pillow parses the file too (it decodes 16-bit RGB to 8 bits)
        assert image.size == (40, 24)
        image.load()
    decoded = pq_eotf(codes / 65535.0)
    rel = np.abs(decoded - nits)[nits > 1] / nits[nits > 1]
    assert rel.max() < 2e-3  # a 16-bit PQ step is under 0.03 % at these levels; the matrix in float32


def test_png_pq_refuses_nan_and_bad_peaks():
    rgb = np.ones((4, 4, 3), np.float32)
    with pytest.raises(FormatError, match="mastering_peak"):
        FORMATS["png_pq"].encode(rgb, Settings(mastering_peak=20000.0), None)
    rgb[0, 0, 0] = np.nan
    with pytest.raises(FormatError, match="1 pixel"):
        FORMATS["png_pq"].encode(rgb, Settings(), None)


# ---- TIFF

@pytest.mark.parametrize("name", ["tiff_16bit", "tiff_half", "tiff_float"])
def test_tiff_read_back_by_oiiotool_and_tifffile(tmp_path, name):
    import tifffile

    rgb = hdr_image(6, 10)[..., :] / 100
    rgb[2, 3] = (-0.5, 0.25, 1.0)
    encoded = FORMATS[name].encode(rgb, Settings(), None)
    path = write(tmp_path, "t.tif", encoded.data)
    oiio = oiio_pixels(path)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        pixels = page.asarray().astype(np.float64)
        assert page.photometric == tifffile.PHOTOMETRIC.RGB
        icc_tag = page.tags.get("InterColorProfile")
        icc_bytes = bytes(icc_tag.value) if icc_tag is not None else None
    if name == "tiff_16bit":  # sRGB curve (IEC 61966-2-1, written here) of the clipped input
        x = np.clip(rgb.astype(np.float64), 0, 1)
        expected = np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055) * 65535
        assert np.abs(pixels - expected).max() <= 0.5 + 1e-6
        assert np.array_equal(oiio, pixels)
        import io

        from PIL import ImageCms

        icc = ImageCms.ImageCmsProfile(io.BytesIO(icc_bytes))
        assert "sRGB" in ImageCms.getProfileDescription(icc)
        assert encoded.over_peak == int(((rgb > 1) | (rgb < 0)).any(-1).sum())
    else:
        tolerance = 2.0 ** -11 if name == "tiff_half" else 1e-7
        assert np.allclose(pixels, rgb, rtol=tolerance, atol=1e-7)
        assert np.allclose(oiio, pixels, rtol=1e-8, atol=1e-9)
        assert pixels.max() > 150 and pixels[2, 3, 0] == -0.5  # above 1 and negatives kept
        assert icc_bytes is None
