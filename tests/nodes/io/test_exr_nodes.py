"""Save EXR / Load EXR / Tone Map run inside a genuine ComfyUI (validation + executor).

Inputs are written and outputs read with the OpenEXR bindings directly (or Debian's exrheader), so
the checks do not rely on the pack's own reader.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess

import numpy as np
import OpenEXR
import pytest

from lediff_core.color import REC709_CHROMATICITIES
from support.color import ocio_apply
from support.comfy_harness import GraphError
from support.common import HDRI_DIR, require_tool
from support.exr_files import exrheader_channels, outputs_of, write_input

WORKFLOW = {"workflow": {"nodes": [{"id": 1, "type": "LEDiffLoadEXR"}], "links": []}}


def read_raw(path):
    with OpenEXR.File(path, separate_channels=True) as f:
        return {k: v.pixels.copy() for k, v in f.channels().items()}, dict(f.header())


def hdr_array(h=24, w=40, seed=0):
    rng = np.random.default_rng(seed)
    return (np.abs(rng.standard_normal((h, w, 3))) * np.exp2(rng.uniform(-12, 14, (h, w, 3)))).astype(
        np.float32)


def graph(image, save=None, load_layer="", extra_nodes=None, images_from=("1", 0)):
    save_inputs = {"images": list(images_from), "filename_prefix": "LEDiff/hdr", "precision": "float",
                   "compression": "zip", "input_encoding": "linear", "envmap": "none"}
    save_inputs.update(save or {})
    g = {"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": image, "layer": load_layer}},
         "9": {"class_type": "LEDiffSaveEXR", "inputs": save_inputs}}
    g.update(extra_nodes or {})
    return g


def test_nodes_are_registered_v3_with_tooltips_and_model_folder(host):
    import folder_paths
    from comfy_api.latest import io
    for node_id in ("LEDiffSaveEXR", "LEDiffLoadEXR", "LEDiffToneMap"):
        cls = host.node_class(node_id)
        assert issubclass(cls, io.ComfyNode)
        schema = cls.GET_SCHEMA()
        assert schema.category.startswith("LEDiff/") and schema.display_name
        assert all(i.tooltip for i in schema.inputs), node_id
    assert host.node_class("LEDiffSaveEXR").GET_SCHEMA().is_output_node
    paths, _ = folder_paths.folder_names_and_paths["lediff"]
    assert os.path.join(folder_paths.models_dir, "lediff") in paths

    # a path that extra_model_paths.yaml registered first is kept
    module = host.pack_module("nodes.model.paths")
    saved = folder_paths.folder_names_and_paths.pop("lediff")
    try:
        folder_paths.folder_names_and_paths["lediff"] = (["/elsewhere/lediff"], {".ckpt"})
        module.register_model_folder()
        paths, exts = folder_paths.folder_names_and_paths["lediff"]
        assert paths[0] == "/elsewhere/lediff" and os.path.join(folder_paths.models_dir, "lediff") in paths
        assert ".ckpt" in exts and ".safetensors" in exts
    finally:
        folder_paths.folder_names_and_paths["lediff"] = saved


def test_float_save_is_a_bit_exact_copy_of_the_loaded_file(host):
    rgb = hdr_array()
    write_input(host, "in.exr", {"RGB": rgb})
    ui = host.run(graph("in.exr"), WORKFLOW)
    assert outputs_of(host) == ["hdr_00001.exr"]
    chans, header = read_raw(os.path.join(host.output_dir, "LEDiff", "hdr_00001.exr"))
    out = np.stack([chans["R"], chans["G"], chans["B"]], -1)
    assert out.dtype == np.float32 and np.array_equal(out.view(np.uint32), rgb.view(np.uint32))
    assert "A" not in chans
    # the frontend lists the EXR and a tone-mapped preview
    images = ui["9"]["images"]
    assert images[0] == {"filename": "hdr_00001.exr", "subfolder": "LEDiff", "type": "output"}
    assert images[1]["type"] == "temp" and images[1]["filename"].endswith(".png")
    assert os.path.isfile(os.path.join(host.temp_dir, images[1]["subfolder"], images[1]["filename"]))


def test_half_saturates_and_says_so(host, caplog):
    rgb = hdr_array()
    rgb[0, 0] = [1e6, 70000.0, -1e9]
    write_input(host, "big.exr", {"RGB": rgb})
    with caplog.at_level(logging.WARNING, logger="lediff"):
        host.run(graph("big.exr", {"precision": "half"}))
    chans, _ = read_raw(os.path.join(host.output_dir, "LEDiff", "hdr_00001.exr"))
    assert chans["R"].dtype == np.float16
    assert [chans[c][0, 0] for c in "RGB"] == [65504.0, 65504.0, -65504.0]
    assert all(np.isfinite(chans[c]).all() for c in "RGB")
    assert any("saturated" in r.getMessage() and "float" in r.getMessage() for r in caplog.records)
    inside = np.abs(rgb[..., 0]) <= 65504
    assert np.array_equal(chans["R"][inside], rgb[..., 0][inside].astype(np.float16))


def test_header_has_chromaticities_prompt_workflow_and_provenance(host):
    write_input(host, "in.exr", {"RGB": hdr_array()})
    prompt = graph("in.exr", {"envmap": "latlong", "compression": "piz"})
    host.run(prompt, WORKFLOW)
    path = os.path.join(host.output_dir, "LEDiff", "hdr_00001.exr")
    _, header = read_raw(path)
    assert json.loads(header["prompt"]) == prompt
    assert json.loads(header["workflow"]) == WORKFLOW["workflow"]
    assert np.allclose(header["chromaticities"], REC709_CHROMATICITIES)
    assert header["software"].startswith("lediff-hdr ")
    assert header["lediff:inputEncoding"] == "linear"
    text = subprocess.run([require_tool("exrheader"), path], capture_output=True, text=True,
                          check=True).stdout
    assert "envmap (type envmap): latitude-longitude map" in text
    assert "compression (type compression): piz" in text
    assert "red   (0.64 0.33)" in text


def test_numbering_never_overwrites(host, monkeypatch):
    write_input(host, "in.exr", {"RGB": hdr_array()})
    batch = {"5": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 3}}}
    host.run(graph("in.exr", extra_nodes=batch, images_from=("5", 0)))
    assert outputs_of(host) == ["hdr_00001.exr", "hdr_00002.exr", "hdr_00003.exr"]
    first = open(os.path.join(host.output_dir, "LEDiff", "hdr_00001.exr"), "rb").read()
    host.run(graph("in.exr", extra_nodes=batch, images_from=("5", 0)))
    assert outputs_of(host)[-1] == "hdr_00006.exr" and len(outputs_of(host)) == 6

    # Another writer creates the next name after ComfyUI chose it: our file takes the next number
    import folder_paths
    real = folder_paths.get_save_image_path

    def racing(*args, **kwargs):
        result = real(*args, **kwargs)
        folder, name, counter = result[:3]
        open(os.path.join(folder, f"{name}_{counter:05}.exr"), "wb").write(b"someone else's")
        return result

    monkeypatch.setattr(folder_paths, "get_save_image_path", racing)
    host.run(graph("in.exr"))
    folder = os.path.join(host.output_dir, "LEDiff")
    assert open(os.path.join(folder, "hdr_00007.exr"), "rb").read() == b"someone else's"
    assert os.path.getsize(os.path.join(folder, "hdr_00008.exr")) > 1000
    assert open(os.path.join(folder, "hdr_00001.exr"), "rb").read() == first
    assert not [f for f in os.listdir(folder) if f.startswith(".")]


@pytest.mark.parametrize("prefix", ["../escape/hdr", "/tmp/lediff_abs/hdr", "link/hdr"])
def test_prefixes_escaping_the_output_folder_are_refused(host, tmp_path, prefix):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, os.path.join(host.output_dir, "link"))
    write_input(host, "in.exr", {"RGB": hdr_array()})
    with pytest.raises(GraphError, match="outside the output folder"):
        host.run(graph("in.exr", {"filename_prefix": prefix}))
    assert os.listdir(outside) == []
    assert not os.path.exists("/tmp/lediff_abs")
    assert not os.path.exists(os.path.join(host.output_dir, "..", "escape"))


def test_nan_is_refused_and_nothing_is_written(host):
    rgb = hdr_array()
    rgb[3, 4, 1] = np.nan
    rgb[5, 6] = np.inf
    write_input(host, "nan.exr", {"RGB": rgb})
    with pytest.raises(GraphError, match="2 pixel"):
        host.run(graph("nan.exr"))
    assert outputs_of(host) == []


def test_srgb_input_is_linearised(host):
    rgb = np.full((4, 6, 3), 0.5, np.float32)
    write_input(host, "grey.exr", {"RGB": rgb})
    host.run(graph("grey.exr", {"input_encoding": "sRGB"}))
    chans, header = read_raw(os.path.join(host.output_dir, "LEDiff", "hdr_00001.exr"))
    assert np.allclose(chans["G"], 0.2140411, atol=1e-6)  # IEC 61966-2-1
    assert header["lediff:inputEncoding"] == "sRGB"


def test_alpha_round_trips_and_layers_load(host):
    rgb, alpha = hdr_array(), np.linspace(0, 1, 24 * 40, dtype=np.float32).reshape(24, 40)
    write_input(host, "layers.exr", {"beauty.R": rgb[..., 0], "beauty.G": rgb[..., 1],
                                     "beauty.B": rgb[..., 2], "beauty.A": alpha,
                                     "spec.R": -rgb[..., 0], "spec.G": -rgb[..., 1], "spec.B": -rgb[..., 2]})
    g = graph("layers.exr")
    g["9"]["inputs"]["alpha"] = ["1", 1]
    host.run(g)
    chans, _ = read_raw(os.path.join(host.output_dir, "LEDiff", "hdr_00001.exr"))
    assert np.array_equal(chans["A"], alpha) and np.array_equal(chans["R"], rgb[..., 0])

    host.run(graph("layers.exr", load_layer="spec"))
    chans, _ = read_raw(os.path.join(host.output_dir, "LEDiff", "hdr_00002.exr"))
    assert np.array_equal(chans["B"], -rgb[..., 2])  # negative values survive too
    with pytest.raises(GraphError, match="no layer 'diffuse'"):
        host.run(graph("layers.exr", load_layer="diffuse"))


def test_radiance_hdr_loads_with_reference_values(host):
    data = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 2\n" + bytes([128, 64, 32, 129, 1, 2, 3, 150])
    open(os.path.join(host.input_dir, "tiny.hdr"), "wb").write(data)
    host.run(graph("tiny.hdr"))
    chans, _ = read_raw(os.path.join(host.output_dir, "LEDiff", "hdr_00001.exr"))
    assert chans["R"].tolist() == [[128.5 / 128, 1.5 * 2.0**14]]
    assert chans["B"].tolist() == [[32.5 / 128, 3.5 * 2.0**14]]


def test_corrupt_and_missing_inputs_fail_clearly(host):
    good = write_input(host, "good.exr", {"RGB": hdr_array(64, 64)})
    data = open(os.path.join(host.input_dir, good), "rb").read()
    open(os.path.join(host.input_dir, "cut.exr"), "wb").write(data[: len(data) // 3])
    with pytest.raises(GraphError, match="truncated, corrupt or not an EXR"):
        host.run(graph("cut.exr"))
    valid, _, _, node_errors = host.validate(graph("missing.exr"))
    assert not valid and "missing.exr" in json.dumps(node_errors)
    assert outputs_of(host) == []


def test_tone_map_node_then_save_as_srgb_recovers_the_clipped_exposure(host):
    rgb = hdr_array()
    write_input(host, "in.exr", {"RGB": rgb})
    tm = {"3": {"class_type": "LEDiffToneMap", "inputs": {"image": ["1", 0], "operator": "clip",
                                                          "exposure": -1.0, "white": 4.0,
                                                          "auto_exposure": False}}}
    host.run(graph("in.exr", {"input_encoding": "sRGB"}, extra_nodes=tm, images_from=("3", 0)))
    chans, _ = read_raw(os.path.join(host.output_dir, "LEDiff", "hdr_00001.exr"))
    out = np.stack([chans[c] for c in "RGB"], -1)
    assert np.allclose(out, np.clip(rgb * 0.5, 0, 1), atol=2e-6)


def test_real_hdri_survives_load_and_half_save(host):
    import shutil
    shutil.copy(os.path.join(HDRI_DIR, "sunset.exr"), host.input_dir)
    host.run(graph("sunset.exr", {"precision": "half", "envmap": "latlong"}))
    with OpenEXR.File(os.path.join(HDRI_DIR, "sunset.exr")) as f:
        src = f.channels()["RGB"].pixels.copy()
    chans, _ = read_raw(os.path.join(host.output_dir, "LEDiff", "hdr_00001.exr"))
    out = np.stack([chans[c] for c in "RGB"], -1).astype(np.float32)
    assert np.array_equal(out, src.astype(np.float16).astype(np.float32))
    assert src.max() > 1000  # the sun: far above 1, kept


# ---------------------------------------------------------------- EXR Layer: layers in Save EXR

def exr_layer(name, layers=None, encoding="linear", precision="file", image=None, mask=None):
    inputs = {"name": name, "encoding": encoding, "precision": precision}
    for key, value in (("layers", layers), ("image", image), ("mask", mask)):
        if value is not None:
            inputs[key] = list(value)
    return {"class_type": "LEDiffEXRLayer", "inputs": inputs}


def srgb_decode(v):
    """IEC 61966-2-1 inverse transfer function, in float64."""
    v = np.asarray(v, np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def layered_inputs(host, h=24, w=40):
    """in.exr (main image and alpha), depth.exr (float data, beyond half), preview.png (8-bit sRGB)."""
    from PIL import Image

    rgb = hdr_array(h, w)
    alpha = np.linspace(0, 1, h * w, dtype=np.float32).reshape(h, w)
    write_input(host, "in.exr", {"RGB": rgb, "A": alpha})
    depth = np.random.default_rng(1).uniform(0.5, 2e5, (h, w, 3)).astype(np.float32)
    write_input(host, "depth.exr", {"RGB": depth})
    png = np.random.default_rng(2).integers(0, 256, (h, w, 3), dtype=np.uint8)
    png[0, 0] = (128, 10, 255)
    Image.fromarray(png).save(os.path.join(host.input_dir, "preview.png"))
    return rgb, alpha, depth, png


def layered_graph(colorspace="ACEScg", precision="half"):
    g = graph("in.exr", {"precision": precision, "colorspace": colorspace, "layers": ["6", 0]})
    g["9"]["inputs"]["alpha"] = ["1", 1]
    g.update({
        "2": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "depth.exr", "layer": ""}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "preview.png"}},
        "4": exr_layer("depth", encoding="data", precision="float", image=("2", 0)),
        "5": exr_layer("bracket_mid", layers=("4", 0), encoding="sRGB", image=("3", 0)),
        "6": exr_layer("clip_mask", layers=("5", 0), mask=("1", 1)),
    })
    return g


def test_save_exr_writes_named_layers_converted_as_their_encoding_says(host):
    rgb, alpha, depth, png = layered_inputs(host)
    host.run(layered_graph("ACEScg", "half"), WORKFLOW)
    path = os.path.join(host.output_dir, "LEDiff", "hdr_00001.exr")
    channels, text = exrheader_channels(path)
    assert channels == {**{c: "half" for c in "RGBA"}, **{f"depth.{c}": "float" for c in "RGB"},
                        **{f"bracket_mid.{c}": "half" for c in "RGB"}, "clip_mask.Y": "half"}
    assert 'lediff:dataLayers (type stringvector):\n    "depth"\n    "clip_mask"\n' in text
    assert "red   (0.713 0.293)" in text  # ACEScg (AP1) for the image and its colour layers alike
    chans, header = read_raw(path)
    # data: float and bit-exact, 2e5 included (beyond half, and never colour-converted)
    assert np.array_equal(np.stack([chans[f"depth.{c}"] for c in "RGB"], -1).view(np.uint32), depth.view(np.uint32))
    # sRGB: linearised (closed form, e.g. 128/255 -> 0.2158605), then Rec.709 -> ACEScg by OCIO itself
    linear = srgb_decode(png / 255.0)
    assert abs(linear[0, 0, 0] - 0.2158605) < 1e-6
    expected = ocio_apply(linear, "Linear Rec.709 (sRGB)", "ACEScg").astype(np.float16)
    got = np.stack([chans[f"bracket_mid.{c}"] for c in "RGB"], -1)
    assert np.abs(got.view(np.int16).astype(int) - expected.view(np.int16).astype(int)).max() <= 1  # half ulp
    # a mask: written as given (exact half values), like the main alpha
    assert np.array_equal(chans["clip_mask.Y"], alpha.astype(np.float16))
    assert np.array_equal(chans["A"], alpha.astype(np.float16))
    main = np.stack([chans[c] for c in "RGB"], -1).astype(np.float32)
    reference = ocio_apply(rgb, "Linear Rec.709 (sRGB)", "ACEScg")
    assert np.allclose(main, reference, rtol=2 ** -10, atol=2 ** -24)
    oiio = subprocess.run([require_tool("oiiotool"), "--info", "-v", path], capture_output=True, text=True,
                          check=True).stdout
    assert "depth.R (float)" in oiio and "clip_mask.Y (half)" in oiio and "bracket_mid.B (half)" in oiio
    assert 'lediff:dataLayers: "depth", "clip_mask"' in oiio


def test_every_layer_loads_back_exactly_with_load_exr(host):
    import shutil

    rgb, alpha, depth, png = layered_inputs(host)
    host.run(layered_graph("ACEScg", "float"))
    saved = os.path.join(host.output_dir, "LEDiff", "hdr_00001.exr")
    shutil.copy(saved, os.path.join(host.input_dir, "layered.exr"))
    stored, _ = read_raw(saved)

    def load(layer):
        # Load EXR (into the working space) -> Save EXR as float in the working space: the loaded
        # pixels, and the alpha output (saved as A)
        host.run(graph("layered.exr", load_layer=layer, save={"alpha": ["1", 1]}))
        chans = read_raw(os.path.join(host.output_dir, "LEDiff", outputs_of(host)[-1]))[0]
        return np.stack([chans[c] for c in "RGB"], -1), chans["A"]

    depth_back, _ = load("depth")  # data: unconverted, bit-exact, although the file is ACEScg
    assert np.array_equal(depth_back.view(np.uint32), depth.view(np.uint32))
    mask_back, ones = load("clip_mask")  # a mask layer: a grey image, exactly the mask
    assert all(np.array_equal(mask_back[..., i], alpha) for i in range(3)) and (ones == 1).all()
    colour_back, _ = load("bracket_mid")
    # colour: ACEScg in the file, back in the working space to float precision of the closed form
    linear = srgb_decode(png / 255.0)
    assert np.abs(colour_back - linear).max() <= 8 * np.finfo(np.float32).eps
    main_back, main_alpha = load("")
    assert np.array_equal(main_alpha, alpha)
    scale = np.abs(rgb).max(-1, keepdims=True)
    assert (np.abs(main_back - rgb) <= 8 * np.finfo(np.float32).eps * scale).all()
    assert np.array_equal(stored["depth.R"], depth[..., 0])
    with pytest.raises(GraphError, match=r"no layer 'normals'.*its layers are \['bracket_mid', 'clip_mask', 'depth'\]"):
        host.run(graph("layered.exr", load_layer="normals"))


def test_layer_batches_one_per_image_or_one_for_all(host):
    rgb, alpha, depth, png = layered_inputs(host)
    write_input(host, "in2.exr", {"RGB": hdr_array(seed=5)})
    g = graph("in.exr", {"precision": "float", "layers": ["21", 0]}, images_from=("10", 0), extra_nodes={
        "8": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "in2.exr", "layer": ""}},
        # the main image twice: a batch of 2; the layer "other" holds in2 then in (one per image)
        "10": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 2}},
        "11": {"class_type": "BatchImagesNode", "inputs": {"images.image0": ["8", 0], "images.image1": ["1", 0]}},
        "20": exr_layer("other", image=("11", 0)),
        "21": exr_layer("clip_mask", layers=("20", 0), mask=("1", 1)),  # one mask for both images
    })
    host.run(g)
    first, second = (read_raw(os.path.join(host.output_dir, "LEDiff", f)) [0] for f in outputs_of(host))
    assert np.array_equal(first["other.G"], hdr_array(seed=5)[..., 1])
    assert np.array_equal(second["other.G"], rgb[..., 1])
    assert np.array_equal(first["clip_mask.Y"], alpha) and np.array_equal(second["clip_mask.Y"], alpha)
    # three images for two saved images: refused, nothing written
    g["12"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["8", 0], "amount": 3}}
    g["20"] = exr_layer("other", image=("12", 0))
    with pytest.raises(GraphError, match="'other' has 3 images for 2 saved image.*one per saved image or one for all"):
        host.run(g)
    assert len(outputs_of(host)) == 2


def test_layer_errors_name_the_fix_and_write_nothing(host, caplog):
    rgb, alpha, depth, png = layered_inputs(host)
    write_input(host, "small.exr", {"RGB": hdr_array(6, 8)})
    bad = hdr_array()
    bad[2, 3, 0] = np.nan
    write_input(host, "nan.exr", {"RGB": bad})

    def with_layer(**layer_nodes):
        g = graph("in.exr", {"layers": ["6", 0]})
        g.update({"2": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "small.exr", "layer": ""}},
                  "3": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "nan.exr", "layer": ""}},
                  "6": exr_layer("depth", image=("1", 0))})
        g.update(layer_nodes)
        return g

    with pytest.raises(GraphError, match="'small' is 8x6 but the image is 40x24.*resize the layer"):
        host.run(with_layer(**{"6": exr_layer("small", image=("2", 0))}))
    with pytest.raises(GraphError, match="two EXR layers are named 'depth'.*rename one"):
        host.run(with_layer(**{"5": exr_layer("depth", mask=("1", 1)),
                               "6": exr_layer("depth", ("5", 0), image=("1", 0))}))
    with pytest.raises(GraphError, match=r"image 1 of 1: 1 of 960 pixel\(s\) NaN/Inf \(1 NaN, 0 Inf\): EXR layer "
                                         r"'depth' cannot hold them"):
        host.run(with_layer(**{"6": exr_layer("depth", image=("3", 0), encoding="data")}))
    with pytest.raises(GraphError, match="neither an image nor a mask"):
        host.run(with_layer(**{"6": exr_layer("depth")}))
    assert outputs_of(host) == []
    # bad names are caught when the graph is queued, before anything runs
    for name, fix in ((" depth", "whitespace"), ("", "fill in its name"), ("depth.", "dot"), ("RGBA", "main image")):
        valid, _, _, node_errors = host.validate(with_layer(**{"6": exr_layer(name, image=("1", 0))}))
        assert not valid and fix in json.dumps(node_errors["6"]), name

    # half saturates the layer as it does the image, with the warning; a float layer keeps it
    big = hdr_array()
    big[0, 0] = [1e6, 70000.0, 3.0]
    write_input(host, "big.exr", {"RGB": big})
    g = with_layer(**{"5": exr_layer("depth_half", image=("1", 0), encoding="data"),
                      "6": exr_layer("depth_float", ("5", 0), image=("1", 0), precision="float")})
    g["1"]["inputs"]["image"] = "big.exr"
    g["9"]["inputs"]["precision"] = "half"
    with caplog.at_level(logging.WARNING, logger="lediff"):
        host.run(g)
    chans, _ = read_raw(os.path.join(host.output_dir, "LEDiff", "hdr_00001.exr"))
    assert [chans[f"depth_half.{c}"][0, 0] for c in "RGB"] == [65504, 65504, 3] == [chans[c][0, 0] for c in "RGB"]
    assert [chans[f"depth_float.{c}"][0, 0] for c in "RGB"] == [1e6, 70000, 3]
    assert chans["depth_float.R"].dtype == np.float32 and chans["depth_half.R"].dtype == np.float16
    # two values of the image and two of the half layer
    assert any("4 value(s)" in r.getMessage() and "saturated" in r.getMessage() for r in caplog.records)


def test_exr_layer_node_schema(host):
    schema = host.node_class("LEDiffEXRLayer").GET_SCHEMA()
    assert schema.display_name == "EXR Layer" and schema.category == "LEDiff/image"
    assert all(i.tooltip for i in schema.inputs)
    inputs = {i.id: i for i in schema.inputs}
    assert list(inputs) == ["name", "encoding", "precision", "image", "mask", "layers"]
    assert inputs["encoding"].options == ["linear", "sRGB", "data"] and inputs["encoding"].default == "linear"
    assert inputs["precision"].options == ["file", "half", "float"] and inputs["precision"].default == "file"
    assert all(inputs[k].optional for k in ("image", "mask", "layers"))
    assert host.node_class("LEDiffSaveEXR").INPUT_TYPES()["optional"]["layers"][0] == "LEDIFF_EXR_LAYERS"
