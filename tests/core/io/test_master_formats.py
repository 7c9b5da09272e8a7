"""Save HDR Image's master formats (lediff_core/io/display: radiance_hdr, png_pq, png_hlg, tiff_*),
read back by decoders we did not write: OpenImageIO's oiiotool (Debian's openimageio-tools) and
OpenCV for the Radiance file; the tests' PNG chunk reader (support/png.py) plus OpenCV, oiiotool and
Pillow for the 16-bit PQ and HLG PNGs; oiiotool, libtiff's tiffinfo (Debian's libtiff-tools) and
tifffile for the TIFFs; the pack's own readers for the round trips. Expected values come from the
formats' definitions written in the tests (RGBE: ``m * 2**(e - 136)``; ST 2084 and BT.2100 HLG, RP
177 matrices from tests/support/color.py; CTA-861.3's MaxCLL/MaxFALL), not from the encoders.
(Chromium's reading of the PNGs: tests/e2e/browser/test_hdr_png.py.)"""

from __future__ import annotations

import re
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


# ---- 16-bit PQ and HLG PNG

REC709 = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)  # ITU-R BT.709, D65
BT2020 = (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290)  # ITU-R BT.2020, D65


def rec2020_light(rgb, reference_white=1.0):
    """BT.2020 linear light, reference white = 1.0, from linear Rec.709 (RP 177 matrices built in
    support/color.py from the primaries above, not the pack's OCIO path)."""
    from support.color import rp177

    matrix = np.linalg.inv(rp177(BT2020)) @ rp177(REC709)
    return rgb.astype(np.float64) @ matrix.T / reference_white


def png_image(kind):
    rng = np.random.default_rng(3)
    rgb = (10.0 ** rng.uniform(-2, 0.5, (24, 40, 3))).astype(np.float32)  # up to 3.2x white: 640 cd/m2
    rgb[2] = 0
    rgb[3, :4] = (-0.05, 0.5, 1.0)  # outside Rec.709's gamut, inside BT.2020's
    rgb[4, :4] = 1.0  # reference white
    if kind == "clipped":
        rgb[0, 0] = (20.0, 20.0, 20.0)  # above a 1000 cd/m2 peak
    return rgb


def opencv_codes(path) -> np.ndarray:
    codes = cv2.imread(path, cv2.IMREAD_UNCHANGED)  # libpng, through OpenCV
    assert codes.dtype == np.uint16 and codes.shape[2] == 3
    return codes[..., ::-1].astype(np.int64)


def assert_codes(got, expected):
    """16-bit codes equal to the test's, but for a rare rounding tie moved by the float32 matrix."""
    diff = np.abs(got - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())


@pytest.mark.parametrize("kind, reference_white, peak", [("within", 1.0, 1000.0), ("clipped", 1.0, 1000.0),
                                                         ("within", 0.5, 4000.0)])
def test_png_pq_chunks_and_pixels_against_st2084_and_cta861(tmp_path, kind, reference_white, peak):
    from PIL import Image

    from support.color import pq_inverse_eotf
    from support.png import read_info

    rgb = png_image(kind)
    exif = b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    encoded = FORMATS["png_pq"].encode(rgb, Settings(reference_white=reference_white, mastering_peak=peak), exif)
    info = read_info(encoded.data)
    assert (info.width, info.height, info.bit_depth, info.colour_type) == (40, 24, 16, 2)
    assert info.cicp == (9, 16, 0, 1)  # BT.2020, PQ, identity (RGB), full range
    assert b"eXIf" in info.order and info.order.index(b"eXIf") < info.order.index(b"IDAT")
    # the mastering display: BT.2020's primaries and D65, the chosen peak down to 0.0001 cd/m2
    assert np.allclose(info.primaries, np.reshape(BT2020[:6], (3, 2)), atol=1e-9)
    assert np.allclose(info.white, BT2020[6:], atol=1e-9)
    assert info.mastering_nits == pytest.approx((peak, 0.0001))
    # the light each pixel has on the mastering display: PQ's 203 cd/m2 reference white, clipped at the peak
    nits = np.clip(rec2020_light(rgb, reference_white) * 203, 0, peak)
    brightest = nits.max(axis=-1)  # CTA-861.3: a pixel's light level is its largest component
    assert encoded.over_peak == int((rec2020_light(rgb, reference_white).max(-1) * 203 > peak).sum())
    assert info.max_cll == pytest.approx(np.ceil(brightest.max()), abs=1e-6)  # rounded up to whole cd/m2
    assert info.max_fall == pytest.approx(np.ceil(brightest.mean()), abs=1e-6)
    assert (info.max_cll == peak) == (kind == "clipped")
    path = write(tmp_path, "p.png", encoded.data)
    expected = np.round(pq_inverse_eotf(nits) * 65535).astype(np.int64)  # SMPTE ST 2084, 16 bits
    codes = opencv_codes(path)
    assert_codes(codes, expected)
    assert np.array_equal(oiio_pixels(path), codes)  # OpenImageIO reads the same 16-bit codes
    with Image.open(path) as image:  # Pillow's own PNG parser reads it too (to 8 bits a sample)
        assert image.size == (40, 24)
        image.load()


