"""HDR Decode precision benchmark: float32 (the default) against ComfyUI's low VAE dtypes.

    bash scripts/bench.sh bench_precision [--sizes 128x128,192x192] [--repeat N]

For each image size, three cases, each in a fresh process so that peak memory is its own:
  float32   - HDR Decode with precision "float32 (exact)" (the default; the baseline)
  bfloat16  - ComfyUI started as with --bf16-vae, HDR Decode with precision "vae dtype (fast)"
  float16   - ComfyUI started as with --fp16-vae, HDR Decode with precision "vae dtype (fast)"
SD-sized AutoencoderKL decoder (widths 128-512) with random weights whose log output spans about
+-8 (the range of real HDR: the issue's measurement set-up), on ComfyUI's device (the CPU here).
Printed per case: median seconds of N decodes, peak RSS growth during the first decode (Linux:
the peak mark is reset just before it), and the relative HDR error
|hdr - hdr_float32| / hdr_float32 (median, 99th percentile, max) against the float32 decode of
the same latent; ratios against float32 measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from benchmarks.bench_common import timed
from benchmarks.bench_lediff import SD_VAE

CASES = {"float32": None, "bfloat16": "bf16_vae", "float16": "fp16_vae"}


def status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), in kB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def reset_peak_rss() -> None:
    """Linux: make the peak-RSS mark (VmHWM) start again from the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def run_case(case: str, size: tuple[int, int], repeat: int, out_path: str) -> None:
    """In a fresh process: decode one latent ``repeat`` times; save the HDR, print time and memory."""
    from support import tiny_models as fx
    from support.comfy_harness import ComfyHost

    host = ComfyHost.start()
    host.use_folders(tempfile.mkdtemp(prefix="lediff_bench_precision_"))
    from comfy.cli_args import args

    if CASES[case]:
        setattr(args, CASES[case], True)  # what --bf16-vae / --fp16-vae set
    models = host.pack_module("nodes.model.runtime")
    hdr_vae_mod = host.pack_module("lediff_core.model.hdr_vae")
    sd = {k: v.contiguous() for k, v in fx.make_vae(SD_VAE, seed=7).state_dict().items()}
    hdr_vae = models.HDRVAEModel(hdr_vae_mod.HDRVAE(SD_VAE, sd, fx.fusion_state_dict(), "bench"), "bench")
    del sd
    precision = models.PRECISION_FAST if CASES[case] else models.PRECISION_EXACT
    assert hdr_vae.compute_dtype(precision) == getattr(torch, case), hdr_vae.compute_dtype(precision)
    w, h = size
    latent = {"samples": torch.randn(1, 4, h // 8, w // 8, generator=torch.Generator().manual_seed(0))}
    decode = host.node_class("LEDiffHDRDecode")
    hdr_vae.load(latent["samples"].shape)  # weights in place: the growth is the decode's own
    gc.collect()
    reset_peak_rss()
    before = status_kb("VmRSS")
    start = time.perf_counter()
    hdr = decode.execute(hdr_vae, latent, False, 0, precision).args[0]
    first = time.perf_counter() - start
    peak = status_kb("VmHWM")
    seconds = timed([lambda: decode.execute(hdr_vae, latent, False, 0, precision)], repeat - 1)[0] \
        if repeat > 1 else first
    torch.save(hdr, out_path)
    print(json.dumps({"seconds": seconds, "peak_growth_mb": (peak - before) / 1024}))


def case_in_subprocess(case, size, repeat, out_path):
    proc = subprocess.run([sys.executable, "-m", __spec__.name, "--case", case, f"{size[0]}x{size[1]}",
                           "--repeat", str(repeat), "--out", out_path], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"case {case} {size} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def relative_error(hdr, ref):
    rel = ((hdr.double() - ref.double()).abs() / ref.double()).flatten()
    return rel.median().item(), torch.quantile(rel, 0.99).item(), rel.max().item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="128x128,192x192")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.case:
        case, size = opts.case
        run_case(case, tuple(int(v) for v in size.split("x")), opts.repeat, opts.out)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU (ComfyUI --cpu); "
          f"SD-sized decoder, random weights; median of {max(opts.repeat - 1, 1)} timed decode(s) after a first one")
    work = tempfile.mkdtemp(prefix="lediff_bench_precision_")
    for size in [tuple(int(v) for v in s.split("x")) for s in opts.sizes.split(",") if s]:
        rows, hdrs = {}, {}
        for case in CASES:
            path = os.path.join(work, f"{case}_{size[0]}x{size[1]}.pt")
            rows[case] = case_in_subprocess(case, size, opts.repeat, path)
            hdrs[case] = torch.load(path, weights_only=True)
        ref = hdrs["float32"]
        log = torch.log(ref)
        print(f"\n{size[0]}x{size[1]} (log output {log.min().item():+.1f} .. {log.max().item():+.1f}):")
        base = rows["float32"]
        for case, row in rows.items():
            med, p99, worst = relative_error(hdrs[case], ref)
            mem_ratio = (f"{row['peak_growth_mb'] / base['peak_growth_mb']:.2f}x" if base["peak_growth_mb"] > 0
                         else "n/a")
            print(f"  {case:9s} {row['seconds']:7.2f} s ({row['seconds'] / base['seconds']:.2f}x float32) | "
                  f"peak +{row['peak_growth_mb']:6.0f} MB ({mem_ratio}) | "
                  f"relative HDR error median {med:.2e}, p99 {p99:.2e}, max {worst:.2e}")


if __name__ == "__main__":
    main()
