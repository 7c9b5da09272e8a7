"""A batch is saved whole or not at all, written as the accidents that broke it: a NaN in image 2 of
4, a layer that fails only while image 2 is written, an output disk that fills up after image 1, a
full temp folder once the files are published (and under the QA nodes, whose failed preview would
stop the prompt before the savers after them), an empty batch and a 0x0 image from a careless node.
Every saver of the pack, in the genuine ComfyUI host; the publishing itself (``write_numbered_files``)
also on its own, for the failure no graph can provoke (a name refused while publishing)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess

import numpy as np
import pytest

from support.comfy_harness import GraphError
from support.common import small_disk
from support.exr_files import write_input

SAVERS = {
    "LEDiffSaveEXR": {"precision": "float", "compression": "none", "input_encoding": "linear",
                      "envmap": "none"},
    "LEDiffSaveHDRImage": {"format": "jxl_linear", "reference_white": 1.0, "quality": 90,
                           "headroom_stops": 3.0, "mastering_peak": 1000.0},
    "LEDiffSaveEXRSequence": {"fps": 24.0, "start_frame": 1001, "precision": "half", "compression": "zip"},
    "LEDiffSaveHDRVideo": {"fps": 24.0, "codec": "av1", "transfer": "pq", "container": "mkv", "quality": 40,
                           "reference_white": 1.0, "mastering_peak": 1000.0},
}
LABELS = {"LEDiffSaveEXR": "Save EXR", "LEDiffSaveHDRImage": "Save HDR Image",
          "LEDiffSaveEXRSequence": "Save EXR Sequence", "LEDiffSaveHDRVideo": "Save HDR Video"}


class CarelessSlice:
    """A third-party node as careless as many: slices a batch and crops with no lower bound, so a
    length or size of 0 hands the next node an empty batch or a 0x0 image."""

    @classmethod
    def INPUT_TYPES(cls):
        size = {"default": 0, "min": 0, "max": 16384}
        return {"required": {"image": ("IMAGE",), "length": ("INT", size), "width": ("INT", size),
                             "height": ("INT", size)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "slice"
    CATEGORY = "testing"

    def slice(self, image, length, width, height):
        return (image[:length, :height, :width],)


def ramp(h=32, w=48):
    x = np.exp2(np.linspace(-5, 7, h * w, dtype=np.float32)).reshape(h, w, 1)
    return np.ascontiguousarray(x * np.array([1.0, 0.8, 0.6], np.float32))


def load(image):
    return {"class_type": "LEDiffLoadEXR", "inputs": {"image": image, "layer": ""}}


def saver(class_type, images, **inputs):
    return {"class_type": class_type,
            "inputs": {"images": images, "filename_prefix": "LEDiff/out", **SAVERS[class_type], **inputs}}


def batch_of_four_with_nan_in_image_2(host) -> dict:
    """good, nan, good, good: core's Image Batch and Repeat Image Batch over two loaded files."""
    write_input(host, "good.exr", ramp())
    bad = ramp()
    bad[1, 2, 0], bad[3, 4], bad[5, 6, 2] = np.nan, -np.inf, np.inf  # 3 pixels
    write_input(host, "bad.exr", bad)
    return {"1": load("good.exr"), "2": load("bad.exr"),
            "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
            "4": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 2}},
            "5": {"class_type": "ImageBatch", "inputs": {"image1": ["3", 0], "image2": ["4", 0]}}}


def files_under(folder) -> list[str]:
    """Every file below ``folder``, hidden temporaries included."""
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


@contextlib.contextmanager
def full_folder(path):
    """``path`` as a folder that cannot take another file: a 64 KB tmpfs filled to the brim where
    this process may mount one (root in a container), else a folder that cannot even be created
    (below a regular file), which fails the same writes with another error."""
    os.makedirs(path)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", path],
                             capture_output=True).returncode == 0
    try:
        if mounted:
            with open(os.path.join(path, "filler"), "wb", buffering=0) as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 4096)
            yield path, "No space left on device"
        else:
            blocker = os.path.join(path, "not_a_folder")
            with open(blocker, "wb"):
                pass
            yield os.path.join(blocker, "temp"), "Not a directory"
    finally:
        if mounted:
            subprocess.run(["umount", path], check=True)


# ------------------------------------------------------------------------------- batches in the host