def test_png_hlg_chunks_and_pixels_against_bt2100(tmp_path):
    from support.color import HLG_WHITE_SCENE, hlg_oetf
    from support.png import read_info

    rgb = png_image("within")
    rgb[0, 0] = (8.0, 8.0, 8.0)  # above HLG's peak (3.77x reference white)
    encoded = FORMATS["png_hlg"].encode(rgb, Settings(), None)
    info = read_info(encoded.data)
    assert info.cicp == (9, 18, 0, 1)  # BT.2020, HLG, identity (RGB), full range
    assert (info.primaries, info.max_cll) == (None, None)  # relative: no mastering display, no light levels
    assert b"eXIf" not in info.order
    scene = np.clip(rec2020_light(rgb) * HLG_WHITE_SCENE, 0, 1)  # BT.2408: white at signal 0.75
    assert encoded.over_peak == int((rec2020_light(rgb).max(-1) * HLG_WHITE_SCENE > 1).sum()) == 1
    path = write(tmp_path, "h.png", encoded.data)
    codes = opencv_codes(path)
    assert_codes(codes, np.round(hlg_oetf(scene) * 65535).astype(np.int64))
    assert np.all(codes[4, :4] == round(0.75 * 65535)) and np.all(codes[0, 0] == 65535)
    assert np.array_equal(oiio_pixels(path), codes)


@pytest.mark.parametrize("name", ["png_pq", "png_hlg"])
def test_png_carries_the_workflow_as_comfyui_pngs_do(tmp_path, name):
    """``tEXt`` chunks ``prompt`` and ``workflow`` (what ComfyUI's frontend reads from a dropped
    PNG), read by Pillow's PNG parser, besides the ``eXIf`` chunk exiftool reads."""
    import json

    from PIL import Image

    from lediff_core.io.display.metadata import comfy_exif

    prompt = {"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "städte.exr"}}}
    workflow = {"nodes": [{"id": 1, "type": "LEDiffLoadEXR"}], "links": []}
    data = FORMATS[name].encode(png_image("within"), Settings(), comfy_exif(prompt, {"workflow": workflow})).data
    path = write(tmp_path, "w.png", data)
    with Image.open(path) as image:
        assert json.loads(image.info["prompt"]) == prompt
        assert json.loads(image.info["workflow"]) == workflow
    from support.png import read_info

    order = read_info(data).order
    assert order.count(b"tEXt") == 2 and order.index(b"tEXt") < order.index(b"IDAT")
    assert b"tEXt" not in read_info(FORMATS[name].encode(png_image("within"), Settings(), None).data).order


def test_png_image_data_spans_several_idat_chunks_and_bands(tmp_path, monkeypatch):
    """Small IDAT chunks and one-row conversion bands give the same pixels as the defaults."""
    from lediff_core.io.display import png
    from support.png import chunks

    monkeypatch.setattr(png, "IDAT_SIZE", 500)
    monkeypatch.setattr(png, "BAND_PIXELS", 7)  # under the width: a row at a time
    rgb = png_image("within")
    data = FORMATS["png_pq"].encode(rgb, Settings(), None).data
    kinds = [kind for kind, _ in chunks(data)]
    assert kinds.count(b"IDAT") > 3 and kinds[-1] == b"IEND"
    monkeypatch.undo()
    whole = FORMATS["png_pq"].encode(rgb, Settings(), None).data
    assert [kind for kind, _ in chunks(whole)].count(b"IDAT") == 1
    assert np.array_equal(opencv_codes(write(tmp_path, "split.png", data)),
                          opencv_codes(write(tmp_path, "whole.png", whole)))


@pytest.mark.parametrize("name", ["png_pq", "png_hlg"])
def test_png_refuses_nan_bad_peaks_and_sizes_it_cannot_hold(name):
    rgb = np.ones((4, 4, 3), np.float32)
    if name == "png_pq":
        with pytest.raises(FormatError, match="mastering_peak"):
            FORMATS[name].encode(rgb, Settings(mastering_peak=20000.0), None)
    with pytest.raises(FormatError, match=r"2147483648x1; a PNG holds at most 2147483647 pixels a side: save an EXR"):
        FORMATS[name].check_size(2**31, 1)
    rgb[0, 0, 0] = np.nan
    with pytest.raises(FormatError, match="1 pixel"):
        FORMATS[name].encode(rgb, Settings(), None)


# ---- TIFF

@pytest.mark.parametrize("name", ["tiff_16bit", "tiff_half", "tiff_float"])
def test_tiff_read_back_by_oiiotool_and_tifffile(tmp_path, name):
    import tifffile

    rgb = hdr_image(6, 10)[..., :] / 100
    rgb[2, 3] = (-0.5, 0.25, 1.0)
    encoded = FORMATS[name].encode(rgb, Settings(), None)
    path = write(tmp_path, "t.tif", encoded.data)
    oiio = oiio_pixels(path)
    # libtiff's own reading of the directory (Debian's libtiff-tools)
    info = subprocess.run([require_tool("tiffinfo"), path], capture_output=True, text=True, check=True).stdout
    fields = dict(line.strip().split(": ", 1) for line in info.splitlines() if ": " in line)
    assert fields["Image Width"] == "10 Image Length: 6" and fields["Samples/Pixel"] == "3"
    assert fields["Bits/Sample"] == ("32" if name == "tiff_float" else "16")
    assert fields.get("Sample Format") == (None if name == "tiff_16bit" else "IEEE floating point")
    assert fields["Photometric Interpretation"] == "RGB color"
    assert fields["Compression Scheme"] == "AdobeDeflate"
    assert ("ICC Profile" in fields) == (name == "tiff_16bit")
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
