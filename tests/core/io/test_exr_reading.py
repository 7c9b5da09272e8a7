"""Load EXR reads what other tools write: luminance/chroma files from OpenEXR's C++ RGBA interface,
data/display windows, parts and views, tiled and mip-mapped files, damaged and fuzzed files.

Independent writers and references: Debian's OpenEXR 3.1 library (a separate build of the C++
library; tests/support/tools/exr_rgba.cpp uses its RGBA interface, compiled here against libopenexr-dev,
and its tools exrmultipart, exrmultiview, exrmaketiled), OpenImageIO's oiiotool, and OpenEXR's
public damaged-file collection (tests/data/openexr-damaged, BSD-3)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import OpenEXR
import pytest

import lediff_core.io.exr_yc as yca
from lediff_core.io.exr import EXRError, read_exr
from support.common import DATA, REPO, require_tool
from support.exr_files import colourful, half_ulps, write_scanline_exr

DAMAGED = os.path.join(DATA, "openexr-damaged")
XYZ = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1 / 3, 1 / 3)  # OpenEXR's XYZ-primaries chromaticities
AP0 = (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767)
REC709 = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)




# ---------------------------------------------------------------- luminance/chroma (YC)

@pytest.mark.parametrize(
    "chromaticities, alpha, origin",
    [(None, False, (0, 0)), (REC709, True, (2, -4)), (XYZ, False, (0, 0)), (AP0, True, (-6, 10))],
    ids=["default", "rec709-alpha-offset", "xyz", "ap0-alpha-offset"],
)
def test_yc_files_load_as_the_cpp_rgba_interface_reconstructs_them(
    tmp_path, exr_rgba, chromaticities, alpha, origin
):
    rgb = colourful()
    a = np.linspace(0, 1, rgb.shape[0] * rgb.shape[1], dtype=np.float16).reshape(rgb.shape[:2])
    header = {"chromaticities": chromaticities} if chromaticities else {}
    src = write_scanline_exr(tmp_path / "src.exr", {"RGBA" if alpha else "RGB": np.dstack([rgb, a]) if alpha else rgb},
                header, origin)
    yc, ref = str(tmp_path / "yc.exr"), str(tmp_path / "ref.exr")
    subprocess.run([exr_rgba, "yc", src, yc], check=True)  # the C++ library writes Y, RY, BY
    subprocess.run([exr_rgba, "rgba", yc, ref], check=True)  # and reads them back as RGB

    with OpenEXR.File(yc, separate_channels=True) as f:
        chans = {n: (c.xSampling, c.ySampling) for n, c in f.channels().items()}
    assert chans["Y"] == (1, 1) and chans["RY"] == chans["BY"] == (2, 2)
    assert ("R" in chans) is False and ("A" in chans) is alpha

    ours, theirs = read_exr(yc), read_exr(ref)
    differ = ours.rgb != theirs.rgb
    assert differ.mean() < 3e-3 and half_ulps(ours.rgb, theirs.rgb).max() <= 2
    if alpha:
        assert np.array_equal(ours.alpha, a.astype(np.float32))
    # colour, not grey, and close to the original where chroma is smooth (the writer's chroma
    # subsampling and rounding are lossy; small saturated patches bleed)
    spread = ours.rgb.max(-1) - ours.rgb.min(-1)
    assert (spread > 0.1 * ours.rgb.max(-1)).mean() > 0.5
    smooth = ours.rgb[38:, 24:] / rgb[38:, 24:].astype(np.float32)
    assert np.median(np.abs(smooth - 1)) < 0.05
    if chromaticities:
        assert np.allclose(ours.header["chromaticities"], chromaticities, atol=1e-6)


def test_grey_yc_images_stay_exactly_grey(tmp_path, exr_rgba):
    """OpenEXR's writer stores grey pixels with zero chroma (and rounds Y to fewer bits), and its
    reader turns zero chroma back into R = G = B = Y exactly."""
    y = np.exp2(np.linspace(-20, 15, 32 * 48)).reshape(32, 48).astype(np.float16)
    src = write_scanline_exr(tmp_path / "src.exr", {"RGB": np.repeat(y[..., None], 3, -1)})
    yc = str(tmp_path / "yc.exr")
    subprocess.run([exr_rgba, "yc", src, yc], check=True)
    with OpenEXR.File(yc, separate_channels=True) as f:
        stored = f.channels()["Y"].pixels.astype(np.float32)
        assert not f.channels()["RY"].pixels.any() and not f.channels()["BY"].pixels.any()
    rgb = read_exr(yc).rgb
    assert all(np.array_equal(rgb[..., i], stored) for i in range(3))


def test_yc_saturation_fix_matches_the_cpp_reader_on_sharp_hue_edges(tmp_path, exr_rgba, monkeypatch):
    """One-pixel saturated lines, where chroma filtering overshoots: the C++ reader desaturates
    pixels there, and so do we (without that step the result would differ)."""
    rgb = np.full((32, 32, 3), 1.0, np.float16)
    rgb[:, 15] = (40.0, 0.01, 0.01)
    rgb[9, :] = (0.01, 0.01, 30.0)
    src = write_scanline_exr(tmp_path / "src.exr", {"RGB": rgb})
    yc, ref = str(tmp_path / "yc.exr"), str(tmp_path / "ref.exr")
    subprocess.run([exr_rgba, "yc", src, yc], check=True)
    subprocess.run([exr_rgba, "rgba", yc, ref], check=True)
    ours, theirs = read_exr(yc).rgb, read_exr(ref).rgb
    assert half_ulps(ours, theirs).max() <= 2 and (ours != theirs).mean() < 1e-3
    with OpenEXR.File(yc, separate_channels=True) as f:
        c = {n: ch.pixels.astype(np.float32) for n, ch in f.channels().items()}
    monkeypatch.setattr(yca, "_fix_saturation", lambda rows, weights, q: rows[1:-1])
    plain = yca.yca_to_rgb(c["Y"], c["RY"], c["BY"], (0.2126729, 0.7151522, 0.0721750))
    assert (plain != theirs).any(-1).sum() > 10  # the fix changes pixels the C++ reader changes


def test_full_resolution_chroma_in_a_layer_follows_the_published_formula(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.uniform(0.1, 50, (6, 8)).astype(np.float32)
    ry, by = rng.uniform(-0.5, 2, (2, 6, 8)).astype(np.float32)
    path = write_scanline_exr(tmp_path / "l.exr", {"diffuse.Y": y, "diffuse.RY": ry, "diffuse.BY": by,
                                      "other.R": y, "other.G": y, "other.B": y})
    img = read_exr(path, "diffuse")
    r, b = (ry + 1) * y, (by + 1) * y
    # luminance weights of Rec.709 primaries and D65 (SMPTE RP 177 derivation, 7 digits)
    g = (y - 0.2126390 * r - 0.0721923 * b) / 0.7151687
    assert img.layer == "diffuse"
    assert np.allclose(img.rgb, np.stack([r, g, b], -1), rtol=2e-5, atol=1e-5)


def test_luminance_only_is_grey_and_one_chroma_channel_is_refused(tmp_path):
    y = np.linspace(0, 9, 12, dtype=np.float32).reshape(3, 4)
    grey = read_exr(write_scanline_exr(tmp_path / "y.exr", {"Y": y})).rgb
    assert all(np.array_equal(grey[..., i], y) for i in range(3))
    with pytest.raises(EXRError, match="only one of the chroma channels"):
        read_exr(write_scanline_exr(tmp_path / "yr.exr", {"Y": y, "RY": y}))


# ---------------------------------------------------------------- windows

def test_data_and_display_windows_of_files_written_by_oiiotool(tmp_path):
    oiiotool = require_tool("oiiotool")
    rgb = colourful(40, 48).astype(np.float32)
    src = write_scanline_exr(tmp_path / "src.exr", {"RGB": rgb})
    shifted, overscan = str(tmp_path / "shifted.exr"), str(tmp_path / "overscan.exr")
    # data window (6,-4)-(53,35) inside/outside a 40x30 display window at the origin
    subprocess.run([oiiotool, src, "--origin", "+6-4", "--fullsize", "40x30+0+0", "-o", shifted], check=True)
    # data window (0,0)-(47,39) around a 30x20 display window at (5,6): render overscan
    subprocess.run([oiiotool, src, "--fullsize", "30x20+5+6", "-o", overscan], check=True)

    data = read_exr(shifted)  # the default: the stored pixels, untouched
    assert np.array_equal(data.rgb, rgb) and data.alpha is None
    disp = read_exr(shifted, window="display")
    assert disp.rgb.shape == (30, 40, 3)
    assert np.array_equal(disp.rgb[:, 6:], rgb[4:34, :34])  # display (x, y) = data (x - 6, y + 4)
    assert not disp.rgb[:, :6].any() and not disp.alpha[:, :6].any() and (disp.alpha[:, 6:] == 1).all()

    over = read_exr(overscan, window="display")
    assert np.array_equal(over.rgb, rgb[6:26, 5:35]) and (over.alpha == 1).all()
    assert np.array_equal(read_exr(overscan).rgb, rgb)
    with pytest.raises(EXRError, match="unknown window"):
        read_exr(overscan, window="full")
    for path in (shifted, overscan):  # oiiotool's own crop/pad to the display window agrees
        ref = str(tmp_path / "ref.exr")
        subprocess.run([oiiotool, path, "--croptofull", "-o", ref], check=True)
        with OpenEXR.File(ref, separate_channels=True) as f:
            expected = np.stack([f.channels()[c].pixels.astype(np.float32) for c in "RGB"], -1)
        assert np.array_equal(read_exr(path, window="display").rgb, expected)


def test_display_window_keeps_the_files_alpha(tmp_path):
    rgba = np.random.default_rng(2).uniform(0, 4, (4, 6, 4)).astype(np.float32)
    path = write_scanline_exr(tmp_path / "a.exr", {"RGBA": rgba}, origin=(2, 1), display=(0, 0, 9, 5))
    img = read_exr(path, window="display")
    assert np.array_equal(img.alpha[1:5, 2:8], rgba[..., 3]) and img.alpha.sum() == rgba[..., 3].sum()


# ---------------------------------------------------------------- parts and views

def two_images(tmp_path):
    rng = np.random.default_rng(3)
    a, b = (rng.uniform(0, 100, (6, 8, 3)).astype(np.float32) for _ in range(2))
    return a, b, write_scanline_exr(tmp_path / "a.exr", {"RGB": a}), write_scanline_exr(tmp_path / "b.exr", {"RGB": b})


def test_parts_of_a_file_combined_by_exrmultipart(tmp_path):
    tool = require_tool("exrmultipart")
    a, b, pa, pb = two_images(tmp_path)
    out = str(tmp_path / "mp.exr")
    subprocess.run([tool, "-combine", "-i", f"{pa}::beauty", f"{pb}::diffuse", "-o", out],
                   check=True, capture_output=True)
    assert np.array_equal(read_exr(out).rgb, a)  # default: the first part
    for choice in ("diffuse", "1"):
        img = read_exr(out, part=choice)
        assert np.array_equal(img.rgb, b) and img.part == 1
    with pytest.raises(EXRError, match="no part 'specular'.*0 'beauty', 1 'diffuse'"):
        read_exr(out, part="specular")
    with pytest.raises(EXRError, match="no part '2'"):
        read_exr(out, part="2")


def test_views_of_a_file_combined_by_exrmultiview(tmp_path):
    tool = require_tool("exrmultiview")
    a, b, pa, pb = two_images(tmp_path)
    out = str(tmp_path / "mv.exr")
    subprocess.run([tool, "left", pa, "right", pb, out], check=True, capture_output=True)
    default = read_exr(out)
    assert np.array_equal(default.rgb, a) and default.view == "left"
    assert np.array_equal(read_exr(out, view="right").rgb, b)
    with pytest.raises(EXRError, match=r"no view 'centre'; its views are \['left', 'right'\]"):
        read_exr(out, view="centre")


def test_multi_part_views_built_to_the_openexr_layout(tmp_path):
    """OpenEXR 2 multi-part stereo: one part per view, each with a ``view`` attribute."""
    a, b, _, _ = two_images(tmp_path)
    path = str(tmp_path / "mpv.exr")
    parts = [OpenEXR.Part({"name": f"rgba.{v}", "view": v, "type": OpenEXR.scanlineimage}, {"RGB": x})
             for v, x in (("left", a), ("right", b))]
    with OpenEXR.File(parts) as f:
        f.write(path)
    assert np.array_equal(read_exr(path).rgb, a)
    img = read_exr(path, view="right")
    assert np.array_equal(img.rgb, b) and img.part == 1 and img.view == "right"
    with pytest.raises(EXRError, match="no view 'centre'.*'rgba.left' \\(view 'left'\\)"):
        read_exr(path, view="centre")
    with pytest.raises(EXRError, match="holds view 'left', not 'right'"):
        read_exr(path, part="0", view="right")


def test_a_depth_part_first_does_not_hide_the_colour_parts(tmp_path):
    """OpenEXR's Beachball sample puts depth and motion parts between the colour parts of each
    view; the default (and a view) picks the first part of it that has colour."""
    a, b, _, _ = two_images(tmp_path)
    depth = np.ascontiguousarray(a[..., 0])
    parts = [OpenEXR.Part({"name": "depth_left", "view": "left", "type": OpenEXR.scanlineimage}, {"Z": depth}),
             OpenEXR.Part({"name": "rgba_left", "view": "left", "type": OpenEXR.scanlineimage}, {"RGB": a}),
             OpenEXR.Part({"name": "depth_right", "view": "right", "type": OpenEXR.scanlineimage}, {"Z": depth}),
             OpenEXR.Part({"name": "rgba_right", "view": "right", "type": OpenEXR.scanlineimage}, {"RGB": b})]
    path = str(tmp_path / "beachball-like.exr")
    with OpenEXR.File(parts) as f:
        f.write(path)
    img = read_exr(path)
    assert img.part == 1 and np.array_equal(img.rgb, a)
    img = read_exr(path, view="right")
    assert img.part == 3 and np.array_equal(img.rgb, b)
    with pytest.raises(EXRError, match="no colour channels"):
        read_exr(path, part="depth_left")


@pytest.mark.parametrize("prefixed_default", [False, True])
def test_blender_multilayer_stereo_layout(tmp_path, prefixed_default):
    """Blender's multilayer EXR names channels ViewLayer.Pass[.view].Channel, with a multiView
    attribute for stereo; OpenEXR's rule makes a channel without a view the default view's."""
    a, b, _, _ = two_images(tmp_path)
    left = "left." if prefixed_default else ""
    chans = {}
    for i, c in enumerate("RGB"):
        chans[f"ViewLayer.Combined.{left}{c}"] = np.ascontiguousarray(a[..., i])
        chans[f"ViewLayer.Combined.right.{c}"] = np.ascontiguousarray(b[..., i])
    chans["ViewLayer.Depth.Z"] = np.ascontiguousarray(a[..., 0])
    chans["ViewLayer.Depth.right.Z"] = np.ascontiguousarray(b[..., 0])
    path = write_scanline_exr(tmp_path / "blender.exr", chans, {"multiView": ["left", "right"]})
    img = read_exr(path)
    assert img.layer == "ViewLayer.Combined" and np.array_equal(img.rgb, a)
    assert np.array_equal(read_exr(path, view="right").rgb, b)
    assert np.array_equal(read_exr(path, "ViewLayer.Combined", view="right").rgb, b)


def test_channel_names_written_by_oiiotool_in_other_conventions(tmp_path):
    """Lower-case and long channel names (``diffuse.red``) and a Blender-style layer, each
    renamed by OpenImageIO's oiiotool, load like R, G, B."""
    oiiotool = require_tool("oiiotool")
    a, _, pa, _ = two_images(tmp_path)
    for names, layer in (("r,g,b", ""), ("diffuse.red,diffuse.green,diffuse.blue", "diffuse"),
                         ("ViewLayer.Combined.R,ViewLayer.Combined.G,ViewLayer.Combined.B", "ViewLayer.Combined")):
        out = str(tmp_path / "renamed.exr")
        subprocess.run([oiiotool, pa, "--chnames", names, "-o", out], check=True)
        img = read_exr(out)
        assert img.layer == layer and np.array_equal(img.rgb, a), names


