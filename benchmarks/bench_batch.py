"""Batch runner benchmarks on the fixture models (tiny random weights in the official layouts):

1. overhead per item of the runner (staging folder, manifest with the input's sha256, atomic
   publish, the per-item prompt) over executing the same graph directly with ComfyUI's
   validate_prompt + PromptExecutor on the same warm in-process host; the two are interleaved
   item by item, each on its own copy of the photo (so ComfyUI's cache re-runs everything below
   Load Image for both, and keeps the loaded models for both);
2. items per minute of `python -m lediff_runner batch`, end to end (start-up included), in-process vs --ray with
   two workers, on the same inputs in the same run.

  .dev/venv/bin/python benchmarks/bench_batch.py [--items 8] [--size 256] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def prepare(work: str, size: int, steps: int, items: int) -> tuple[str, str, str]:
    """Fixture models under work/base, the photo_to_hdr workflow (API) and photos; built in a
    child process so that this process's ComfyUI starts clean for the overhead measurement."""
    code = f"""
import json, os, sys
from support.comfy_harness import ComfyHost
host = ComfyHost.start()
from support import tiny_models as fx
import numpy as np
from PIL import Image
from lediff_core.io.exr import read_exr
from lediff_runner.workflow import input_types_from_host, to_api
from workflow_specs import CHECKPOINT, HIGHLIGHT, SHADOW
base = {work!r} + "/base"
os.makedirs(base + "/models/checkpoints")
fx.write_sd15_checkpoint(base + "/models/checkpoints/" + CHECKPOINT)
fx.write_official_folder(base + "/models/lediff", HIGHLIGHT, seed=0)
fx.write_official_folder(base + "/models/lediff", SHADOW, seed=10)
wf = json.load(open(os.path.join({ROOT!r}, "workflows", "photo_to_hdr.json")))
prompt = to_api(wf, input_types_from_host(host.nodes.NODE_CLASS_MAPPINGS))
for node in prompt.values():
    if "steps" in node["inputs"]:
        node["inputs"]["steps"] = {steps}
json.dump(prompt, open({work!r} + "/workflow.json", "w"))
os.makedirs({work!r} + "/photos")
names = sorted(f for f in os.listdir({ROOT!r} + "/tests/data/hdri") if f.endswith(".exr"))
for i in range({items}):
    rgb = read_exr({ROOT!r} + "/tests/data/hdri/" + names[i % len(names)]).rgb
    ldr = (np.clip(rgb, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(ldr).resize(({size}, {size} * 3 // 4)).save(f"{work}/photos/p{{i:03}}.png")
"""
    path = os.pathsep.join([ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "scripts")])
    env = {**os.environ, "PYTHONPATH": path}
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)
    return f"{work}/base", f"{work}/workflow.json", f"{work}/photos"


def overhead(base: str, workflow: str, photos: str, work: str, repeat: int) -> tuple[float, float]:
    from lediff_runner.batch import BatchConfig, Item, ItemRunner
    from lediff_runner.workflow import with_inputs

    direct_in = os.path.join(work, "direct_in")
    runner_in = os.path.join(work, "runner_in")
    os.makedirs(direct_in)
    os.makedirs(runner_in)
    photo = os.path.join(photos, sorted(os.listdir(photos))[0])
    for i in range(repeat + 1):
        shutil.copy(photo, os.path.join(direct_in, f"d{i}.png"))
        shutil.copy(photo, os.path.join(runner_in, f"r{i}.png"))
    config = BatchConfig(workflow=workflow, inputs=runner_in, output=os.path.join(work, "runner_out"),
                         base_directory=base)
    os.makedirs(config.output)
    runner = ItemRunner(config)
    host = runner.host
    direct_out = os.path.join(work, "direct_out")
    os.makedirs(direct_out)

    def direct(i):
        host.set_folders(input_dir=direct_in, output_dir=direct_out)
        host.run(with_inputs(runner.prompt, {runner.loader: {runner.loader_input: f"d{i}.png"}}))

    def batch_item(i):
        runner.run(Item(f"r{i}", os.path.join(runner_in, f"r{i}.png")), f"t{i}")

    batch_item(repeat)  # warm-up: loads the models once (kept by ComfyUI's cache for both)
    direct(repeat)
    times = {"direct": [], "runner": []}
    for i in range(repeat):
        for name, fn in (("runner", batch_item), ("direct", direct)):
            start = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - start)
    import statistics

    return statistics.median(times["direct"]), statistics.median(times["runner"])


def throughput(base, workflow, photos, work, ray: bool) -> float:
    out = os.path.join(work, "ray_out" if ray else "local_out")
    cmd = [sys.executable, "-m", "lediff_runner", "batch", "--workflow", workflow, "--inputs", photos,
           "--output", out, "--base-directory", base]
    if ray:
        cmd += ["--ray", "--workers", "2"]
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=dict(os.environ, RAY_TMPDIR=ray_tmp))
    seconds = time.perf_counter() - start
    shutil.rmtree(ray_tmp, ignore_errors=True)
    return len(os.listdir(photos)) / seconds * 60


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench_batch_")
    try:
        base, workflow, photos = prepare(work, args.size, args.steps, args.items)
        print(f"photo_to_hdr, fixture models, {args.size}x{args.size * 3 // 4} photos, {args.steps} steps, "
              f"{os.cpu_count()} CPUs")
        if not args.skip_throughput:
            local = throughput(base, workflow, photos, work, ray=False)
            ray = throughput(base, workflow, photos, work, ray=True)
            print(f"items/min end to end ({args.items} items, start-up included): in-process {local:.2f}, "
                  f"Ray 2 workers {ray:.2f} (ratio {ray / local:.2f})")
            with open(os.path.join(work, "local_out", "p000", "batch_item.json")) as f:
                print(f"  one item in-process: {json.load(f)['seconds']:.2f} s")
        d, r = overhead(base, workflow, photos, work, args.repeat)
        print(f"per item, warm host, median of {args.repeat}: direct validate+execute {d:.3f} s, runner {r:.3f} s, "
              f"overhead {100 * (r / d - 1):+.1f} % (target <= 5 %)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
