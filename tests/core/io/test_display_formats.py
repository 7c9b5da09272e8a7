"""Display formats (lediff_core/io/display) checked by decoders that are not our encoders' libraries
where one exists: Debian's avifdec (libavif-bin), djxl/jxlinfo (libjxl-tools), exiftool
(libimage-exiftool-perl) and heif-info (libheif-examples, for the AVIF light-level boxes); PIL for
the Ultra HDR primary image; libultrahdr's own decoder for the gain-map reconstruction (no other
decoder of ISO 21496-1 installs here), whose metadata we parse
ourselves as the second reader. Decoded signals go back to linear with BT.2100 formulas written
here from the standard (not the pack's curves), and BT.2020 -> Rec.709 with the OpenEXR-style
chromaticity matrices (not the OCIO path the encoder uses).

Codec loss at the default quality (90), on a real HDRI (courtyard, 512x256, mid grey at 0.18,
pixels inside each format's peak and above 1 % of reference white), as asserted below:
- avif_pq: relative error of luminance, median 2.4 %, 99th percentile 10.7 % (quality 100: 0.3 / 0.9 %).
- avif_hlg: median 1.5 %, 99th percentile 8.6 % (quality 100: 0.15 / 0.7 %).
- jxl_linear: median 2.2 %, 99th percentile 16 % (quality 100: 0.02 / 0.12 %).
- ultrahdr: error of luminance in stops, median 0.05, 99th percentile 0.31 (relative: 5 % / 26 %).
No systematic bias: the median log ratio is within 0.001 stop for AVIF.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from lediff_core.color import REC709_CHROMATICITIES
from lediff_core.color.chromaticities import rgb_to_xyz_matrix, xyz_to_rgb_matrix
from lediff_core.io.display import FORMAT_NAMES, FORMATS, FormatError, Settings
from lediff_core.io.display.metadata import avif_with_metadata, comfy_exif
from lediff_core.io.display.ultrahdr import MAX_BOOST
from lediff_core.io.exr import read_exr
from support.color import hlg_inverse_oetf, pq_eotf
from support.common import HDRI_DIR, REPO, require_tool

REC2020 = (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290)  # BT.2020 Table 3, D65
LUMA = np.array([0.2126, 0.7152, 0.0722])
PROMPT = {"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "x.exr", "layer": ""}}}
INFO = {"workflow": {"nodes": [{"id": 1, "type": "LEDiffLoadEXR"}], "links": [], "note": "\u00e9t\u00e9"}}


def real_hdri(name="courtyard.exr"):
    rgb = read_exr(os.path.join(HDRI_DIR, name)).rgb[::2, ::2].clip(0, None)
    return np.ascontiguousarray(rgb / np.median(rgb) * 0.18, dtype=np.float32)


# ---- BT.2100, from the standard's formulas (independent of lediff_core.color.transfer)


def rec2020_to_rec709(rgb):
    m = xyz_to_rgb_matrix(REC709_CHROMATICITIES) @ rgb_to_xyz_matrix(REC2020)
    return rgb @ m.T


def run(*cmd) -> str:
    return subprocess.run([require_tool(cmd[0]), *cmd[1:]], capture_output=True, text=True,
                          check=True).stdout


def write(tmp_path, name, data) -> str:
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def luminance_errors(decoded, reference, peak):
    ld, lr = decoded @ LUMA, reference @ LUMA
    inside = (reference.max(-1) < peak) & (lr > 0.01)
    assert inside.mean() > 0.75
    return np.abs(ld - lr)[inside] / lr[inside]


def read_pfm(path):
    with open(path, "rb") as f:
        kind = f.readline().strip()
        w, h = map(int, f.readline().split())
        scale = float(f.readline())
        data = np.frombuffer(f.read(), dtype="<f4" if scale < 0 else ">f4")
    assert kind == b"PF"
    return data.reshape(h, w, 3)[::-1]  # PFM stores the bottom row first


# ---- AVIF

@pytest.mark.parametrize("name,transfer", [("avif_pq", 16), ("avif_hlg", 18)])
def test_avif_tagging_and_pixels_through_avifdec(tmp_path, name, transfer):
    rgb = real_hdri()
    encoded = FORMATS[name].encode(rgb, Settings(), None)
    path = write(tmp_path, "x.avif", encoded.data)
    info = run("avifdec", "--info", path)
    for line in ("Bit Depth      : 10", "Color Primaries: 9", f"Transfer Char. : {transfer}",
                 "Matrix Coeffs. : 9", "Range          : Full", "Format         : YUV444",
                 "Resolution     : 512x256"):
        assert line in info, info

    run("avifdec", "-d", "16", path, str(tmp_path / "x.png"))
    with open(tmp_path / "x.png", "rb") as f:
        signal = imagecodecs.png_decode(f.read()).astype(np.float64) / 65535
    if transfer == 16:
        linear = pq_eotf(signal) / 203.0  # BT.2408: 203 cd/m2 is reference white
        peak = 1000 / 203
    else:
        linear = hlg_inverse_oetf(signal) / hlg_inverse_oetf(0.75)  # BT.2408: 75 % is reference white
        peak = 1 / hlg_inverse_oetf(0.75)
    decoded = rec2020_to_rec709(linear)
    err = luminance_errors(decoded, rgb, peak * 0.9)
    assert np.median(err) < 0.03 and np.percentile(err, 99) < 0.12, (np.median(err), np.percentile(err, 99))
    inside = (rgb.max(-1) < peak * 0.9) & (rgb @ LUMA > 0.01)
    bias = np.median(np.log2((decoded @ LUMA)[inside] / (rgb @ LUMA)[inside]))
    assert abs(bias) < 0.01, bias
    # pixels above the peak (in BT.2020 RGB) are counted, and clipped to it (up to codec overshoot)
    rgb2020 = rgb @ np.linalg.inv(rec2020_to_rec709(np.eye(3)))  # rows are pixels
    expected = int((rgb2020 > peak).any(-1).sum())
    assert expected > 100 and abs(encoded.over_peak - expected) <= expected * 0.002
    clipped = linear.max(-1)[(rgb2020 > peak * 1.5).any(-1)]
    assert abs(np.median(clipped) / peak - 1) < 0.02 and np.percentile(clipped, 90) < peak * 1.1


@pytest.mark.parametrize("name,transfer", [("avif_pq", 16), ("avif_hlg", 18)])
def test_avif_near_lossless_at_quality_100(tmp_path, name, transfer):
    rgb = real_hdri("city.exr")
    path = write(tmp_path, "x.avif", FORMATS[name].encode(rgb, Settings(quality=100), None).data)
    run("avifdec", "-d", "16", path, str(tmp_path / "x.png"))
    with open(tmp_path / "x.png", "rb") as f:
        signal = imagecodecs.png_decode(f.read()).astype(np.float64) / 65535
    linear = pq_eotf(signal) / 203.0 if transfer == 16 else hlg_inverse_oetf(signal) / hlg_inverse_oetf(0.75)
    err = luminance_errors(rec2020_to_rec709(linear), rgb, 3.0)
    assert np.median(err) < 0.006 and np.percentile(err, 99) < 0.03, (np.median(err), np.percentile(err, 99))


def heif_light_levels(path) -> dict:
    """libheif's reading of an AVIF's clli and mdcv boxes (absent keys: no box)."""
    info, out = run("heif-info", path), {}
    for key, pattern in (("max_cll", r"max content light level: (\d+)"),
                         ("max_fall", r"max pic average light level: (\d+)"),
                         ("primaries", r"display_primaries \(x,y\): (.*)"),
                         ("white", r"white point \(x,y\): (.*)"),
                         ("max_nits", r"max display mastering luminance: ([\d.]+)"),
                         ("min_nits", r"min display mastering luminance: ([\d.]+)")):
        m = re.search(pattern, info)
        if m:
            values = [float(v) for v in re.findall(r"[\d.]+", m.group(1))]
            out[key] = values if len(values) > 1 else values[0]
    return out


@pytest.mark.parametrize("peak,white", [(1000.0, 1.0), (10000.0, 8.0)])
def test_avif_pq_light_level_and_mastering_display_through_libheif(tmp_path, peak, white):
    rgb = real_hdri()  # brightest pixel about 41000 cd/m2 at reference white 1, 5100 at 8
    settings = Settings(mastering_peak=peak, reference_white=white)
    path = write(tmp_path, "x.avif", FORMATS["avif_pq"].encode(rgb, settings, comfy_exif(PROMPT, INFO)).data)
    levels = heif_light_levels(path)
    # CTA-861.3 on the BT.2020 image as encoded (clipped at the peak), in cd/m2
    rgb2020 = rgb.astype(np.float64) / white @ np.linalg.inv(rec2020_to_rec709(np.eye(3)))
    light = np.clip(rgb2020.max(-1), 0, peak / 203.0) * 203.0
    assert abs(levels["max_cll"] - np.ceil(light.max())) <= 1, (levels, light.max())
    assert abs(levels["max_fall"] - np.ceil(light.mean())) <= 1, (levels, light.mean())
    assert (levels["max_cll"] == peak) if peak == 1000.0 else (4000 < levels["max_cll"] < peak)
    # mastering display: BT.2020 primaries (stored green, blue, red as in HEVC), D65, the peak
    assert levels["primaries"] == [0.17, 0.797, 0.131, 0.046, 0.708, 0.292]
    assert levels["white"] == [0.3127, 0.329]
    assert levels["max_nits"] == peak and levels["min_nits"] == 0.0001
    info = run("avifdec", "--info", path)  # libavif still reads the edited file, Exif included
    assert "Exif Metadata  : Present" in info and "Transfer Char. : 16" in info


def test_avif_hlg_carries_no_light_level_boxes(tmp_path):
    # HLG is relative to the display's peak: no CLLI/MDCV, as in broadcast HLG
    path = write(tmp_path, "x.avif", FORMATS["avif_hlg"].encode(real_hdri(), Settings(), None).data)
    assert heif_light_levels(path) == {}
    assert "image: 512x256" in run("heif-info", path)


def test_avif_counts_pixels_above_the_mastering_peak():
    rgb = np.full((16, 16, 3), 0.5, np.float32)
    rgb[:3, :5] = 10.0  # 2030 cd/m2
    assert FORMATS["avif_pq"].encode(rgb, Settings(mastering_peak=1000), None).over_peak == 15
    assert FORMATS["avif_pq"].encode(rgb, Settings(mastering_peak=4000), None).over_peak == 0
    # HLG peak: 1 / 0.265 = 3.77x reference white; reference_white 4 brings 10.0 down to 2.5
    assert FORMATS["avif_hlg"].encode(rgb, Settings(), None).over_peak == 15
    assert FORMATS["avif_hlg"].encode(rgb, Settings(reference_white=4.0), None).over_peak == 0


def test_reference_white_lands_on_bt2408(tmp_path):
    grey = np.full((32, 32, 3), 2.5, np.float32)  # this image's diffuse white is 2.5
    pq = FORMATS["avif_pq"].encode(grey, Settings(reference_white=2.5), None)
    hlg = FORMATS["avif_hlg"].encode(grey, Settings(reference_white=2.5), None)
    for data, expected in ((pq.data, 0.5807), (hlg.data, 0.75)):  # BT.2408 signals of 203 cd/m2 / 75 %
        path = write(tmp_path, "w.avif", data)
        run("avifdec", "-d", "16", path, str(tmp_path / "w.png"))
        with open(tmp_path / "w.png", "rb") as f:
            signal = imagecodecs.png_decode(f.read()) / 65535
        assert abs(float(np.median(signal)) - expected) < 2 / 1023


# ---- JPEG XL

def test_jxl_is_linear_float_rec709_and_keeps_values_above_one(tmp_path):
    rgb = real_hdri()
    encoded = FORMATS["jxl_linear"].encode(rgb, Settings(reference_white=0.5), None)
    path = write(tmp_path, "x.jxl", encoded.data)
    info = run("jxlinfo", path)
    assert "32-bit float" in info and "sRGB primaries" in info and "Linear transfer function" in info
    assert "D65" in info and "512x256" in info
    run("djxl", path, str(tmp_path / "x.pfm"))
    decoded = read_pfm(str(tmp_path / "x.pfm"))
    err = luminance_errors(decoded * 0.5, rgb, np.inf)
    assert np.median(err) < 0.03 and np.percentile(err, 99) < 0.2, (np.median(err), np.percentile(err, 99))
    assert decoded.max() > 100 and encoded.over_peak == 0  # the sun is not clipped


# ---- Ultra HDR

def jpeg_segments(data: bytes):
    """(marker, payload) of a JPEG's segments up to SOS."""
    assert data[:2] == b"\xff\xd8"
    i, out = 2, []
    while True:
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        out.append((marker, data[i + 4:i + 2 + length]))
        if marker == 0xDA:
            return out
        i += 2 + length