# ---------------------------------------------------------------- tiles and mip-maps

@pytest.mark.parametrize("how", ["exrmaketiled-mipmap", "exrmaketiled-ripmap", "oiiotool-texture"])
def test_tiled_and_multiresolution_files_give_the_full_resolution_level(tmp_path, how):
    a = colourful(40, 56).astype(np.float32)
    src = write_scanline_exr(tmp_path / "src.exr", {"RGB": a})
    out = str(tmp_path / "tiled.exr")
    if how.startswith("exrmaketiled"):
        flag = "-m" if how.endswith("mipmap") else "-r"
        subprocess.run([require_tool("exrmaketiled"), flag, "-t", "16", "16", src, out], check=True)
    else:
        subprocess.run([require_tool("oiiotool"), src, "-otex", out], check=True)
    with OpenEXR.File(out, header_only=True) as f:
        tiles = f.header()["tiles"]
    assert "LEVELS" in str(tiles.mode)  # really a multi-resolution file
    assert np.array_equal(read_exr(out).rgb, a)


def test_deep_parts_are_refused_and_flat_parts_beside_them_load(tmp_path):
    samples = np.empty((2, 3), dtype=object)
    for i in range(2):
        for j in range(3):
            samples[i, j] = np.array([1.0, 2.0], np.float32)  # two samples per pixel
    flat = np.full((2, 3, 3), 5.0, np.float32)
    path = str(tmp_path / "deep.exr")
    parts = [OpenEXR.Part({"name": "deep", "type": OpenEXR.deepscanline,
                           "compression": OpenEXR.ZIPS_COMPRESSION}, {"R": samples, "G": samples, "B": samples}),
             OpenEXR.Part({"name": "flat", "type": OpenEXR.scanlineimage}, {"RGB": flat})]
    with OpenEXR.File(parts) as f:
        f.write(path)
    with pytest.raises(EXRError, match="'deep' of .* is a deep image"):
        read_exr(path)
    assert np.array_equal(read_exr(path, part="flat").rgb, flat)