@pytest.mark.parametrize("class_type", ["LEDiffSaveEXR", "LEDiffSaveHDRImage", "LEDiffSaveEXRSequence"])
def test_nan_in_image_2_of_4_publishes_nothing_and_names_the_item(host, class_type):
    g = batch_of_four_with_nan_in_image_2(host)
    g["9"] = saver(class_type, ["5", 0])
    item = r"frame 2 of 4 \(frame 1002, out\.1002\.exr\)" if class_type == "LEDiffSaveEXRSequence" else "image 2 of 4"
    with pytest.raises(GraphError, match=rf"{LABELS[class_type]}: {item}: 3 pixel\(s\) contain NaN or Inf"):
        host.run(g)
    assert os.listdir(host.output_dir) == []  # refused before anything was created: not even LEDiff/


def test_a_layer_failing_in_image_2_publishes_nothing(host):
    """A NaN in image 2's EXR layer: refused by the EXR Layer node, naming the batch item, before Save
    EXR writes image 1 (what only the writing of image 2 finds: the disk test below)."""
    write_input(host, "good.exr", ramp())
    bad = ramp()
    bad[7, 8, 1] = np.nan
    write_input(host, "bad.exr", bad)
    g = {"1": load("good.exr"), "2": load("bad.exr"),
         "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
         "4": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["1", 0]}},
         "5": {"class_type": "LEDiffEXRLayer", "inputs": {"name": "beauty", "encoding": "linear",
                                                          "precision": "file", "image": ["3", 0]}},
         "9": saver("LEDiffSaveEXR", ["4", 0], layers=["5", 0])}
    with pytest.raises(GraphError, match=r"image 2 of 2: 1 of \d+ pixel\(s\) NaN/Inf \(1 NaN, 0 Inf\): EXR layer "
                                         r"'beauty' cannot hold them"):
        host.run(g)
    assert files_under(host.output_dir) == []


def test_an_output_disk_filling_up_at_image_2_publishes_nothing(host, tmp_path):
    write_input(host, "good.exr", ramp(64, 64))  # uncompressed float: 48 KB of pixels per file
    g = {"1": load("good.exr"),
         "4": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 2}},
         "9": saver("LEDiffSaveEXR", ["4", 0])}
    with small_disk(str(tmp_path / "small_output"), 80) as output:
        host.set_folders(output_dir=output)
        with pytest.raises(GraphError, match=r"Save EXR: image 2 of 2: No space left on device; nothing was "
                                             r"saved\. Free disk space"):
            host.run(g)
        assert files_under(output) == []
        g["4"]["inputs"]["amount"] = 1  # room for one: the same graph with one image saves it
        host.run(g)
        assert files_under(output) == ["LEDiff/out_00001.exr"]


@pytest.mark.parametrize("class_type", ["LEDiffSaveEXR", "LEDiffSaveHDRImage", "LEDiffSaveEXRSequence"])
def test_a_full_temp_folder_is_a_warning_naming_the_saved_file(host, tmp_path, caplog, class_type):
    write_input(host, "good.exr", ramp())
    g = {"1": load("good.exr"), "9": saver(class_type, ["1", 0])}
    with full_folder(str(tmp_path / "full_temp")) as (temp, reason):
        host.set_folders(temp_dir=temp)
        with caplog.at_level(logging.WARNING, logger="lediff"):
            ui = host.run(g)
        leftovers = files_under(temp) if os.path.isdir(temp) else []
    listed = ui["9"]["images"]
    assert [i["type"] for i in listed] == ["output"]  # the file, without its preview
    published = files_under(host.output_dir)
    assert len(published) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{LABELS[class_type]}: saved {published[0]}, but its preview could not be written" in w
               and reason in w for w in warnings), warnings
    assert [f for f in leftovers if f != "filler"] == []  # no partial preview left behind
    host.run(g)  # the queue goes on: the next run saves the next number, no duplicate of a failed run
    assert len(files_under(host.output_dir)) == 2


QA_NODES = {
    "LEDiffExposureStrip": ("Exposure Strip", {"ev_min": -2.0, "ev_max": 2.0, "ev_step": 2.0, "panel_width": 32}),
    "LEDiffHDRStats": ("HDR Stats", {}),
}


def qa_graph(class_type):
    """Load -> QA node -> Save EXR of its picture, which runs after it: a QA node that failed on its
    preview would stop the prompt before the saver."""
    return {"1": load("good.exr"),
            "2": {"class_type": class_type, "inputs": {"image": ["1", 0], **QA_NODES[class_type][1]}},
            "9": saver("LEDiffSaveEXR", ["2", 0])}


