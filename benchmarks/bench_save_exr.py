"""Save EXR benchmark: ratios against baselines measured in the same run.

    bash scripts/bench.sh bench_save_exr [--repeat N]

Image: a real CC0 HDRI (tests/data/hdri/city.exr) upsampled to 2048x1024, float32 RGB.
Rows (median of N runs each, in seconds, with output file sizes):
  raw      - OpenEXR.File(...).write of the same array, same precision and compression,
             including numpy's float32 -> float16 conversion for half (the usual way)
  library  - the OpenEXR write alone of an array already in the file's precision (the floor)
  core     - lediff_core write path (checks, half saturation, temp file + link)
  node     - the LEDiffSaveEXR node's execute (core + numbering + tone-mapped preview PNG)
  comfy    - ComfyUI core's SaveImageAdvanced writing EXR (32-bit float, uncompressed only)
  layers   - the node with four EXR layers (three sRGB brackets, one mask: what the example
             workflows write; and the same brackets declared linear) against raw writing the same
             13 half channels (half, zip)
Targets: node / raw <= 1.1 for the default (half, zip).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

import numpy as np
import OpenEXR
import torch

from benchmarks.bench_common import timed
from lediff_core.io.exr import COMPRESSIONS, read_exr, write_exr
from lediff_core.io.publish import write_new_file
from support.comfy_harness import ComfyHost
from support.common import HDRI_DIR

CASES = [("half", "zip"), ("half", "piz"), ("half", "dwaa"), ("float", "zip"), ("float", "none")]


def sorted_exrs(work, stem):
    folder = os.path.join(work, "output", "bench")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith(stem))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    opts = parser.parse_args()

    src = read_exr(os.path.join(HDRI_DIR, "city.exr")).rgb
    rgb = np.ascontiguousarray(src.repeat(2, axis=0).repeat(2, axis=1))  # 2048x1024
    images = torch.from_numpy(rgb)[None]
    print(f"image {rgb.shape[1]}x{rgb.shape[0]}, peak {rgb.max():.0f}, "
          f"torch threads {torch.get_num_threads()}, OpenEXR threads {OpenEXR.global_thread_count()}")

    work = tempfile.mkdtemp(prefix="lediff_bench_")
    host = ComfyHost.start()
    host.use_folders(work)
    hidden = {"hidden_inputs": {"PROMPT": {"1": {"class_type": "LEDiffSaveEXR", "inputs": {}}},
                                "EXTRA_PNGINFO": {"workflow": {"nodes": []}}}}
    ours = host.node_class("LEDiffSaveEXR").PREPARE_CLASS_CLONE(hidden)
    core_saver = host.node_class("SaveImageAdvanced").PREPARE_CLASS_CLONE(hidden)

    counter = iter(range(10**6))
    print(f"\n{'precision':9} {'compr':6} {'raw s':>7} {'lib s':>7} {'core s':>7} {'node s':>7} "
          f"{'core/raw':>8} {'node/raw':>8} {'node/lib':>8} {'size MB':>8}")
    results = {}
    for precision, compression in CASES:

        def raw(precision=precision, compression=compression):
            # any writer of a float32 IMAGE must convert to half itself: part of the baseline
            planes = rgb.astype(np.float16) if precision == "half" else rgb
            path = os.path.join(work, f"raw_{next(counter)}.exr")
            with OpenEXR.File({"compression": COMPRESSIONS[compression], "type": OpenEXR.scanlineimage},
                              {"RGB": planes}) as f:
                f.write(path)

        def core(precision=precision, compression=compression):
            path = os.path.join(work, f"core_{next(counter)}.exr")
            write_new_file(path, lambda tmp: write_exr(tmp, rgb, None, precision, compression))

        def node(precision=precision, compression=compression):
            ours.execute(images, "bench/ours", precision, compression, "linear", "none")

        converted = rgb.astype(np.float16) if precision == "half" else rgb

        def library(planes=converted, compression=compression):
            path = os.path.join(work, f"lib_{next(counter)}.exr")
            with OpenEXR.File({"compression": COMPRESSIONS[compression], "type": OpenEXR.scanlineimage},
                              {"RGB": planes}) as f:
                f.write(path)

        t_raw, t_lib, t_core, t_node = timed([raw, library, core, node], opts.repeat)
        size = os.path.getsize(sorted_exrs(work, "ours")[-1])
        results[(precision, compression)] = t_node / t_raw
        print(f"{precision:9} {compression:6} {t_raw:7.3f} {t_lib:7.3f} {t_core:7.3f} {t_node:7.3f} "
              f"{t_core / t_raw:8.2f} {t_node / t_raw:8.2f} {t_node / t_lib:8.2f} {size / 1e6:8.2f}")

    def comfy():
        core_saver.execute(images, "bench/comfy", {"format": "exr", "bit_depth": "32-bit float",
                                                   "input_color_space": "linear"})

    def default():
        ours.execute(images, "bench/ours", "half", "zip", "linear", "none")

    t_comfy, t_default = timed([comfy, default], opts.repeat)
    comfy_size = os.path.getsize(sorted_exrs(work, "comfy")[-1])
    default_size = os.path.getsize(sorted_exrs(work, "ours")[-1])
    print(f"\nComfyUI SaveImageAdvanced EXR (float32, uncompressed): {t_comfy:.3f} s, "
          f"{comfy_size / 1e6:.2f} MB")
    print(f"LEDiff Save EXR default (half, zip):                   {t_default:.3f} s, "
          f"{default_size / 1e6:.2f} MB")
    print(f"ratio ours/core-ComfyUI: time {t_default / t_comfy:.2f}x, size {default_size / comfy_size:.2f}x")
    # four layers like the example workflows': three sRGB-encoded brackets and a mask
    exr = host.pack_module("lediff_core.io.exr")
    brackets = [np.ascontiguousarray(np.clip(rgb * 2.0 ** ev, 0, 1) ** (1 / 2.2)) for ev in (-3, 0, 3)]
    mask = np.ascontiguousarray(np.clip(rgb.max(axis=2) - 0.9, 0, 1) * 10)
    layers = (*(exr.EXRLayer(f"bracket_{i}", image=torch.from_numpy(b)[None], encoding="sRGB")
                for i, b in enumerate(brackets)), exr.EXRLayer("clip_mask", mask=torch.from_numpy(mask)[None]))
    channels = {"R": rgb[..., 0], "G": rgb[..., 1], "B": rgb[..., 2], "clip_mask.Y": mask}
    for i, b in enumerate(brackets):
        channels.update({f"bracket_{i}.{c}": b[..., k] for k, c in enumerate("RGB")})

    def raw_layers():
        planes = {name: np.ascontiguousarray(plane, dtype=np.float16) for name, plane in channels.items()}
        with OpenEXR.File({"compression": COMPRESSIONS["zip"], "type": OpenEXR.scanlineimage}, planes) as f:
            f.write(os.path.join(work, f"rawlayers_{next(counter)}.exr"))

    # the same layers declared linear: the node's cost without the inverse sRGB curve
    linear = (*(exr.EXRLayer(layer.name, image=layer.image) for layer in layers[:3]), layers[3])

    def node_layers(layers=layers):
        ours.execute(images, "bench/layers", "half", "zip", "linear", "none", layers=layers)

    t_raw_layers, t_node_layers, t_node_linear = timed(
        [raw_layers, node_layers, lambda: node_layers(linear)], opts.repeat)
    layers_size = os.path.getsize(sorted_exrs(work, "layers")[-1])
    print(f"\nwith 4 layers (3 brackets + a mask, 13 half channels, zip), {layers_size / 1e6:.2f} MB: "
          f"raw {t_raw_layers:.3f} s; node, sRGB brackets {t_node_layers:.3f} s ({t_node_layers / t_raw_layers:.2f}x "
          f"raw), linear brackets {t_node_linear:.3f} s ({t_node_linear / t_raw_layers:.2f}x raw); "
          f"node without layers {t_default:.3f} s")
    ratio = results[("half", "zip")]
    print(f"target node/raw <= 1.1 at (half, zip): {ratio:.2f} -> {'MET' if ratio <= 1.1 else 'MISSED'}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
