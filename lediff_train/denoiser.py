"""Stage 2: a bracket denoiser (highlight or shadow), an SD UNet with 8 input channels.

The UNet sees [noisy target, condition] (InstructPix2Pix layout) and predicts the noise (epsilon,
MSE) on MODEL's DDPM schedule. The highlight model learns C+ -> C0 (the brighter bracket to the
middle one; E0 being the midpoint, the same step takes C0 to C- at inference), the shadow model
C- -> C0. Captions (empty when there are none) are encoded by MODEL's frozen CLIP text encoder and
dropped to the empty prompt with ``--caption-dropout`` so that classifier-free guidance works;
the condition is never dropped (LEDiff's inference concatenates it in both CFG branches).

SDXL MODELs (``ModelFolder.backbone``): captions go through both text encoders (``models.CaptionEncoder``)
and the UNet also gets SDXL's ``added_cond_kwargs``: ``text_embeds`` (the pooled embedding of the
same caption, dropped with it) and ``time_ids`` (original height, width, crop top, crop left,
target height, width). The ids are ``(S, S, 0, 0, S, S)`` for an S-pixel sample (the latent's size
times the VAE's downscale): a view is a perspective view or a crop at the source's own resolution,
never a resized image, so it has no original size or crop offset of the kind SDXL's ids describe,
and these are the ids ComfyUI's SDXL model gives a latent of that size by default (and
CLIPTextEncodeSDXL's at 1024). Dropped captions are the empty string's encoding (context and
pooled), as diffusers' SDXL training script drops them and as a ComfyUI graph's negative prompt
encodes; not the zeros of SDXL pipelines' ``force_zeros_for_empty_prompt``, which only replaces a
missing negative prompt at diffusers inference.

Validation decodes the HDR in float32 with autocast off (SDXL's VAE overflows in float16), as the
nodes' HDR path does.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F

from . import models
from .engine import Trainer, add_common_arguments
from .validate import hdr_validation, validation_indices

# the paper's (LEDIFF.md); batch size not published: 4 latents of 512-pixel crops per GPU
DEFAULTS = {"steps": 400_000, "lr": 1e-5, "batch_size": 4}
# (condition, target) keys of a sample per direction
PAIRS = {"highlight": ("c_plus", "c0"), "shadow": ("c_minus", "c0")}
VAL_SEED = 1234


def unet_export_config(unet) -> dict:
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in unet.config.items() if not k.startswith("_")}
    import diffusers

    return {"_class_name": "UNet2DConditionModel", "_diffusers_version": diffusers.__version__, **config}


def size_ids(count: int, height: int, width: int, device=None) -> torch.Tensor:
    """SDXL's ``time_ids`` [count, 6] for uncropped ``height`` x ``width`` samples:
    (original h, w, crop top, left, target h, w) = (h, w, 0, 0, h, w)."""
    return torch.tensor([[height, width, 0, 0, height, width]] * count, dtype=torch.float32, device=device)


def text_condition(context: torch.Tensor, pooled: torch.Tensor | None = None,
                   time_ids: torch.Tensor | None = None) -> dict:
    """The UNet's text conditioning: ``context`` (SD1.5), plus ``pooled`` and ``time_ids`` (SDXL)."""
    if (pooled is None) != (time_ids is None):
        raise ValueError("SDXL conditioning needs both the pooled text embedding and the time ids")
    return {"context": context, "pooled": pooled, "time_ids": time_ids}


def _as_condition(text) -> dict:
    return text if isinstance(text, dict) else text_condition(text)


def _cat(a: dict, b: dict) -> dict:
    return {k: None if a[k] is None else torch.cat([a[k], b[k]]) for k in a}


def predict_noise(unet, x: torch.Tensor, t, text) -> torch.Tensor:
    """The UNet's epsilon for the 8-channel input ``x`` at ``t`` with ``text`` (a context tensor,
    or ``text_condition``'s dict, whose pooled/time ids become SDXL's ``added_cond_kwargs``)."""
    text = _as_condition(text)
    kwargs = {}
    if text["pooled"] is not None:
        kwargs["added_cond_kwargs"] = {"text_embeds": text["pooled"].to(x.dtype),
                                       "time_ids": text["time_ids"].to(x.dtype)}
    return unet(x, t, encoder_hidden_states=text["context"], **kwargs).sample