# ---------------------------------------------------------------- damaged and fuzzed files

WORKER = """
import sys
from lediff_core.io.exr import EXRError, read_exr
for path in sys.stdin.read().splitlines():
    print("START", path, flush=True)
    try:
        read_exr(path)
        result = "image"
    except EXRError:
        result = "EXRError"
    except Exception as e:
        result = "OTHER " + type(e).__name__ + ": " + str(e).replace(chr(10), " ")
    print("END", result, flush=True)
"""


def read_in_child(paths, timeout):
    """Read every file in a child process (a crash there cannot take pytest down); returns the
    per-file results. Fails on a crash, a hang or an exception other than EXRError."""
    proc = subprocess.run([sys.executable, "-c", WORKER], input="\n".join(paths), text=True,
                          capture_output=True, timeout=timeout, cwd=REPO)
    lines = proc.stdout.splitlines()
    started = [ln[6:] for ln in lines if ln.startswith("START ")]
    results = [ln[4:] for ln in lines if ln.startswith("END ")]
    if proc.returncode != 0:
        pytest.fail(f"reader crashed (exit {proc.returncode}) on {started[-1] if started else '?'}: "
                    f"{proc.stderr[-2000:]}")
    assert len(results) == len(paths)
    others = [(p, r) for p, r in zip(paths, results, strict=True) if r.startswith("OTHER")]
    assert not others, others[:5]
    return results


