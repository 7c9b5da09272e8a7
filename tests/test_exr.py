"""EXR writing and reading through the official bindings, checked with an independent reader
(Debian's OpenEXR 3.1 command-line tools, a separate build of the C++ library)."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import OpenEXR
import pytest

from lediff_core.io.exr import COMPRESSIONS, HALF_MAX, LOSSLESS, EXRError, read_exr, write_exr
from lediff_core.io.publish import write_new_file
from lediff_testing import HDRI_DIR, HDRIS, require_tool


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
