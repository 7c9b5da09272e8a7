"""The MODEL a training run starts from, read strictly.

Three layouts are accepted, for either backbone, SD1.5 or SDXL:

- an **official LEDiff download** (fine-tune): ``unet/`` with 8 input channels, ``vae/`` with
  ``merge_model.pth``, ``scheduler/``; ``text_encoder/`` and ``tokenizer/`` when present;
- a **plain SD1.5 or SDXL folder** (start fresh): ``unet/`` with 4 input channels, which is widened
  to 8 (InstructPix2Pix layout: noisy latent, then the condition; the extra ``conv_in`` weights are
  zero, so the widened UNet starts out as the SD UNet ignoring its condition), ``vae/`` without
  fusion weights (the fusion starts as the plain average, the paper's initialisation);
- a **single-file SD1.5 or SDXL checkpoint** (``.safetensors`` in the original layout, what ComfyUI's
  ``models/checkpoints/`` holds): converted in memory by ``lediff_train.checkpoint`` (diffusers' key
  maps, configs from the file's shapes, offline), then treated as the plain folder would be. It has
  no tokenizer: captions take theirs from ``--tokenizer``.

The backbone is read from ``unet/config.json`` (``lediff_core.model.backbones.identify``: SDXL's
``addition_embed_type`` "text_time"; a single file's from its keys), never from names. Captions are
encoded with the MODEL's own text encoders (or those of ``text_model`` when the MODEL has none):
SD1.5's ``text_encoder/`` + ``tokenizer/`` (CLIP-L, last hidden state); SDXL's two,
``text_encoder/`` + ``tokenizer/`` (CLIP-L) and ``text_encoder_2/`` + ``tokenizer_2/`` (CLIP-G with
its projection), whose penultimate hidden states are concatenated into the context and whose second
encoder's projected pooled output is SDXL's pooled text embedding. Every weight file is checked key
by key and shape by shape; nothing falls back silently.
"""

from __future__ import annotations

import os

import torch

from lediff_core.model.backbones import BACKBONES, LEDIFF_IN_CHANNELS, SD15, SDXL, identify
from lediff_core.model.fit import check_settings, check_shapes, meta_model, shapes_of
from lediff_core.model.fusion import ExposureFusion
from lediff_core.model.unet_config import UNetConfigError, unet_mismatches
from lediff_core.model.vae import AutoencoderKL, check_vae_fits, parse_vae_config
from lediff_core.model.weights import (
    FUSION_NAME,
    _weights_in,
    check_keys,
    load_state_dict,
    read_json,
)

from . import checkpoint

# SD1.x's training schedule (its scheduler_config.json), used when a MODEL has no scheduler/
SD_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
               "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}


class ModelError(ValueError):
    """A MODEL folder the recipe cannot start from; the message names the part and the fix."""


def _part(path: str, name: str) -> str:
    if checkpoint.is_single_file(path):
        raise ModelError(f"MODEL {path!r} is a file: {name}/ is read from a folder only")
    folder = os.path.join(path, name)
    if not os.path.isdir(folder):
        raise ModelError(
            f"MODEL {path!r} has no {name}/ folder: give an official LEDiff download (unet/, vae/ with "
            f"{FUSION_NAME}) or a plain Stable Diffusion 1.5 / SDXL diffusers folder (unet/, vae/, text_encoder/, "
            "tokenizer/ (SDXL: also text_encoder_2/, tokenizer_2/), scheduler/), or a single-file SD1.5 / SDXL "
            "checkpoint (.safetensors, as in ComfyUI's models/checkpoints/)"
        )
    return folder


def _single(path: str, read):
    """``read(path)`` of a single-file checkpoint, its errors as ModelError."""
    try:
        return read(path)
    except checkpoint.CheckpointError as e:
        raise ModelError(str(e)) from e


def vae_config(path: str) -> dict:
    if checkpoint.is_single_file(path):
        return _single(path, checkpoint.vae_config)
    return read_json(os.path.join(_part(path, "vae"), "config.json"))


def scaling_factor(path: str) -> float:
    return float(parse_vae_config(vae_config(path))["scaling_factor"])


def _names(path: str, part: str) -> tuple[str, str]:
    """(where the config of MODEL's ``part`` comes from, where its weights are), for messages."""
    if checkpoint.is_single_file(path):
        return f"the {part} config built from the shapes in {path!r}", repr(path)
    folder = _part(path, part)
    return repr(os.path.join(folder, "config.json")), repr(_weights_in(folder))


