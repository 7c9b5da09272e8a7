"""Big photos on the defaults: what automatic tiling costs, and photo_to_hdr's peak memory.

    bash scripts/bench.sh bench_big_photo [--repeat N] [--parts cost,peak]
        [--peak-sizes 1024x512,2048x1024] [--models sd|fixture] [--steps 1] [--budget-mb 0]

1. Cost of the automatic choice when the image fits (tile_size 0 against an explicit one-piece
   tile_size, SD-sized random weights, a 512x512 image): HDR Decode and VAE Encode through the HDR
   VAE's vae (against core's own VAE encode of the same weights). Must be 1.00: it only tiles when
   needed. Then tiled against one piece on a size that fits both (768x768, in 384 px tiles, what
   the automatic choice takes when memory is short), as a time ratio.
2. Peak memory (peak RSS growth of a fresh process from just before the graph runs) and time of the
   shipped photo workflows (--workflows) on the defaults at the given photo sizes, bracket steps --steps,
   with SD-sized random weights (--models sd; the checkpoint's VAE decoder, used for the bracket
   layers, is the fixture's narrow one) or the small fixture models. The nodes' tiling decisions
   are printed as they logged them. --budget-mb N runs each case under a memory ceiling of N MB
   above what the host holds once its model files are written (RLIMIT_DATA, as
   tests/runner/test_big_photo.py does): a run that completes under 8192 shows that photo fits 8 GB.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from benchmarks.bench_common import timed_rounds
from benchmarks.bench_lediff import sd_sized_hdr_vae, start_host


def cost(repeat: int) -> None:
    import torch

    torch.set_grad_enabled(False)
    host = start_host(tempfile.mkdtemp(prefix="lediff_bench_"))
    import comfy.sd
    hdr_vae, vae = sd_sized_hdr_vae(host)
    decode = host.node_class("LEDiffHDRDecode")

    def ratio(a, b):
        with torch.inference_mode():  # as ComfyUI runs nodes
            rounds = timed_rounds([a, b], repeat)
        return statistics.median(x / y for x, y in zip(*rounds, strict=True)), [statistics.median(r) for r in rounds]

    latent = {"samples": torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(0))}
    r, (t_auto, t_one) = ratio(lambda: decode.execute(hdr_vae, latent),
                               lambda: decode.execute(hdr_vae, latent, False, 16384))
    print(f"1a. HDR Decode 512x512: automatic {t_auto:.2f} s | explicit one piece {t_one:.2f} s | ratio {r:.3f}")
    photo = torch.rand(1, 512, 512, 3, generator=torch.Generator().manual_seed(1))
    r, (t_ours, t_core) = ratio(lambda: vae.encode(photo), lambda: comfy.sd.VAE.encode(vae, photo))
    print(f"1b. VAE Encode 512x512 (HDR VAE's vae): automatic {t_ours:.2f} s | core's encode {t_core:.2f} s "
          f"| ratio {r:.3f}")

    latent = {"samples": torch.randn(1, 4, 96, 96, generator=torch.Generator().manual_seed(2))}
    r, (t_tiled, t_one) = ratio(lambda: decode.execute(hdr_vae, latent, False, 384),
                                lambda: decode.execute(hdr_vae, latent, False, 16384))
    print(f"1c. HDR Decode 768x768: 384 px tiles {t_tiled:.2f} s | one piece {t_one:.2f} s | tiled / one piece {r:.2f}")
    photo = torch.rand(1, 768, 768, 3, generator=torch.Generator().manual_seed(3))
    r, (t_tiled, t_one) = ratio(lambda: vae.encode_tiled(photo, tile_x=384, tile_y=384, overlap=48),
                                lambda: comfy.sd.VAE.encode(vae, photo))
    print(f"1d. VAE Encode 768x768: 384 px tiles {t_tiled:.2f} s | one piece {t_one:.2f} s | tiled / one piece {r:.2f}")


def peak(workflows, sizes, models: str, steps: int, budget_mb: int) -> None:
    from support.big_photo import run_child

    for workflow, size in ((wf, size) for wf in workflows for size in sizes):
        w, h = (int(v) for v in size.split("x"))
        log, result = run_child(tempfile.mkdtemp(prefix="lediff_bench_"), workflow, (w, h), budget_mb, models, steps,
                                timeout=6 * 3600)
        decisions = [line[len("LOG lediff "):] for line in log.splitlines()
                     if line.startswith("LOG lediff ") and ("tiling" in line or "ran out" in line)]
        ceiling = f", ceiling {budget_mb} MB" if budget_mb else ""
        print(f"2. {workflow} {w}x{h} ({w * h / 1e6:.1f} MP), {models} models, {steps} step(s){ceiling}: "
              f"peak growth {result['peak_growth_mb']:.0f} MB, {result['seconds']:.0f} s")
        for line in decisions:
            print(f"     {line}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parts", default="cost,peak")
    parser.add_argument("--peak-sizes", default="1024x512,2048x1024")
    parser.add_argument("--workflows", default="photo_to_hdr,shadow_recovery")
    parser.add_argument("--models", choices=["sd", "fixture"], default="sd")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--budget-mb", type=int, default=0, help="memory ceiling per case (0: none)")
    opts = parser.parse_args()
    parts = opts.parts.split(",")
    if "cost" in parts:
        cost(opts.repeat)
    if "peak" in parts:
        peak(opts.workflows.split(","), opts.peak_sizes.split(","), opts.models, opts.steps, opts.budget_mb)


if __name__ == "__main__":
    main()
