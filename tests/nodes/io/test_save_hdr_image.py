"""Save HDR Image inside a genuine ComfyUI: the guarantees it shares with Save EXR (numbering,
never overwriting, temporary name then publish, prefix confined, NaN/Inf refused, ui.images), the
workflow metadata, the log of pixels above the peak, and the files read back by independent tools."""

from __future__ import annotations

import json
import logging
import os
import subprocess

import numpy as np
import pytest

from support.comfy_harness import GraphError
from support.common import require_tool
from support.exr_files import outputs_of, write_input

WORKFLOW = {"workflow": {"nodes": [{"id": 1, "type": "LEDiffLoadEXR"}], "links": []}}
EXTENSIONS = {"ultrahdr": ".jpg", "avif_pq": ".avif", "avif_hlg": ".avif", "jxl_linear": ".jxl", "png_pq": ".png",
              "png_hlg": ".png", "tiff_16bit": ".tif", "tiff_float": ".tif"}


def hdr_ramp(h=32, w=48):
    x = np.exp2(np.linspace(-5, 7, h * w)).reshape(h, w, 1)  # up to 128x reference white
    return (x * np.array([1.0, 0.8, 0.6])).astype(np.float32)


def graph(image, **save):
    inputs = {"images": ["1", 0], "filename_prefix": "LEDiff/hdr", "format": "ultrahdr",
              "reference_white": 1.0, "quality": 90, "headroom_stops": 3.0, "mastering_peak": 1000.0}
    inputs.update(save)
    return {"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": image, "layer": ""}},
            "9": {"class_type": "LEDiffSaveHDRImage", "inputs": inputs}}


def test_schema(host):
    from comfy_api.latest import io

    cls = host.node_class("LEDiffSaveHDRImage")
    assert issubclass(cls, io.ComfyNode)
    schema = cls.GET_SCHEMA()
    assert schema.is_output_node and schema.category == "LEDiff/image"
    assert schema.display_name == "Save HDR Image"
    inputs = {i.id: i for i in schema.inputs}
    assert all(i.tooltip for i in schema.inputs)
    assert inputs["format"].options == ["ultrahdr", "avif_pq", "avif_hlg", "jxl_linear", "png_pq", "png_hlg",
                                        "tiff_16bit", "tiff_half", "tiff_float", "radiance_hdr"]
    assert inputs["filename_prefix"].default == "LEDiff/hdr" and inputs["reference_white"].default == 1.0


@pytest.mark.parametrize("fmt", list(EXTENSIONS))
def test_each_format_saves_lists_and_carries_the_workflow(host, fmt):
    write_input(host, "in.exr", hdr_ramp())
    prompt = graph("in.exr", format=fmt)
    ui = host.run(prompt, WORKFLOW)
    name = f"hdr_00001{EXTENSIONS[fmt]}"
    assert outputs_of(host) == [name]
    images = ui["9"]["images"]
    assert images[0] == {"filename": name, "subfolder": "LEDiff", "type": "output"}
    if fmt in ("jxl_linear", "tiff_16bit", "tiff_float"):  # browsers do not show these: a tone-mapped preview
        assert len(images) == 2 and images[1]["type"] == "temp"
    else:
        assert len(images) == 1
    path = os.path.join(host.output_dir, "LEDiff", name)
    tags = json.loads(subprocess.run([require_tool("exiftool"), "-j", "-Model", "-Make", path],
                                     capture_output=True, text=True, check=True).stdout)[0]
    assert json.loads(tags["Model"].removeprefix("prompt:")) == prompt
    assert json.loads(tags["Make"].removeprefix("workflow:")) == WORKFLOW["workflow"]
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".")]