def load_vae(path: str) -> AutoencoderKL:
    """The MODEL's VAE (SD encoder + its decoder: SD's, or LEDiff's HDR one), strictly, float32;
    its config is checked against its weights before it is built (``check_vae_fits``)."""
    config = vae_config(path)
    if checkpoint.is_single_file(path):
        state, source = _single(path, lambda p: checkpoint.vae_state_dict(p, config)), path
    else:
        source = _part(path, "vae")
        state = load_state_dict(_weights_in(source))
    check_vae_fits(config, shapes_of(state), *_names(path, "vae"))
    vae = AutoencoderKL(config)
    vae.load_weights(state, source)
    return vae


def has_fusion(path: str) -> bool:
    if checkpoint.is_single_file(path):
        return False
    return os.path.isfile(os.path.join(_part(path, "vae"), FUSION_NAME))


def load_fusion(path: str, channels: int = 4) -> ExposureFusion:
    """The MODEL's fusion module (vae/merge_model.pth), or the average initialisation without one."""
    fusion = ExposureFusion(channels)
    if has_fusion(path):
        fusion_path = os.path.join(path, "vae", FUSION_NAME)
        fusion.load_weights(load_state_dict(fusion_path), fusion_path)
    return fusion


def unet_config(path: str) -> dict:
    if checkpoint.is_single_file(path):
        return _single(path, checkpoint.unet_config)
    return read_json(os.path.join(_part(path, "unet"), "config.json"))


def backbone(path: str) -> str:
    """``"sd15"`` or ``"sdxl"``: MODEL's backbone, read from its ``unet/config.json``."""
    try:
        return identify(unet_config(path), "unet").name
    except UNetConfigError as e:
        raise ModelError(f"MODEL {path!r}: {e}") from e


def load_unet(path: str):
    """(diffusers UNet2DConditionModel with 8 input channels, widened) from MODEL's unet/.

    8 channels: loaded as is (fine-tuning a LEDiff denoiser). 4 channels: an SD UNet, widened with
    zero weights for the condition channels. Anything else is an error."""
    from diffusers import UNet2DConditionModel

    config = unet_config(path)
    folder = path if checkpoint.is_single_file(path) else _part(path, "unet")
    channels = config.get("in_channels")
    if channels not in (4, LEDIFF_IN_CHANNELS):
        raise ModelError(
            f"{folder!r}: the UNet has in_channels={channels}; the recipe starts from an SD1.5/SDXL UNet (4) or a "
            f"LEDiff bracket denoiser ({LEDIFF_IN_CHANNELS}). "
            "Inpainting UNets (9) and other backbones are not supported"
        )
    if checkpoint.is_single_file(path):
        state = _single(path, lambda p: checkpoint.unet_state_dict(p, config))
    else:
        state = load_state_dict(_weights_in(folder))
    # the config against the weights before anything is built: its sizing settings, then every
    # parameter of the model built on the meta device (lediff_core.model.fit)
    shapes, names = shapes_of(state), _names(path, "unet")
    check_settings(unet_mismatches(config, shapes), *names)
    planned = meta_model(lambda: UNet2DConditionModel.from_config(config), len(shapes), *names)
    expected = shapes_of(planned.state_dict())
    check_keys(expected.keys(), state.keys(), f"UNet weights in {folder!r} do not match its config.json",
               "expected a diffusers UNet2DConditionModel state dict (unet/diffusion_pytorch_model.safetensors)")
    check_shapes(expected, shapes, *names)
    unet = UNet2DConditionModel.from_config({**config, "in_channels": LEDIFF_IN_CHANNELS})
    if channels == 4:
        narrow = state["conv_in.weight"]
        widened = torch.zeros(unet.conv_in.weight.shape, dtype=narrow.dtype)
        widened[:, :4] = narrow
        state = {**state, "conv_in.weight": widened}
    unet.load_state_dict(state, strict=True)
    unet.train()
    return unet, channels == 4


def noise_schedule(path: str):
    """diffusers' DDPMScheduler with the MODEL's training schedule (scheduler/, else SD's)."""
    from diffusers import DDPMScheduler

    config_path = os.path.join(path, "scheduler", "scheduler_config.json")
    config = dict(SD_SCHEDULE)  # also a single-file checkpoint's: SD1.5's and SDXL base's schedule
    if not checkpoint.is_single_file(path) and os.path.isfile(config_path):
        given = read_json(config_path)
        config.update({k: given[k] for k in (*SD_SCHEDULE, "trained_betas") if k in given})
    if config["prediction_type"] != "epsilon":
        raise ModelError(f"{config_path!r}: prediction_type {config['prediction_type']!r}; LEDiff's denoisers "
                         "predict epsilon (SD1.5's)")
    return DDPMScheduler.from_config(config)


