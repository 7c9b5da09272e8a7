"""Degenerate inputs, fed to every LEDiff node in the genuine ComfyUI: 0x0 and 0-wide images, empty
batches, 1x1 images, 0x0 and empty latents, NaN/Inf pixels. Each node either works or fails with
a clear error (a ValueError naming the input, its size and the minimum) raised before any library
call: never a raw library error (``aminmax(): cannot compute``, ``index 0 is out of bounds``,
``float division by zero``). The sweep runs over the nodes the host registered, so a new node is
covered without editing this file; the nodes other tests own (savers, readers, video) are named.

The degenerate tensors come from a test-only custom node (tests/data/degenerate_source), loaded
into the host like any pack: an upstream node that crops outside the picture or filters a batch
down to nothing hands on exactly these."""

from __future__ import annotations

import asyncio
import logging
import os
import re

import numpy as np
import pytest
from PIL import Image

from support.comfy_harness import GraphError, pack_nodes
from support.common import DATA
from support.graphs import CLIP_NAME, MODEL

SOURCE = "LEDiffTestDegenerateTensor"
SOURCE_DIR = os.path.join(DATA, "degenerate_source")

# covered by the savers', readers' and video tests (issue 25, their own classes)
OWNED_ELSEWHERE = {"LEDiffSaveEXR", "LEDiffSaveHDRImage", "LEDiffSaveEXRSequence", "LEDiffSaveHDRVideo",
                   "LEDiffLoadEXR", "LEDiffLoadEXRSequence",
                   "LEDiffFileLUT"}  # needs a LUT file: tests/nodes/color/test_ocio_nodes.py

# what each non-tensor input gets (the fixture models and a short sampling run)
WIDGETS = {"steps": 1, "size": 32, "panel_width": 64, "model_name": MODEL, "name": "depth"}  # name: EXR Layer's
VALID = {"IMAGE": "1,16,16,3", "MASK": "1,16,16,3", "LATENT": "1,4,8,8"}
CASES = {  # label: (shape, fill)
    "IMAGE": {"0x0": ("1,0,0,3", "random"), "0 wide": ("1,16,0,3", "random"), "empty batch": ("0,16,16,3", "random"),
              "1x1": ("1,1,1,3", "random"), "1 channel": ("1,16,16,1", "random"),
              "2 channels": ("1,16,16,2", "random"), "NaN": ("1,16,16,3", "nan"), "Inf": ("1,16,16,3", "inf")},
    "MASK": {"0x0": ("1,0,0,3", "random"), "empty batch": ("0,16,16,3", "random")},
    "LATENT": {"0x0": ("1,4,0,0", "random"), "empty batch": ("0,4,8,8", "random"), "1x1": ("1,4,1,1", "random")},
}
MAY_WORK = {"1x1", "NaN", "Inf"}  # a result is fine; an error must then name the problem
CYAN = (0, 255, 255)  # NONFINITE_RGB in 8 bits
OUTPUT_SLOT = {"IMAGE": 0, "MASK": 1, "LATENT": 2}
# a clear size error: "<input> ... <h>x<w> ... at least <h>x<w>" or "... empty batch ... at least 1"
SIZE_ERROR = re.compile(r"(\d+x\d+|empty batch|no images|no latents).*at least", re.S)


@pytest.fixture(scope="module")
def sweep_host(comfy, models):
    if SOURCE not in comfy.node_classes:
        assert asyncio.run(comfy.nodes.load_custom_node(SOURCE_DIR)), "the test source node did not load"
    return comfy


def _providers() -> dict:
    """Graph nodes that supply the non-tensor types a LEDiff node may take."""
    return {
        "90": {"class_type": "LEDiffLoadDenoiser", "inputs": {"model_name": MODEL}},
        "91": {"class_type": "LEDiffLoadHDRVAE", "inputs": {"model_name": MODEL}},
        "92": {"class_type": "CLIPLoader", "inputs": {"clip_name": CLIP_NAME, "type": "stable_diffusion",
                                                      "device": "default"}},
        "93": {"class_type": "CLIPTextEncode", "inputs": {"text": "a street", "clip": ["92", 0]}},
    }


LINKS = {"MODEL": ["90", 0], "LEDIFF_HDR_VAE": ["91", 0], "VAE": ["91", 1], "CONDITIONING": ["93", 0]}