@pytest.mark.parametrize("class_type", list(QA_NODES))
def test_qa_previews_carry_the_workflow(host, class_type):
    """What core's previews gave these nodes before they used the pack's preview path: the prompt in
    the PNG (drag the picture onto the canvas to get the graph back)."""
    from PIL import Image

    write_input(host, "good.exr", ramp())
    [entry] = host.run(qa_graph(class_type))["2"]["images"]
    assert entry["type"] == "temp"
    with Image.open(os.path.join(host.temp_dir, entry["subfolder"], entry["filename"])) as png:
        assert png.format == "PNG" and "LEDiffLoadEXR" in png.text["prompt"]


@pytest.mark.parametrize("class_type", list(QA_NODES))
def test_a_full_temp_folder_is_a_warning_and_the_qa_node_succeeds(host, tmp_path, caplog, class_type):
    label = QA_NODES[class_type][0]
    write_input(host, "good.exr", ramp())
    with full_folder(str(tmp_path / "full_temp")) as (temp, reason):
        host.set_folders(temp_dir=temp)
        with caplog.at_level(logging.WARNING, logger="lediff"):
            ui = host.run(qa_graph(class_type))
        leftovers = files_under(temp) if os.path.isdir(temp) else []
    assert ui["2"]["images"] == []  # the node succeeded, without its preview
    if class_type == "LEDiffHDRStats":
        assert ui["2"]["text"][0].startswith("HDR: ")  # its summary is still shown
    # its output reached the saver after it, which saved it (and warned about its own preview)
    assert files_under(host.output_dir) == ["LEDiff/out_00001.exr"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith(f"{label}: its preview image(s) could not be written to ComfyUI's temp folder {temp} "
                            f"({reason}") and "its outputs are unaffected" in w for w in warnings), warnings
    assert any(w.startswith("Save EXR: saved LEDiff/out_00001.exr, but its preview") for w in warnings), warnings
    assert [f for f in leftovers if f != "filler"] == []  # no partial preview left behind


# ------------------------------------------------------------------------------- degenerate input

@pytest.fixture
def careless(host, monkeypatch):
    monkeypatch.setitem(host.node_classes, "TestCarelessSlice", CarelessSlice)
    write_input(host, "good.exr", ramp())
    return host


def sliced(class_type, length, width, height, **save):
    return {"1": load("good.exr"),
            "2": {"class_type": "TestCarelessSlice",
                  "inputs": {"image": ["1", 0], "length": length, "width": width, "height": height}},
            "9": saver(class_type, ["2", 0], **save)}


@pytest.mark.parametrize("class_type", list(SAVERS))
def test_an_empty_batch_is_refused_naming_the_minimum(careless, class_type):
    noun = "frame" if class_type in ("LEDiffSaveEXRSequence", "LEDiffSaveHDRVideo") else "image"
    with pytest.raises(GraphError, match=rf"{LABELS[class_type]}: images is an empty batch \(0 {noun}s of "
                                         rf"48x32\); at least 1 {noun} is needed"):
        careless.run(sliced(class_type, 0, 48, 32))
    assert os.listdir(careless.output_dir) == []  # no file, no empty LEDiff/ folder


@pytest.mark.parametrize("class_type", list(SAVERS))
def test_a_0x0_image_is_refused_naming_the_size_and_the_minimum(careless, class_type):
    with pytest.raises(GraphError, match=rf"{LABELS[class_type]}: images are 0x0 pixels \(1 \w+\(s\)\); the "
                                         r"minimum is \d+x\d+"):
        careless.run(sliced(class_type, 1, 0, 0))
    assert os.listdir(careless.output_dir) == []  # no file, no empty LEDiff/ folder


@pytest.mark.parametrize(("class_type", "save", "size", "minimum"), [
    ("LEDiffSaveHDRImage", {"format": "ultrahdr"}, (6, 4), r"8x8 for ultrahdr \(libultrahdr's smallest image\)"),
    ("LEDiffSaveHDRVideo", {"codec": "hevc"}, (8, 8),
     r"16x16 for hevc \(libx265; prores_4444 takes 1x1; prores_4444xq takes 1x1\)"),
    ("LEDiffSaveHDRVideo", {"codec": "av1"}, (8, 8),
     r"16x16 for av1 \(libsvtav1; prores_4444 takes 1x1; prores_4444xq takes 1x1\)"),
])
def test_sizes_an_encoder_refuses_are_refused_before_it_opens(careless, class_type, save, size, minimum):
    with pytest.raises(GraphError, match=rf"images are {size[0]}x{size[1]} pixels .*; the minimum is {minimum}"):
        careless.run(sliced(class_type, 1, *size, **save))
    assert os.listdir(careless.output_dir) == []  # no file, no empty LEDiff/ folder


# ------------------------------------------------------------------------------- publishing on its own


