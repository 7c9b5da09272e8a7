"""Tiny MODEL folders for the training recipe's tests, in the layouts `lediff_train` accepts:

- an official LEDiff download (8-channel unet/, vae/ with merge_model.pth, scheduler/, plus the
  text_encoder/ and tokenizer/ an SD pipeline folder carries), written by ``tiny_models``;
- a plain SD1.5 diffusers folder (4-channel unet/, vae/ without merge_model.pth, scheduler/,
  text_encoder/, tokenizer/), the start-fresh case;
- the same two for SDXL (``write_sdxl_model``, ``write_sdxl_lediff_model``): the SDXL-architecture
  UNet of ``tiny_models.SDXL_UNET_CONFIG``, SDXL's VAE config (scaling factor 0.13025), and SDXL's
  two text encoders (text_encoder/ CLIP-L, text_encoder_2/ CLIP-G with projection).

The text encoder is a random one-layer CLIPTextModel with SD1.5's width (768, what the UNet's
cross-attention expects) written by transformers itself; the tokenizer is SD1.5's real CLIP BPE
vocabulary, copied at test time from the genuine ComfyUI host (comfy/sd1_tokenizer/), so captions
are tokenised exactly as SD1.5's are.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from support.common import REPO
from support.tiny_models import (
    SDXL_UNET_CONFIG,
    SDXL_VAE_CONFIG,
    UNET_CONFIG,
    make_unet,
    randomise,
    write_official_folder,
)

HOST_TOKENIZER = os.path.join(REPO, ".dev", "ComfyUI", "comfy", "sd1_tokenizer")

SD_SCHEDULER = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "set_alpha_to_one": False,
                "skip_prk_steps": True, "steps_offset": 1, "clip_sample": False}


def write_text_parts(folder: str, seed: int = 7) -> None:
    """text_encoder/ (random, tiny, 768 wide) and tokenizer/ (SD1.5's CLIP BPE) under ``folder``."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(hidden_size=768, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu",
                            projection_dim=768)
    torch.manual_seed(seed)
    model = CLIPTextModel(config).eval()
    model.save_pretrained(os.path.join(folder, "text_encoder"), safe_serialization=True)
    tok = os.path.join(folder, "tokenizer")
    os.makedirs(tok, exist_ok=True)
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(HOST_TOKENIZER, name), os.path.join(tok, name))


# SDXL's scheduler_config.json (EulerDiscrete, SD's training betas)
SDXL_SCHEDULER = {"_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                  "beta_schedule": "scaled_linear", "interpolation_type": "linear", "num_train_timesteps": 1000,
                  "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False,
                  "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": None,
                  "use_karras_sigmas": False}
# Tiny widths of SDXL's two text encoders that fit SDXL_UNET_CONFIG (whose text widths are SD1.5's
# so that SD1.5's CLIP conditions it in ComfyUI): context 384 + 384 = 768 = cross_attention_dim,
# pooled (CLIP-G's projection) 768, + 6 x 256 time ids = 2304 = projection_class_embeddings_input_dim.
# Stock SDXL: 768 + 1280 = 2048, pooled 1280.
SDXL_TEXT_WIDTHS = (384, 384)
SDXL_POOLED = 768


def _copy_tokenizer(folder: str, pad_token: str | None = None) -> None:
    os.makedirs(folder, exist_ok=True)
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(HOST_TOKENIZER, name), os.path.join(folder, name))
    if pad_token is not None:
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            path = os.path.join(folder, name)
            with open(path) as f:
                data = json.load(f)
            data["pad_token"] = pad_token
            with open(path, "w") as f:
                json.dump(data, f, indent=2)