def test_radiance_master_is_saved_listed_with_a_preview_and_read_back(host):
    from lediff_core.io.radiance import read_hdr

    write_input(host, "in.exr", hdr_ramp())
    ui = host.run(graph("in.exr", format="radiance_hdr", reference_white=0.5), WORKFLOW)
    assert outputs_of(host) == ["hdr_00001.hdr"]
    images = ui["9"]["images"]  # browsers do not show .hdr: a tone-mapped PNG preview comes with it
    assert images[0] == {"filename": "hdr_00001.hdr", "subfolder": "LEDiff", "type": "output"}
    assert len(images) == 2 and images[1]["type"] == "temp"
    rgb = read_hdr(os.path.join(host.output_dir, "LEDiff", "hdr_00001.hdr")).rgb
    # half an RGBE step of the largest component (blue is 0.6 of it); values up to 256 kept
    assert np.allclose(rgb, hdr_ramp() / 0.5, rtol=1 / 128)


def test_disable_metadata_leaves_the_workflow_out(host, monkeypatch):
    from comfy.cli_args import args

    monkeypatch.setattr(args, "disable_metadata", True)
    write_input(host, "in.exr", hdr_ramp())
    host.run(graph("in.exr", format="avif_hlg"), WORKFLOW)
    info = subprocess.run([require_tool("avifdec"), "--info",
                           os.path.join(host.output_dir, "LEDiff", "hdr_00001.avif")],
                          capture_output=True, text=True, check=True).stdout
    assert "Exif Metadata  : Absent" in info


def test_pixels_above_the_peak_are_logged(host, caplog):
    write_input(host, "in.exr", hdr_ramp())
    rgb = hdr_ramp()
    with caplog.at_level(logging.INFO, logger="lediff"):
        host.run(graph("in.exr", format="avif_pq", mastering_peak=2030.0, reference_white=0.5))
    # reference white 0.5 -> 203 cd/m2, so the peak of 2030 cd/m2 is 5.0 in the input's units,
    # in BT.2020 RGB (the same order of pixels as the luminance here: the ramp is one hue)
    rec2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114],
                        [0.0164, 0.0880, 0.8956]])  # ITU-R BT.2087-0: Rec.709 -> Rec.2020, linear
    expected = int(((rgb @ rec2020.T) / 0.5 * 203 > 2030).any(-1).sum())
    messages = [r.getMessage() for r in caplog.records if "above the peak" in r.getMessage()]
    assert messages and f"{expected} pixel(s) above the peak of 2030 cd/m2" in messages[0], messages


def test_numbering_batch_and_never_overwrites(host, monkeypatch):
    write_input(host, "in.exr", hdr_ramp())
    g = graph("in.exr", format="jxl_linear")
    g["5"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 2}}
    g["9"]["inputs"]["images"] = ["5", 0]
    host.run(g)
    assert outputs_of(host) == ["hdr_00001.jxl", "hdr_00002.jxl"]

    import folder_paths
    real = folder_paths.get_save_image_path

    def racing(*args, **kwargs):  # another writer takes the chosen name first
        result = real(*args, **kwargs)
        folder, name, counter = result[:3]
        with open(os.path.join(folder, f"{name}_{counter:05}.jxl"), "wb") as f:
            f.write(b"someone else's")
        return result

    monkeypatch.setattr(folder_paths, "get_save_image_path", racing)
    host.run(graph("in.exr", format="jxl_linear"))
    folder = os.path.join(host.output_dir, "LEDiff")
    with open(os.path.join(folder, "hdr_00003.jxl"), "rb") as f:
        assert f.read() == b"someone else's"
    assert os.path.getsize(os.path.join(folder, "hdr_00004.jxl")) > 100


@pytest.mark.parametrize("prefix", ["../escape/hdr", "/tmp/lediff_abs_hdr/hdr"])
def test_prefix_outside_the_output_folder_is_refused(host, prefix):
    write_input(host, "in.exr", hdr_ramp())
    with pytest.raises(GraphError, match="outside the output folder"):
        host.run(graph("in.exr", filename_prefix=prefix))
    assert not os.path.exists("/tmp/lediff_abs_hdr")
    assert not os.path.exists(os.path.join(host.output_dir, "..", "escape"))