def mpf_second_image(data: bytes) -> bytes:
    """The second image of a JPEG's MPF index (CIPA DC-007), found by our own parse."""
    mpf = next(p for m, p in jpeg_segments(data) if m == 0xE2 and p.startswith(b"MPF\x00"))
    tiff = mpf[4:]
    assert tiff[:2] == b"MM"
    base = data.index(mpf) + 4  # MPF offsets count from the TIFF header
    ifd = struct.unpack(">I", tiff[4:8])[0]
    count = struct.unpack(">H", tiff[ifd:ifd + 2])[0]
    entries = {struct.unpack(">H", tiff[ifd + 2 + 12 * k:ifd + 4 + 12 * k])[0]:
               tiff[ifd + 2 + 12 * k:ifd + 14 + 12 * k] for k in range(count)}
    mp_entries = struct.unpack(">I", entries[0xB002][8:12])[0]  # MPEntry: 16 bytes per image
    size, offset = struct.unpack(">II", tiff[mp_entries + 16 + 4:mp_entries + 16 + 12])
    return data[base + offset:base + offset + size]


def iso21496_metadata(gainmap: bytes) -> dict:
    """ISO 21496-1 gain-map metadata of the gain-map JPEG (parsed here, not by libultrahdr)."""
    name = b"urn:iso:std:iso:ts:21496:-1\x00"
    payload = next(p for m, p in jpeg_segments(gainmap) if m == 0xE2 and p.startswith(name))[len(name):]
    _, _, flags = struct.unpack(">HHB", payload[:5])
    assert not flags & 0x80 and not flags & 0x08  # one channel, separate denominators (as written)
    v = struct.unpack(">IIIIiIiIIIiIiI", payload[5:5 + 56])
    return {"base_headroom": v[0] / v[1], "alternate_headroom": v[2] / v[3], "gain_min": v[4] / v[5],
            "gain_max": v[6] / v[7], "gamma": v[8] / v[9]}