def ddim_sample(unet, condition, context, uncond, schedule_config, steps: int, cfg: float, seed: int):
    """LEDiff's inference loop on scaled latents: DDIM (eta 0), the condition concatenated in
    both classifier-free-guidance branches; one UNet pass per step when ``cfg`` is 1. ``context``
    and ``uncond``: context tensors (SD1.5) or ``text_condition`` dicts (SDXL: with pooled and time
    ids, the unconditional branch with its own pooled embedding and the same ids)."""
    from diffusers import DDIMScheduler

    context, uncond = _as_condition(context), _as_condition(uncond)

    sched = DDIMScheduler.from_config({**schedule_config, "clip_sample": False, "set_alpha_to_one": False,
                                       "steps_offset": 1, "timestep_spacing": "leading"})
    sched.set_timesteps(steps)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(condition.shape, generator=gen).to(condition)
    for t in sched.timesteps:
        if cfg == 1:
            eps = predict_noise(unet, torch.cat([x, condition], 1), t, context)
        else:
            inp = torch.cat([torch.cat([x, x]), torch.cat([condition, condition])], 1)
            e_u, e_c = predict_noise(unet, inp, t, _cat(uncond, context)).chunk(2)
            eps = e_u + cfg * (e_c - e_u)
        x = sched.step(eps, t, x, eta=0.0).prev_sample
    return x