TEXT_PARTS = {b.name: b.text_parts for b in BACKBONES}


def text_parts_folder(path: str, text_model: str | None = None, backbone: str = SD15.name,
                      tokenizer: str | None = None) -> str:
    """The source whose text encoder(s) and tokenizer(s) encode the captions: a folder with
    ``TEXT_PARTS[backbone]``, or a single-file checkpoint of that backbone (then ``tokenizer``, a
    CLIP tokenizer folder, is required: the file has none)."""
    source = text_model or path
    kind = "an SDXL" if backbone == SDXL.name else "a Stable Diffusion 1.5"
    if checkpoint.is_single_file(source):
        family = _single(source, checkpoint.backbone)
        if family != backbone:
            raise ModelError(f"{source!r} is a single-file {family} checkpoint, but the UNet is {backbone}: "
                             f"encode captions with {kind} checkpoint or folder (--text-model)")
        if not tokenizer:
            raise ModelError(f"{source!r} is a single-file checkpoint, which carries no tokenizer: pass --tokenizer "
                             "with a CLIP tokenizer folder (vocab.json, merges.txt), e.g. ComfyUI's own "
                             "ComfyUI/comfy/sd1_tokenizer (SDXL's two tokenizers share that vocabulary)")
        check_tokenizer(tokenizer)
        return source
    if tokenizer:
        raise ModelError(f"--tokenizer is for single-file checkpoints; {source!r} is a folder, whose own tokenizer/ "
                         "encodes the captions: leave --tokenizer out")
    missing = [p for p in TEXT_PARTS[backbone] if not os.path.isdir(os.path.join(source, p))]
    if missing:
        hint = (f"pass --text-model with {kind} diffusers folder or single-file checkpoint (the official LEDiff "
                "downloads do not always carry the text encoder)") if not text_model else \
            f"use {kind} diffusers folder or single-file checkpoint"
        raise ModelError(f"{source!r} has no {' or '.join(f'{m}/' for m in missing)} to encode captions: {hint}")
    return source


