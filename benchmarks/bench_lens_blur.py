"""Lens Blur (HDR): seconds and peak memory on big pictures, against a naive gather of the same
kernels measured in the same run.

    bash scripts/bench.sh bench_lens_blur [--sizes 2048x1024,4096x2048] [--blur 16] [--tile 512]
        [--crop 512x256] [--repeat 3] [--device cpu] [--depth ramp|noise]

The scene: the city HDRI (tests/data/hdri) resized to each size, with a depth map of a near
foreground block over a ramp from near to far (every layer used), blurred up to ``--blur`` pixels
(radius) with a hexagonal bokeh. Each case runs in a fresh process: its peak memory is the growth
of the peak resident set (VmHWM, reset on Linux once the picture and the map are loaded and a
first Lens Blur of 64x64 pixels has taken torch's one-time start-up) over what the process then
held: the result (one picture's size) and the work. ``ours`` is
``lediff_core.lens.lens_blur.lens_blur`` (layered FFT scatter with occlusion and background fill,
by tiles); ``naive`` is a direct gather of the same level kernels (for every kernel offset, every
pixel's shares of the levels times that offset's kernel values, summed: (2R+1)^2 x levels
multiply-adds a pixel, no occlusion, no tiles), timed on a ``--crop`` of the same scene and
extrapolated per megapixel; ``ours`` is timed on the same crop too, for the ratio.
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scene(w: int, h: int, blur: float, depth: str = "ramp"):
    from lediff_core.io.exr import read_exr
    from support.common import HDRI_DIR

    rgb = torch.from_numpy(read_exr(os.path.join(HDRI_DIR, "city.exr")).rgb)[None].movedim(-1, 1)
    rgb = torch.nn.functional.interpolate(rgb, size=(h, w), mode="bilinear", align_corners=False)[0].movedim(0, -1)
    radius = torch.linspace(-blur / 2, blur, w)[None].expand(h, w).clone()  # near on the left, far on the right
    radius[h // 3:2 * h // 3, w // 3:w // 2] = -blur  # a blurred foreground block
    if depth == "noise":  # the worst case: every level in every tile
        radius = torch.rand(h, w, generator=torch.Generator().manual_seed(0)) * 1.5 * blur - blur / 2
    return rgb.contiguous(), radius


def naive_gather(rgb: torch.Tensor, radius: torch.Tensor, bokeh) -> torch.Tensor:
    from lediff_core.lens.bokeh import bokeh_kernel, kernel_size
    from lediff_core.lens.lens_blur import _membership, radius_levels

    mags = radius_levels(float(radius.abs().max()))
    levels = [-m for m in reversed(mags[1:])] + mags
    m = kernel_size(mags[-1]) // 2
    shares = torch.stack([_membership(radius, levels, i) for i in range(len(levels))])  # [L, H, W]
    kernels = torch.stack([torch.nn.functional.pad(k, [m - k.shape[0] // 2] * 4) for k in
                           (bokeh_kernel(abs(r), bokeh) for r in levels)])  # [L, 2m+1, 2m+1]
    h, w = radius.shape
    src = torch.nn.functional.pad(rgb.permute(2, 0, 1), [m] * 4, mode="reflect")
    sh = torch.nn.functional.pad(shares, [m] * 4, mode="reflect")
    out = torch.zeros(3, h, w)
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            weight = torch.einsum("l,lhw->hw", kernels[:, dy + m, dx + m],
                                  sh[:, m - dy:m - dy + h, m - dx:m - dx + w])
            out += weight * src[:, m - dy:m - dy + h, m - dx:m - dx + w]
    return out.permute(1, 2, 0)


def resident_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def reset_peak() -> None:
    """Resets the process's peak resident set (Linux: 5 written to /proc/self/clear_refs); elsewhere
    the peak since the start stands (the growth is then an upper bound)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_kb() -> int:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def one_case(args) -> dict:
    """Runs in a child process: one size, ours on the full picture; peak memory and seconds."""
    from lediff_core.lens.bokeh import Bokeh
    from lediff_core.lens.lens_blur import lens_blur

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    w, h = (int(v) for v in args.size.split("x"))
    rgb, radius = scene(w, h, args.blur, args.depth)
    small = scene(64, 64, min(args.blur, 32), args.depth)  # torch's one-time start-up (FFT plans, threads) apart
    lens_blur(small[0][None], small[1][None], Bokeh(6, 0.0), args.tile, args.device)
    before = resident_kb()
    reset_peak()  # the peak of reading and resizing the HDRI is not Lens Blur's
    times, out = [], None
    for _ in range(args.repeat):
        out = None  # the last result freed first: the growth is one result and the work
        start = time.perf_counter()
        out = lens_blur(rgb[None], radius[None], Bokeh(6, 0.0), args.tile, args.device)[0]
        if args.device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = peak_kb()
    result = {"size": args.size, "seconds": statistics.median(times), "peak_growth_mb": (peak - before) / 1024,
              "energy_ratio": float(out.double().sum() / rgb.double().sum())}
    if args.device != "cpu":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def crop_ratio(args) -> dict:
    from benchmarks.bench_common import timed
    from lediff_core.lens.bokeh import Bokeh
    from lediff_core.lens.lens_blur import lens_blur

    cw, ch = (int(v) for v in args.crop.split("x"))
    rgb, radius = scene(cw, ch, args.blur, args.depth)
    bokeh = Bokeh(6, 0.0)
    ours, naive = timed([lambda: lens_blur(rgb[None], radius[None], bokeh, args.tile, args.device),
                         lambda: naive_gather(rgb, radius, bokeh)], args.repeat)
    mpix = cw * ch / 1e6
    return {"crop": args.crop, "ours_s": ours, "naive_s": naive, "ours_s_per_mpix": ours / mpix,
            "naive_s_per_mpix": naive / mpix}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2048x1024,4096x2048")
    parser.add_argument("--blur", type=float, default=16.0, help="largest blur radius in pixels")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--crop", default="512x256", help="the crop the naive gather runs on (WxH)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--depth", default="ramp", choices=["ramp", "noise"],
                        help="ramp: a smooth depth with a foreground block; noise: random radii (every level "
                             "in every tile, the worst case)")
    parser.add_argument("--size", help=argparse.SUPPRESS)  # one case, in a child process
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    if args.size:
        print(json.dumps(one_case(args)))
        return
    print(f"Lens Blur, largest radius {args.blur:g} px, {args.depth} depth, hexagon, tile {args.tile}, "
          f"device {args.device}, "
          f"{torch.get_num_threads()} threads")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.path.join(REPO, "tests"),
                                                        os.environ.get("PYTHONPATH", "")])}
    ratio = crop_ratio(args)
    print(f"crop {ratio['crop']}: ours {ratio['ours_s']:.3f} s, naive gather {ratio['naive_s']:.3f} s "
          f"(naive / ours {ratio['naive_s'] / ratio['ours_s']:.1f}x); per megapixel: ours "
          f"{ratio['ours_s_per_mpix']:.2f} s, naive {ratio['naive_s_per_mpix']:.2f} s")
    for size in args.sizes.split(","):
        cmd = [sys.executable, "-m", "benchmarks.bench_lens_blur", "--size", size, "--blur", str(args.blur),
               "--tile", str(args.tile), "--repeat", str(args.repeat), "--device", args.device, "--depth", args.depth]
        result = json.loads(subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True,
                                           text=True).stdout.strip().splitlines()[-1])
        w, h = (int(v) for v in size.split("x"))
        naive = ratio["naive_s_per_mpix"] * w * h / 1e6
        picture = w * h * 12 / 2**20
        print(f"{size}: ours {result['seconds']:.2f} s, peak memory +{result['peak_growth_mb']:.0f} MB, the result "
              f"included (the picture: {picture:.0f} MB; the peak with the picture and its map: "
              f"{(result['peak_growth_mb'] + picture * 4 / 3) / picture:.2f}x the picture), light kept "
              f"{result['energy_ratio']:.4f}; naive gather "
              f"(extrapolated from the crop) {naive:.1f} s: {naive / result['seconds']:.1f}x ours"
              + (f"; GPU peak {result['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in result else ""))


if __name__ == "__main__":
    main()
