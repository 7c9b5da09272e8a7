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

A MODEL is read once, by ``read_model``, into a ``ModelFolder``: its configs, backbone, training
schedule, which files hold its weights and which text parts it has. The recipe passes that value
around (``prepare``, the trainer and its stages, ``export``) and loads through its methods; nothing
asks the folder again. Every file it names is checked before anything opens it
(``lediff_core.io.access.check_readable``): a FIFO, device or folder under a weight or config name
is refused by name, links are followed (a MODEL is its owner's choice, as in ComfyUI's models/).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from lediff_core.io.access import FileAccessError, check_readable
from lediff_core.model.backbones import BACKBONES, LEDIFF_IN_CHANNELS, SD15, SDXL, identify
from lediff_core.model.fit import check_settings, check_shapes, meta_model, shapes_of
from lediff_core.model.fusion import ExposureFusion
from lediff_core.model.unet_config import UNetConfigError, unet_mismatches
from lediff_core.model.vae import AutoencoderKL, check_vae_fits, parse_vae_config
from lediff_core.model.weights import (
    FUSION_NAME,
    WeightError,
    _weights_in,
    check_keys,
    load_state_dict,
    read_json,
)

from . import checkpoint

# SD1.x's training schedule (its scheduler_config.json), used when a MODEL has no scheduler/
SD_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
               "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}
SCHEDULER_CONFIG = os.path.join("scheduler", "scheduler_config.json")
LAYOUTS = ("give an official LEDiff download (unet/, vae/ with "
           f"{FUSION_NAME}) or a plain Stable Diffusion 1.5 / SDXL diffusers folder (unet/, vae/, text_encoder/, "
           "tokenizer/ (SDXL: also text_encoder_2/, tokenizer_2/), scheduler/), or a single-file SD1.5 / SDXL "
           "checkpoint (.safetensors, as in ComfyUI's models/checkpoints/)")


class ModelError(ValueError):
    """A MODEL folder the recipe cannot start from; the message names the part and the fix."""


def _single(read, *args):
    """``read(*args)`` of a single-file checkpoint, its errors as ModelError."""
    try:
        return read(*args)
    except checkpoint.CheckpointError as e:
        raise ModelError(str(e)) from e


def _checked(path: str, what: str) -> str:
    """``path`` if it may be opened (a regular file, links followed: a MODEL is its owner's choice,
    as in ComfyUI's models/ folders); a FIFO or device under a weight or config name is refused by
    name without opening it (``lediff_core.io.access``)."""
    try:
        check_readable(path)
    except FileNotFoundError:
        raise ModelError(f"{what} {path!r} does not exist") from None
    except FileAccessError as e:
        raise ModelError(f"{what}: {e}") from None
    return path


def check_files(folder: str, what: str) -> None:
    """Every file under ``folder`` (a tokenizer's, a text encoder's) is a regular file, checked
    before a library opens or copies them: transformers' loaders and shutil would block on a FIFO."""
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            _checked(os.path.join(root, name), what)


