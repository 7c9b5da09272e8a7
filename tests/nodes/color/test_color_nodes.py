"""Colour management inside a genuine ComfyUI: HDR Color Space against core's own hlg_to_linear and
Save Image (Advanced), Save EXR's colorspace against PyOpenColorIO and Debian's exrheader, Load EXR
on files whose pixels and chromaticities were written by other tools (oiiotool, exrstdattr, core)."""

from __future__ import annotations

import logging
import os
import subprocess

import numpy as np
import OpenEXR
import pytest
import torch

from lediff_core.color.log import LOG_ENCODINGS
from lediff_core.color.ocio import CHROMATICITIES, LINEAR_SPACES, WORKING_SPACE
from lediff_core.color.spaces import COLOR_SPACES, HLG_SPACE, LOG_SPACES, PQ_SPACE, convert_image
from support.color import XYZ_PRIMARIES, hdr_pixels, ocio_apply, rel_error, rp177
from support.comfy_harness import failure
from support.common import require_tool
from support.exr_files import write_input

HLG_WHITE_SCENE = 0.26496256  # BT.2100 inverse OETF of BT.2408's 0.75 signal


def read_output(path):
    with OpenEXR.File(path) as f:
        return f.channels()["RGB"].pixels.copy(), dict(f.header())


def image_of(h=16, w=24, seed=0, lo=-8, hi=3):
    return hdr_pixels(h * w, seed, lo, hi).reshape(h, w, 3)


def load_save(image, load=None, save=None, between=None):
    """Load EXR -> [between nodes] -> Save EXR (float, zip) as an API graph."""
    g = {"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": image, "layer": "", **(load or {})}}}
    last = ["1", 0]
    for i, (class_type, inputs) in enumerate(between or [], start=2):
        g[str(i)] = {"class_type": class_type, "inputs": {"image": last, **inputs}}
        last = [str(i), 0]
    g["9"] = {"class_type": "LEDiffSaveEXR", "inputs": {
        "images": last, "filename_prefix": "out/x", "precision": "float", "compression": "zip",
        "input_encoding": "linear", "envmap": "none", **(save or {})}}
    return g


def output(host, n=1):
    return read_output(os.path.join(host.output_dir, "out", f"x_{n:05}.exr"))


def test_node_is_registered_with_the_fifteen_spaces(host):
    from comfy_api.latest import io

    cls = host.node_class("LEDiffColorSpace")
    assert issubclass(cls, io.ComfyNode)
    schema = cls.GET_SCHEMA()
    assert (schema.display_name, schema.category) == ("HDR Color Space", "LEDiff/color")
    assert all(i.tooltip for i in schema.inputs) and all(o.tooltip for o in schema.outputs)
    inputs = {i.id: i for i in schema.inputs}
    assert list(inputs) == ["image", "source", "target", "reference_white"]
    expected = ["Linear Rec.709 (sRGB)", "Linear P3-D65", "Linear Rec.2020", "ACEScg", "ACES2065-1",
                "HLG Rec.2020 (ComfyUI HDR)", "PQ Rec.2020", "ACEScct (AP1)", "ARRI LogC3 (EI 800, AWG3)",
                "ARRI LogC4 (AWG4)", "Sony S-Log3 (S-Gamut3.Cine)", "PU21 (banding_glare, Rec.709)",
                "X2HDR PU21 (Rec.709)", "LTX-2.3 HDR LoRA (LogC3 EI 800, Rec.709)", "DiffHDR log-gamma (Rec.709)"]
    assert inputs["source"].options == inputs["target"].options == expected == list(COLOR_SPACES)
    assert inputs["reference_white"].default == 1.0 and inputs["reference_white"].optional
    for node_id in ("LEDiffSaveEXR", "LEDiffLoadEXR"):
        option = {i.id: i for i in host.node_class(node_id).GET_SCHEMA().inputs}["colorspace"]
        assert option.options == list(LINEAR_SPACES) and option.default == WORKING_SPACE


