"""What a user reads when something is wrong, run in a genuine ComfyUI: a wrong file in
models/lediff/ gets the fix that fits it (recognised from its safetensors header: small crafted files
with the tensor names of each kind), ComfyUI reports the pack's errors with a short type before the
message (``exception_type`` is what its error panel prints first), and a photo encoded by the HDR VAE
of the other backbone is refused by the bracket node before any sampling."""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil

import pytest
import torch
from safetensors.torch import save_file

import lediff_core
from support import tiny_models as fx
from support.comfy_harness import failure
from support.common import REPO
from support.graphs import LOADERS, MODEL, SDXL_MODEL, bracket_graph, write_photo

WRONG = "wrong_files"  # a folder of models/lediff/ holding the crafted files


def tensors(*names_and_shapes) -> dict:
    return {name: torch.zeros(shape) for name, shape in names_and_shapes}


# name -> (tensors, the start of the message, a fix it must name). Key names as the real files have
# them: an SD1.5 checkpoint (original layout), an SDXL one, diffusers UNets (a LEDiff download's
# 8-channel unet/ weights and a 4-channel one), a VAE, a LoRA (kohya's names), a CLIP text encoder.
CASES = {
    "sd15.safetensors": (
        tensors(("model.diffusion_model.input_blocks.0.0.weight", (8, 4, 3, 3)),
                ("first_stage_model.encoder.conv_in.weight", (8, 3, 3, 3)),
                ("cond_stage_model.transformer.text_model.final_layer_norm.weight", (8,))),
        "is a Stable Diffusion checkpoint, not a LEDiff model", "belongs in models/checkpoints/ (Load Checkpoint)"),
    "sdxl.safetensors": (
        tensors(("model.diffusion_model.input_blocks.0.0.weight", (8, 4, 3, 3)),
                ("conditioner.embedders.1.model.ln_final.weight", (8,))),
        "is a Stable Diffusion checkpoint (SDXL), not a LEDiff model", "models/checkpoints/"),
    "diffusion_pytorch_model.safetensors": (
        tensors(("conv_in.weight", (8, 8, 3, 3)), ("time_embedding.linear_1.weight", (8, 8))),
        "is an 8-channel UNet alone, like the weights in a LEDiff download's unet/ folder",
        "the loaders need the whole download folder (unet/ with its config.json, and vae/"),
    "unet.safetensors": (
        tensors(("conv_in.weight", (8, 4, 3, 3)), ("time_embedding.linear_1.weight", (8, 8))),
        "is a diffusion model (UNet) alone, not a LEDiff model", "models/diffusion_models/ (Load Diffusion Model)"),
    "vae.safetensors": (
        tensors(("encoder.conv_in.weight", (8, 3, 3, 3)), ("decoder.conv_in.weight", (8, 4, 3, 3))),
        "is a VAE alone, not a LEDiff model", "models/vae/ (Load VAE); if it is the weights in a LEDiff download's"),
    "lora.safetensors": (
        tensors(("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", (4, 8)),
                ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", (8, 4))),
        "is a LoRA, not a LEDiff model", "models/loras/ (Load LoRA"),
    "clip.safetensors": (
        tensors(("text_model.encoder.layers.0.mlp.fc1.weight", (8, 8))),
        "is a text encoder, not a LEDiff model", "models/text_encoders/ (Load CLIP)"),
    "notes.safetensors": (
        tensors(("alpha", (2,)), ("beta", (2,))),
        "is not a LEDiff model: it has no LEDiff metadata", "LEDiff's models are folders with unet/ and vae/"),
}


@pytest.fixture(scope="module")
def wrong_files(comfy, models):
    folder = os.path.join(models["lediff"], WRONG)
    os.makedirs(folder)
    for name, (sd, _, _) in CASES.items():
        save_file(sd, os.path.join(folder, name))
    # a folder that holds a LEDiff download one level down instead of being one
    fx.write_official_folder(os.path.join(models["lediff"], "downloads"), "LEDiff_inside", seed=50)
    return folder


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_wrong_file_gets_the_fix_that_fits_it(host, wrong_files, loader, name):
    _, start, fix = CASES[name]
    report = failure(host, LOADERS[loader](f"{WRONG}/{name}"))
    assert report["node_type"] == loader
    # the panel's first words: a short type, then the problem (the file, what it is), then the fix
    assert report["exception_type"] == "lediff.WeightError"
    message = report["exception_message"]
    assert message.startswith(f"{name!r} {start}"), message
    assert fix in message, message
    if name != "diffusion_pytorch_model.safetensors":  # only a LEDiff part may be pointed at the converter
        assert "make one with" not in message


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_folder_holding_a_download_points_at_it(host, wrong_files, loader):
    report = failure(host, LOADERS[loader]("downloads"))
    assert report["exception_type"] == "lediff.WeightError"
    assert report["exception_message"].startswith("'downloads' holds LEDiff models instead of being one")
    assert "pick downloads/LEDiff_inside in the loader's list" in report["exception_message"]
    # and what it points at loads
    host.run({**LOADERS[loader]("downloads/LEDiff_inside"), "2": {"class_type": "PreviewAny", "inputs": {
        "source": ["1", 0]}}})


def test_every_pack_exception_reports_a_short_type():
    """ComfyUI prints ``module.qualname`` (execution.full_type_name) and imports the pack under its
    absolute folder path: every exception class of lediff_core reports the module ``lediff``, and the
    nodes define none of their own (they raise builtins or these)."""
    found = []
    for info in pkgutil.walk_packages(lediff_core.__path__, "lediff_core."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) and \
                    value.__module__ in (info.name, "lediff") and value.__qualname__ not in found:
                found.append(value.__qualname__)
                assert value.__module__ == "lediff" and issubclass(value, lediff_core.LEDiffError), value
    assert {"WeightError", "LatentError", "EXRError", "FormatError", "VideoError"} <= set(found)
    for path in sorted((os.path.join(d, f) for d, _, fs in os.walk(os.path.join(REPO, "nodes")) for f in fs
                        if f.endswith(".py"))):
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                assert not any(b.endswith(("Error", "Exception")) for b in bases), (path, node.name)


# --- a backbone mismatch is refused before any sampling ------------------------------------------


@pytest.fixture
def sampling(monkeypatch):
    """Every sampler call and progress update while a graph runs (the sampler still runs: the calls
    are counted on the way through)."""
    import comfy.sample
    import comfy.utils

    seen = {"sample": 0, "progress": []}
    real = comfy.sample.sample

    def counted(*args, **kwargs):
        seen["sample"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(comfy.sample, "sample", counted)
    comfy.utils.set_progress_bar_global_hook(
        lambda value, total, preview, node_id=None: seen["progress"].append((node_id, value, total)))
    yield seen
    comfy.utils.set_progress_bar_global_hook(None)


@pytest.mark.parametrize("encoder, denoiser, other, name", [
    (SDXL_MODEL, MODEL, "SDXL", "SD1.5"), (MODEL, SDXL_MODEL, "SD1.5", "SDXL")])
def test_a_photo_encoded_for_the_other_backbone_is_refused_before_sampling(host, models, sdxl_folder, sampling,
                                                                           encoder, denoiser, other, name):
    write_photo(host)
    graph = bracket_graph(steps=1, save_latents=False)
    graph["5"]["inputs"]["model_name"] = encoder  # Load HDR VAE: its vae encodes the photo (node 7)
    graph["4"]["inputs"]["model_name"] = denoiser
    report = failure(host, graph)
    assert report["node_id"] == "8" and report["exception_type"] == "lediff.LatentError"
    assert report["exception_message"].startswith(
        f"latent space mismatch: the latent was encoded by the vae of an {other} HDR VAE (Load HDR VAE), "
        f"but this bracket denoiser is {name}. Encode with the vae of the {name} LEDiff model's Load HDR VAE")
    assert sampling["sample"] == 0
    assert not [p for p in sampling["progress"] if p[0] == "8"]


def test_the_same_backbone_samples_and_the_tag_rides_on_the_tensor(host, models, sdxl_folder, sampling):
    write_photo(host)
    host.run(bracket_graph(steps=1, save_latents=False))  # SD1.5 encode, SD1.5 denoisers: sampled
    assert sampling["sample"] == 2  # pass A and pass B
    vae = host.node_class("LEDiffLoadHDRVAE").execute(SDXL_MODEL).args[1]
    latent = host.node_class("VAEEncode")().encode(vae, torch.rand(1, 32, 32, 3))[0]
    assert latent["samples"].lediff_backbone == "sdxl"
    assert not hasattr(latent["samples"] * 1, "lediff_backbone")  # a new tensor: untagged, unchecked
