"""Save EXR Sequence and Load EXR Sequence graphs for the host tests: HDR frames, a batch saved as a
sequence, a sequence on disk loaded (and saved again) through the nodes, and the error a graph reports."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from support.comfy_harness import GraphError
from support.exr_files import listing, read_rgb, write_exr


def batch_graph(host, frames, save=None):
    """Load EXR per frame (float files: loaded exactly), core's ImageBatch chained, Save EXR Sequence."""
    g = {}
    for i, rgb in enumerate(frames):
        write_exr(os.path.join(host.input_dir, f"in{i}.exr"), {"RGB": rgb})
        g[f"l{i}"] = {"class_type": "LEDiffLoadEXR", "inputs": {"image": f"in{i}.exr", "layer": ""}}
    last = ["l0", 0]
    for i in range(1, len(frames)):
        g[f"b{i}"] = {"class_type": "ImageBatch", "inputs": {"image1": last, "image2": [f"l{i}", 0]}}
        last = [f"b{i}", 0]
    inputs = {"images": last, "filename_prefix": "LEDiff/sequence", "fps": 24.0, "start_frame": 1001,
              "precision": "float", "compression": "zip"}
    inputs.update(save or {})
    g["9"] = {"class_type": "LEDiffSaveEXRSequence", "inputs": inputs}
    return g


def load_graph(sequence, **inputs):
    return {"class_type": "LEDiffLoadEXRSequence",
            "inputs": {"sequence": sequence, "start": 0, "count": 0, "step": 1, "fps": 24.0, "layer": "", **inputs}}


def through_save_exr(host, sequence, **inputs):
    """Load EXR Sequence -> Save EXR (float: a bit-exact copy), read back with the bindings."""
    g = {"1": load_graph(sequence, **inputs),
         "2": {"class_type": "LEDiffSaveEXR", "inputs": {
             "images": ["1", 0], "filename_prefix": "check/f", "precision": "float", "compression": "zip",
             "input_encoding": "linear", "envmap": "none"}}}
    host.run(g)
    folder = os.path.join(host.output_dir, "check")
    return [read_rgb(os.path.join(folder, f))[0] for f in listing(folder)]


def write_sequence(host, folder, numbers, name="plate", fmt="{:04d}", shape=(6, 8), header=None, value=None):
    for n in numbers:
        rgb = np.full((*shape, 3), float(n) if value is None else value, np.float32)
        rgb[0, 0] = [n, n * 2, 5000.0]
        write_exr(os.path.join(host.input_dir, folder, f"{name}.{fmt.format(n)}.exr"), {"RGB": rgb}, header)


def graph_error(host, sequence, **inputs):
    with pytest.raises(GraphError) as e:
        through_save_exr(host, sequence, **inputs)
    return json.dumps(e.value.report)
