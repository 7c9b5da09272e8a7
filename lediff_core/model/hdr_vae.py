"""The HDR VAE: SD encoder + LEDiff's HDR decoder + the exposure fusion module, and the checks
on latents that every LEDiff step shares.

Conventions (ComfyUI's LATENT): latents are *unscaled*; the fusion runs in the scaled space
(x scaling_factor), as in the official release, and the HDR is exp() of the decoder output
(natural log, no offset, arbitrary global scale) — never clamped.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import LEDiffError
from .backbones import Backbone, label
from .fit import shapes_of
from .fusion import ExposureFusion
from .tiling import default_overlap
from .vae import AutoencoderKL, check_vae_fits


class LatentError(LEDiffError, ValueError):
    """A latent that LEDiff cannot use; the message names it and the fix."""


def check_latent(samples: torch.Tensor, name: str = "latent", channels: int = 4) -> None:
    """A latent LEDiff can fuse, decode or bracket: [batch >= 1, ``channels``, h >= 1, w >= 1],
    finite. Checked before any library call (a 0x0 latent otherwise fails deep in a convolution,
    an empty batch in ``torch.cat``)."""
    if samples.ndim != 4:
        raise LatentError(
            f"{name}: expected an image latent [batch, {channels}, height/8, width/8], got shape "
            f"{list(samples.shape)} (video or other latents are not supported)"
        )
    if samples.shape[1] != channels:
        raise LatentError(
            f"{name} has {samples.shape[1]} channels; LEDiff works on Stable Diffusion 1.x and SDXL "
            f"latents with {channels} (SD3/Flux latents cannot be used: decode them to an image and "
            "encode it with the HDR VAE's vae output instead)"
        )
    b, _, h, w = samples.shape
    if b == 0:
        raise LatentError(
            f"{name} is an empty batch (no latents); at least 1 latent of at least 1x1 latent pixels is needed. "
            "The node that made it kept nothing (e.g. a batch selection that matched no item): check its settings"
        )
    if h < 1 or w < 1:
        raise LatentError(
            f"{name} is {w}x{h} latent pixels (width x height); at least 1x1 is needed (an image of at least 8x8 "
            "pixels for Stable Diffusion's VAE). The node that made it gave an empty latent (e.g. a crop or an "
            "upscale to 0): check its size settings"
        )
    bad = (~torch.isfinite(samples)).sum().item()
    if bad:
        raise LatentError(f"{name} contains {bad} NaN/Inf value(s); fix the node that produced it")


def check_brackets(latents: dict[str, torch.Tensor], channels: int = 4) -> None:
    """Each latent valid, and all of one shape (batch and size)."""
    for name, samples in latents.items():
        check_latent(samples, name, channels)
    shapes = {name: list(s.shape) for name, s in latents.items()}
    if len({tuple(s) for s in shapes.values()}) > 1:
        raise LatentError(
            f"brackets differ in batch or size: {shapes}; all brackets must come from the same input "
            "latent (same batch size and resolution)"
        )


def check_backbones(made_by: dict[str, str | None], backbone: Backbone | None, source: str = "") -> None:
    """Latents tagged with the backbone of the LEDiff denoiser that made them (``made_by``: name ->
    a backbone's name, or None for an untagged latent, e.g. straight from KSampler) against the HDR
    VAE's ``backbone`` (``backbones.identify`` of its VAE config): a bracket of the other backbone is
    an error naming both sides and the fix.
    Untagged latents pass (nothing to check); with a VAE of neither backbone the tags must agree."""
    tagged = {name: b for name, b in made_by.items() if b is not None}
    if backbone is None:
        if len(set(tagged.values())) > 1:
            raise LatentError(f"brackets made by denoisers of different backbones: {tagged}; make every bracket "
                              "of one image with LEDiff denoisers of one backbone")
        return
    want, vae = backbone.label, f"the HDR VAE {source}" if source else "the HDR VAE"
    for name, b in tagged.items():
        if b != backbone.name:
            got = label(b)
            raise LatentError(
                f"{name} was made by an {got} LEDiff bracket denoiser, but {vae} is {want}'s "
                f"(scaling_factor {backbone.scaling_factor}): the two latent spaces differ. Load the {got} "
                f"LEDiff model's HDR VAE in Load HDR VAE (the one from the folder of the {got} denoisers), or "
                f"make the brackets with {want} LEDiff denoisers"
            )


class HDRVAE(nn.Module):
    def __init__(self, vae_config: dict, vae_state_dict: dict, fusion_state_dict: dict, source: str = "",
                 config_name: str | None = None, weights_name: str | None = None):
        """Built only once ``vae_config`` is checked against the weights (``vae.check_vae_fits``);
        ``config_name`` and ``weights_name`` say where they came from in its errors."""
        super().__init__()
        model = source or "the model"
        check_vae_fits(vae_config, shapes_of(vae_state_dict), config_name or f"the VAE config of {model}",
                       weights_name or f"the VAE weights of {model}")
        self.vae = AutoencoderKL(vae_config)
        self.vae.load_weights(vae_state_dict, source)
        self.fusion = ExposureFusion(self.vae.config["latent_channels"])
        self.fusion.load_weights(fusion_state_dict, source)
        self.scaling_factor = float(self.vae.scaling_factor)
        self.latent_channels = int(self.vae.config["latent_channels"])
        self.source = source

    @property
    def downscale_factor(self) -> int:
        """Image pixels per latent pixel (the VAE's own factor: 8 for SD)."""
        return self.vae.downscale_factor

    def decode_memory(self, h: int, w: int, tile: int = 0, dtype_size: int = 4) -> int:
        """Bytes that decoding an ``h`` x ``w`` latent needs, in tiles of ``tile`` latent pixels (0:
        one piece) with activations of ``dtype_size`` bytes. The full-resolution layers dominate: about
        seven activations of the first block's width per output pixel at once (measured peak RSS of a
        one-piece decode on a CPU: 3.3 KB per pixel for SD's VAE, 0.95 KB for a 32-wide one); the
        latent-resolution head runs on the whole latent even when tiling; the float32 output with its
        tile accumulators and exp() about 40 bytes per pixel."""
        widths = self.vae.config["block_out_channels"]
        f = self.downscale_factor
        rows, cols = (min(tile, h), min(tile, w)) if tile else (h, w)
        body = 7 * widths[0] * rows * cols * f * f * dtype_size
        head = 8 * widths[-1] * h * w * dtype_size
        return body + head + 40 * h * w * f * f

    def drop_encoder(self) -> None:
        """Free the SD encoder: LEDiff's HDR path only fuses and decodes (encoding photos goes
        through a standard VAE built from the same file), so keeping it would hold a second copy
        of those weights. The weights were already checked strictly when loading."""
        self.vae.encoder = None
        self.vae.quant_conv = None

    def fuse(self, brackets: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Unscaled bracket latents (darkest first) -> (unscaled fused latent, weights [N,B,C,h,w])."""
        fused, weights = self.fusion([b * self.scaling_factor for b in brackets])
        return fused / self.scaling_factor, weights

    def decode_log(self, latent: torch.Tensor, wrap_x: bool = False, tile: int = 0, overlap: int | None = None,
                   on_tile=None) -> torch.Tensor:
        """Unscaled latent [B, C, h, w] -> natural-log HDR [B, 3, H, W] (the decoder's raw output).

        ``wrap_x``: the image is a 360-degree panorama, seamless across its left/right edge.
        ``tile`` (latent pixels, 0 = one piece): decode in tiles overlapping by ``overlap`` latent
        pixels (default a quarter tile).
        """
        h, w = latent.shape[-2:]
        if tile and (h > tile or w > tile):
            overlap = default_overlap(tile) if overlap is None else overlap
            return self.vae.decode_tiled(latent, tile, overlap, wrap_x, on_tile)
        return self.vae.decode(latent, wrap_x)

    def decode_hdr(self, latent: torch.Tensor, wrap_x: bool = False, tile: int = 0, overlap: int | None = None,
                   on_tile=None) -> torch.Tensor:
        """Unscaled latent -> linear HDR [B, H, W, 3] (ComfyUI IMAGE layout): exp of the decoder
        output, computed in float32 whatever dtype the decoder ran in."""
        return torch.exp(self.decode_log(latent, wrap_x, tile, overlap, on_tile).float()).movedim(1, -1)
