"""OCIO Display/View and File LUT inside a genuine ComfyUI: Load EXR -> the node -> Save EXR (float,
written unchanged), compared with OCIO called directly here (a processor built in the test), and
the errors for configs and LUT files the nodes cannot use."""

from __future__ import annotations

import os
import re

import numpy as np
import OpenEXR
import PyOpenColorIO as ocio
import pytest

from support.color import hdr_pixels, ocio_display
from support.comfy_harness import failure
from support.exr_files import write_input

ACES2_STUDIO = "ocio://studio-config-v4.0.0_aces-v2.0_ocio-v2.5"
SDR = ("sRGB - Display", "ACES 2.0 - SDR 100 nits (Rec.709)")
PQ = ("Rec.2100-PQ - Display", "ACES 2.0 - HDR 1000 nits (Rec.2020)")
LOOK = "ACES 1.3 Reference Gamut Compression"


def through(node: str, inputs: dict) -> dict:
    """Load EXR in.exr -> node -> Save EXR (float, linear: written unchanged), as an API graph."""
    return {
        "1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "in.exr", "layer": ""}},
        "2": {"class_type": node, "inputs": {"image": ["1", 0], **inputs}},
        "3": {"class_type": "LEDiffSaveEXR", "inputs": {
            "images": ["2", 0], "filename_prefix": "out/x", "precision": "float", "compression": "zip",
            "input_encoding": "linear", "envmap": "none"}},
    }


def saved(host) -> np.ndarray:
    with OpenEXR.File(os.path.join(host.output_dir, "out", "x_00001.exr")) as f:
        return f.channels()["RGB"].pixels.copy()


@pytest.fixture
def picture(host):
    rng = np.random.default_rng(2)
    image = np.concatenate([hdr_pixels(12 * 16, 4, -8, 6), rng.uniform(-0.3, 3, (12 * 16, 3))]).astype(np.float32)
    image = image.reshape(24, 16, 3)
    write_input(host, "in.exr", image)
    return image


def test_nodes_are_registered_with_the_studio_configs_names(host):
    cfg = ocio.Config.CreateFromFile(ACES2_STUDIO)
    schema = host.node_class("LEDiffOCIODisplay").GET_SCHEMA()
    assert (schema.display_name, schema.category) == ("OCIO Display/View", "LEDiff/color")
    assert all(i.tooltip for i in schema.inputs) and all(o.tooltip for o in schema.outputs)
    inputs = {i.id: i for i in schema.inputs}
    assert list(inputs) == ["image", "display", "view", "looks", "config", "custom_display", "custom_view",
                            "input_space"]
    assert inputs["display"].options == list(cfg.getDisplays()) and inputs["display"].default == SDR[0]
    assert set(inputs["view"].options) == {v for d in cfg.getDisplays() for v in cfg.getViews(d)}
    assert inputs["view"].default == SDR[1]
    assert "display-encoded" in schema.outputs[0].tooltip.lower() and "PQ" in schema.outputs[0].tooltip
    lut = host.node_class("LEDiffFileLUT").GET_SCHEMA()
    assert (lut.display_name, lut.category) == ("File LUT", "LEDiff/color")
    assert all(i.tooltip for i in lut.inputs) and all(o.tooltip for o in lut.outputs)
    options = {i.id: i.options for i in lut.inputs if getattr(i, "options", None)}
    assert options["interpolation"] == ["linear", "tetrahedral", "best"]
    assert options["direction"] == ["forward", "inverse"]


@pytest.mark.parametrize("display,view,looks", [(*SDR, ""), (*PQ, ""), (*SDR, LOOK)])
def test_display_view_equals_ocio_direct(host, picture, display, view, looks):
    host.run(through("LEDiffOCIODisplay", {"display": display, "view": view, "looks": looks}))
    want = ocio_display(ocio.Config.CreateFromFile(ACES2_STUDIO), picture, display, view, looks)
    np.testing.assert_allclose(saved(host), want, rtol=1e-5, atol=1e-5)


