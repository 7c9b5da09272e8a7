"""Glare (lediff_core.lens.glare) on a real HDRI: seconds and peak memory at 2048x1024 and
4096x2048, and the FFT path against a direct spatial convolution (the same glare with
``torch.nn.functional.conv2d``, tests/support/glare_reference.py) on small cases.

1. Sizes: each size in a fresh process (so the peak is its own): the city HDRI resized, the node's
   defaults (radius 128, 6 blades), median seconds of ``--repeat`` runs after one warm-up, and the
   peak memory: RSS growth over the process before the first run (CPU), or
   ``torch.cuda.max_memory_allocated`` (CUDA).
2. FFT against direct: the same image and PSF, float32 both, times and the largest difference.

  bash scripts/bench.sh bench_glare [--sizes 2048x1024,4096x2048] [--radius 128] [--repeat 3]
      [--device cpu|cuda] [--parts sizes,direct]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks.bench_common import paired_ratio, timed_rounds
from lediff_core.io.exr import read_exr
from lediff_core.lens.glare import Glare, apply_glare
from support.common import HDRI_DIR
from support.glare_reference import direct_glare


def hdri(width: int, height: int) -> torch.Tensor:
    rgb = torch.from_numpy(read_exr(os.path.join(HDRI_DIR, "city.exr")).rgb).permute(2, 0, 1)[None]
    return F.interpolate(rgb, size=(height, width), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def one_size(size: str, radius: float, repeat: int, device: str) -> dict:
    w, h = (int(v) for v in size.split("x"))
    img = hdri(w, h)
    glare = Glare(radius=radius)
    cuda = device.startswith("cuda")
    before = rss_mb()
    if cuda:
        img = img.to(device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    seconds = []
    for _ in range(repeat + 1):  # the first is a warm-up (FFT plans, allocator)
        start = time.perf_counter()
        out = apply_glare(img, glare, device=device)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        del out
    peak = ((torch.cuda.max_memory_allocated() - base) / 2 ** 20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before)
    return {"size": size, "seconds": statistics.median(seconds[1:]), "first": seconds[0], "peak_mb": peak,
            "image_mb": img.numel() * 4 / 2 ** 20, "threads": torch.get_num_threads()}


def sizes_part(opts) -> None:
    print(f"Glare, radius {opts.radius:g}, 6 blades, city HDRI, device {opts.device}, median of {opts.repeat} "
          "after a warm-up, each size in a fresh process")
    print("| size | s | first run (s) | peak memory (MB) | image (MB) |")
    print("|---|---|---|---|---|")
    for size in opts.sizes.split(","):
        cmd = [sys.executable, "-m", "benchmarks.bench_glare", "--one", size, "--radius", str(opts.radius),
               "--repeat", str(opts.repeat), "--device", opts.device]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(f"| {r['size']} | {r['seconds']:.3f} | {r['first']:.3f} | {r['peak_mb']:.0f} | {r['image_mb']:.0f} |")


def direct_part(opts) -> None:
    print(f"FFT path against direct convolution (float32, device cpu, {torch.get_num_threads()} threads, "
          f"median of {opts.repeat})")
    print("| image | radius (kernel) | FFT (s) | direct (s) | direct / FFT | max difference / peak |")
    print("|---|---|---|---|---|---|")
    for (w, h), radius in (((256, 128), 8), ((256, 128), 32), ((512, 256), 64)):
        img = hdri(w, h)
        glare = Glare(radius=radius)
        fft_t, direct_t = timed_rounds([lambda img=img, glare=glare: apply_glare(img, glare),
                                        lambda img=img, glare=glare: direct_glare(img, glare, torch.float32)],
                                       opts.repeat)
        diff = float((apply_glare(img, glare)[0] - direct_glare(img, glare, torch.float32)).abs().max())
        print(f"| {w}x{h} | {radius} ({2 * radius + 1}x{2 * radius + 1}) | {statistics.median(fft_t):.4f} | "
              f"{statistics.median(direct_t):.4f} | {paired_ratio(direct_t, fft_t):.1f} | "
              f"{diff / float(img.max()):.1e} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2048x1024,4096x2048")
    parser.add_argument("--radius", type=float, default=128.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parts", default="sizes,direct")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.one:
        print(json.dumps(one_size(opts.one, opts.radius, opts.repeat, opts.device)))
        return
    parts = opts.parts.split(",")
    if "sizes" in parts:
        sizes_part(opts)
    if "direct" in parts:
        direct_part(opts)


if __name__ == "__main__":
    main()