def test_hlg_decode_is_cores_hlg_to_linear(host):
    from comfy_extras.nodes_images import hlg_to_linear

    node = host.node_class("LEDiffColorSpace")
    signal = torch.linspace(0, 1.3, 2 * 64 * 3).reshape(2, 8, 8, 3)  # 0..1.3, both branches
    core = hlg_to_linear(signal)
    # reference_white = the scene light of BT.2408's white: linear units are core's scene light
    out = node.execute(signal, HLG_SPACE, "Linear Rec.2020", HLG_WHITE_SCENE).args[0]
    torch.testing.assert_close(out, core, rtol=2e-6, atol=1e-7)
    # any reference white only rescales
    out = node.execute(signal, HLG_SPACE, "Linear Rec.2020", 1.0).args[0]
    torch.testing.assert_close(out, core / HLG_WHITE_SCENE, rtol=2e-6, atol=1e-7)
    # negative signals: ours mirror (documented), core squares them into positive light
    neg = -signal[:1, :1, 1:4]
    ours = node.execute(neg, HLG_SPACE, "Linear Rec.2020", HLG_WHITE_SCENE).args[0]
    torch.testing.assert_close(ours, -hlg_to_linear(-neg), rtol=2e-6, atol=1e-7)
    assert (hlg_to_linear(neg) > 0).all()


def test_our_hlg_through_cores_save_image_advanced(host):
    """Working space -> our HLG -> core's Save Image (Advanced) EXR (colorspace HDR): core writes
    Rec.2020 scene light, in which our reference white is BT.2408's 0.265."""
    rgb = image_of(lo=-6, hi=1.5)  # within HLG's nominal peak (3.78)
    write_input(host, "in.exr", rgb)
    g = {"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "in.exr", "layer": ""}},
         "2": {"class_type": "LEDiffColorSpace", "inputs": {"image": ["1", 0], "source": WORKING_SPACE,
                                                           "target": HLG_SPACE, "reference_white": 1.0}},
         "3": {"class_type": "SaveImageAdvanced", "inputs": {
             "images": ["2", 0], "filename_prefix": "core", "format": "exr",
             "format.bit_depth": "32-bit float", "format.input_color_space": "HDR"}}}
    host.run(g)
    path = os.path.join(host.output_dir, "core_00001.exr")
    written, header = read_output(path)
    np.testing.assert_allclose(header["chromaticities"], CHROMATICITIES["Linear Rec.2020"], atol=1e-6)
    want = ocio_apply(rgb.reshape(-1, 3), WORKING_SPACE, "Linear Rec.2020").reshape(rgb.shape) * HLG_WHITE_SCENE
    assert rel_error(written, want) < 2e-5
    # and our Load EXR reads core's file (Rec.2020 chromaticities) back into the working space
    os.replace(path, os.path.join(host.input_dir, "core.exr"))
    host.run(load_save("core.exr"))
    back, _ = output(host)
    assert rel_error(back / HLG_WHITE_SCENE, rgb) < 2e-5


def test_out_of_range_pixels_are_logged(host, caplog):
    node = host.node_class("LEDiffColorSpace")
    image = torch.ones(1, 4, 4, 3)
    image[0, 0, 0, 1] = -0.2  # one pixel with a negative component
    image[0, 1, :, :] = 100.0  # four pixels beyond PQ's 49.3 x reference white
    with caplog.at_level(logging.WARNING, logger="lediff"):
        out = node.execute(image, WORKING_SPACE, PQ_SPACE, 1.0).args[0]
    messages = [r.getMessage() for r in caplog.records]
    assert any("1 pixel(s) with negative components" in m and "clipped to 0" in m for m in messages)
    assert any("4 pixel(s) beyond PQ's 10000 cd/m2" in m and "16 pixels" in m for m in messages)
    assert out.min() >= 0 and out.max() == 1.0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lediff"):
        node.execute(image.abs().clamp(max=3.0), WORKING_SPACE, HLG_SPACE, 1.0)
    assert not caplog.records  # in range: nothing to say


