"""EXR writing and reading through the official bindings, checked with an independent reader
(Debian's OpenEXR 3.1 command-line tools, a separate build of the C++ library)."""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import OpenEXR
import pytest

from lediff_core.color.ocio import CHROMATICITIES, WORKING_SPACE
from lediff_core.color.spaces import from_chromaticities
from lediff_core.io.exr import COMPRESSIONS, HALF_MAX, LOSSLESS, EXRError, EXRLayer, read_exr, write_exr
from lediff_core.io.publish import write_new_file
from support.color import ocio_apply
from support.common import HDRI_DIR, HDRIS, require_tool
from support.exr_files import exrheader_channels


def hdr_noise(h=37, w=53, seed=0):
    """Values spanning ~30 stops, negatives included, with exact float32 bit patterns."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((h, w, 3)) * np.exp2(rng.uniform(-14, 15, (h, w, 3)))).astype(np.float32)


def retile(path, out, compression="none"):
    """Have Debian's exrmaketiled decode every pixel of ``path`` and re-encode it as a tiled file."""
    exe = require_tool("exrmaketiled")
    subprocess.run([exe, "-z", compression, path, out], check=True, capture_output=True)


def test_float_round_trip_is_bit_exact_for_every_lossless_compression(tmp_path):
    rgb = hdr_noise()
    for comp in LOSSLESS:
        path = str(tmp_path / f"{comp}.exr")
        assert write_exr(path, rgb, precision="float", compression=comp) == 0
        back = read_exr(path).rgb
        assert back.dtype == np.float32
        assert np.array_equal(back.view(np.uint32), rgb.view(np.uint32)), comp


def test_half_matches_numpy_half_rounding_and_saturates(tmp_path):
    rgb = hdr_noise()
    rgb[0, 0] = [1e6, -1e6, 70000.0]
    rgb[0, 1] = [65504.0, 65519.0, 3.0]
    path = str(tmp_path / "h.exr")
    saturated = write_exr(path, rgb, precision="half", compression="zip")
    # 1e6, -1e6, 70000, 65519 and any noise value beyond the largest half (65504)
    assert saturated == 4 + int((np.abs(hdr_noise()) > 65504).sum())
    back = read_exr(path).rgb
    assert np.isfinite(back).all()
    assert back[0, 0].tolist() == [HALF_MAX, -HALF_MAX, HALF_MAX]
    assert back[0, 1].tolist() == [65504.0, 65504.0, 3.0]
    inside = np.abs(rgb) <= HALF_MAX
    assert np.array_equal(back[inside], rgb[inside].astype(np.float16).astype(np.float32))
    with OpenEXR.File(path) as f:
        assert f.channels()["RGB"].pixels.dtype == np.float16


@pytest.mark.parametrize("compression", list(COMPRESSIONS))
@pytest.mark.parametrize("precision", ["half", "float"])
def test_every_compression_is_readable_by_an_independent_reader(tmp_path, compression, precision):
    # a smooth HDR ramp (lossy codecs are built for images, not noise) with fine noise on top,
    # spanning 2^-10 .. 2^15 so that half data stays inside the half range
    yy, xx = np.mgrid[0:64, 0:96].astype(np.float32)
    ramp = np.exp2(-10 + 25 * xx / 95)[..., None] * np.array([1.0, 0.7, 0.4], np.float32)
    rgb = (ramp * (1 + 0.05 * np.sin(yy / 3))[..., None] + np.abs(hdr_noise(64, 96, 1)) * 1e-4)
    rgb = rgb.astype(np.float32)
    alpha = np.linspace(0, 1, 64 * 96, dtype=np.float32).reshape(64, 96)
    path = str(tmp_path / "in.exr")
    write_exr(path, rgb, alpha, precision=precision, compression=compression)
    out = str(tmp_path / "tiled.exr")
    retile(path, out)
    ours, theirs = read_exr(path), read_exr(out)
    assert np.array_equal(ours.rgb, theirs.rgb) and np.array_equal(ours.alpha, theirs.alpha)
    stored = rgb.astype(np.float16).astype(np.float32) if precision == "half" else rgb
    lossless = compression in LOSSLESS or (compression == "pxr24" and precision == "half")
    if lossless:
        assert np.array_equal(ours.rgb, stored)
    else:  # lossy codecs: close in log space, never Inf/NaN
        assert np.isfinite(ours.rgb).all()
        err = np.abs(np.log2(ours.rgb + 1e-3) - np.log2(stored + 1e-3))
        assert np.median(err) < 0.02 and np.percentile(err, 99) < 0.2