def test_ultrahdr_primary_is_a_baseline_sdr_jpeg_and_hdr_reconstructs(tmp_path):
    rgb = real_hdri()
    encoded = FORMATS["ultrahdr"].encode(rgb, Settings(headroom_stops=2.5), None)
    data = encoded.data
    primary = Image.open(write(tmp_path, "x.jpg", data))
    assert primary.format == "MPO" and primary.size == (512, 256) and primary.mode == "RGB"
    assert any(m == 0xC0 for m, _ in jpeg_segments(data))  # SOF0: baseline DCT
    assert not any(m in (0xC1, 0xC2) for m, _ in jpeg_segments(data))
    sdr = np.asarray(primary, dtype=np.float32) / 255
    # the SDR rendition: tone-mapped, monotonic in the scene's luminance, not clipped to white
    lum, slum = rgb @ LUMA, sdr @ LUMA
    levels = [np.median(slum[np.abs(lum - v) < 0.05 * v]) for v in (0.05, 0.18, 1.0, 8.0)]
    assert (np.diff(levels) > 0).all() and levels[-1] < 0.95, levels
    assert 0.3 < levels[1] < 0.55  # mid grey in the middle of the SDR range

    hdr = imagecodecs.ultrahdr_decode(data).astype(np.float32)[..., :3]
    err = np.abs(np.log2(np.maximum(hdr @ LUMA, 1e-4) / np.maximum(lum, 1e-4)))
    inside = (rgb.max(-1) < MAX_BOOST * 0.8) & (lum > 0.01)
    assert np.median(err[inside]) < 0.1 and np.percentile(err[inside], 99) < 0.5
    assert encoded.over_peak == int((rgb > MAX_BOOST).any(-1).sum()) > 0

    # the gain map: exiftool (second reader of the MPF index) finds the same image as our parse
    path = str(tmp_path / "x.jpg")
    assert json.loads(run("exiftool", "-j", "-NumberOfImages", path))[0]["NumberOfImages"] == 2
    gainmap = subprocess.run([require_tool("exiftool"), "-b", "-MPImage2", path], capture_output=True,
                             check=True).stdout
    assert gainmap == mpf_second_image(data) and Image.open(io.BytesIO(gainmap)).format == "JPEG"
    meta = iso21496_metadata(gainmap)
    assert meta["base_headroom"] == 0 and abs(meta["alternate_headroom"] - 2.5) < 1e-3
    assert abs(meta["gain_max"] - np.log2(MAX_BOOST)) < 1e-3 and meta["gamma"] == 1
    assert meta["gain_min"] <= 0