def graph_for(cls, bad_input: str | None = None, shape: str = "", fill: str = "random", pair: bool = False) -> dict:
    """An API graph running node ``cls`` with valid inputs, except ``bad_input`` fed ``shape`` (with
    ``pair``, every required input of its type too: images that must match in size)."""
    schema = cls.GET_SCHEMA()
    g = _providers()
    inputs = {}
    bad_kind = next((i.get_io_type() for i in schema.inputs if i.id == bad_input), None)
    for n, item in enumerate(schema.inputs):
        kind = item.get_io_type()
        if item.id == bad_input or (kind in VALID and not item.optional):
            source = str(100 + n)
            degenerate = item.id == bad_input or (pair and kind == bad_kind)
            g[source] = {"class_type": SOURCE, "inputs": {
                "shape": shape if degenerate else VALID[kind],
                "fill": fill if item.id == bad_input else "random", "seed": n}}
            inputs[item.id] = [source, OUTPUT_SLOT[kind]]
        elif kind in LINKS:
            inputs[item.id] = LINKS[kind]
        elif item.id in WIDGETS:
            inputs[item.id] = WIDGETS[item.id]
        elif getattr(item, "default", None) is not None:
            inputs[item.id] = item.default
        elif not item.optional:
            raise AssertionError(f"{schema.node_id}: no value for required input {item.id!r} ({kind})")
    g["1"] = {"class_type": schema.node_id, "inputs": inputs}
    if not schema.is_output_node:  # ComfyUI runs only what an output node needs
        for slot, out in enumerate(schema.outputs):
            if out.get_io_type() == "IMAGE":
                g["2"] = {"class_type": "PreviewImage", "inputs": {"images": ["1", slot]}}
                break
        else:
            g["2"] = {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}
    return g


def sweep_cases(host) -> list:
    cases = []
    for nid, cls in sorted(pack_nodes(host, OWNED_ELSEWHERE).items()):
        for item in cls.GET_SCHEMA().inputs:
            for label, (shape, fill) in CASES.get(item.get_io_type(), {}).items():
                cases.append((nid, item.id, label, shape, fill))
    return cases


def _error(exc: GraphError) -> dict:
    errors = exc.report
    assert isinstance(errors, list) and errors and "exception_message" in errors[0], errors
    return errors[0]


def test_every_node_gives_a_clear_error_or_a_result_for_degenerate_sizes(sweep_host, tmp_path):
    sweep_host.use_folders(tmp_path)
    cases = sweep_cases(sweep_host)
    assert len({c[0] for c in cases}) >= 9, cases  # the nodes with tensor inputs
    raw, ran = [], []
    for nid, name, label, shape, fill in cases:
        cls = sweep_host.node_class(nid)
        try:
            sweep_host.run(graph_for(cls, name, shape, fill, pair=label == "1x1"))
            ran.append(f"{nid}.{name} {label}")
            if label not in MAY_WORK:
                raw.append(f"{nid}.{name} [{label} {shape}]: gave a result instead of an error")
        except GraphError as exc:
            err = _error(exc)
            message, kind = err["exception_message"], err["exception_type"]
            if fill != "random":
                named = "NaN" in message and re.search(r"\d+", message)
            elif "channel" in label:
                named = name in message and re.search(r"\d channel.*at least 3", message)
            else:
                named = name in message and SIZE_ERROR.search(message)
            clear = kind.rsplit(".", 1)[-1] in ("ValueError", "ImageSizeError", "LatentError") and named
            if not clear:
                raw.append(f"{nid}.{name} [{label} {shape}]: {kind}: {message.strip().splitlines()[-1][:200]}")
    assert not raw, "raw errors:\n" + "\n".join(raw)
    logging.getLogger("lediff.test").info("worked on 1x1: %s", ran)


