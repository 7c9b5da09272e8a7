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

from comfy_harness import GraphError
from lediff_core.color import REC709_CHROMATICITIES
from lediff_testing import HDRI_DIR, require_tool

WORKFLOW = {"workflow": {"nodes": [{"id": 1, "type": "LEDiffLoadEXR"}], "links": []}}


def write_input(host, name, channels: dict, header=None):
    path = os.path.join(host.input_dir, name)
    # the bindings ignore numpy strides: hand them contiguous planes
    channels = {k: np.ascontiguousarray(v) for k, v in channels.items()}
    with OpenEXR.File(header or {}, channels) as f:
        f.write(path)
    return name


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


def outputs_of(host):
    folder = os.path.join(host.output_dir, "LEDiff")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


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
