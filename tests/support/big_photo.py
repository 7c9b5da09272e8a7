"""Running a shipped photo workflow (or one HDR Decode) on a big photo in a fresh child
process, optionally under a memory ceiling: ``RLIMIT_DATA`` (heap and anonymous mappings, what
tensors live in) set a fixed budget above what the host holds once its models are written. Used by
tests/runner/test_big_photo.py (fixture models) and benchmarks/bench_big_photo.py (SD-sized models).

The child prints ``LOG <logger> <message>`` for every log record, ``RESULT {json}`` at the end
(seconds, peak RSS growth) and ``ERROR <message>`` for a MemoryError.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support.common import REPO

SD_UNET = {"_class_name": "UNet2DConditionModel", "in_channels": 8, "out_channels": 4, "sample_size": 64,
           "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
           "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
           "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
           "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32}
SD_VAE = {"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
          "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
          "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
          "norm_num_groups": 32, "act_fn": "silu", "sample_size": 512, "scaling_factor": 0.18215}


def _status(field: str) -> int:
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(field + ":"))


def child(work: str, mode: str, size: tuple[int, int], budget_mb: int, models: str, steps: int) -> None:
    """``mode`` "decode": HDR Decode of a latent for a ``size`` (width, height) image; otherwise the
    name of a shipped workflow that loads a photo (photo_to_hdr, shadow_recovery), run on a ``size``
    photo with bracket steps ``steps``;
    ``models``: "fixture" or "sd" (SD-sized
    random weights in the official layout). ``budget_mb`` 0: no ceiling."""
    import logging
    import resource
    import time

    sys.path[:0] = [os.path.join(REPO, "tests"), os.path.join(REPO, "scripts")]
    from workflow_specs import CHECKPOINT, HIGHLIGHT, SHADOW

    from lediff_runner.workflow import input_types_from_host, to_api
    from support import tiny_models as fx
    from support.comfy_harness import ComfyHost
    from support.graphs import write_photo

    host = ComfyHost.start()
    host.use_folders(work)
    import folder_paths

    root = os.path.join(work, "models")
    os.makedirs(os.path.join(root, "checkpoints"))
    fx.write_sd15_checkpoint(os.path.join(root, "checkpoints", CHECKPOINT))
    sd = models == "sd"
    for seed, name in enumerate((HIGHLIGHT, SHADOW)):
        fx.write_official_folder(os.path.join(root, "lediff"), name, seed=10 * seed,
                                 unet_config=SD_UNET if sd else None, vae_config=SD_VAE if sd else None)
    folder_paths.add_model_folder_path("checkpoints", os.path.join(root, "checkpoints"), is_default=True)
    folder_paths.add_model_folder_path("lediff", os.path.join(root, "lediff"), is_default=True)
    logging.basicConfig(level=logging.INFO, format="LOG %(name)s %(message)s", force=True, stream=sys.stdout)

    def start():
        if budget_mb:
            limit = _status("VmData") + budget_mb * 2**20
            resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.RLIM_INFINITY))
        with open("/proc/self/clear_refs", "w") as f:  # reset the peak RSS (VmHWM) to now
            f.write("5")
        return _status("VmRSS"), time.perf_counter()

    if mode != "decode":
        write_photo(host, "example.png", size=size)
        with open(os.path.join(REPO, "workflows", f"{mode}.json")) as f:
            workflow = json.load(f)
        prompt = to_api(workflow, input_types_from_host(host.nodes.NODE_CLASS_MAPPINGS))
        for node in prompt.values():
            if "steps" in node["inputs"]:
                node["inputs"]["steps"] = steps
        rss, t0 = start()
        host.run(prompt, {"workflow": workflow})
    else:
        import torch

        hdr_vae = host.node_class("LEDiffLoadHDRVAE").execute(HIGHLIGHT).args[0]
        latent = {"samples": torch.randn(1, 4, size[1] // 8, size[0] // 8)}
        rss, t0 = start()
        try:
            host.node_class("LEDiffHDRDecode").execute(hdr_vae, latent)
        except MemoryError as e:
            print("ERROR", e)
    print("RESULT", json.dumps({"seconds": time.perf_counter() - t0,
                                "peak_growth_mb": (_status("VmHWM") - rss) / 2**20}), flush=True)


def run_child(work, mode: str, size: tuple[int, int], budget_mb: int = 0, models: str = "fixture",
              steps: int = 1, timeout: int = 1800) -> tuple[str, dict]:
    """(the child's output, its RESULT)."""
    code = (f"from support import big_photo; big_photo.child({str(work)!r}, {mode!r}, {tuple(size)!r}, {budget_mb}, "
            f"{models!r}, {steps})")
    # glibc serves allocations under its adaptive threshold (up to 32 MB) from heaps it keeps after
    # a free: the data segment would then count memory the process no longer uses, and the ceiling
    # would measure fragmentation instead of what the nodes hold. Below 128 kB it does not matter.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(REPO, "tests"), REPO]),
           "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                         timeout=timeout)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    result = next(json.loads(line[7:]) for line in out.stdout.splitlines() if line.startswith("RESULT "))
    return text, result