def check_tokenizer(folder: str) -> None:
    missing = [f for f in ("vocab.json", "merges.txt") if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise ModelError(f"--tokenizer {folder!r} is not a CLIP tokenizer folder (no {', '.join(missing)}): give "
                         "one such as ComfyUI's ComfyUI/comfy/sd1_tokenizer, or an SD pipeline's tokenizer/")


def _max_length(tokenizer, model) -> int:
    return min(int(tokenizer.model_max_length), int(model.config.max_position_embeddings))


class CaptionEncoder:
    """Captions -> the UNet's text conditioning, frozen.

    SD1.5 (``backbone`` "sd15"): the context [B, 77, dim] is CLIP-L's last hidden state. SDXL
    ("sdxl"): the context is CLIP-L's and CLIP-G's penultimate hidden states (``hidden_states[-2]``)
    concatenated along the channels (768 + 1280 = 2048 stock), and ``pooled`` [B, dim2] is
    ``text_encoder_2``'s projected pooled output (``text_embeds``): SDXL's convention, as diffusers'
    SDXL pipeline and ComfyUI's SDXL CLIP both encode. Each tokenizer pads/truncates to its
    encoder's 77 positions with its own pad token (CLIP-G's is "!" in SDXL's tokenizer_2/).
    """

    def __init__(self, folder: str, backbone: str = SD15.name, tokenizer: str | None = None):
        from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

        if backbone not in TEXT_PARTS:
            raise ValueError(f"backbone must be one of {sorted(TEXT_PARTS)}, got {backbone!r}")
        self.backbone, self.folder = backbone, folder
        if checkpoint.is_single_file(folder):
            # one CLIP vocabulary for both; SDXL's second tokenizer pads with "!" (its tokenizer_2/)
            self.model, self.model_2 = _single(folder, checkpoint.text_encoders)
            self.tokenizer = CLIPTokenizer.from_pretrained(tokenizer, local_files_only=True)
            self.tokenizer_2 = (CLIPTokenizer.from_pretrained(tokenizer, local_files_only=True, pad_token="!")
                                if self.model_2 is not None else None)
            return
        self.tokenizer = CLIPTokenizer.from_pretrained(os.path.join(folder, "tokenizer"), local_files_only=True)
        self.model = CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder"), local_files_only=True)
        self.model.requires_grad_(False).eval()
        self.tokenizer_2 = self.model_2 = None
        if backbone == SDXL.name:
            self.tokenizer_2 = CLIPTokenizer.from_pretrained(os.path.join(folder, "tokenizer_2"),
                                                             local_files_only=True)
            self.model_2 = CLIPTextModelWithProjection.from_pretrained(os.path.join(folder, "text_encoder_2"),
                                                                       local_files_only=True)
            self.model_2.requires_grad_(False).eval()

    def save(self, folder: str) -> list[str]:
        """Write the text parts as a diffusers pipeline holds them (text_encoder/, tokenizer/, SDXL:
        text_encoder_2/, tokenizer_2/) under ``folder``; returns the parts written."""
        parts = [("text_encoder", self.model), ("tokenizer", self.tokenizer)]
        if self.model_2 is not None:
            parts += [("text_encoder_2", self.model_2), ("tokenizer_2", self.tokenizer_2)]
        for name, part in parts:
            part.save_pretrained(os.path.join(folder, name))
        return [name for name, _ in parts]

    @property
    def context_dim(self) -> int:
        width = self.model.config.hidden_size
        return width + self.model_2.config.hidden_size if self.model_2 is not None else width

    @property
    def pooled_dim(self) -> int | None:
        return self.model_2.config.projection_dim if self.model_2 is not None else None

    def to(self, device) -> CaptionEncoder:
        self.model.to(device)
        if self.model_2 is not None:
            self.model_2.to(device)
        return self

    def _ids(self, tokenizer, model, captions: list[str], device) -> torch.Tensor:
        return tokenizer(list(captions), padding="max_length", truncation=True,
                         max_length=_max_length(tokenizer, model), return_tensors="pt").input_ids.to(device)

    @torch.no_grad()
    def encode(self, captions: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(context [B, 77, context_dim] float32, pooled [B, pooled_dim] float32 or None for SD1.5)."""
        device = device or self.model.device
        self.to(device)
        if self.model_2 is None:
            return self.model(self._ids(self.tokenizer, self.model, captions, device))[0].float(), None
        first = self.model(self._ids(self.tokenizer, self.model, captions, device), output_hidden_states=True)
        second = self.model_2(self._ids(self.tokenizer_2, self.model_2, captions, device), output_hidden_states=True)
        context = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        return context.float(), second.text_embeds.float()

    def __call__(self, captions: list[str], device=None) -> torch.Tensor:
        """The context alone (what an SD1.5 UNet needs)."""
        return self.encode(captions, device)[0]


def check_text_fits(path: str, config: dict, text: CaptionEncoder) -> None:
    """The text encoders' widths must be the UNet's: context = ``cross_attention_dim``; for SDXL,
    pooled + 6 size/crop ids x ``addition_time_embed_dim`` = ``projection_class_embeddings_input_dim``."""
    where = f"the text encoders in {text.folder!r} do not fit MODEL {path!r}'s UNet"
    fix = "encode captions with the text encoders the UNet was trained with (--text-model)"
    if text.context_dim != config.get("cross_attention_dim"):
        raise ModelError(f"{where}: they give a {text.context_dim}-wide context, the UNet's cross_attention_dim "
                         f"is {config.get('cross_attention_dim')}; {fix}")
    if text.backbone == SDXL.name:
        adm = text.pooled_dim + SDXL.time_ids * int(config["addition_time_embed_dim"])
        if adm != config.get("projection_class_embeddings_input_dim"):
            raise ModelError(f"{where}: pooled width {text.pooled_dim} + {SDXL.time_ids} x "
                             f"{config['addition_time_embed_dim']} "
                             f"= {adm}, the UNet's projection_class_embeddings_input_dim is "
                             f"{config.get('projection_class_embeddings_input_dim')}; {fix}")


def check_same_vae(data_path: str, data, path: str) -> None:
    """The data's latents must come from MODEL's encoder (same scaling factor and VAE config)."""
    if abs(float(data.scaling_factor) - scaling_factor(path)) > 1e-9:
        raise ModelError(
            f"{data_path!r} was prepared with a VAE of scaling factor {data.scaling_factor}, but MODEL {path!r} has "
            f"{scaling_factor(path)}: prepare the data with this MODEL (python -m lediff_train prepare --model ...)")
