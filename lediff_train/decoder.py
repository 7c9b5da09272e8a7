"""Stage 1: the exposure fusion module and the HDR decoder, trained jointly in log space.

Input: the three cached bracket latents of a crop (scaled, from the frozen SD encoder); the fusion
merges them, the decoder (initialised from MODEL's: SD's for a fresh start, LEDiff's HDR decoder for
a fine-tune) decodes the fused latent, and its raw output is compared with ln(H + 1e-5) of the
crop: L1 + LPIPS (``--lpips-weight``) + a PatchGAN hinge loss (``--gan-weight``) weighted
adaptively (taming/LDM) and switched on at ``--gan-start``. The encoder is never trained (LEDiff
keeps SD's latent space), so it is not even kept in memory: its latents are in the data.
"""

from __future__ import annotations

import argparse

import torch
import torch.utils.checkpoint
from torch import nn

from lediff_core.model.fusion import ExposureFusion
from lediff_core.model.vae import AutoencoderKL

from .engine import Trainer, add_common_arguments
from .validate import hdr_validation, validation_indices

# the paper's (LEDIFF.md); the batch size is not published: 2 crops of 512 per GPU fit in 24 GB
DEFAULTS = {"steps": 200_000, "lr": 1e-6, "batch_size": 2}
# taming/LDM's Adam betas for the autoencoder and its discriminator
BETAS = (0.5, 0.9)


class HDRDecoderModel(nn.Module):
    """Fusion + decoder: three scaled bracket latents (darkest first) -> natural-log HDR."""

    def __init__(self, vae: AutoencoderKL, fusion: ExposureFusion, upcast: bool = False):
        super().__init__()
        vae.encoder = None  # frozen and unused: the data holds its latents
        vae.quant_conv = None
        self.vae, self.fusion = vae, fusion
        self.upcast = upcast  # the VAE config's force_upcast (SDXL's VAE overflows in float16)

    def forward(self, c_minus: torch.Tensor, c0: torch.Tensor, c_plus: torch.Tensor) -> torch.Tensor:
        fused, _ = self.fusion([c_minus, c0, c_plus])
        if self.upcast:  # decode in float32 whatever the run's autocast
            with torch.autocast(fused.device.type, enabled=False):
                return self.vae.decode(fused.float() / self.vae.scaling_factor)
        return self.vae.decode(fused / self.vae.scaling_factor)


def checkpoint_blocks(blocks: nn.ModuleList) -> None:
    """Recompute each block's activations in the backward pass instead of storing them."""
    for block in blocks:
        forward = block.forward
        block.forward = lambda *a, _f=forward: torch.utils.checkpoint.checkpoint(_f, *a, use_reentrant=False)


class DecoderStage:
    def __init__(self, args: argparse.Namespace, model, data, accelerator):
        from .losses import Stage1Loss

        self.args, self.acc = args, accelerator
        # the losses first: a missing LPIPS backbone fails before any weights are loaded
        self.criterion = Stage1Loss(args.lpips_weight, args.gan_weight, args.gan_start, args.lpips_net)
        vae = model.load_vae()
        model = HDRDecoderModel(vae, model.load_fusion(vae.latent_channels),
                                upcast=bool(model.vae_config.get("force_upcast")))
        if args.gradient_checkpointing:
            checkpoint_blocks(vae.decoder.up_blocks)
        device = accelerator.device
        self.modules = {"hdr_decoder": model.to(device)}
        if self.criterion.discriminator is not None:
            self.modules["discriminator"] = self.criterion.discriminator.to(device)
        if self.criterion.perceptual is not None:
            self.criterion.perceptual.to(device)

    def optimizer_params(self) -> dict:
        return {name: ([name], BETAS) for name in self.modules}

    def loss(self, modules: dict, batch: dict, generators, step: int):
        out = modules["hdr_decoder"](batch["c_minus"], batch["c0"], batch["c_plus"]).float()
        target = batch["log_hdr"]
        crit = self.criterion
        if "discriminator" in modules:
            crit.discriminator = modules["discriminator"]  # the prepared (DDP) wrapper
        # with several processes the adaptive GAN weight must see the gradients of the whole batch
        reduce = (lambda t: self.acc.reduce(t, "mean")) if self.acc.num_processes > 1 else None
        last = self.modules["hdr_decoder"].vae.decoder.conv_out.weight
        total, logs = crit.generator_loss(out, target, step, last_layer=last, grad_reduce=reduce)
        if crit.gan_active(step):
            d_loss, d_logs = crit.discriminator_loss(out.detach(), target, step)
            total = total + d_loss  # D's parameters get gradient from this term only, G's from the other
            logs.update(d_logs)
        logs["train/loss"] = logs["loss/total"]
        return total, logs

    def export_weights(self, modules: dict) -> dict:
        model = modules["hdr_decoder"]
        return {"fusion.safetensors": model.fusion.state_dict(),
                "vae_decoder.safetensors": model.vae.state_dict()}

    def validate(self, modules: dict, data, step: int, logger) -> dict:
        idx = validation_indices(len(data), self.args.val_samples)
        batch = data.get(idx)
        device = next(modules["hdr_decoder"].parameters()).device
        pred = modules["hdr_decoder"](*(batch[k].to(device) for k in ("c_minus", "c0", "c_plus"))).float().cpu()
        return hdr_validation(pred, batch["log_hdr"].float(), step, logger)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, **DEFAULTS)
    parser.add_argument("--lpips-weight", type=float, default=1.0,
                        help="LPIPS perceptual loss weight (0 = off); needs torchvision's pretrained backbone")
    parser.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex", help="LPIPS backbone")
    parser.add_argument("--gan-weight", type=float, default=0.5, help="PatchGAN loss weight (0 = off; LDM's 0.5)")
    parser.add_argument("--gan-start", type=int, default=50_001,
                        help="step at which the discriminator starts (LDM's autoencoders: 50001)")


def run(args: argparse.Namespace) -> str:
    return Trainer(args, DecoderStage, "decoder").train()
