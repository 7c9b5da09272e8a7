"""Load EXR in a genuine ComfyUI on the layouts tests/core/io/test_exr_reading.py reads in the core: a part,
a view, a display window and a luminance/chroma (YC) file."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import OpenEXR
import pytest

from support.comfy_harness import GraphError
from support.exr_files import colourful, half_ulps, write_scanline_exr


def load_save_graph(image, **load_options):
    return {
        "1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": image, "layer": "", **load_options}},
        "9": {"class_type": "LEDiffSaveEXR", "inputs": {
            "images": ["1", 0], "alpha": ["1", 1], "filename_prefix": "LEDiff/hdr", "precision": "half",
            "compression": "zip", "input_encoding": "linear", "envmap": "none"}},
    }


def saved(host, index):
    path = os.path.join(host.output_dir, "LEDiff", f"hdr_{index:05}.exr")
    with OpenEXR.File(path) as f:  # read back with the bindings, not with our reader
        return f.channels()["RGBA"].pixels.astype(np.float32).copy()


def test_load_exr_node_part_view_window_and_yc_inside_comfyui(host, exr_rgba):
    node = host.node_class("LEDiffLoadEXR")
    optional = node.INPUT_TYPES()["optional"]
    assert {"part", "view", "window"} <= set(optional)
    assert all(opts[1].get("tooltip") for name, opts in optional.items() if name in ("part", "view", "window"))

    rng = np.random.default_rng(4)
    a, b = (rng.uniform(0, 50, (8, 10, 3)).astype(np.float16) for _ in range(2))
    parts = [OpenEXR.Part({"name": n, "type": OpenEXR.scanlineimage}, {"RGB": x})
             for n, x in (("beauty", a), ("diffuse", b))]
    with OpenEXR.File(parts) as f:
        f.write(os.path.join(host.input_dir, "parts.exr"))
    host.run(load_save_graph("parts.exr"))  # no new inputs: old workflows keep working
    host.run(load_save_graph("parts.exr", part="diffuse", view="", window="data"))
    assert np.array_equal(saved(host, 1)[..., :3], a) and np.array_equal(saved(host, 2)[..., :3], b)
    with pytest.raises(GraphError, match="no part 'spec'.*'beauty', 1 'diffuse'"):
        host.run(load_save_graph("parts.exr", part="spec"))

    write_scanline_exr(os.path.join(host.input_dir, "win.exr"), {"RGB": a}, origin=(2, 0), display=(0, 0, 11, 7))
    host.run(load_save_graph("win.exr", window="display"))
    out = saved(host, 3)
    assert out.shape == (8, 12, 4) and np.array_equal(out[:, 2:, :3], a) and not out[:, :2].any()

    src = write_scanline_exr(os.path.join(host.input_dir, "src.exr"), {"RGB": colourful()})
    subprocess.run([exr_rgba, "yc", src, os.path.join(host.input_dir, "yc.exr")], check=True)
    subprocess.run([exr_rgba, "rgba", os.path.join(host.input_dir, "yc.exr"), str(host.output_dir) + "/ref.exr"],
                   check=True)
    host.run(load_save_graph("yc.exr"))
    with OpenEXR.File(str(host.output_dir) + "/ref.exr") as f:
        ref = f.channels()["RGBA"].pixels.astype(np.float32)
    assert half_ulps(saved(host, 4)[..., :3], ref[..., :3]).max() <= 2