def test_ultrahdr_headroom_is_checked():
    with pytest.raises(FormatError, match="headroom_stops"):
        FORMATS["ultrahdr"].encode(np.ones((8, 8, 3), np.float32), Settings(headroom_stops=7), None)


# ---- common checks and metadata

@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_nan_and_inf_are_refused_with_a_pixel_count(name):
    rgb = np.ones((8, 8, 3), np.float32)
    rgb[1, 1, 0] = np.nan
    rgb[2, 2] = np.inf
    with pytest.raises(FormatError, match="2 pixel"):
        FORMATS[name].encode(rgb, Settings(), None)


@pytest.mark.parametrize("name", [name for name in FORMAT_NAMES if FORMATS[name].workflow])
def test_workflow_metadata_is_read_by_exiftool_and_the_image_still_decodes(tmp_path, name):
    fmt = FORMATS[name]
    rgb = real_hdri()[:64, :96]
    plain = fmt.encode(rgb, Settings(), None).data
    tagged = fmt.encode(rgb, Settings(), comfy_exif(PROMPT, INFO)).data
    path = write(tmp_path, "x" + fmt.extension, tagged)
    tags = json.loads(run("exiftool", "-j", "-Model", "-Make", path))[0]
    key, _, value = tags["Model"].partition(":")
    assert key == "prompt" and json.loads(value) == PROMPT
    key, _, value = tags["Make"].partition(":")
    assert key == "workflow" and json.loads(value) == INFO["workflow"]
    # same pixels as without metadata, through the independent decoders
    plain_path = write(tmp_path, "p" + fmt.extension, plain)
    if name.startswith("avif"):
        assert "Exif Metadata  : Present" in run("avifdec", "--info", path)
        for p, out in ((path, "a.png"), (plain_path, "b.png")):
            run("avifdec", "-d", "16", p, str(tmp_path / out))
        assert Image.open(tmp_path / "a.png").tobytes() == Image.open(tmp_path / "b.png").tobytes()
    elif name == "jxl_linear":
        assert "Exif" in run("jxlinfo", path)
        run("djxl", path, str(tmp_path / "a.pfm"))
        run("djxl", plain_path, str(tmp_path / "b.pfm"))
        assert np.array_equal(read_pfm(str(tmp_path / "a.pfm")), read_pfm(str(tmp_path / "b.pfm")))
    elif name.startswith("tiff"):  # tifffile decodes both to the same samples
        import tifffile

        assert np.array_equal(tifffile.imread(path), tifffile.imread(plain_path))
    elif name.startswith("png"):  # OpenCV's libpng decodes both to the same 16-bit codes
        import cv2

        assert np.array_equal(cv2.imread(path, cv2.IMREAD_UNCHANGED), cv2.imread(plain_path, cv2.IMREAD_UNCHANGED))
    else:
        assert np.array_equal(imagecodecs.ultrahdr_decode(tagged), imagecodecs.ultrahdr_decode(plain))
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(plain_path)))