def write_sdxl_text_parts(folder: str, seed: int = 8) -> None:
    """text_encoder/ + tokenizer/ (CLIP-L layout) and text_encoder_2/ + tokenizer_2/ (CLIP-G layout:
    CLIPTextModelWithProjection, gelu) under ``folder``: random, two layers each (so that the
    penultimate hidden state SDXL uses is a real layer's output), widths ``SDXL_TEXT_WIDTHS`` and
    pooled ``SDXL_POOLED``, written by transformers. Both tokenizers are SD1.5's CLIP BPE
    vocabulary (CLIP-G's is the same vocabulary); tokenizer_2/ pads with "!" as SDXL's does."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    common = {"num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 77, "vocab_size": 49408}
    torch.manual_seed(seed)
    first = CLIPTextModel(CLIPTextConfig(hidden_size=SDXL_TEXT_WIDTHS[0], intermediate_size=64,
                                         hidden_act="quick_gelu", projection_dim=768, **common)).eval()
    second = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=SDXL_TEXT_WIDTHS[1], intermediate_size=64,
                                                        hidden_act="gelu", projection_dim=SDXL_POOLED,
                                                        **common)).eval()
    first.save_pretrained(os.path.join(folder, "text_encoder"), safe_serialization=True)
    second.save_pretrained(os.path.join(folder, "text_encoder_2"), safe_serialization=True)
    _copy_tokenizer(os.path.join(folder, "tokenizer"))
    _copy_tokenizer(os.path.join(folder, "tokenizer_2"), pad_token="!")


def write_sdxl_model(root: str, name: str = "sdxl", seed: int = 30, vae=None) -> str:
    """A tiny plain SDXL diffusers pipeline folder (the start-fresh case): 4-channel SDXL-architecture
    unet/, SDXL's VAE config without merge_model.pth, EulerDiscrete scheduler/, both text encoders and
    tokenizers, model_index.json as SDXL's. ``vae``: a diffusers AutoencoderKL to ship instead of the
    random one (its config is replaced by SDXL's, so it must have SD's VAE architecture)."""
    folder = _write_pipeline(root, name, seed, vae, SDXL_UNET_CONFIG, SDXL_VAE_CONFIG, SDXL_SCHEDULER, {
        "_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": True,
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "EulerDiscreteScheduler"]})
    write_sdxl_text_parts(folder)
    return folder


def write_sdxl_lediff_model(root: str, name: str = "LEDiff_SDXL_highlight", seed: int = 40) -> str:
    """An 8-channel SDXL LEDiff folder in the official layout, with both text encoders: the SDXL
    fine-tune starting point."""
    folder = write_official_folder(root, name, unet_config=SDXL_UNET_CONFIG, vae_config=SDXL_VAE_CONFIG, seed=seed)
    write_sdxl_text_parts(folder)
    return folder


def write_lediff_model(root: str, name: str = "LEDiff_highlight", seed: int = 0) -> str:
    """An official-layout LEDiff folder with text parts: the fine-tune starting point."""
    folder = write_official_folder(root, name, seed=seed)
    write_text_parts(folder)
    return folder


def pretrained_vae(steps: int = 150, seed: int = 22):
    """The fixture VAE after a short autoencoder training on 8-bit photos of the real CC0 HDRIs (crops
    through the simulated camera), standing in for SD's pretrained VAE: its latents carry the image,
    which a random encoder's barely do (a linear fit of the target from random-encoder latents
    explains under 10 % of its variance), so a stage-1 run on it can show what the recipe learns."""
    import glob

    import numpy as np

    from lediff_core.io.readers import read_linear_image
    from lediff_core.qa import camera
    from support.tiny_models import make_vae

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    vae = make_vae(seed=seed).train()
    photos = []
    for path in sorted(glob.glob(os.path.join(REPO, "tests", "data", "hdri", "*.exr"))):
        hdr = camera.downscale(read_linear_image(path).rgb, 4)  # 256x128: a 64-pixel crop sees a scene
        for _ in range(16):
            top, left = rng.integers(0, hdr.shape[0] - 64), rng.integers(0, hdr.shape[1] - 64)
            crop = hdr[top:top + 64, left:left + 64]
            photos.append(camera.capture(crop, camera.sample_camera(crop, rng)))
    x_all = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float() / 127.5 - 1
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = x_all[torch.randint(0, len(x_all), (8,), generator=gen)]
        loss = (vae.decode(vae.encode(x).latent_dist.mode()).sample - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return vae.eval()


def write_sd15_model(root: str, name: str = "sd15", seed: int = 20, vae=None) -> str:
    """A plain SD1.5 diffusers folder (4-channel UNet, no fusion weights): the start-fresh case.
    ``vae``: a diffusers AutoencoderKL to ship instead of the random one (e.g. ``pretrained_vae()``)."""
    folder = _write_pipeline(root, name, seed, vae, UNET_CONFIG, None, SD_SCHEDULER, {
        "_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "PNDMScheduler"]})
    write_text_parts(folder)
    return folder


def _write_pipeline(root, name, seed, vae, unet_config, vae_config, scheduler, index) -> str:
    """A diffusers pipeline folder: the official layout's vae/ (no merge_model.pth) and a random
    4-channel UNet of ``unet_config``'s architecture; ``index`` adds to model_index.json."""
    from diffusers import UNet2DConditionModel

    folder = write_official_folder(root, name, vae_config=vae_config, seed=seed)
    os.remove(os.path.join(folder, "vae", "merge_model.pth"))
    if vae is not None:
        save_file({k: v.detach().contiguous() for k, v in vae.state_dict().items()},
                  os.path.join(folder, "vae", "diffusion_pytorch_model.safetensors"))
    config = {**unet_config, "in_channels": 4}
    unet = randomise(UNet2DConditionModel.from_config(config), seed + 1)
    with open(os.path.join(folder, "unet", "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()},
              os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"))
    with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(scheduler, f, indent=2)
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump({"unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                   "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
                   **index}, f)
    return folder


def write_random_lpips_trunk(torch_home, seed: int = 0) -> Path:
    """A random-init torchvision AlexNet trunk where torchvision caches the pretrained one.

    Only the ``features.*`` tensors (what LPIPS uses; the classifier is 240 MB) under
    ``<torch_home>/hub/checkpoints/alexnet-owt-7be5be79.pth``. For tests and smoke runs only.
    """
    import torchvision

    torch.manual_seed(seed)
    trunk = torchvision.models.alexnet(weights=None).features
    path = Path(torch_home) / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"features.{k}": v for k, v in trunk.state_dict().items()}, path)
    return path