def test_nan_is_refused_with_a_count_and_nothing_is_written(host):
    rgb = hdr_ramp()
    rgb[1, 2, 0] = np.nan
    rgb[3, 4] = -np.inf
    rgb[5, 6, 2] = np.inf
    write_input(host, "nan.exr", rgb)
    with pytest.raises(GraphError, match="3 pixel"):
        host.run(graph("nan.exr", format="avif_pq"))
    assert outputs_of(host) == []


def tree(root):
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files)


@pytest.mark.parametrize("fmt, setting, value, message", [
    ("ultrahdr", "headroom_stops", 8.0, r"headroom_stops must be in \(0, 5.62\] for Ultra HDR"),
    ("ultrahdr", "headroom_stops", float("nan"), r"headroom_stops must be in \(0, 5.62\].*got nan"),
    ("avif_pq", "mastering_peak", 20000.0, r"mastering_peak must be in \(0, 10000\] cd/m2, got 20000"),
    ("jxl_linear", "reference_white", 0.0, "reference_white must be a positive number, got 0.0"),
    ("avif_hlg", "quality", 0, "quality must be in 1..100, got 0"),
])
def test_a_linked_setting_out_of_range_is_refused_before_the_output_folder_changes(host, fmt, setting, value,
                                                                                   message):
    """A widget converted to an input and fed by a Float/Int node skips ComfyUI's range check (it
    checks typed-in values only): the save is refused before the prefix's new subfolder is made."""
    write_input(host, "in.exr", hdr_ramp())
    before = tree(host.output_dir)
    prompt = graph("in.exr", format=fmt, filename_prefix="LEDiff/refused/hdr", **{setting: ["5", 0]})
    primitive = "PrimitiveInt" if isinstance(value, int) else "PrimitiveFloat"
    prompt["5"] = {"class_type": primitive, "inputs": {"value": value}}
    with pytest.raises(GraphError, match=rf"Save HDR Image[^:]*: {message}"):
        host.run(prompt)
    assert tree(host.output_dir) == before


@pytest.mark.parametrize("fmt, unit", [("tiff_float", "float32"), ("tiff_16bit", "uint16")])
def test_a_tiff_too_large_for_classic_tiff_is_refused_before_anything_is_written(host, monkeypatch, fmt, unit):
    """Classic TIFF's 32-bit offsets cap a file near 4 GiB; an image whose samples would not fit is
    refused from its size alone, naming the fix, before the output folder changes or any pixel is
    converted. (The limit is lowered here to a 32x48 image's size: a 4 GiB image does not fit this
    machine's test budget; the arithmetic is the same.)"""
    tiff = host.pack_module("lediff_core.io.display.tiff")
    monkeypatch.setattr(tiff, "MAX_BYTES", 32 * 48 * 3 * tiff.SAMPLE_BYTES[unit] - 1)
    write_input(host, "in.exr", hdr_ramp())
    g = graph("in.exr", format=fmt, filename_prefix="LEDiff/big/hdr")
    g["5"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 3}}
    g["9"]["inputs"]["images"] = ["5", 0]
    before = tree(host.output_dir)
    fix = r"Save an EXR \(Save EXR\)" + (" or tiff_half" if fmt == "tiff_float" else "")
    with pytest.raises(GraphError, match=rf"Save HDR Image \({fmt}\): the image is 48x32: .* GiB of {unit} samples, "
                                         rf"more than a classic TIFF holds .*{fix}"):
        host.run(g)
    assert tree(host.output_dir) == before
    monkeypatch.undo()
    host.run(g)  # at the real limit the same batch is saved, whole
    assert sorted(os.listdir(os.path.join(host.output_dir, "LEDiff", "big"))) == [
        "hdr_00001.tif", "hdr_00002.tif", "hdr_00003.tif"]