@dataclass(frozen=True)
class ModelFolder:
    """A MODEL read once (``read_model``): what the recipe asks of it, and its loaders.

    ``unet_config`` and ``vae_config`` are the parts' config.json (a single file's: built from its
    shapes), ``unet_weights`` / ``vae_weights`` the files holding their weights (a single file: the
    file itself), ``fusion`` vae/merge_model.pth or None (the fusion starts as the average),
    ``schedule`` the DDPM training schedule (``scheduler/``'s fields over SD's, ``SD_SCHEDULE``),
    ``text_parts`` the text encoder and tokenizer folders it holds (``TEXT_PARTS``), ``single`` the
    single-file checkpoint's header (``lediff_train.checkpoint``) or None for a folder. Every file
    named here was checked to be a regular file when the MODEL was read.
    """

    path: str
    backbone: str
    unet_config: dict
    vae_config: dict
    unet_weights: str
    vae_weights: str
    fusion: str | None
    schedule: dict
    schedule_from: str | None
    text_parts: tuple[str, ...]
    single: checkpoint.SingleFile | None = None

    @property
    def scaling_factor(self) -> float:
        return float(parse_vae_config(self.vae_config)["scaling_factor"])

    def _names(self, part: str) -> tuple[str, str]:
        """(where the config of ``part`` comes from, where its weights are), for messages."""
        if self.single is not None:
            return f"the {part} config built from the shapes in {self.path!r}", repr(self.path)
        weights = self.unet_weights if part == "unet" else self.vae_weights
        return repr(os.path.join(self.path, part, "config.json")), repr(weights)

    def load_vae(self) -> AutoencoderKL:
        """The VAE (SD encoder + its decoder: SD's, or LEDiff's HDR one), strictly, float32; its
        config is checked against its weights before it is built (``check_vae_fits``)."""
        if self.single is not None:
            state = _single(checkpoint.vae_state_dict, self.single, self.vae_config)
        else:
            state = load_state_dict(self.vae_weights)
        check_vae_fits(self.vae_config, shapes_of(state), *self._names("vae"))
        vae = AutoencoderKL(self.vae_config)
        vae.load_weights(state, self.path if self.single is not None else os.path.dirname(self.vae_weights))
        return vae

    def load_fusion(self, channels: int = 4) -> ExposureFusion:
        """The fusion module (vae/merge_model.pth), or the average initialisation without one."""
        fusion = ExposureFusion(channels)
        if self.fusion is not None:
            fusion.load_weights(load_state_dict(self.fusion), self.fusion)
        return fusion

    def load_unet(self):
        """(diffusers UNet2DConditionModel with 8 input channels, widened) from the MODEL's UNet.

        8 channels: loaded as is (fine-tuning a LEDiff denoiser). 4 channels: an SD UNet, widened
        with zero weights for the condition channels. Anything else is an error."""
        from diffusers import UNet2DConditionModel

        config = self.unet_config
        folder = self.path if self.single is not None else os.path.dirname(self.unet_weights)
        channels = config.get("in_channels")
        if channels not in (4, LEDIFF_IN_CHANNELS):
            raise ModelError(
                f"{folder!r}: the UNet has in_channels={channels}; the recipe starts from an SD1.5/SDXL UNet (4) "
                f"or a LEDiff bracket denoiser ({LEDIFF_IN_CHANNELS}). "
                "Inpainting UNets (9) and other backbones are not supported"
            )
        if self.single is not None:
            state = _single(checkpoint.unet_state_dict, self.single, config)
        else:
            state = load_state_dict(self.unet_weights)
        # the config against the weights before anything is built: its sizing settings, then every
        # parameter of the model built on the meta device (lediff_core.model.fit)
        shapes, names = shapes_of(state), self._names("unet")
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

    def noise_schedule(self):
        """diffusers' DDPMScheduler with the MODEL's training schedule (scheduler/, else SD's)."""
        from diffusers import DDPMScheduler

        if self.schedule["prediction_type"] != "epsilon":
            raise ModelError(f"{self.schedule_from!r}: prediction_type {self.schedule['prediction_type']!r}; "
                             "LEDiff's denoisers predict epsilon (SD1.5's)")
        return DDPMScheduler.from_config(self.schedule)

    def text_source(self, text_model: str | None = None, tokenizer: str | None = None) -> str | checkpoint.SingleFile:
        """What encodes the captions: a folder with ``TEXT_PARTS[backbone]`` (this MODEL, or
        ``text_model``), or a single-file checkpoint of this backbone (then ``tokenizer``, a CLIP
        tokenizer folder, is required: the file has none)."""
        backbone = self.backbone
        kind = "an SDXL" if backbone == SDXL.name else "a Stable Diffusion 1.5"
        if text_model is None:
            source, parts = self.single or self.path, self.text_parts
        else:
            source, parts = read_text_model(text_model)
        if isinstance(source, checkpoint.SingleFile):
            if source.backbone != backbone:
                raise ModelError(f"{source.path!r} is a single-file {source.backbone} checkpoint, but the UNet is "
                                 f"{backbone}: encode captions with {kind} checkpoint or folder (--text-model)")
            if not tokenizer:
                raise ModelError(f"{source.path!r} is a single-file checkpoint, which carries no tokenizer: pass "
                                 "--tokenizer with a CLIP tokenizer folder (vocab.json, merges.txt), e.g. ComfyUI's "
                                 "own ComfyUI/comfy/sd1_tokenizer (SDXL's two tokenizers share that vocabulary)")
            check_tokenizer(tokenizer)
            return source
        if tokenizer:
            raise ModelError(f"--tokenizer is for single-file checkpoints; {source!r} is a folder, whose own "
                             "tokenizer/ encodes the captions: leave --tokenizer out")
        missing = [p for p in TEXT_PARTS[backbone] if p not in parts]
        if missing:
            hint = (f"pass --text-model with {kind} diffusers folder or single-file checkpoint (the official LEDiff "
                    "downloads do not always carry the text encoder)") if not text_model else \
                f"use {kind} diffusers folder or single-file checkpoint"
            raise ModelError(f"{source!r} has no {' or '.join(f'{m}/' for m in missing)} to encode captions: {hint}")
        return source

    def check_text_fits(self, text: CaptionEncoder) -> None:
        """The text encoders' widths must be the UNet's: context = ``cross_attention_dim``; for SDXL,
        pooled + 6 size/crop ids x ``addition_time_embed_dim`` = ``projection_class_embeddings_input_dim``."""
        config = self.unet_config
        where = f"the text encoders in {text.folder!r} do not fit MODEL {self.path!r}'s UNet"
        fix = "encode captions with the text encoders the UNet was trained with (--text-model)"
        if text.context_dim != config.get("cross_attention_dim"):
            raise ModelError(f"{where}: they give a {text.context_dim}-wide context, the UNet's cross_attention_dim "
                             f"is {config.get('cross_attention_dim')}; {fix}")
        if text.backbone == SDXL.name:
            adm = text.pooled_dim + SDXL.time_ids * int(config["addition_time_embed_dim"])
            if adm != config.get("projection_class_embeddings_input_dim"):
                raise ModelError(f"{where}: pooled width {text.pooled_dim} + {SDXL.time_ids} x "
                                 f"{config['addition_time_embed_dim']} = {adm}, the UNet's "
                                 f"projection_class_embeddings_input_dim is "
                                 f"{config.get('projection_class_embeddings_input_dim')}; {fix}")

    def check_data(self, data_path: str, data) -> None:
        """The data's latents must come from this MODEL's encoder (same scaling factor)."""
        if abs(float(data.scaling_factor) - self.scaling_factor) > 1e-9:
            raise ModelError(
                f"{data_path!r} was prepared with a VAE of scaling factor {data.scaling_factor}, but MODEL "
                f"{self.path!r} has {self.scaling_factor}: prepare the data with this MODEL (python -m lediff_train "
                "prepare --model ...)")


