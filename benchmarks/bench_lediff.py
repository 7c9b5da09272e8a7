"""LEDiff inference benchmark: ratios against baselines measured in the same run.

    bash scripts/bench.sh bench_lediff [--repeat N] [--memory-sizes 1024x1024,2048x1024] [--sdxl]
        [--memory-methods ours,ours_tiled,core]

1. HDR Decode vs ComfyUI's VAE Decode of the same latent with the same decoder weights (SD-sized
   AutoencoderKL config, random weights, CPU): median seconds, ratio (target <= 1.05).
2. UNet evaluations (batch entries through the UNet) per bracket node at CFG 7.5 and CFG 1, counted
   with ComfyUI's UNet function wrapper on a small fixture denoiser, and the time ratio.
3. Peak memory (process peak RSS minus RSS before decoding, each case in a fresh subprocess) and time
   of HDR Decode in one piece, HDR Decode tiled (tile_size 512), and core VAE Decode at the given
   image sizes, SD-sized decoder, CPU. A case killed for lack of memory is reported as such.

--sdxl: the same measurements with an SDXL HDR VAE (SDXL's VAE is SD's architecture with
scaling_factor 0.13025; the HDR VAE must load as SDXL, and decodes in float32 as SD1.5's does).

Run a single case: --memory-case {ours,ours_tiled,core} WIDTHxHEIGHT [--sdxl].
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from benchmarks.bench_common import timed

SD_VAE = {"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
          "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
          "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
          "norm_num_groups": 32, "act_fn": "silu", "sample_size": 512, "scaling_factor": 0.18215}
SDXL_VAE = {**SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}


def start_host(work):
    from support.comfy_harness import ComfyHost

    host = ComfyHost.start()
    host.use_folders(work)
    return host


def sd_sized_hdr_vae(host, sdxl=False):
    """(LEDIFF_HDR_VAE value, core VAE) with the same random SD-sized weights (``sdxl``: under SDXL's
    VAE config, which must load as an SDXL HDR VAE)."""
    import torch

    from support import tiny_models as fx

    models = host.pack_module("nodes.model.runtime")
    hdr_vae_mod = host.pack_module("lediff_core.model.hdr_vae")
    sd = {k: v.contiguous() for k, v in fx.make_vae(SD_VAE, seed=7).state_dict().items()}
    with torch.no_grad():
        sd = {k: v * 0.5 if k.startswith("decoder.conv_out") else v for k, v in sd.items()}  # keep exp() finite
    config = SDXL_VAE if sdxl else SD_VAE
    core = hdr_vae_mod.HDRVAE(config, dict(sd), fx.fusion_state_dict(), "bench")
    hdr_vae = models.HDRVAEModel(core, "bench")
    assert hdr_vae.backbone == ("sdxl" if sdxl else "sd15"), hdr_vae.backbone
    return hdr_vae, models.build_comfy_vae(config, dict(sd), "bench")


def decode_speed(host, repeat, size=(512, 512), sdxl=False):
    import torch

    hdr_vae, vae = sd_sized_hdr_vae(host, sdxl)
    latent = {"samples": torch.randn(1, 4, size[1] // 8, size[0] // 8, generator=torch.Generator().manual_seed(0))}
    ours, core = host.node_class("LEDiffHDRDecode"), host.node_class("VAEDecode")()
    out = ours.execute(hdr_vae, latent).args[0]
    ref = core.decode(vae, latent)[0]
    # same decoder: core's (x + 1) / 2, clamped, against our exp(x)
    log_ours = torch.log(out)
    core_raw = ref * 2 - 1
    inside = (core_raw > -0.99) & (core_raw < 0.99)
    agree = (log_ours[inside] - core_raw[inside]).abs().max().item()
    t_ours, t_core = timed([lambda: ours.execute(hdr_vae, latent), lambda: core.decode(vae, latent)], repeat)
    return t_ours, t_core, agree


def unet_evaluations(host, repeat):
    import torch

    from support.graphs import register_fixture_models

    sampling = host.pack_module("nodes.model.sampling")
    models = register_fixture_models(tempfile.mkdtemp(prefix="lediff_bench_models_"))
    clip = host.node_class("CLIPLoader")().load_clip(os.path.basename(models["clip"]), "stable_diffusion")[0]
    pos = host.node_class("CLIPTextEncode")().encode(clip, "a photo")[0]
    neg = host.node_class("CLIPTextEncode")().encode(clip, "")[0]
    model = host.node_class("LEDiffLoadDenoiser").execute("LEDiff_highlight")[0]
    latent = {"samples": torch.randn(1, 4, 32, 32)}
    counts = {}

    def counting(apply_model, args):
        counts["n"] += args["input"].shape[0]
        return apply_model(args["input"], args["timestep"], **args["c"])

    model = model.clone()
    model.set_model_unet_function_wrapper(counting)
    result, runs = {}, {}
    for cfg in (7.5, 1.0):
        counts["n"] = 0
        settings = sampling.BracketSampling(0, 50, cfg, "ddim", "ddim_uniform")
        sampling.run_brackets(model, pos, neg, latent, settings)
        result[cfg] = counts["n"]
        runs[cfg] = (lambda settings=settings: sampling.run_brackets(model, pos, neg, latent, settings))
    times = timed([runs[7.5], runs[1.0]], repeat)
    return result, times


def _peak_kb() -> int:
    """The process's peak RSS in kB (VmHWM, which clear_refs resets; ru_maxrss where it is absent)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_case(method, size, sdxl=False):
    """Run in a fresh process: peak RSS growth while decoding one latent of ``size``."""
    import torch

    host = start_host(tempfile.mkdtemp(prefix="lediff_bench_"))
    hdr_vae, vae = sd_sized_hdr_vae(host, sdxl)
    w, h = size
    latent = {"samples": torch.randn(1, 4, h // 8, w // 8)}
    # reset the peak RSS (Linux: "5" to clear_refs), so that set-up peaks (weights being built) do
    # not hide a decode's smaller one; without it the peak since start is what ru_maxrss gives
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    before = _peak_kb()
    rss_now = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    start = time.perf_counter()
    if method == "ours":
        host.node_class("LEDiffHDRDecode").execute(hdr_vae, latent)
    elif method == "ours_tiled":
        host.node_class("LEDiffHDRDecode").execute(hdr_vae, latent, False, 512)
    else:
        host.node_class("VAEDecode")().decode(vae, latent)
    seconds = time.perf_counter() - start
    peak = _peak_kb()
    print(json.dumps({"peak_growth_mb": (peak - max(before, rss_now)) / 1024, "seconds": seconds}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-sizes", default="1024x1024,2048x1024")
    parser.add_argument("--memory-methods", default="ours,ours_tiled,core",
                        help="which decodes part 3 measures (core needs the most memory)")
    parser.add_argument("--sdxl", action="store_true", help="an SDXL HDR VAE (scaling_factor 0.13025)")
    parser.add_argument("--memory-case", nargs=2, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.memory_case:
        method, size = opts.memory_case
        memory_case(method, tuple(int(v) for v in size.split("x")), opts.sdxl)
        return

    import torch

    torch.set_grad_enabled(False)
    host = start_host(tempfile.mkdtemp(prefix="lediff_bench_"))
    print(f"torch threads {torch.get_num_threads()}, device {host.nodes.comfy.model_management.get_torch_device()}")

    kind = "SDXL HDR VAE" if opts.sdxl else "SD1.5 HDR VAE"
    t_ours, t_core, agree = decode_speed(host, opts.repeat, sdxl=opts.sdxl)
    print(f"\n1. decode of a 64x64 latent (512x512 image), SD-sized decoder, random weights, {kind}")
    print(f"   HDR Decode {t_ours:.3f} s | core VAE Decode {t_core:.3f} s | ratio {t_ours / t_core:.3f} "
          f"(target <= 1.05: {'MET' if t_ours / t_core <= 1.05 else 'MISSED'}); "
          f"same decoder output to {agree:.1e} (log space vs core's unclamped range)")

    evals, (t75, t1) = unet_evaluations(host, opts.repeat)
    print("\n2. UNet evaluations per bracket node (2 passes x 50 steps, 32x32 latent, fixture denoiser)")
    print(f"   CFG 7.5: {evals[7.5]} | CFG 1: {evals[1.0]} | ratio {evals[1.0] / evals[7.5]:.2f}; "
          f"time CFG 1 / CFG 7.5 = {t1 / t75:.2f}")

    print(f"\n3. peak memory growth while decoding (fresh process per case), SD-sized decoder, CPU, {kind}")
    methods = [m for m in opts.memory_methods.split(",") if m]
    for size in filter(None, opts.memory_sizes.split(",")):  # --memory-sizes "" skips this part
        rows = {method: run_memory_case(method, size, opts.sdxl) for method in methods}
        print(f"   {size}: " + " | ".join(f"{m} {describe(r)}" for m, r in rows.items()))
        if rows.get("ours") and rows.get("ours_tiled"):
            ratio = rows["ours_tiled"]["peak_growth_mb"] / rows["ours"]["peak_growth_mb"]
            print(f"   {size}: tiled / one-piece peak memory {ratio:.2f}")


def run_memory_case(method, size, sdxl=False):
    proc = subprocess.run([sys.executable, "-m", __spec__.name, "--memory-case", method, size,
                           *(["--sdxl"] if sdxl else [])], capture_output=True, text=True)
    if proc.returncode in (-9, 137):
        return None  # killed by the kernel: out of memory
    proc.check_returncode()
    return json.loads(proc.stdout.strip().splitlines()[-1])


def describe(row):
    if row is None:
        return "killed: out of memory (24 GB machine)"
    return f"{row['peak_growth_mb']:.0f} MB in {row['seconds']:.1f} s"


if __name__ == "__main__":
    main()