def test_corrupt_tile_descriptions_are_refused_before_decoding(tmp_path):
    """A fuzzed tile size (4 x 16 million pixels for an 8x6 image) made the decoder allocate and
    loop for seconds; the header check refuses it at once."""
    src = write_scanline_exr(tmp_path / "src.exr", {"RGB": np.ones((6, 8, 3), np.float32)})
    tiled = str(tmp_path / "tiled.exr")
    subprocess.run([require_tool("exrmaketiled"), "-m", "-t", "4", "4", src, tiled], check=True)
    data = bytearray(open(tiled, "rb").read())
    # tiledesc: name, type, size (4 bytes), then xSize, ySize (little-endian uint32), mode
    at = data.index(b"tiles\0tiledesc\0") + len(b"tiles\0tiledesc\0") + 4
    data[at + 4 : at + 8] = np.array([16580612], "<u4").tobytes()
    open(tiled, "wb").write(bytes(data))
    with pytest.raises(EXRError, match="4x16580612 tiles for a 8x6 image"):
        read_exr(tiled)


def test_a_small_file_claiming_a_huge_image_is_refused_before_allocating(tmp_path):
    """16000x16000 RGBA is 3 GB of float32 once decoded; a 1 kB file cannot hold the 1000 chunks
    (16 lines each for ZIP) such an image needs."""
    path = write_scanline_exr(tmp_path / "small.exr", {"RGBA": np.ones((64, 64, 4), np.float32)})
    data = bytearray(open(path, "rb").read())
    at = data.index(b"dataWindow\0box2i\0") + len(b"dataWindow\0box2i\0") + 4
    data[at + 8 : at + 16] = np.array([15999, 15999], "<i4").tobytes()
    open(path, "wb").write(bytes(data))
    with pytest.raises(EXRError, match="needing at least 1000 chunks.*truncated or corrupt"):
        read_exr(path)