@pytest.mark.parametrize("space", LINEAR_SPACES)
def test_save_exr_colorspace_converts_and_tags(host, space):
    rgb = image_of()
    write_input(host, "in.exr", rgb)
    host.run(load_save("in.exr", save={"colorspace": space}))
    written, header = output(host)
    assert rel_error(written, ocio_apply(rgb.reshape(-1, 3), WORKING_SPACE, space).reshape(rgb.shape)) < 1e-5
    np.testing.assert_allclose(header["chromaticities"], CHROMATICITIES[space], atol=1e-7)
    assert "acesImageContainerFlag" not in header  # float/zip is no ACES container
    # and Load EXR brings it back into the working space
    os.replace(os.path.join(host.output_dir, "out", "x_00001.exr"), os.path.join(host.input_dir, "back.exr"))
    host.run(load_save("back.exr"))
    assert rel_error(output(host)[0], rgb) < 1e-5


def test_aces_container_written_when_the_file_conforms(host):
    write_input(host, "in.exr", image_of())
    host.run(load_save("in.exr", save={"colorspace": "ACES2065-1", "precision": "half", "compression": "none"}))
    path = os.path.join(host.output_dir, "out", "x_00001.exr")
    text = subprocess.run([require_tool("exrheader"), path], capture_output=True, text=True, check=True).stdout
    assert "acesImageContainerFlag (type int): 1" in text
    assert "red   (0.7347 0.2653)" in text and "white (0.32168 0.33767)" in text
    assert "compression (type compression): none" in text and "16-bit floating-point" in text


def oiio_matrix_file(host, name, rec709, matrix, chroma):
    """A file whose pixels oiiotool computes (matrix @ rgb) and whose chromaticities exrstdattr sets."""
    src = write_input(host, "twin_" + name, rec709)
    tmp = os.path.join(host.input_dir, "tmp_" + name)
    values = ",".join(repr(float(v)) for v in np.asarray(matrix).T.ravel())  # oiiotool: row vector x M
    subprocess.run([require_tool("oiiotool"), os.path.join(host.input_dir, src), "--ccmatrix", values,
                    "-d", "float", "-o", tmp], check=True)
    subprocess.run([require_tool("exrstdattr"), "-chromaticities", *map(repr, map(float, chroma)), tmp,
                    os.path.join(host.input_dir, name)], check=True)
    os.remove(tmp)
    return name


@pytest.mark.parametrize("chroma", [CHROMATICITIES["Linear Rec.2020"], XYZ_PRIMARIES,
                                   (0.71, 0.30, 0.20, 0.75, 0.12, 0.05, 0.3457, 0.3585)],
                         ids=["rec2020", "xyz", "camera_d50"])
def test_files_written_from_a_rec709_image_load_with_its_colours(host, chroma):
    """Pixels = (file primaries <- XYZ <- Rec.709) by RP 177, no adaptation, applied by oiiotool."""
    rec709 = image_of(seed=5)
    matrix = np.linalg.inv(rp177(chroma)) @ rp177(CHROMATICITIES[WORKING_SPACE])
    name = oiio_matrix_file(host, "file.exr", rec709, matrix, chroma)
    with OpenEXR.File(os.path.join(host.input_dir, name)) as f:  # the tools did their part
        np.testing.assert_allclose(f.header()["chromaticities"], chroma, atol=1e-7)
        assert rel_error(f.channels()["RGB"].pixels, rec709 @ matrix.T) < 1e-6
    host.run(load_save(name))
    assert rel_error(output(host)[0], rec709) < 1e-5


def test_aces_file_loads_the_ocio_way_and_into_a_chosen_space(host):
    aces = image_of(seed=7)
    name = write_input(host, "aces.exr", aces, {"chromaticities": CHROMATICITIES["ACES2065-1"]})
    host.run(load_save(name))
    want = ocio_apply(aces.reshape(-1, 3), "ACES2065-1", WORKING_SPACE).reshape(aces.shape)
    assert rel_error(output(host)[0], want) < 1e-5
    # loaded into ACEScg; HDR Color Space brings it to the working space Save EXR expects
    host.run(load_save(name, load={"colorspace": "ACEScg"}, save={"colorspace": "ACEScg"}, between=[
        ("LEDiffColorSpace", {"source": "ACEScg", "target": WORKING_SPACE})]))
    written, header = output(host, 2)
    want = ocio_apply(aces.reshape(-1, 3), "ACES2065-1", "ACEScg").reshape(aces.shape)
    assert rel_error(written, want) < 1e-5
    np.testing.assert_allclose(header["chromaticities"], CHROMATICITIES["ACEScg"], atol=1e-7)