def test_a_users_config_by_relative_path_with_typed_names(host, picture):
    cfg = ocio.Config.CreateFromFile("ocio://cg-config-v2.2.0_aces-v1.3_ocio-v2.4")
    os.makedirs(os.path.join(host.input_dir, "configs"))
    with open(os.path.join(host.input_dir, "configs", "show.ocio"), "w") as f:
        f.write(cfg.serialize())
    display = "Display P3 - Display"
    view = cfg.getDefaultView(display)
    host.run(through("LEDiffOCIODisplay", {"display": SDR[0], "view": SDR[1], "config": "configs/show.ocio",
                                           "custom_display": display, "custom_view": view}))
    np.testing.assert_allclose(saved(host), ocio_display(cfg, picture, display, view), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("inputs,message", [
    ({"custom_display": "Cinema"}, r"no display 'Cinema'.*sRGB - Display.*Type one of these"),
    ({"view": PQ[1]}, r"display 'sRGB - Display' .*has no view .*Un-tone-mapped"),
    ({"looks": "Bleach"}, r"no look 'Bleach'.*" + LOOK),
    ({"config": "nothere.ocio"}, r"no OCIO config file .*nothere.ocio.*leave config empty"),
])
def test_display_errors_name_the_problem_and_the_fix(host, picture, inputs, message):
    report = failure(host, through("LEDiffOCIODisplay", {"display": SDR[0], "view": SDR[1], **inputs}))
    assert report["exception_type"].endswith("OCIOConfigError")
    assert re.search(message, report["exception_message"], re.S), report["exception_message"]


def test_a_config_outside_the_input_folder_is_refused_without_reading_it(host, picture, tmp_path):
    """A typed config path follows the rule of every file a node reads (a config names the LUT files
    OCIO then reads): inside ComfyUI's input folder after links, or refused by name."""
    outside = tmp_path / "elsewhere" / "show.ocio"
    outside.parent.mkdir()
    outside.write_text(ocio.Config.CreateFromFile("ocio://cg-config-v2.2.0_aces-v1.3_ocio-v2.4").serialize())
    os.symlink(outside, os.path.join(host.input_dir, "linked.ocio"))
    for config in (str(outside), "../" * 8 + str(outside).lstrip("/"), "linked.ocio"):
        report = failure(host, through("LEDiffOCIODisplay", {"display": SDR[0], "view": SDR[1], "config": config}))
        assert report["exception_type"].endswith("FileAccessError"), report
        assert "leads outside ComfyUI's input folder" in report["exception_message"], report["exception_message"]


def write_cube(path, size=7):
    """A curved, channel-mixing .cube 3D LUT (red varies fastest)."""
    axis = np.linspace(0, 1, size)
    b, g, r = np.meshgrid(axis, axis, axis, indexing="ij")
    table = np.stack([r ** 0.6, g * (0.5 + 0.5 * b), np.sqrt(b) * (0.8 + 0.2 * r)], axis=-1)
    with open(path, "w") as f:
        f.write(f"LUT_3D_SIZE {size}\n")
        f.writelines(" ".join(f"{v:.9f}" for v in rgb) + "\n" for rgb in table.reshape(-1, 3))


def ocio_file(path, pixels, interpolation, direction="forward"):
    out = np.ascontiguousarray(pixels, np.float32).copy()
    transform = ocio.FileTransform(path, interpolation=getattr(ocio, f"INTERP_{interpolation.upper()}"),
                                   direction=getattr(ocio, f"TRANSFORM_DIR_{direction.upper()}"))
    ocio.Config.CreateRaw().getProcessor(transform).getDefaultCPUProcessor().applyRGB(out.reshape(-1, 3))
    return out


@pytest.fixture
def signal(host):
    """A 0..1 signal (what a 3D LUT takes) in the input folder as in.exr."""
    image = np.random.default_rng(8).uniform(0, 1, (20, 12, 3)).astype(np.float32)
    write_input(host, "in.exr", image)
    return image


@pytest.mark.parametrize("interpolation", ["linear", "tetrahedral", "best"])
def test_file_lut_equals_ocio_file_transform(host, signal, interpolation):
    os.makedirs(os.path.join(host.input_dir, "luts"))
    path = os.path.join(host.input_dir, "luts", "look.cube")
    write_cube(path)
    assert "luts/look.cube" in host.node_class("LEDiffFileLUT").GET_SCHEMA().inputs[1].options
    host.run(through("LEDiffFileLUT", {"lut": "luts/look.cube", "interpolation": interpolation,
                                       "direction": "forward"}))
    np.testing.assert_allclose(saved(host), ocio_file(path, signal, interpolation), rtol=1e-6, atol=1e-6)


def test_file_lut_inverse_of_a_1d_lut(host, signal):
    path = os.path.join(host.input_dir, "curve.spi1d")
    values = np.linspace(0, 1, 32) ** 0.45
    with open(path, "w") as f:
        f.write("Version 1\nFrom 0.0 1.0\nLength 32\nComponents 1\n{\n")
        f.writelines(f"  {v:.9f}\n" for v in values)
        f.write("}\n")
    host.run(through("LEDiffFileLUT", {"lut": "curve.spi1d", "interpolation": "linear", "direction": "inverse"}))
    got = saved(host)
    np.testing.assert_allclose(got, ocio_file(path, signal, "linear", "inverse"), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.interp(got, np.linspace(0, 1, 32), values), signal, atol=1e-4)


@pytest.mark.parametrize("content,reason", [
    ("LUT_3D_SIZE 3\n" + "0.5 0.5 0.5\n" * 20, r"Found 20, expected 27"),
    ("LUT_3D_SIZE 3\n0 0 nothing\n", r"Malformed color triples"),
])
def test_bad_lut_files_fail_with_the_reason_and_fix(host, signal, content, reason):
    with open(os.path.join(host.input_dir, "bad.cube"), "w") as f:
        f.write(content)
    report = failure(host, through("LEDiffFileLUT", {"lut": "bad.cube", "interpolation": "linear",
                                                     "direction": "forward"}))
    assert report["exception_type"].endswith("LUTFileError")
    assert re.search(rf"'bad.cube'.*{reason}.*Export the LUT again", report["exception_message"], re.S)


def test_missing_or_outside_lut_files_fail_validation(host, signal, tmp_path):
    graph = through("LEDiffFileLUT", {"lut": "gone.cube", "interpolation": "linear", "direction": "forward"})
    valid, _, _, node_errors = host.validate(graph)
    assert not valid and "no file 'gone.cube' in ComfyUI's input folder" in str(node_errors)
    outside = tmp_path / "elsewhere.cube"
    write_cube(str(outside), size=2)
    os.symlink(outside, os.path.join(host.input_dir, "link.cube"))
    valid, _, _, node_errors = host.validate(through("LEDiffFileLUT", {
        "lut": "link.cube", "interpolation": "linear", "direction": "forward"}))
    assert not valid and "leads outside ComfyUI's input folder" in str(node_errors)


def test_degenerate_images_get_clear_errors(host):
    for node, inputs in (("LEDiffOCIODisplay", {"display": SDR[0], "view": SDR[1]}),
                         ("LEDiffFileLUT", {"lut": "x.cube", "interpolation": "linear", "direction": "forward"})):
        cls = host.node_class(node)
        with pytest.raises(ValueError, match=r"empty batch.*at least 1"):
            cls.execute(np.zeros((0, 4, 4, 3), np.float32), **inputs)
        with pytest.raises(ValueError, match=r"1 channel.*at least 3"):
            cls.execute(np.zeros((1, 4, 4, 1), np.float32), **inputs)