def test_avif_exif_item_with_an_existing_iref_and_large_offsets(tmp_path):
    # an AVIF that already has an iref (alpha auxiliary image) takes the cdsc reference beside it
    rgba = np.random.default_rng(0).integers(0, 1024, (32, 48, 4)).astype(np.uint16)
    data = bytes(imagecodecs.avif_encode(rgba, 90, bitspersample=10))
    tagged = avif_with_metadata(data, comfy_exif(PROMPT, INFO))
    path = write(tmp_path, "a.avif", tagged)
    info = run("avifdec", "--info", path)
    assert "Exif Metadata  : Present" in info and "Alpha          : Absent" not in info
    assert b"auxl" in data  # the alpha item's reference: our cdsc joins an existing iref
    assert json.loads(json.loads(run("exiftool", "-j", "-Model", path))[0]["Model"][7:]) == PROMPT
    assert imagecodecs.avif_decode(tagged).tolist() == imagecodecs.avif_decode(data).tolist()


def test_avif_properties_go_to_the_primary_image_only(tmp_path):
    # an AVIF with an alpha item: the light-level boxes join the primary image's ipma entry, the
    # alpha item keeps its own properties, and the Exif item is added in the same edit
    from lediff_core.io.display.metadata import clli_box, mdcv_box

    rgba = np.random.default_rng(1).integers(0, 1024, (32, 48, 4)).astype(np.uint16)
    data = bytes(imagecodecs.avif_encode(rgba, 90, bitspersample=10))
    boxes = (clli_box(812, 77), mdcv_box(((0.68, 0.32), (0.265, 0.69), (0.15, 0.06)), (0.3127, 0.329),
                                         4000.0, 0.005))
    tagged = avif_with_metadata(data, comfy_exif(PROMPT, INFO), boxes)
    path = write(tmp_path, "p.avif", tagged)
    levels = heif_light_levels(path)
    assert levels == {"max_cll": 812, "max_fall": 77, "primaries": [0.265, 0.69, 0.15, 0.06, 0.68, 0.32],
                      "white": [0.3127, 0.329], "max_nits": 4000, "min_nits": 0.005}
    info = run("avifdec", "--info", path)
    assert "Exif Metadata  : Present" in info and "Alpha          : Absent" not in info

    def associations(avif_path):  # exiftool's own parse of ipma: {item: [property indices]}
        found = re.findall(r"Item (\d+) properties: ([\d ]+)", run("exiftool", "-v3", avif_path))
        return {int(item): [int(v) for v in values.split()] for item, values in found}

    before, after = associations(write(tmp_path, "plain.avif", data)), associations(path)
    assert set(before) == {1, 2}  # the colour image and its alpha auxiliary image
    n = max(max(v) for v in before.values())
    assert after == {1: before[1] + [n + 1, n + 2], 2: before[2]}
    assert imagecodecs.avif_decode(tagged).tolist() == imagecodecs.avif_decode(data).tolist()