class DenoiserStage:
    def __init__(self, args: argparse.Namespace, model, data, accelerator):
        device = accelerator.device
        if not 0 <= args.caption_dropout <= 1:
            raise ValueError("--caption-dropout must be between 0 and 1")
        self.args, self.model = args, model
        self.backbone = model.backbone
        self.downscale = int(data.manifest["model"]["downscale"])
        # the text encoders first: they are checked against the UNet's config before its weights load
        self.text = models.CaptionEncoder(model.text_source(args.text_model, args.tokenizer), self.backbone,
                                          args.tokenizer)
        model.check_text_fits(self.text)
        unet, self.widened = model.load_unet()
        if args.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        self.modules = {"unet": unet.to(device)}
        self.text.to(device)
        self.schedule = model.noise_schedule()
        self.alphas = self.schedule.alphas_cumprod.to(device)
        self.condition_key, self.target_key = PAIRS[args.direction]
        self.hdr_vae = None  # MODEL's fusion + decoder, loaded at the first validation

    def optimizer_params(self) -> dict:
        return {"unet": (["unet"], (0.9, 0.999))}

    def condition(self, captions: list[str], latents: torch.Tensor) -> dict:
        """The text conditioning of ``captions`` for samples shaped like ``latents`` (SDXL: with
        pooled embeddings and the size ids of their pixel size)."""
        context, pooled = self.text.encode(captions, latents.device)
        if pooled is None:
            return text_condition(context)
        h, w = latents.shape[-2] * self.downscale, latents.shape[-1] * self.downscale
        return text_condition(context, pooled, size_ids(len(captions), h, w, latents.device))

    def _denoising_loss(self, unet, batch: dict, generators, dropout: float) -> torch.Tensor:
        target, cond = batch[self.target_key], batch[self.condition_key]
        steps = self.schedule.config.num_train_timesteps
        t = torch.cat([torch.randint(0, steps, (1,), generator=g) for g in generators]).to(target.device)
        noise = torch.stack([torch.randn(target.shape[1:], generator=g) for g in generators]).to(target)
        keep = [float(torch.rand((), generator=g)) >= dropout for g in generators]
        captions = [c if k else "" for c, k in zip(batch["caption"], keep, strict=True)]
        text = self.condition(captions, target)
        a = self.alphas[t].view(-1, 1, 1, 1).to(target.dtype)
        noisy = a.sqrt() * target + (1 - a).sqrt() * noise  # DDPM's q(x_t | x_0)
        pred = predict_noise(unet, torch.cat([noisy, cond], 1), t, text)
        return F.mse_loss(pred.float(), noise.float())

    def loss(self, modules: dict, batch: dict, generators, step: int):
        loss = self._denoising_loss(modules["unet"], batch, generators, self.args.caption_dropout)
        return loss, {"train/loss": loss.item()}

    def export_weights(self, modules: dict) -> dict:
        unet = modules["unet"]
        return {"unet.safetensors": unet.state_dict(), "unet_config.json": unet_export_config(unet)}

    def _decoder(self, device):
        if self.hdr_vae is None:
            from .decoder import HDRDecoderModel

            vae = self.model.load_vae()
            self.hdr_vae = HDRDecoderModel(vae, self.model.load_fusion(vae.latent_channels)).to(device)
        return self.hdr_vae

    def validate(self, modules: dict, data, step: int, logger) -> dict:
        """The held-out denoising loss (fixed noise), and real LEDiff inference on held-out crops:
        the model makes the missing bracket from C0 (highlight: the darker, shadow: the brighter),
        the other comes from the data, then MODEL's fusion and decoder give the HDR."""
        args, unet = self.args, modules["unet"]
        idx = validation_indices(len(data), args.val_samples)
        device = next(unet.parameters()).device
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in data.get(idx).items()}
        gens = [torch.Generator().manual_seed(VAL_SEED + i) for i in idx]
        logs = {"val/denoise_loss": self._denoising_loss(unet, batch, gens, 0.0).item()}
        context = self.condition(batch["caption"], batch["c0"])
        uncond = self.condition([""] * len(idx), batch["c0"])
        made = ddim_sample(unet, batch["c0"], context, uncond, self.schedule.config, args.val_steps,
                           args.val_cfg, VAL_SEED)
        logs["val/bracket_mse"] = F.mse_loss(
            ddim_sample(unet, batch[self.condition_key], context, uncond, self.schedule.config, args.val_steps,
                        args.val_cfg, VAL_SEED).float(), batch[self.target_key].float()).item()
        brackets = ([made, batch["c0"], batch["c_plus"]] if args.direction == "highlight"
                    else [batch["c_minus"], batch["c0"], made])
        with torch.autocast(device.type, enabled=False):  # the VAE in float32 (SDXL's overflows in float16)
            pred = self._decoder(device)(*(b.float() for b in brackets)).float().cpu()
        return {**logs, **hdr_validation(pred, batch["log_hdr"].float().cpu(), step, logger)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--direction", choices=tuple(PAIRS), required=True,
                        help="highlight: learns C+ -> C0 (recovers clipped highlights); shadow: C- -> C0")
    add_common_arguments(parser, **DEFAULTS)
    parser.add_argument("--caption-dropout", type=float, default=0.05,
                        help="share of captions replaced by the empty prompt (for CFG; default 0.05)")
    parser.add_argument("--text-model", default=None,
                        help="diffusers folder whose text_encoder/ and tokenizer/ (SDXL: also text_encoder_2/ and "
                             "tokenizer_2/) encode captions, when MODEL has none; or a single-file SD1.5/SDXL "
                             "checkpoint (.safetensors, with --tokenizer); of MODEL's backbone")
    parser.add_argument("--tokenizer", default=None, type=os.path.abspath, metavar="FOLDER",
                        help="CLIP tokenizer folder (vocab.json, merges.txt) for captions when the text encoders come "
                             "from a single-file checkpoint, which has none: e.g. ComfyUI/comfy/sd1_tokenizer")
    parser.add_argument("--val-steps", type=int, default=20, help="DDIM steps in validation")
    parser.add_argument("--val-cfg", type=float, default=7.5, help="CFG scale in validation")


def run(args: argparse.Namespace) -> str:
    return Trainer(args, DenoiserStage, "denoiser").train()