def test_file_without_chromaticities_is_rec709_and_untouched(host):
    rgb = image_of(seed=9)
    write_input(host, "plain.exr", rgb)
    with OpenEXR.File(os.path.join(host.input_dir, "plain.exr")) as f:
        assert "chromaticities" not in f.header()
    host.run(load_save("plain.exr"))
    assert np.array_equal(output(host)[0].view(np.uint32), rgb.view(np.uint32))


def test_color_space_node_in_a_graph_round_trips(host):
    rgb = image_of(seed=11, lo=-6, hi=1.5)
    write_input(host, "in.exr", rgb)
    host.run(load_save("in.exr", between=[
        ("LEDiffColorSpace", {"source": WORKING_SPACE, "target": PQ_SPACE, "reference_white": 0.5}),
        ("LEDiffColorSpace", {"source": PQ_SPACE, "target": "ACEScg", "reference_white": 0.5}),
        ("LEDiffColorSpace", {"source": "ACEScg", "target": HLG_SPACE}),
        ("LEDiffColorSpace", {"source": HLG_SPACE, "target": WORKING_SPACE}),
    ]))
    assert rel_error(output(host)[0], rgb) < 1e-5


# linear values of the blocks in the log round-trip image, up to 50 x the working space's 1.0 (the
# last block is each encoding's top, below: S-Log3's signal reaches 1 at linear 38.42)
BLOCK_VALUES = (0.05, 0.18, 1.0, 4.0, 12.0, 50.0)
TOP = {"Sony S-Log3 (S-Gamut3.Cine)": 36.0}
# the PU21s' signal reaches 1 at 49.26 x reference_white (10000 cd/m2)
REFERENCE_WHITE = {"PU21 (banding_glare, Rec.709)": 2.0, "X2HDR PU21 (Rec.709)": 2.0}


def blocks_image(top=BLOCK_VALUES[-1], block=16):
    """A row of flat 16 x 16 blocks, one per BLOCK_VALUES (the last one ``top``), tinted (1, 0.8, 0.6):
    flat so that core's Lanczos upscale and sharpen leave their centres alone; returns the image and
    each block's colour."""
    values = (*BLOCK_VALUES[:-1], top)
    colours = np.array([[v, 0.8 * v, 0.6 * v] for v in values], dtype=np.float32)
    return np.repeat(np.repeat(colours[None], block, axis=0), block, axis=1), colours


def block_centres(image, block=32):
    """The mean of each block's central 8 x 8 pixels (in the 2x upscaled image)."""
    lo = block // 2 - 4
    return np.stack([image[lo:lo + 8, i * block + lo:i * block + lo + 8].reshape(-1, 3).mean(axis=0)
                     for i in range(len(BLOCK_VALUES))])


def one_code(space, values):
    """The largest relative step one 8-bit code of the signal makes at the linear ``values``: what
    core's 8-bit round trip may lose, for the curves without a published log slope."""
    encoding = LOG_ENCODINGS[space]
    scale = 203.0 / REFERENCE_WHITE.get(space, 1.0) if encoding.absolute else 1.0
    v = torch.tensor(values, dtype=torch.float64) * scale
    return float((encoding.decode(encoding.encode(v) + 1 / 255) / v).max()) - 1


