"""Save EXR Sequence benchmark: time per frame against Save EXR per image, same frames, same
settings, measured in the same run.

    bash scripts/bench.sh bench_exr_sequence [--frames N] [--repeat N]

Frames: a pan across a real CC0 HDRI (tests/data/hdri/city.exr, 1024x512 float32 RGB), shifted
16 px per frame, as one IMAGE batch. Rows (median over interleaved rounds, paired ratios):
  node - LEDiffSaveEXRSequence's execute (staging folder, frames, one rename, a preview of the
         first frame) / LEDiffSaveEXR's execute on the same batch (one published file per image, a
         preview of every image)
  core - lediff_core.io.sequence.save_exr_sequence / write_new_file(write_exr) per frame: the
         writing alone, without the nodes' previews
Target: node and core ratios <= 1.05 at the default (half, zip).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile

import numpy as np
import OpenEXR
import torch

from benchmarks.bench_common import paired_ratio, timed_rounds
from lediff_core.io.exr import read_exr, write_exr
from lediff_core.io.publish import write_new_file
from lediff_core.io.sequence import save_exr_sequence
from support.comfy_harness import ComfyHost
from support.common import HDRI_DIR

CASES = [("half", "zip"), ("half", "piz"), ("float", "zip")]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=7)
    opts = parser.parse_args()

    src = read_exr(os.path.join(HDRI_DIR, "city.exr")).rgb
    frames = [np.ascontiguousarray(np.roll(src, 16 * i, axis=1)) for i in range(opts.frames)]
    images = torch.from_numpy(np.stack(frames))
    print(f"{opts.frames} frames {src.shape[1]}x{src.shape[0]}, peak {src.max():.0f}, torch threads "
          f"{torch.get_num_threads()}, OpenEXR threads {OpenEXR.global_thread_count()}")

    work = tempfile.mkdtemp(prefix="lediff_bench_")
    host = ComfyHost.start()
    host.use_folders(work)
    hidden = {"hidden_inputs": {"PROMPT": {"1": {"class_type": "LEDiffSaveEXRSequence", "inputs": {}}},
                                "EXTRA_PNGINFO": {"workflow": {"nodes": []}}}}
    save_exr = host.node_class("LEDiffSaveEXR").PREPARE_CLASS_CLONE(hidden)
    save_seq = host.node_class("LEDiffSaveEXRSequence").PREPARE_CLASS_CLONE(hidden)
    core_dir = os.path.join(work, "core")
    os.makedirs(core_dir)
    counter = iter(range(10**6))

    print(f"\n{'precision':9} {'compr':6} {'exr node s/frame':>16} {'seq node s/frame':>16} {'node ratio':>10} "
          f"{'exr core s/frame':>16} {'seq core s/frame':>16} {'core ratio':>10}")
    results = {}

    def per_frame(times):
        return statistics.median(times) / opts.frames

    for precision, compression in CASES:

        def node_exr(precision=precision, compression=compression):
            save_exr.execute(images, "bench/exr", precision, compression, "linear", "none")

        def node_seq(precision=precision, compression=compression):
            save_seq.execute(images, "bench/seq", 24.0, 1001, precision, compression)

        def core_exr(precision=precision, compression=compression):
            for rgb in frames:
                path = os.path.join(core_dir, f"f_{next(counter)}.exr")
                write_new_file(path, lambda tmp, rgb=rgb: write_exr(tmp, rgb, None, precision, compression))

        def core_seq(precision=precision, compression=compression):
            save_exr_sequence(core_dir, lambda k: f"s_{k:05}", next(counter), "s",
                              ((rgb, None) for rgb in frames), precision=precision, compression=compression)

        t_ne, t_ns, t_ce, t_cs = timed_rounds([node_exr, node_seq, core_exr, core_seq], opts.repeat)
        node_ratio, core_ratio = paired_ratio(t_ns, t_ne), paired_ratio(t_cs, t_ce)
        results[(precision, compression)] = (node_ratio, core_ratio)
        print(f"{precision:9} {compression:6} {per_frame(t_ne):16.4f} {per_frame(t_ns):16.4f} "
              f"{node_ratio:10.2f} {per_frame(t_ce):16.4f} {per_frame(t_cs):16.4f} "
              f"{core_ratio:10.2f}")
        shutil.rmtree(os.path.join(work, "output", "bench"), ignore_errors=True)
        shutil.rmtree(core_dir, ignore_errors=True)
        os.makedirs(core_dir)

    node_ratio, core_ratio = results[("half", "zip")]
    met = node_ratio <= 1.05 and core_ratio <= 1.05
    print(f"target sequence / Save EXR <= 1.05 at (half, zip): node {node_ratio:.2f}, core {core_ratio:.2f} -> "
          f"{'MET' if met else 'MISSED'}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