def _nonfinite_pixels(h=16, w=16, step=7):
    """(y, x) of the pixels the source node fills with NaN/Inf: every ``step``-th value of the
    flattened [1, h, w, 3] tensor."""
    return {divmod(k // 3, w) for k in range(0, h * w * 3, step)}


def _png(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
    assert len(files) == 1, files
    return np.asarray(Image.open(os.path.join(folder, files[0])).convert("RGB"))


@pytest.mark.parametrize("fill", ["nan", "inf"])
@pytest.mark.parametrize("auto_exposure", [True, False])
def test_tone_map_paints_nan_and_inf_pixels_cyan_and_logs_how_many(sweep_host, tmp_path, caplog, fill, auto_exposure):
    sweep_host.use_folders(tmp_path)
    g = {"1": {"class_type": SOURCE, "inputs": {"shape": "1,16,16,3", "fill": fill, "seed": 3}},
         "2": {"class_type": "LEDiffToneMap", "inputs": {"image": ["1", 0], "operator": "aces", "exposure": 0.0,
                                                         "white": 4.0, "auto_exposure": auto_exposure}},
         "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "tm"}}}
    with caplog.at_level(logging.WARNING, logger="lediff"):
        sweep_host.run(g)
    png = _png(sweep_host.output_dir)
    bad = _nonfinite_pixels()
    painted = {(y, x) for y in range(16) for x in range(16) if tuple(png[y, x]) == CYAN}
    assert painted == bad
    # the other pixels are a picture, not blanked by one NaN in the automatic exposure (the
    # source's values are uniform in 0..4: mid-grey and brighter under ACES, never all black)
    good = np.array([png[y, x] for y in range(16) for x in range(16) if (y, x) not in bad])
    assert 60 < good.mean() < 250 and good.std() > 10
    word = "NaN" if fill == "nan" else "Inf"
    counts = f"({len(bad)} NaN, 0 Inf)" if fill == "nan" else f"(0 NaN, {len(bad)} Inf)"
    warnings = [r.getMessage() for r in caplog.records if r.name == "lediff" and word in r.getMessage()]
    assert warnings == [f"Tone Map: image 1 of 1: {len(bad)} of 256 pixel(s) NaN/Inf {counts}: painted cyan (0, 1, 1) "
                        "in the picture. They come from an earlier node (e.g. a decode whose exp() overflowed, a "
                        "division by zero in a custom node): find it; Save EXR and Save HDR Image refuse them"]


def test_exposure_strip_paints_nan_pixels_cyan_on_every_panel(sweep_host, tmp_path, caplog):
    sweep_host.use_folders(tmp_path)
    g = {"1": {"class_type": SOURCE, "inputs": {"shape": "1,16,16,3", "fill": "nan", "seed": 3}},
         "2": {"class_type": "LEDiffExposureStrip", "inputs": {
             "image": ["1", 0], "ev_min": -2.0, "ev_max": 2.0, "ev_step": 2.0, "panel_width": 0}}}
    with caplog.at_level(logging.WARNING, logger="lediff"):
        sweep_host.run(g)
    strip = _png(sweep_host.temp_dir)
    label = 18  # the label band above each panel: max(18, width / 16) rows
    assert strip.shape == (label + 16, 3 * 16 + 2 * 4, 3)  # three 16-wide panels, 4-pixel gaps
    bad = _nonfinite_pixels()
    for panel in range(3):
        x0 = panel * (16 + 4)
        painted = {(y, x) for y in range(16) for x in range(16) if tuple(strip[label + y, x0 + x]) == CYAN}
        assert painted == bad, panel
    assert any(r.getMessage().startswith(f"Exposure Strip: image 1 of 1: {len(bad)} of 256 pixel(s) NaN/Inf")
               for r in caplog.records)


def test_metric_minimum_sizes_are_named_before_the_metric_runs(sweep_host, tmp_path):
    sweep_host.use_folders(tmp_path)
    g = {"1": {"class_type": SOURCE, "inputs": {"shape": "1,10,10,3", "fill": "random", "seed": 1}},
         "2": {"class_type": SOURCE, "inputs": {"shape": "1,10,10,3", "fill": "random", "seed": 2}},
         "3": {"class_type": "LEDiffHDRMetrics", "inputs": {"test": ["1", 0], "reference": ["2", 0],
                                                            "metric": "pu21_ssim", "scaling": "align"}}}
    with pytest.raises(GraphError) as caught:
        sweep_host.run(g)
    message = _error(caught.value)["exception_message"]
    assert message.startswith("test is 10x10 pixels (width x height); at least 11x11 is needed by pu21_ssim"), message
    g["1"]["inputs"]["shape"] = g["2"]["inputs"]["shape"] = "1,11,11,3"
    score = sweep_host.run(g)["3"]["text"][0]
    assert score.startswith("pu21_ssim = "), score


@pytest.mark.parametrize("shape, size", [("1,0,0,3", "0x0"), ("1,4,4,3", "4x4"), ("1,9,7,3", "7x9"),
                                         ("0,16,16,3", None)])
def test_vae_encode_through_the_hdr_vae_names_the_8_pixel_minimum(sweep_host, tmp_path, shape, size):
    """Core's VAE Encode with Load HDR VAE's ``vae`` (the pack's PhotoVAE): a picture under one
    latent pixel would make a 0x0 latent, or fail in the encoder's first convolution."""
    sweep_host.use_folders(tmp_path)
    g = {**_providers(),
         "1": {"class_type": SOURCE, "inputs": {"shape": shape, "fill": "random", "seed": 0}},
         "2": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["91", 1]}},
         "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}
    with pytest.raises(GraphError) as caught:
        sweep_host.run(g)
    message = _error(caught.value)["exception_message"]
    if size is None:
        assert message.startswith("pixels is an empty batch (no images); at least 1 image of at least 8x8"), message
    else:
        assert message.startswith(f"pixels is {size} pixels (width x height); at least 8x8 is needed by VAE Encode "
                                  "(one latent pixel is 8x8 pixels)"), message
    g["1"]["inputs"]["shape"] = "1,8,8,3"  # the minimum itself encodes, to one latent pixel
    latent = sweep_host.run(g)["3"]["text"][0]
    assert len(re.findall(r"-?\d+\.\d+", latent)) == 4, latent  # 4 channels x 1 x 1




@pytest.mark.parametrize("kind, shape, fill, message", [
    ("image", "1,0,0,3", "random", "image is 0x0 pixels (width x height); at least 1x1 is needed"),
    ("image", "1,16,16,3", "nan", "image 1 of 1: 110 of 256 pixel(s) NaN/Inf (110 NaN, 0 Inf): EXR layer 'depth' "
                                  "cannot hold them"),
    ("mask", "0,16,16,3", "random", "mask is an empty batch (no images)"),
])
def test_exr_layer_refuses_a_degenerate_layer_before_save_exr_touches_the_output_folder(sweep_host, tmp_path, kind,
                                                                                        shape, fill, message):
    """A crop outside the picture, or a depth pass with NaN, as the EXR Layer of a Save EXR: refused by
    the layer node by input name, before Save EXR makes the prefix's folder."""
    sweep_host.use_folders(tmp_path)
    g = {"1": {"class_type": SOURCE, "inputs": {"shape": "1,16,16,3", "fill": "random", "seed": 1}},
         "2": {"class_type": SOURCE, "inputs": {"shape": shape, "fill": fill, "seed": 2}},
         "3": {"class_type": "LEDiffEXRLayer", "inputs": {"name": "depth", "encoding": "data", "precision": "float",
                                                          kind: ["2", OUTPUT_SLOT[kind.upper()]]}},
         "4": {"class_type": "LEDiffSaveEXR", "inputs": {
             "images": ["1", 0], "filename_prefix": "LEDiff/new/layers", "precision": "half", "compression": "zip",
             "input_encoding": "linear", "envmap": "none", "layers": ["3", 0]}}}
    with pytest.raises(GraphError) as caught:
        sweep_host.run(g)
    err = _error(caught.value)
    assert err["node_type"] == "LEDiffEXRLayer" and err["exception_message"].startswith(message), err
    assert os.listdir(sweep_host.output_dir) == []


@pytest.mark.parametrize("operator", ["aces", "reinhard", "clip"])
def test_tone_map_at_its_largest_exposure_on_float32s_largest_values_is_a_white_picture(host, operator):
    """Light near float32's maximum, loaded from a float EXR, at the exposure widget's maximum: the
    product overflows to inf, which ACES turned into NaN (inf/inf). The output is an sRGB picture in
    0..1 where that light is white, and black stays black."""
    import OpenEXR

    schema = host.node_class("LEDiffToneMap").GET_SCHEMA()
    (exposure,) = [i for i in schema.inputs if i.id == "exposure"]
    (white,) = [i for i in schema.inputs if i.id == "white"]
    big = np.finfo(np.float32).max
    rgb = np.full((4, 6, 3), big, dtype=np.float32)
    rgb[:, 3:] = 0.0
    rgb[0, 0] = [big, big / 3, 1e30]
    with OpenEXR.File({}, {"RGB": rgb}) as f:
        f.write(os.path.join(host.input_dir, "brightest.exr"))
    for widget_white in (white.min, white.max):
        g = {"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "brightest.exr", "layer": ""}},
             "2": {"class_type": "LEDiffToneMap", "inputs": {"image": ["1", 0], "operator": operator,
                                                             "exposure": exposure.max, "white": widget_white,
                                                             "auto_exposure": False}},
             "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": f"tm{widget_white}"}}}
        host.run(g)
        (name,) = [f for f in os.listdir(host.output_dir) if f.startswith(f"tm{widget_white}")]
        png = np.asarray(Image.open(os.path.join(host.output_dir, name)).convert("RGB"))
        assert (png[:, :3] == 255).all(), png[:, :3, 0]
        assert (png[:, 3:] == 0).all()