@pytest.mark.parametrize("space", [None, *LOG_SPACES])
def test_hdr_survives_cores_clamping_nodes_inside_a_log_encoding(host, space):
    """Working space -> log -> core's Upscale Image By (Lanczos: clamps to 0..1 and quantises to 8
    bits, in PIL) -> core's Sharpen Image (clamps to 0..1) -> working space keeps values up to 50 x
    above 1 within the 8-bit step of the curve; the same graph without the encoding (space None)
    clips them to 1. Every encoding's signal of the image lies in 0..1, so the clamps cut nothing."""
    top = TOP.get(space, BLOCK_VALUES[-1])
    rgb, colours = blocks_image(top)
    write_input(host, "blocks.exr", rgb)
    sdr_nodes = [("ImageScaleBy", {"upscale_method": "lanczos", "scale_by": 2.0}),
                 ("ImageSharpen", {"sharpen_radius": 1, "sigma": 1.0, "alpha": 1.0})]
    white = {"reference_white": REFERENCE_WHITE[space]} if space in REFERENCE_WHITE else {}
    between = sdr_nodes if space is None else [
        ("LEDiffColorSpace", {"source": WORKING_SPACE, "target": space, **white}), *sdr_nodes,
        ("LEDiffColorSpace", {"source": space, "target": WORKING_SPACE, **white})]
    host.run(load_save("blocks.exr", between=between))
    out, _ = output(host)
    assert out.shape == (32, 32 * len(BLOCK_VALUES), 3)
    got = block_centres(out)
    if space is None:
        assert got.max() <= 1.0 and got[-1].max() < 0.1 * colours[-1].max()
        return
    signal, _ = convert_image(torch.from_numpy(rgb), WORKING_SPACE, space, **white)
    assert 0.0 < float(signal.min()) and float(signal.max()) < 1.0, (space, float(signal.max()))
    # core truncates the signal to 8 bits: up to one code lost, i.e. (in the log segments) a factor
    # of 2^(17.52/255) in ACEScct (S-2016-001), 10^(1/255/0.24719) in LogC3 and LTX-2.3 (ARRI's c),
    # 2^(14/0.9071/255) in LogC4 (14/b), 10^(1023/255/261.5) in S-Log3 (Sony); the other curves'
    # step is measured on them. The gamut matrix spreads a channel's error over the others: measure
    # against each pixel's largest component, with half a code of margin.
    published = {"ACEScct (AP1)": 2 ** (17.52 / 255), "ARRI LogC3 (EI 800, AWG3)": 10 ** (1 / 255 / 0.24719),
                 "LTX-2.3 HDR LoRA (LogC3 EI 800, Rec.709)": 10 ** (1 / 255 / 0.24719),
                 "ARRI LogC4 (AWG4)": 2 ** (14 / (928 / 1023) / 255),
                 "Sony S-Log3 (S-Gamut3.Cine)": 10 ** (1023 / 255 / 261.5)}
    step = published[space] - 1 if space in published else one_code(space, colours.ravel().tolist())
    rel = np.abs(got - colours) / colours.max(axis=1, keepdims=True)
    assert rel.max() < 1.5 * step, (space, rel.max(axis=1), step)
    assert got[-1].max() > 0.9 * top  # up to 50 x above 1 survived the clamps



def test_nan_into_a_log_encoding_is_an_error_that_names_the_pixels_and_the_fix(host):
    """A log signal is for a node that clamps to 0..1, which would make NaN/Inf ordinary codes: the
    graph stops at HDR Color Space with the count and where to look, before any SDR node runs."""
    rgb = image_of(seed=12)
    rgb[2, 3] = np.nan
    rgb[4, 5, 1] = np.inf
    write_input(host, "nan.exr", rgb)
    report = failure(host, load_save("nan.exr", between=[
        ("LEDiffColorSpace", {"source": WORKING_SPACE, "target": "DiffHDR log-gamma (Rec.709)"}),
        ("ImageScaleBy", {"upscale_method": "lanczos", "scale_by": 2.0})]))
    assert (report["node_id"], report["node_type"]) == ("2", "LEDiffColorSpace")
    message = report["exception_message"]
    assert "image 1 of 1: 2 of 384 pixel(s) NaN/Inf (1 NaN, 1 Inf)" in message
    assert "DiffHDR log-gamma (Rec.709) (the target) is a 0..1 signal that has no code for them" in message
    assert "Find the node that made them" in message