def test_header_attributes_seen_by_exrheader(tmp_path):
    path = str(tmp_path / "a.exr")
    write_exr(path, hdr_noise(8, 16), attributes={"prompt": '{"1": {}}', "software": "x"},
              envmap="latlong")
    text = subprocess.run([require_tool("exrheader"), path], capture_output=True, text=True,
                          check=True).stdout
    assert "chromaticities (type chromaticities)" in text
    assert "red   (0.64 0.33)" in text and "white (0.3127 0.329)" in text
    assert 'prompt (type string): "{"1": {}}"' in text
    assert "envmap (type envmap): latitude-longitude map" in text
    assert "compression (type compression): zip" in text


def test_nan_and_inf_are_refused_with_a_count(tmp_path):
    rgb = hdr_noise(10, 10)
    rgb[1, 1, 0] = np.nan
    rgb[2, 2, :] = np.inf
    path = str(tmp_path / "bad.exr")
    with pytest.raises(EXRError, match="2 pixel"):
        write_exr(path, rgb)
    assert not os.path.exists(path)


def test_reads_layers_y_and_alpha(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4) * 1000
    path = str(tmp_path / "layers.exr")
    chans = {"beauty.R": a, "beauty.G": a + 1, "beauty.B": a + 2, "beauty.A": a / 11000,
             "diffuse.R": -a, "diffuse.G": -a, "diffuse.B": -a, "depth.Z": a}
    with OpenEXR.File({}, chans) as f:
        f.write(path)
    auto = read_exr(path)
    assert auto.layer == "beauty"
    assert np.array_equal(auto.rgb, np.stack([a, a + 1, a + 2], -1))
    assert np.array_equal(auto.alpha, a / 11000)
    diffuse = read_exr(path, "diffuse")
    assert np.array_equal(diffuse.rgb[..., 1], -a) and diffuse.alpha is None
    with pytest.raises(EXRError, match="no layer 'depth'.*beauty.*diffuse"):
        read_exr(path, "depth")

    ypath = str(tmp_path / "y.exr")
    with OpenEXR.File({}, {"Y": a.astype(np.float16)}) as f:
        f.write(ypath)
    y = read_exr(ypath)
    assert y.rgb.shape == (3, 4, 3) and np.array_equal(y.rgb[..., 2], a.astype(np.float16).astype(np.float32))