# ---- the colour space each file carries, against docs/formats.md's table

DISPLAY_P3 = (0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.3127, 0.3290)  # SMPTE EG 432-1, D65


def documented_colour_spaces() -> dict:
    """format -> (cell text, its first code span: the machine-readable value) of the "Colour space
    written" column of formats.md's display-format table."""
    text = open(os.path.join(REPO, "docs", "formats.md"), encoding="utf-8").read()
    table = text.split("## Display formats (Save HDR Image)", 1)[1].split("\n\n")[2]
    lines = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table.splitlines()]
    column = lines[0].index("Colour space written")
    return {re.fullmatch(r"`(\w+)`", row[0]).group(1): (row[column], re.findall(r"`([^`]+)`", row[column])[0])
            for row in lines[2:]}


def avif_nclx(data: bytes) -> tuple[str, bool]:
    """('primaries/transfer/matrix', full range) from the one ``colr`` box of type ``nclx`` (ISO/IEC
    23008-12 / 14496-12: three 16-bit CICP codes, then the full-range flag in the top bit)."""
    assert data.count(b"colrnclx") == 1
    at = data.index(b"colrnclx") + 8
    primaries, transfer, matrix, flags = struct.unpack(">HHHB", data[at:at + 7])
    return f"{primaries}/{transfer}/{matrix}", bool(flags & 0x80)