def hdri_folder(folder, names=("city", "forest", "studio")):
    """A folder of copies of some of the real CC0 HDRIs in tests/data/hdri (an --hdr input)."""
    os.makedirs(folder)
    for name in names:
        shutil.copy(os.path.join(REPO, "tests", "data", "hdri", f"{name}.exr"), os.path.join(folder, f"{name}.exr"))
    return folder


def prepared_lediff_data(root) -> dict:
    """{"model", "data"}: a LEDiff MODEL under ``root`` and DATA prepared with it (64 pixels) from three
    real HDRIs, two views each: what a stage-1 test run trains on."""
    from lediff_train.prepare import prepare

    model = write_lediff_model(str(root))
    data = os.path.join(str(root), "data")
    prepare(hdri_folder(os.path.join(str(root), "hdr")), model, data, size=64, views=2, seed=0,
            log=lambda *a, **k: None)
    return {"model": model, "data": data}


# ---- single-file checkpoints (ComfyUI's models/checkpoints/*.safetensors, the original "ldm" layout)
# Tiny architectures on which the family facts a single file cannot show hold, as lediff_train.checkpoint
# assumes them: SD1.x's 8 UNet heads, SDXL's 64-wide UNet heads, CLIP's 64-wide heads.
SINGLE_FILE_SD15_UNET = {**UNET_CONFIG, "in_channels": 4, "attention_head_dim": 8}
SINGLE_FILE_SDXL_UNET = {**SDXL_UNET_CONFIG, "in_channels": 4, "block_out_channels": [64, 128],
                         "attention_head_dim": [1, 2]}