def test_truncated_corrupt_and_foreign_files_get_clear_errors(tmp_path):
    good = str(tmp_path / "good.exr")
    write_exr(good, hdr_noise(64, 64), compression="zip")
    data = open(good, "rb").read()
    cases = {"truncated.exr": data[: len(data) // 2], "junk.exr": b"not an exr" * 50,
             "empty.exr": b"", "png.exr": b"\x89PNG\r\n\x1a\n" + b"\0" * 100}
    for name, payload in cases.items():
        path = str(tmp_path / name)
        open(path, "wb").write(payload)
        with pytest.raises(EXRError, match="truncated, corrupt or not an EXR"):
            read_exr(path)


def test_hostile_header_size_is_refused_before_decoding(tmp_path):
    path = str(tmp_path / "huge.exr")
    write_exr(path, hdr_noise(2, 2), compression="none")
    data = bytearray(open(path, "rb").read())
    # dataWindow is a box2i: name, type, size, then xMin yMin xMax yMax (little-endian int32)
    at = data.index(b"dataWindow\0box2i\0") + len(b"dataWindow\0box2i\0") + 4
    data[at + 8 : at + 16] = np.array([200000, 200000], "<i4").tobytes()
    open(path, "wb").write(bytes(data))
    with pytest.raises(EXRError):
        read_exr(path)


@pytest.mark.parametrize("name", HDRIS)
def test_real_hdris_read_identically_to_the_independent_reader(tmp_path, name):
    src = os.path.join(HDRI_DIR, name)
    out = str(tmp_path / "t.exr")
    retile(src, out)
    ours = read_exr(src)
    assert ours.rgb.shape == (512, 1024, 3)
    # The files are DWAB-compressed (lossy): decoders of different versions may differ slightly
    theirs = read_exr(out).rgb
    assert np.allclose(ours.rgb, theirs, rtol=2e-3, atol=1e-4)
    assert np.isfinite(ours.rgb).all()
    # Known fact of these files: several stops of dynamic range (HDR.md: 7.4-12.9 stops, 1st-99th)
    y = ours.rgb.mean(-1)
    assert np.log2(np.percentile(y[y > 0], 99) / np.percentile(y[y > 0], 1)) > 7


def test_write_new_file_never_overwrites_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.exr"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        write_new_file(str(target), lambda tmp: write_exr(tmp, hdr_noise(4, 4)))
    assert target.read_bytes() == b"precious"

    def fail_midway(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    fresh = tmp_path / "y.exr"
    with pytest.raises(OSError, match="disk full"):
        write_new_file(str(fresh), fail_midway)
    assert sorted(os.listdir(tmp_path)) == ["x.exr"]
    write_new_file(str(fresh), lambda tmp: write_exr(tmp, hdr_noise(4, 4)))
    assert sorted(os.listdir(tmp_path)) == ["x.exr", "y.exr"]


# ---------------------------------------------------------------- extra layers (EXR Layer)


def oiio_info(path):
    """(channel list {name: type}, attribute lines) from OpenImageIO's ``oiiotool --info -v``."""
    text = subprocess.run([require_tool("oiiotool"), "--info", "-v", path], capture_output=True, text=True,
                          check=True).stdout
    listed = re.search(r"channel list: (.*)", text).group(1)
    return dict(re.findall(r"([^ ,]+) \((half|float)\)", listed)), text


def raw_channels(path):
    with OpenEXR.File(path, separate_channels=True) as f:
        return {k: v.pixels.copy() for k, v in f.channels().items()}, dict(f.header())


def float_close(actual, expected):
    """Equal to float32 precision of each pixel's largest component (3x3 matrices mix components,
    and two correct float32 implementations round differently)."""
    scale = np.abs(expected).max(-1, keepdims=True)
    return bool((np.abs(actual - expected) <= 8 * np.finfo(np.float32).eps * scale).all())


def sample_layers(h=24, w=32, seed=3):
    rng = np.random.default_rng(seed)
    linear = np.abs(hdr_noise(h, w, seed))  # scene-linear, up to 2^15
    srgb = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
    depth = rng.uniform(0.1, 1e5, (h, w, 3)).astype(np.float32)  # beyond half's range on purpose
    mask = rng.uniform(0, 1, (h, w)).astype(np.float32)
    return linear, srgb, depth, mask


def test_layers_are_named_typed_and_tagged_as_independent_tools_read_them(tmp_path):
    rgb = np.abs(hdr_noise(24, 32))
    linear, srgb, depth, mask = sample_layers()
    layers = [EXRLayer("beauty_copy", linear, mask=mask), EXRLayer("bracket_dark", srgb, encoding="sRGB"),
              EXRLayer("depth", depth, encoding="data", precision="float"), EXRLayer("clip_mask", mask=mask),
              EXRLayer("aov.diffuse", linear, precision="half")]
    path = str(tmp_path / "layers.exr")
    write_exr(path, rgb, precision="half", layers=layers)
    expected = {"R": "half", "G": "half", "B": "half",
                **{f"beauty_copy.{c}": "half" for c in "RGBA"}, **{f"bracket_dark.{c}": "half" for c in "RGB"},
                **{f"depth.{c}": "float" for c in "RGB"}, "clip_mask.Y": "half",
                **{f"aov.diffuse.{c}": "half" for c in "RGB"}}
    channels, text = exrheader_channels(path)
    assert channels == expected
    assert 'lediff:dataLayers (type stringvector):\n    "depth"\n    "clip_mask"\n' in text
    assert "red   (0.64 0.33)" in text  # the main image's chromaticities are unchanged by layers
    oiio_channels, info = oiio_info(path)
    assert oiio_channels == expected
    assert 'lediff:dataLayers: "depth", "clip_mask"' in info
    # no data layer: no attribute
    write_exr(str(tmp_path / "colour.exr"), rgb, layers=layers[:2])
    assert "lediff:dataLayers" not in exrheader_channels(str(tmp_path / "colour.exr"))[1]


def test_float_layers_are_bit_exact_and_half_layers_exact_half_values(tmp_path):
    rgb = np.abs(hdr_noise(24, 32))
    linear, _, depth, mask = sample_layers()
    for file_precision in ("float", "half"):
        path = str(tmp_path / f"{file_precision}.exr")
        saturated = write_exr(path, rgb, precision=file_precision, layers=[
            EXRLayer("beauty", linear, mask=mask), EXRLayer("depth", depth, encoding="data", precision="float"),
            EXRLayer("matte", mask=mask), EXRLayer("depth_half", depth, encoding="data", precision="half")])
        chans, _ = raw_channels(path)
        stored = np.float32 if file_precision == "float" else np.float16

        def as_stored(x, stored=stored):  # half saturates at +/-65504 (numpy's cast would make Inf)
            return x if stored == np.float32 else np.clip(x, -HALF_MAX, HALF_MAX).astype(np.float16)

        for i, c in enumerate("RGB"):
            assert chans[f"beauty.{c}"].dtype == stored
            assert np.array_equal(chans[f"beauty.{c}"], as_stored(linear[..., i]))
            assert chans[f"depth.{c}"].dtype == np.float32
            assert np.array_equal(chans[f"depth.{c}"].view(np.uint32), depth[..., i].view(np.uint32))
            # 1e5 is beyond half: saturated at 65504, never Inf
            assert np.array_equal(chans[f"depth_half.{c}"], np.minimum(depth[..., i], HALF_MAX).astype(np.float16))
        assert np.array_equal(chans["beauty.A"], as_stored(mask))
        assert np.array_equal(chans["matte.Y"], as_stored(mask))
        beyond_half = int((depth > HALF_MAX).sum())
        assert beyond_half > 0
        assert saturated == beyond_half + (int((np.abs(rgb) > HALF_MAX).sum() + (linear > HALF_MAX).sum())
                                           if file_precision == "half" else 0)
        # our reader returns exactly what the bindings see, and knows the data layers
        assert np.array_equal(read_exr(path, "beauty").rgb, np.stack([chans[f"beauty.{c}"] for c in "RGB"], -1))
        assert np.array_equal(read_exr(path, "beauty").alpha, chans["beauty.A"])
        assert np.array_equal(read_exr(path, "depth").rgb.view(np.uint32), depth.view(np.uint32))
        matte = read_exr(path, "matte")
        assert np.array_equal(matte.rgb, np.repeat(chans["matte.Y"][..., None].astype(np.float32), 3, -1))
        assert [read_exr(path, n).is_data for n in ("", "beauty", "depth", "matte")] == [False, False, True, True]


def test_srgb_layers_are_linearised_and_colour_layers_converted_but_data_and_masks_never(tmp_path):
    h, w = 4, 6
    # IEC 61966-2-1 reference points: 0.5 -> 0.214041140, the segment joint 0.04045 -> 0.0031308, 1 -> 1
    srgb = np.zeros((h, w, 3), np.float32)
    srgb[..., 0], srgb[..., 1], srgb[..., 2] = 0.5, 0.04045, 1.0
    expected_linear = np.zeros_like(srgb)
    expected_linear[..., 0], expected_linear[..., 1], expected_linear[..., 2] = 0.214041140, 0.04045 / 12.92, 1.0
    rgb = np.abs(hdr_noise(h, w))
    normals = hdr_noise(h, w, 5) / 3e4  # signed data: must come back exactly, never converted
    mask = np.full((h, w), 0.5, np.float32)
    layers = [EXRLayer("preview", srgb, mask=mask, encoding="sRGB"), EXRLayer("hdr", rgb),
              EXRLayer("normals", normals, encoding="data"), EXRLayer("matte", mask=mask)]
    for space in ("Linear Rec.709 (sRGB)", "ACEScg", "ACES2065-1"):
        path = str(tmp_path / f"{space.split()[0]}.exr")
        write_exr(path, rgb, precision="float", layers=layers, colorspace=space)
        chans, header = raw_channels(path)
        assert np.allclose(header["chromaticities"], CHROMATICITIES[space])
        layer = {name: np.stack([chans[f"{name}.{c}"] for c in "RGB"], -1) for name in ("preview", "hdr", "normals")}
        main = np.stack([chans[c] for c in "RGB"], -1)
        reference_main = ocio_apply(rgb, WORKING_SPACE, space)
        assert float_close(main, reference_main)
        assert np.array_equal(layer["hdr"], main)  # a linear layer goes exactly the main image's way
        assert float_close(layer["preview"], ocio_apply(expected_linear, WORKING_SPACE, space))
        assert np.array_equal(layer["normals"], normals)
        assert np.array_equal(chans["preview.A"], mask) and np.array_equal(chans["matte.Y"], mask)
        assert tuple(header["lediff:dataLayers"]) == ("normals", "matte")
    # in the working space nothing is converted: the sRGB layer is the closed-form linearisation
    write_exr(str(tmp_path / "w.exr"), rgb, precision="float", layers=layers[:1])
    chans, _ = raw_channels(str(tmp_path / "w.exr"))
    assert float_close(np.stack([chans[f"preview.{c}"] for c in "RGB"], -1), expected_linear)
    # and a colour layer read back and converted to the working space is the input to float
    # precision: of the pixel's largest component, as the 3x3 matrices mix the components
    back = from_chromaticities(read_exr(str(tmp_path / "ACEScg.exr"), "hdr").rgb,
                               raw_channels(str(tmp_path / "ACEScg.exr"))[1]["chromaticities"])[0]
    assert float_close(back, rgb)


@pytest.mark.parametrize("name, fix", [
    ("", "fill in its name"), ("   ", "fill in its name"), (" depth", "whitespace"), ("depth\t", "whitespace"),
    (".depth", "remove the leading"), ("depth.", "remove the leading"), ("aov..diffuse", "doubled dot"),
    ("R", "main image"), ("a", "main image"), ("RGBA", "main image"), ("rgb", "main image"),
    ("x" * 254, "shorten it"),
])
def test_bad_layer_names_are_refused_with_the_fix(tmp_path, name, fix):
    with pytest.raises(EXRError, match=fix):
        write_exr(str(tmp_path / "x.exr"), hdr_noise(4, 4), layers=[EXRLayer(name, mask=np.ones((4, 4)))])
    assert not os.listdir(tmp_path)


def test_duplicate_sizes_batches_and_empty_layers_are_refused_before_writing(tmp_path):
    rgb, mask = hdr_noise(32, 48), np.ones((32, 48), np.float32)
    path = str(tmp_path / "x.exr")
    with pytest.raises(EXRError, match="two EXR layers are named 'depth'.*rename one"):
        write_exr(path, rgb, layers=[EXRLayer("depth", mask=mask), EXRLayer("matte", mask=mask),
                                     EXRLayer("depth", mask=mask)])
    with pytest.raises(EXRError, match="'small' is 24x16 but the image is 48x32.*resize the layer"):
        write_exr(path, rgb, layers=[EXRLayer("small", np.zeros((16, 24, 3), np.float32))])
    with pytest.raises(EXRError, match="neither an image nor a mask"):
        EXRLayer("empty")
    with pytest.raises(EXRError, match="mask is 8x8 but its image is 48x32"):
        EXRLayer("x", np.zeros((32, 48, 3)), mask=np.ones((8, 8)))
    with pytest.raises(EXRError, match="unknown encoding 'log'"):
        EXRLayer("x", mask=mask, encoding="log")
    with pytest.raises(EXRError, match="RGB\\(A\\) image"):
        EXRLayer("x", np.zeros((32, 48, 2)))
    assert not os.listdir(tmp_path)


def test_nan_or_inf_in_a_layer_is_refused_naming_it_and_nothing_is_published(tmp_path):
    rgb = np.abs(hdr_noise(8, 8))
    image, mask = np.ones((8, 8, 3), np.float32), np.ones((8, 8), np.float32)
    image[1, 2, 0], image[3, 3] = np.nan, np.inf
    mask[5, 5] = -np.inf
    final = str(tmp_path / "x.exr")
    for layer, count in ((EXRLayer("depth", image, encoding="data"), 2), (EXRLayer("matte", mask=mask), 1),
                         (EXRLayer("beauty", np.ones((8, 8, 3)), mask=mask), 1)):
        with pytest.raises(EXRError, match=f"layer '{layer.name}': {count} pixel"):
            write_new_file(final, lambda tmp, layer=layer: write_exr(tmp, rgb, layers=[layer]))
        assert os.listdir(tmp_path) == []


def test_layer_batches_give_one_image_per_saved_image_or_one_for_all():
    images = np.arange(3 * 2 * 2 * 3, dtype=np.float32).reshape(3, 2, 2, 3)
    per_image = EXRLayer("x", images, mask=np.ones((1, 2, 2)))
    assert per_image.count == 3 and per_image.size == (2, 2)
    assert np.array_equal(per_image.for_image(2, 3).image, images[2])
    assert per_image.for_image(2, 3).mask.shape == (2, 2)
    one = EXRLayer("y", images[:1])
    assert np.array_equal(one.for_image(2, 3).image, images[0])
    with pytest.raises(EXRError, match="'x' has 3 images for 2 saved image"):
        per_image.for_image(0, 2)
    with pytest.raises(EXRError, match="3 images but 2 masks"):
        EXRLayer("z", images, mask=np.ones((2, 2, 2)))


def test_an_rgba_layer_keeps_its_alpha_unconverted_and_a_mask_replaces_it(tmp_path):
    rgba = np.full((4, 6, 4), 0.5, np.float32)
    rgba[..., 3] = 0.25
    path = str(tmp_path / "rgba.exr")
    write_exr(path, np.ones((4, 6, 3), np.float32), precision="float", colorspace="ACEScg",
              layers=[EXRLayer("preview", rgba, encoding="sRGB"),
                      EXRLayer("masked", rgba, mask=np.full((4, 6), 0.75, np.float32), encoding="sRGB")])
    chans, _ = raw_channels(path)
    assert (chans["preview.A"] == 0.25).all() and (chans["masked.A"] == 0.75).all()
    # sRGB 0.5 grey -> 0.214041140 linear, still grey in ACEScg (both whites map to each other)
    assert np.allclose([chans[f"preview.{c}"] for c in "RGB"], 0.214041140, rtol=1e-5, atol=0)