def test_the_documented_colour_space_is_the_one_each_file_carries(tmp_path):
    from PIL import ImageCms

    documented = documented_colour_spaces()
    assert set(documented) == set(FORMATS)
    rgb = real_hdri()
    for name, fmt in FORMATS.items():
        cell, value = documented[name]
        data = fmt.encode(rgb, Settings(), None).data
        if name == "ultrahdr":
            icc = Image.open(io.BytesIO(data)).info["icc_profile"]
            description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
            assert value == description and "Display P3" in cell, (cell, description)
        elif name.startswith("avif"):
            cicp, full = avif_nclx(data)
            assert value == cicp and full == ("full range" in cell), (cell, cicp, full)
        elif name.startswith("png"):
            from support.png import read_info

            cicp = read_info(data).cicp
            assert value == "/".join(map(str, cicp)) and ("full range" in cell) == (cicp[3] == 1), cell
        elif name.startswith("tiff"):
            info = run("oiiotool", "--info", write(tmp_path, "x.tif", data))
            assert f"3 channel, {value} tiff" in info, (cell, info)
        elif name == "radiance_hdr":
            header = data[:data.index(b"\n\n")].decode("latin-1").splitlines()
            assert value in header and "linear" in cell, (cell, header)
        else:
            (space,) = re.findall(r"^Color space: (.*?)(?:, rendering intent.*)?$",
                                  run("jxlinfo", write(tmp_path, "x.jxl", data)), flags=re.M)
            assert value == space, (cell, space)


def test_the_ultrahdr_base_pixels_are_display_p3():
    """The tag is true of the pixels: libultrahdr turns the Rec.709 input into Display P3. A pure
    Rec.709 red, green and blue come out of the base JPEG (sRGB curve undone) in the proportions of
    the Rec.709 -> P3 matrix's columns (built here from both sets of primaries), not as pure primaries."""
    to_p3 = xyz_to_rgb_matrix(DISPLAY_P3) @ rgb_to_xyz_matrix(REC709_CHROMATICITIES)
    for channel in range(3):
        rgb = np.zeros((64, 64, 3), np.float32)
        rgb[..., channel] = 0.5
        base = Image.open(io.BytesIO(FORMATS["ultrahdr"].encode(rgb, Settings(), None).data)).convert("RGB")
        code = np.asarray(base, np.float64)[24:40, 24:40].reshape(-1, 3).mean(0) / 255
        linear = np.where(code <= 0.04045, code / 12.92, ((code + 0.055) / 1.055) ** 2.4)
        expected = to_p3[:, channel]
        assert np.allclose(linear / linear[channel], expected / expected[channel], atol=0.015), (channel, linear)
