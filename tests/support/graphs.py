"""Shared set-up for the LEDiff host tests: fixture models registered in ComfyUI's model folders,
a photo in the input folder, and API-format graphs."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from lediff_core.color.tonemap import tone_map
from lediff_core.io.exr import read_exr
from support import tiny_models as fx
from support.common import HDRI_DIR

CLIP_NAME = "clip_l_random.safetensors"
MODEL = "LEDiff_highlight"
SDXL_MODEL = "LEDiff_SDXL_test"  # the ``sdxl_folder`` fixture's tiny SDXL LEDiff model


def register_fixture_models(root: str) -> dict:
    """Official-layout fixture models under root/lediff and a CLIP-L under root/text_encoders."""
    import folder_paths

    lediff = os.path.join(root, "lediff")
    encoders = os.path.join(root, "text_encoders")
    os.makedirs(encoders)
    paths = {"highlight": fx.write_official_folder(lediff, MODEL),
             "clip": fx.write_clip_l(os.path.join(encoders, CLIP_NAME))}
    folder_paths.add_model_folder_path("lediff", lediff)
    folder_paths.add_model_folder_path("text_encoders", encoders)
    paths["lediff"] = lediff
    return paths


def write_photo(host, name="photo.png", size=(64, 48), hdri="city.exr") -> str:
    """An sRGB photo made from a real HDRI (tone-mapped, resized) in the input folder."""
    import torch

    rgb = torch.from_numpy(read_exr(os.path.join(HDRI_DIR, hdri)).rgb)[None]
    ldr = (tone_map(rgb, "clip", exposure=1)[0].numpy() * 255 + 0.5).astype(np.uint8)
    Image.fromarray(ldr).resize(size, Image.LANCZOS).save(os.path.join(host.input_dir, name))
    return name


def write_depth_map(input_dir, name="depth.png", size=(64, 48)) -> str:
    """A depth map as a depth estimator gives one (grey, 8-bit, near = bright) in the input folder:
    a ground plane seen from eye level, far (0) at the top row, near (1) at the bottom row."""
    w, h = size
    ramp = np.linspace(0.0, 255.0, h)[:, None].repeat(w, axis=1)
    Image.fromarray((ramp + 0.5).astype(np.uint8), mode="L").convert("RGB").save(os.path.join(input_dir, name))
    return name


def bracket_graph(photo="photo.png", *, node="LEDiffHighlightBracket", steps=4, cfg=7.5, seed=42,
                  batch=1, save_latents=True) -> dict:
    g = {
        "1": {"class_type": "CLIPLoader", "inputs": {"clip_name": CLIP_NAME, "type": "stable_diffusion",
                                                     "device": "default"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a sunny street", "clip": ["1", 0]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 0]}},
        "4": {"class_type": "LEDiffLoadDenoiser", "inputs": {"model_name": MODEL}},
        "5": {"class_type": "LEDiffLoadHDRVAE", "inputs": {"model_name": MODEL}},
        "6": {"class_type": "LoadImage", "inputs": {"image": photo}},
        "7": {"class_type": "VAEEncode", "inputs": {"pixels": ["6", 0], "vae": ["5", 1]}},
        "8": {"class_type": node, "inputs": {
            "model": ["4", 0], "positive": ["2", 0], "negative": ["3", 0], "latent": ["7", 0],
            "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "ddim", "scheduler": "ddim_uniform"}},
        "9": {"class_type": "LEDiffLatentExposureFusion", "inputs": {
            "hdr_vae": ["5", 0], "dark": ["8", 0], "mid": ["8", 1], "bright": ["8", 2]}},
        "10": {"class_type": "LEDiffHDRDecode", "inputs": {"hdr_vae": ["5", 0], "latent": ["9", 0]}},
        "11": {"class_type": "LEDiffSaveEXR", "inputs": {
            "images": ["10", 0], "filename_prefix": "LEDiff/hdr", "precision": "float",
            "compression": "zip", "input_encoding": "linear", "envmap": "none"}},
    }
    if batch > 1:
        g["12"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["6", 0], "amount": batch}}
        g["7"]["inputs"]["pixels"] = ["12", 0]
    if save_latents:
        for nid, (src, out, name) in enumerate([("7", 0, "input"), ("8", 0, "dark"), ("8", 1, "mid"),
                                                ("8", 2, "bright"), ("9", 0, "fused")], start=20):
            g[str(nid)] = {"class_type": "SaveLatent",
                           "inputs": {"samples": [src, out], "filename_prefix": f"latents/{name}"}}
    return g


def saved_latent(host, name):
    from safetensors.torch import load_file

    folder = os.path.join(host.output_dir, "latents")
    files = sorted(f for f in os.listdir(folder) if f.startswith(name + "_"))
    return load_file(os.path.join(folder, files[-1]))["latent_tensor"]


def saved_hdr(host, index=1):
    return read_exr(os.path.join(host.output_dir, "LEDiff", f"hdr_{index:05}.exr")).rgb


def count_evaluations(model):
    """A clone of ``model`` whose UNet calls are counted (ComfyUI's own wrapper hook)."""
    counts = {"calls": 0, "samples": 0}

    def wrapper(apply_model, args):
        counts["calls"] += 1
        counts["samples"] += args["input"].shape[0]
        return apply_model(args["input"], args["timestep"], **args["c"])

    clone = model.clone()
    clone.set_model_unet_function_wrapper(wrapper)
    return clone, counts


def conditioning(host, models, text="a photo"):
    clip = host.node_class("CLIPLoader")().load_clip(os.path.basename(models["clip"]), "stable_diffusion")[0]
    return host.node_class("CLIPTextEncode")().encode(clip, text)[0]


def load_denoiser(host, name=MODEL):
    return host.node_class("LEDiffLoadDenoiser").execute(name)[0]


def interrupted_at_third_evaluation(sampling, model, pos, neg, latent, **options) -> int:
    """Run the brackets with Cancel pressed during the third UNet evaluation (ComfyUI's interrupt
    flag); returns how many evaluations ran before they stopped."""
    import comfy.model_management as mm

    counted, counts = count_evaluations(model)

    def interrupt_at_third(apply_model, args):
        counts["calls"] += 1
        if counts["calls"] == 3:
            mm.interrupt_current_processing(True)
        return apply_model(args["input"], args["timestep"], **args["c"])

    counted.set_model_unet_function_wrapper(interrupt_at_third)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            sampling.run_brackets(counted, pos, neg, latent,
                                  sampling.BracketSampling(1, 20, 1.0, "ddim", "ddim_uniform", **options))
    finally:
        mm.interrupt_current_processing(False)
    return counts["calls"]


# a graph per loader that fails at the loader (ModelSave/VAESave only make them output graphs)
LOADERS = {
    "LEDiffLoadDenoiser": lambda name: {
        "1": {"class_type": "LEDiffLoadDenoiser", "inputs": {"model_name": name}},
        "2": {"class_type": "ModelSave", "inputs": {"model": ["1", 0], "filename_prefix": "never"}}},
    "LEDiffLoadHDRVAE": lambda name: {
        "1": {"class_type": "LEDiffLoadHDRVAE", "inputs": {"model_name": name}},
        "2": {"class_type": "VAESave", "inputs": {"vae": ["1", 1], "filename_prefix": "never"}}},
}


def load_exr_graph(image):
    return {"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": image, "layer": ""}},
            "2": {"class_type": "LEDiffSaveEXR", "inputs": {
                "images": ["1", 0], "filename_prefix": "copy", "precision": "float", "compression": "zip",
                "input_encoding": "linear", "envmap": "none"}}}