def test_openexr_damaged_files_give_clear_errors_without_crashing(tmp_path):
    paths = sorted(os.path.join(DAMAGED, f) for f in os.listdir(DAMAGED) if not f.endswith(".md"))
    assert len(paths) == 130
    results = read_in_child(paths, timeout=120)
    assert results.count("EXRError") >= 125  # measured: 129 errors, 1 readable file


def test_fuzzed_and_truncated_files_give_clear_errors_without_crashing(tmp_path, exr_rgba):
    """Random byte flips (in the header and anywhere) and truncations of valid files of every
    kind read here; each mutant is read in a child process."""
    rng = np.random.default_rng(2026)
    a = colourful(40, 48)
    sources = []
    for comp in ("ZIP", "PIZ", "B44", "DWAA", "RLE", "PXR24"):
        sources.append(write_scanline_exr(tmp_path / f"{comp}.exr", {"RGBA": np.dstack([a, a[..., :1]])},
                             {"compression": getattr(OpenEXR, f"{comp}_COMPRESSION")}))
    subprocess.run([require_tool("exrmaketiled"), "-m", "-t", "16", "16", sources[0],
                    str(tmp_path / "mip.exr")], check=True)
    subprocess.run([exr_rgba, "yc", sources[0], str(tmp_path / "yc.exr")], check=True)
    parts = [OpenEXR.Part({"name": n, "type": OpenEXR.scanlineimage}, {"RGB": a.astype(np.float32)})
             for n in ("one", "two")]
    with OpenEXR.File(parts) as f:
        f.write(str(tmp_path / "mp.exr"))
    # colour in the second part: read through the single-part view of that part
    parts = [OpenEXR.Part({"name": "depth", "type": OpenEXR.scanlineimage}, {"Z": a[..., 0].astype(np.float32)}),
             OpenEXR.Part({"name": "beauty", "type": OpenEXR.scanlineimage}, {"RGB": a.astype(np.float32)})]
    with OpenEXR.File(parts) as f:
        f.write(str(tmp_path / "mp1.exr"))
    sources += [str(tmp_path / n) for n in ("mip.exr", "yc.exr", "mp.exr", "mp1.exr")]
    mutants = []
    for src in sources:
        data = np.frombuffer(open(src, "rb").read(), np.uint8)
        for i in range(60):
            d = data.copy()
            if i % 3 != 1:  # flip 1-16 bytes, half of the time within the header
                k = int(rng.integers(1, 17))
                reach = len(d) if rng.random() < 0.5 else min(len(d), 400)
                d[rng.integers(0, reach, k)] = rng.integers(0, 256, k)
            if i % 3 != 0:  # truncate
                d = d[: int(rng.integers(0, len(d)))]
            path = str(tmp_path / f"m{len(mutants)}.exr")
            open(path, "wb").write(d.tobytes())
            mutants.append(path)
    results = read_in_child(mutants, timeout=300)
    assert results.count("EXRError") > len(mutants) // 2


# ---------------------------------------------------------------- the Load EXR node in ComfyUI