def _clip_text_models(backbone: str, seed: int):
    """(CLIP-L, CLIP-G or None) random transformers models with 64-wide heads."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)

    def config(width, act, layers, projection):
        return CLIPTextConfig(hidden_size=width, intermediate_size=64, num_hidden_layers=layers,
                              num_attention_heads=width // 64, max_position_embeddings=77, vocab_size=49408,
                              hidden_act=act, projection_dim=projection)

    if backbone == "sd15":
        return CLIPTextModel(config(768, "quick_gelu", 1, 768)).eval(), None
    first = CLIPTextModel(config(SDXL_TEXT_WIDTHS[0], "quick_gelu", 2, 768)).eval()
    second = CLIPTextModelWithProjection(config(SDXL_TEXT_WIDTHS[1], "gelu", 2, SDXL_POOLED)).eval()
    return first, second


def write_single_file_checkpoint(root: str, backbone: str = "sd15", seed: int = 50) -> tuple[str, str]:
    """(a ComfyUI-style single-file checkpoint, a diffusers folder of the same weights).

    The folder is written as ``write_sd15_model`` / ``write_sdxl_model`` write theirs (the reference);
    the file is that folder's weights in the original layout, mapped by the genuine ComfyUI's own
    diffusers-to-ldm key maps (``comfy.utils.unet_to_diffusers`` of ``ldm_unet_config``,
    ``comfy.diffusers_convert.convert_vae_state_dict``, ``convert_text_enc_state_dict_v20`` for
    CLIP-G): independent of diffusers' ldm-to-diffusers maps that lediff_train uses. Needs ComfyUI
    on sys.path (the ``comfy`` fixture)."""
    import comfy.diffusers_convert
    import comfy.utils
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    from lediff_core.model.unet_config import ldm_unet_config

    sdxl = backbone == "sdxl"
    unet_config = SINGLE_FILE_SDXL_UNET if sdxl else SINGLE_FILE_SD15_UNET
    folder = _write_pipeline(root, f"{backbone}_diffusers", seed, None, unet_config,
                             SDXL_VAE_CONFIG if sdxl else None, SDXL_SCHEDULER if sdxl else SD_SCHEDULER,
                             {"_class_name": "StableDiffusionXLPipeline" if sdxl else "StableDiffusionPipeline"})
    first, second = _clip_text_models(backbone, seed + 5)
    first.save_pretrained(os.path.join(folder, "text_encoder"), safe_serialization=True)
    _copy_tokenizer(os.path.join(folder, "tokenizer"))
    if sdxl:
        second.save_pretrained(os.path.join(folder, "text_encoder_2"), safe_serialization=True)
        _copy_tokenizer(os.path.join(folder, "tokenizer_2"), pad_token="!")

    unet = load_file(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"))
    keymap = comfy.utils.unet_to_diffusers(ldm_unet_config(UNet2DConditionModel.load_config(
        os.path.join(folder, "unet")), require_channels=None))
    assert set(unet) <= set(keymap), set(unet) - set(keymap)  # ComfyUI's map also names optional layers
    ldm = {f"model.diffusion_model.{keymap[k]}": v for k, v in unet.items()}
    vae = load_file(os.path.join(folder, "vae", "diffusion_pytorch_model.safetensors"))
    ldm.update({f"first_stage_model.{k}": v for k, v in comfy.diffusers_convert.convert_vae_state_dict(vae).items()})
    clip_l = "conditioner.embedders.0.transformer." if sdxl else "cond_stage_model.transformer."
    # the files' CLIP-L keys are transformers' CLIPTextModel names under text_model. (which transformers 5
    # leaves out of CLIPTextModel's own state dict)
    ldm.update({clip_l + ("" if k.startswith("text_model.") else "text_model.") + k: v
                for k, v in first.state_dict().items() if not k.endswith("position_ids")})
    if sdxl:
        hf = {f"transformer.{k}": v for k, v in second.state_dict().items() if not k.endswith("position_ids")}
        ldm.update({f"conditioner.embedders.1.model.{k}": v
                    for k, v in comfy.diffusers_convert.convert_text_enc_state_dict_v20(hf).items()})
    path = os.path.join(root, f"{backbone}_checkpoint.safetensors")
    save_file({k: v.contiguous() for k, v in ldm.items()}, path)
    return path, folder


DECODER_PREFIXES = ("decoder.", "post_quant_conv.")


def fake_run(root, name, stage, model, weights, *, direction=None, step=7, extra=None) -> str:
    """A RUN folder as the trainer writes it, with ``weights`` ({file name: state dict or JSON})."""
    run = os.path.join(root, name)
    ckpt = os.path.join(run, "checkpoints", f"step-{step}")
    os.makedirs(os.path.join(ckpt, "weights"))
    os.makedirs(os.path.join(ckpt, "state"))
    config = {"stage": stage, "direction": direction, "model": os.path.abspath(model), "data": f"/data/{name}",
              "data_fingerprint": f"fingerprint-{name}", "steps": step, "seed": 0, "lr": 1e-6, **(extra or {})}
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(config, f)
    for fname, content in weights.items():
        path = os.path.join(ckpt, "weights", fname)
        if fname.endswith(".json"):
            with open(path, "w") as f:
                json.dump(content, f)
        else:
            save_file({k: v.contiguous() for k, v in content.items()}, path)
    with open(os.path.join(ckpt, "trainer.json"), "w") as f:
        json.dump({"step": step, "stage": stage}, f)
    with open(os.path.join(run, "checkpoints", "latest"), "w") as f:
        f.write(f"step-{step}\n")
    return run


def model_vae(model) -> dict:
    return load_file(os.path.join(model, "vae", "diffusion_pytorch_model.safetensors"))


def decoder_weights(model, seed=11) -> dict:
    """A trained decoder: the MODEL's decoder.* / post_quant_conv.* tensors moved by seeded noise, and
    a fusion away from any file's."""
    gen = torch.Generator().manual_seed(seed)
    trained = {k: v + 0.01 * torch.randn(v.shape, generator=gen)
               for k, v in model_vae(model).items() if k.startswith(DECODER_PREFIXES)}
    fusion = {"weight_conv.weight": torch.randn(4, 1, 1, 1, generator=gen),
              "weight_conv.bias": torch.randn(4, generator=gen)}
    return {"vae_decoder.safetensors": trained, "fusion.safetensors": fusion}


def denoiser_weights(seed=21, config=None) -> dict:
    config = config or UNET_CONFIG
    return {"unet.safetensors": make_unet(config, seed).state_dict(), "unet_config.json": config}


def quiet(*args, **kwargs):
    """A ``log`` for the recipe's functions that prints nothing."""


def logged(run) -> dict:
    """{(step, metric name): value} of a run's logs/metrics.csv (``--report-to csv``)."""
    with open(os.path.join(run, "logs", "metrics.csv"), newline="") as f:
        return {(int(step), name): float(value) for step, name, value in csv.reader(f)}