def _part(path: str, name: str) -> str:
    folder = os.path.join(path, name)
    if not os.path.isdir(folder):
        raise ModelError(f"MODEL {path!r} has no {name}/ folder: {LAYOUTS}")
    return folder


def _config(folder: str) -> dict:
    try:
        return read_json(os.path.join(folder, "config.json"))
    except WeightError as e:
        raise ModelError(str(e)) from e


def _weights(folder: str) -> str:
    try:
        return _checked(_weights_in(folder), "weight file")
    except WeightError as e:
        raise ModelError(str(e)) from e


def read_text_model(path: str) -> tuple[str | checkpoint.SingleFile, tuple[str, ...]]:
    """(--text-model as a folder path or a read single file, the text parts it holds)."""
    if os.path.isdir(path):
        return path, tuple(p for p in TEXT_PART_NAMES if os.path.isdir(os.path.join(path, p)))
    _checked(path, "--text-model")
    return _single(checkpoint.read, path), TEXT_PART_NAMES


def read_model(path: str) -> ModelFolder:
    """Read MODEL (a folder or a single-file checkpoint) once: its configs, which files hold its
    weights (each checked to be a regular file), its backbone, schedule and text parts."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        if not os.path.lexists(path):
            raise ModelError(f"MODEL {path!r} does not exist: {LAYOUTS}")
        _checked(path, "MODEL")
        single = _single(checkpoint.read, path)
        unet_config = _single(checkpoint.unet_config, single)
        return ModelFolder(path, single.backbone, unet_config, _single(checkpoint.vae_config, single), path, path,
                           None, dict(SD_SCHEDULE),  # SD1.5's and SDXL base's schedule
                           None, TEXT_PART_NAMES, single)
    unet, vae = _part(path, "unet"), _part(path, "vae")
    unet_config, vae_config = _config(unet), _config(vae)
    try:
        family = identify(unet_config, "unet").name
    except UNetConfigError as e:
        raise ModelError(f"MODEL {path!r}: {e}") from e
    fusion = os.path.join(vae, FUSION_NAME)
    fusion = _checked(fusion, "fusion weights") if os.path.lexists(fusion) else None
    schedule, schedule_from = dict(SD_SCHEDULE), os.path.join(path, SCHEDULER_CONFIG)
    if os.path.lexists(schedule_from):
        try:
            given = read_json(schedule_from)
        except WeightError as e:
            raise ModelError(str(e)) from e
        schedule.update({k: given[k] for k in (*SD_SCHEDULE, "trained_betas") if k in given})
    else:
        schedule_from = None
    parts = tuple(p for p in TEXT_PART_NAMES if os.path.isdir(os.path.join(path, p)))
    return ModelFolder(path, family, unet_config, vae_config, _weights(unet), _weights(vae), fusion, schedule,
                       schedule_from, parts)


TEXT_PARTS = {b.name: b.text_parts for b in BACKBONES}
TEXT_PART_NAMES = SDXL.text_parts  # every text part a MODEL may hold


def check_tokenizer(folder: str) -> None:
    missing = [f for f in ("vocab.json", "merges.txt") if not os.path.lexists(os.path.join(folder, f))]
    if missing:
        raise ModelError(f"--tokenizer {folder!r} is not a CLIP tokenizer folder (no {', '.join(missing)}): give "
                         "one such as ComfyUI's ComfyUI/comfy/sd1_tokenizer, or an SD pipeline's tokenizer/")
    check_files(folder, "--tokenizer")


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

    def __init__(self, source: str | checkpoint.SingleFile, backbone: str = SD15.name, tokenizer: str | None = None):
        """``source``: a folder holding the text parts, or a single-file checkpoint (its path, or
        ``ModelFolder.text_source``'s read header) with ``tokenizer``, a CLIP tokenizer folder."""
        from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

        if backbone not in TEXT_PARTS:
            raise ValueError(f"backbone must be one of {sorted(TEXT_PARTS)}, got {backbone!r}")
        if isinstance(source, str) and not os.path.isdir(source):
            source = _single(checkpoint.read, _checked(source, "text encoders"))
        folder = source.path if isinstance(source, checkpoint.SingleFile) else source
        self.backbone, self.folder = backbone, folder
        if isinstance(source, checkpoint.SingleFile):
            check_files(tokenizer, "--tokenizer")
            # one CLIP vocabulary for both; SDXL's second tokenizer pads with "!" (its tokenizer_2/)
            self.model, self.model_2 = _single(checkpoint.text_encoders, source)
            self.tokenizer = CLIPTokenizer.from_pretrained(tokenizer, local_files_only=True)
            self.tokenizer_2 = (CLIPTokenizer.from_pretrained(tokenizer, local_files_only=True, pad_token="!")
                                if self.model_2 is not None else None)
            return
        for part in TEXT_PARTS[backbone]:  # what transformers opens, checked first (a FIFO would block it)
            if os.path.isdir(os.path.join(folder, part)):
                check_files(os.path.join(folder, part), f"the captions' {part}/")
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
