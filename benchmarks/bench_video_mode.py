"""Cost of frames = video on the bracket nodes, against frames = independent in the same run.

    bash scripts/bench.sh bench_video_mode [--unet sd|fixture] [--frames 4] [--size 256x256] [--steps 5] [--repeat 2]

Both modes run Highlight Bracket's two passes over the same batch of frames (a pan across a real
CC0 HDRI, VAE-encoded latents replaced by the same random latents in both modes, CFG 1, ddim), with
the frames connected to ``motion``; ``--unet sd`` is an SD1.5-sized 8-channel UNet with random
weights (what users run; slow on a CPU), ``fixture`` the tiny test UNet (which exaggerates every
overhead, since its UNet costs almost nothing). Prints the median seconds per frame of each mode,
their ratio (target <= 1.3), and where the extra time goes: the flow (DIS, forward and backward),
the noise warping, and the blending at every step (the rest), each timed on its own.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from benchmarks.bench_common import timed

SD_UNET = {"_class_name": "UNet2DConditionModel", "in_channels": 8, "out_channels": 4, "sample_size": 64,
           "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
           "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
           "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
           "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--unet", choices=("sd", "fixture"), default="sd")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", default="256x256")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    opts = parser.parse_args()
    width, height = (int(v) for v in opts.size.split("x"))

    import torch

    from lediff_core.video.noise import shot_noise
    from lediff_core.video.temporal import shot_motion, temporal_blend
    from support import tiny_models as fx
    from support.clips import synthetic_pan
    from support.comfy_harness import ComfyHost
    from support.graphs import CLIP_NAME

    torch.set_grad_enabled(False)
    host = ComfyHost.start()
    host.use_folders(tempfile.mkdtemp(prefix="lediff_bench_"))
    import folder_paths

    root = tempfile.mkdtemp(prefix="lediff_bench_models_")
    fx.write_official_folder(f"{root}/lediff", "bench", unet_config=SD_UNET if opts.unet == "sd" else None)
    os.makedirs(f"{root}/text_encoders")
    fx.write_clip_l(f"{root}/text_encoders/{CLIP_NAME}")
    folder_paths.add_model_folder_path("lediff", f"{root}/lediff")
    folder_paths.add_model_folder_path("text_encoders", f"{root}/text_encoders")

    sampling = host.pack_module("nodes.model.sampling")
    model = host.node_class("LEDiffLoadDenoiser").execute("bench")[0]
    clip = host.node_class("CLIPLoader")().load_clip(CLIP_NAME, "stable_diffusion")[0]
    pos = host.node_class("CLIPTextEncode")().encode(clip, "a street")[0]
    neg = host.node_class("CLIPTextEncode")().encode(clip, "")[0]
    ldr = torch.from_numpy(synthetic_pan("city", frames=opts.frames, size=(width, height), step_px=4, factor=1)[1])
    shape = (opts.frames, 4, height // 8, width // 8)
    latent = {"samples": torch.randn(shape, generator=torch.Generator().manual_seed(0))}

    def run(frames):
        settings = sampling.BracketSampling(0, opts.steps, 1.0, "ddim", "ddim_uniform", frames=frames)
        return lambda: sampling.run_brackets(model, pos, neg, latent, settings, motion=ldr)

    t_ind, t_vid = timed([run("independent"), run("video")], opts.repeat)
    grid = tuple(latent["samples"].shape[-2:])

    def part(fn):
        start = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - start

    (flows, visible), t_flow = part(lambda: shot_motion(ldr, grid))
    _, t_noise = part(lambda: [shot_noise(latent["samples"][0], flows, visible > 0.999, s) for s in (0, 22)])
    _, t_blend = part(lambda: [temporal_blend(latent["samples"], flows, visible) for _ in range(2 * opts.steps)])
    n = opts.frames
    print(f"UNet {opts.unet}, {n} frames {width}x{height}, {opts.steps} steps per pass, CFG 1, "
          f"torch threads {torch.get_num_threads()}")
    print(f"independent: {t_ind / n:.3f} s/frame   video: {t_vid / n:.3f} s/frame   ratio {t_vid / t_ind:.3f} "
          "(target <= 1.3)")
    print(f"extra per frame: flow {t_flow / n * 1000:.1f} ms, noise warping {t_noise / n * 1000:.1f} ms, "
          f"blending {t_blend / n * 1000:.1f} ms ({2 * opts.steps} blends), "
          f"total measured extra {(t_vid - t_ind) / n * 1000:.1f} ms")


if __name__ == "__main__":
    main()
