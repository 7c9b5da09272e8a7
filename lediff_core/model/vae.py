"""A pure-PyTorch Stable Diffusion VAE (the diffusers ``AutoencoderKL`` architecture).

LEDiff fine-tunes the decoder of SD 1.5's KL autoencoder to output log-HDR, and ships it as a
diffusers folder. This module rebuilds that network without diffusers or ComfyUI, with modules
named exactly as diffusers names them, so the ``state_dict`` keys of
``vae/diffusion_pytorch_model.safetensors`` (``encoder.down_blocks.0.resnets.0.norm1.weight``,
``decoder.mid_block.attentions.0.to_q.weight``, ``post_quant_conv.bias`` ...) load as they are.

Only what SD-family VAEs use is supported: ``DownEncoderBlock2D`` / ``UpDecoderBlock2D`` blocks,
SiLU, GroupNorm and an optional single-head self-attention in the mid blocks. ``encode`` and
``decode`` work on *unscaled* latents (multiply by ``scaling_factor`` yourself for a UNet), and
``decode`` returns the decoder's raw output: for LEDiff that is log-HDR, so it is never clamped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .. import LEDiffError
from .backbones import SD15
from .fit import check_settings, check_shapes, dim, indices, meta_model, mismatch, shapes_of
from .tiling import decode_tiled
from .weights import WeightError, check_keys, listing

__all__ = [
    "AutoencoderKL",
    "Decoder",
    "Encoder",
    "VAEConfigError",
    "WeightKeyError",
    "check_vae_fits",
    "parse_vae_config",
    "vae_mismatches",
]

# diffusers builds every GroupNorm of this model with eps=1e-6 (torch's default is 1e-5).
_EPS = 1e-6

# diffusers' AutoencoderKL defaults, applied to fields a config.json leaves out.
_DEFAULTS = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (64,),
    "down_block_types": ("DownEncoderBlock2D",),
    "up_block_types": ("UpDecoderBlock2D",),
    "layers_per_block": 1,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "scaling_factor": SD15.scaling_factor,  # diffusers' default is SD1.x's
    "shift_factor": None,
    "latents_mean": None,
    "latents_std": None,
    "mid_block_add_attention": True,
    "use_quant_conv": True,
    "use_post_quant_conv": True,
}
# Fields that only matter to diffusers pipelines (tiling size, fp16 upcast policy), not to the weights.
_IGNORED = {"sample_size", "force_upcast"}


class VAEConfigError(LEDiffError, ValueError):
    """A VAE config this module cannot build; the message names the field and the fix."""


class WeightKeyError(WeightError):
    """A state dict that does not fit the model: missing, unexpected or wrongly shaped tensors."""


def _positive_int(config: dict, name: str) -> int:
    value = config[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VAEConfigError(f"VAE config field {name!r} must be a positive integer, got {value!r}")
    return value


def _flag(config: dict, name: str) -> bool:
    value = config[name]
    if not isinstance(value, bool):
        raise VAEConfigError(f"VAE config field {name!r} must be true or false, got {value!r}")
    return value


def parse_vae_config(config: dict) -> dict:
    """Validate a diffusers ``AutoencoderKL`` config (the parsed ``vae/config.json``).

    Returns a new dict with every architecture field filled in (diffusers' defaults for absent
    ones), lists turned into tuples, and the pipeline-only fields dropped. Parsing its own output
    gives the same dict. Raises VAEConfigError for anything this implementation cannot build.
    """
    if not isinstance(config, Mapping):
        raise VAEConfigError(
            f"a VAE config must be a dict (the parsed config.json), got {type(config).__name__}"
        )
    class_name = config.get("_class_name", "AutoencoderKL")
    if class_name != "AutoencoderKL":
        raise VAEConfigError(
            f"VAE config field '_class_name' is {class_name!r}; only 'AutoencoderKL' (the Stable Diffusion "
            "VAE) is supported: point to the vae/config.json of an SD-style diffusers folder"
        )
    unknown = sorted(k for k in config if k not in _DEFAULTS and k not in _IGNORED and not k.startswith("_"))
    if unknown:
        raise VAEConfigError(
            f"VAE config has fields this AutoencoderKL does not know: {', '.join(unknown)}; they may change "
            "the architecture, so the config is refused (remove them only if they are known to be inert)"
        )
    raw = {**_DEFAULTS, **{k: v for k, v in config.items() if k in _DEFAULTS}}
    out = {name: _positive_int(raw, name) for name in ("in_channels", "out_channels", "latent_channels",
                                                        "layers_per_block", "norm_num_groups")}

    blocks = raw["block_out_channels"]
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, (list, tuple)) or not blocks:
        raise VAEConfigError(
            f"VAE config field 'block_out_channels' must be a non-empty list, got {blocks!r}"
        )
    for i, ch in enumerate(blocks):
        if isinstance(ch, bool) or not isinstance(ch, int) or ch < 1:
            raise VAEConfigError(
                f"VAE config field 'block_out_channels[{i}]' must be a positive integer, got {ch!r}"
            )
        if ch % out["norm_num_groups"]:
            raise VAEConfigError(
                f"VAE config field 'block_out_channels[{i}]' = {ch} is not divisible by norm_num_groups = "
                f"{out['norm_num_groups']}: GroupNorm needs whole groups; fix one of the two"
            )
    out["block_out_channels"] = tuple(blocks)

    block_types = (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D"))
    for name, expected in block_types:
        types = raw[name]
        if isinstance(types, (str, bytes)) or not isinstance(types, (list, tuple)):
            raise VAEConfigError(f"VAE config field {name!r} must be a list of block names, got {types!r}")
        if len(types) != len(blocks):
            raise VAEConfigError(
                f"VAE config field {name!r} has {len(types)} entries but block_out_channels has "
                f"{len(blocks)}: give one {expected!r} per entry of block_out_channels"
            )
        for i, t in enumerate(types):
            if t != expected:
                raise VAEConfigError(
                    f"VAE config field '{name}[{i}]' is {t!r}; only {expected!r} is supported "
                    "(the Stable Diffusion VAE layout)"
                )
        out[name] = tuple(types)

    if raw["act_fn"] != "silu":
        raise VAEConfigError(f"VAE config field 'act_fn' is {raw['act_fn']!r}; only 'silu' is supported")

    scaling = raw["scaling_factor"]
    if isinstance(scaling, bool) or not isinstance(scaling, (int, float)) or not scaling > 0:
        raise VAEConfigError(f"VAE config field 'scaling_factor' must be a positive number, got {scaling!r}")
    out["scaling_factor"] = float(scaling)

    shift = raw["shift_factor"]
    if shift is not None and (isinstance(shift, bool) or not isinstance(shift, (int, float)) or shift != 0):
        raise VAEConfigError(
            f"VAE config field 'shift_factor' is {shift!r}; only null or 0 is supported (latents are "
            "scaled, never shifted, in SD-family VAEs): this config belongs to a different latent space"
        )
    out["shift_factor"] = None if shift is None else 0.0

    for name in ("latents_mean", "latents_std"):
        if raw[name] is not None:
            raise VAEConfigError(
                f"VAE config field {name!r} is set; per-channel latent normalisation is not supported "
                "(SD 1.5 VAEs leave it null)"
            )
        out[name] = None

    for name in ("mid_block_add_attention", "use_quant_conv", "use_post_quant_conv"):
        out[name] = _flag(raw, name)
    out["act_fn"] = "silu"
    return {k: out[k] for k in _DEFAULTS}


# ----------------------------------------------------------------------------------------------------------
# Building blocks. Attribute names are diffusers' (they become the state-dict keys).


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=_EPS)


def _norm_silu(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    # group_norm returns a fresh tensor and its backward does not need that output, so the in-place
    # SiLU saves one full-size allocation per call and stays autograd-safe.
    return F.silu(norm(x), inplace=True)


def pad_wrap_x(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad ``pad`` pixels: circular on the width axis (a 360-degree panorama wraps left/right),
    zeros on the height axis (the poles do not wrap)."""
    return F.pad(F.pad(x, (pad, pad, 0, 0), mode="circular"), (0, 0, pad, pad))


class Conv3x3(nn.Conv2d):
    """A 3x3 'same' convolution that can wrap horizontally (``wrap_x``) for equirect panoramas.

    An nn.Conv2d subclass, so its parameters keep diffusers' names."""

    wrap_x = False

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.wrap_x:
            return F.conv2d(pad_wrap_x(x, 1), self.weight, self.bias)
        return super().forward(x)


class ResnetBlock2D(nn.Module):
    """GroupNorm-SiLU-conv twice plus a skip (a 1x1 ``conv_shortcut`` when the width changes)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = _norm(in_channels, groups)
        self.conv1 = Conv3x3(in_channels, out_channels)
        self.norm2 = _norm(out_channels, groups)
        self.conv2 = Conv3x3(out_channels, out_channels)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_norm_silu(self.norm1, x))
        h = self.conv2(_norm_silu(self.norm2, h))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        # h is conv2's own output (conv backward does not need it), so adding in place is safe.
        return h.add_(x)


class Attention(nn.Module):
    """Single-head self-attention over all H*W positions, with GroupNorm and a residual.

    diffusers stores these projections as Linear layers (``to_q`` ... ``to_out.0``); checkpoints
    from before diffusers 0.14 call them ``query``/``key``/``value``/``proj_attn`` (see
    ``AutoencoderKL.load_weights``).
    """

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = _norm(channels, groups)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        # A list because diffusers' to_out is [Linear, Dropout]: the Linear's keys are "to_out.0.*".
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.group_norm(x).view(b, c, h * w).transpose(1, 2)  # [B, HW, C]
        q = self.to_q(tokens).unsqueeze(1)  # one head: [B, 1, HW, C]
        k = self.to_k(tokens).unsqueeze(1)
        v = self.to_v(tokens).unsqueeze(1)
        del tokens
        out = F.scaled_dot_product_attention(q, k, v)  # default scale 1/sqrt(C), as diffusers
        del q, k, v
        out = self.to_out[0](out.squeeze(1))  # [B, HW, C]
        # x first: the sum then takes x's (contiguous NCHW) layout rather than the transposed view's.
        return x + out.transpose(1, 2).view(b, c, h, w)


class Downsample2D(nn.Module):
    """Stride-2 3x3 conv; diffusers pads only right and bottom (0, 1, 0, 1), then convolves unpadded."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


# Nearest x2 followed by a 3x3 conv equals, for each of the four output phases (row parity a,
# column parity b), a 2x2 conv on the *low-resolution* input: of the three kernel rows, two land on
# the same source row (rows 1+2 for even output rows, 0+1 for odd ones) and are summed. Running
# those 2x2 kernels directly does 16/36 of the multiply-adds and never materialises the upsampled
# input. _PHASE_TAPS[a] maps the 3 kernel rows (or columns) to the 2 source rows of phase a.
_PHASE_TAPS = (
    ((1, 0, 0), (0, 1, 1)),  # even output rows: source rows i-1 and i
    ((1, 1, 0), (0, 0, 1)),  # odd output rows: source rows i and i+1
)


class Upsample2D(nn.Module):
    """Nearest-neighbour x2 followed by a 3x3 conv (computed as four 2x2 sub-pixel convs, see above)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        weight, bias = self.conv.weight, self.conv.bias
        out_ch = weight.shape[0]
        # Fold in at least float32 (the weights are tiny next to the activations) so that
        # half-precision models round each summed tap once.
        fold_dtype = torch.promote_types(weight.dtype, torch.float32)
        taps = torch.tensor(_PHASE_TAPS, dtype=fold_dtype, device=weight.device)
        folded = torch.einsum("apk,bql,oikl->aboipq", taps, taps, weight.to(fold_dtype))
        folded = folded.reshape(4 * out_ch, weight.shape[1], 2, 2).to(weight.dtype)
        # Padding 1 gives an (h+1) x (w+1) grid per phase: phase (a, b) is its window starting at (a, b).
        if self.conv.wrap_x:
            y = F.conv2d(pad_wrap_x(x, 1), folded, bias.repeat(4))
        else:
            y = F.conv2d(x, folded, bias.repeat(4), padding=1)
        y = y.view(b, 2, 2, out_ch, h + 1, w + 1)
        out = x.new_empty(b, out_ch, 2 * h, 2 * w)
        phases = out.view(b, out_ch, h, 2, w, 2)
        for i in range(2):
            for j in range(2):
                phases[:, :, :, i, :, j] = y[:, i, j, :, i : i + h, j : j + w]
        return out


class DownEncoderBlock2D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(out_channels if i else in_channels, out_channels, groups) for i in range(layers)
        )
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels)]) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x


class UpDecoderBlock2D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(out_channels if i else in_channels, out_channels, groups) for i in range(layers)
        )
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)]) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class UNetMidBlock2D(nn.Module):
    """resnet, (attention), resnet at the lowest resolution."""

    def __init__(self, channels: int, groups: int, add_attention: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups) for _ in range(2)])
        self.attentions = nn.ModuleList([Attention(channels, groups)]) if add_attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        if self.attentions is not None:
            x = self.attentions[0](x)
        return self.resnets[1](x)


class Encoder(nn.Module):
    """Image [B, in_channels, H, W] -> posterior moments [B, 2 * latent_channels, H/f, W/f] (mean, logvar)."""

    def __init__(self, config: dict):
        super().__init__()
        cfg = parse_vae_config(config)
        channels, groups, layers = cfg["block_out_channels"], cfg["norm_num_groups"], cfg["layers_per_block"]
        self.conv_in = Conv3x3(cfg["in_channels"], channels[0])
        self.down_blocks = nn.ModuleList()
        prev = channels[0]
        for i, ch in enumerate(channels):
            last = i == len(channels) - 1
            self.down_blocks.append(DownEncoderBlock2D(prev, ch, layers, groups, downsample=not last))
            prev = ch
        self.mid_block = UNetMidBlock2D(channels[-1], groups, cfg["mid_block_add_attention"])
        self.conv_norm_out = _norm(channels[-1], groups)
        # Twice the latent channels: the Gaussian posterior's mean and log-variance.
        self.conv_out = Conv3x3(channels[-1], 2 * cfg["latent_channels"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(_norm_silu(self.conv_norm_out, x))


class Decoder(nn.Module):
    """Latent [B, latent_channels, h, w] (after post_quant_conv) -> [B, out_channels, h*f, w*f], unclamped.

    Works on any spatial size, so a tiled decoder can call it on latent tiles.
    """

    def __init__(self, config: dict):
        super().__init__()
        cfg = parse_vae_config(config)
        channels, groups = cfg["block_out_channels"], cfg["norm_num_groups"]
        rev = channels[::-1]
        self.conv_in = Conv3x3(cfg["latent_channels"], rev[0])
        self.mid_block = UNetMidBlock2D(rev[0], groups, cfg["mid_block_add_attention"])
        self.up_blocks = nn.ModuleList()
        prev = rev[0]
        for i, ch in enumerate(rev):
            # The decoder has one more resnet per block than the encoder (diffusers: layers_per_block + 1).
            self.up_blocks.append(
                UpDecoderBlock2D(prev, ch, cfg["layers_per_block"] + 1, groups, upsample=i < len(rev) - 1)
            )
            prev = ch
        self.conv_norm_out = _norm(channels[0], groups)
        self.conv_out = Conv3x3(channels[0], cfg["out_channels"])

    def set_wrap_x(self, wrap: bool) -> None:
        """Make every 3x3 convolution wrap horizontally (for 360-degree panoramas) or not."""
        for module in self.modules():
            if isinstance(module, Conv3x3):
                module.wrap_x = wrap

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """conv_in and the mid block: the latent-resolution part, whose attention is global."""
        return self.mid_block(self.conv_in(z))

    def tail(self, x: torch.Tensor) -> torch.Tensor:
        """The up blocks and output layers: local operations, safe to run on overlapping tiles."""
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(_norm_silu(self.conv_norm_out, x))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head(z))


# Pre-0.14 diffusers names of the attention projections -> current names.
_DEPRECATED_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_DEPRECATED_KEY = re.compile(r"^(?P<path>.+)\.(?P<old>query|key|value|proj_attn)\.(?P<kind>weight|bias)$")


def _layout_hint(keys: list[str]) -> str:
    """A guess at what kind of file the unexpected keys came from, for the error message."""
    if any(k.startswith("first_stage_model.") or ".down.0.block." in k or ".up.0.block." in k for k in keys):
        return (" These look like original Stable Diffusion (LDM / single-file checkpoint) VAE keys, not "
                "diffusers keys: use the diffusers folder's vae/diffusion_pytorch_model.safetensors.")
    if any(".transformer_blocks." in k or k.startswith(("down_blocks.", "conv_in.")) for k in keys):
        return " These look like a UNet's keys, not a VAE's."
    prefixes = {k.split(".", 1)[0] for k in keys}
    if len(prefixes) == 1 and prefixes.pop() not in ("encoder", "decoder", "quant_conv", "post_quant_conv"):
        return f" Every key starts with {keys[0].split('.', 1)[0]!r}.: strip that prefix before loading."
    return ""


def _check_vae_keys(targets, keys: list[str], where: str) -> None:
    check_keys(
        targets, keys, f"VAE weights{where} do not match this AutoencoderKL config",
        "Expected a diffusers AutoencoderKL state dict (vae/diffusion_pytorch_model.safetensors) built for "
        "the same vae/config.json." + _layout_hint([k for k in keys if k not in targets]),
        error=WeightKeyError,
    )


class AutoencoderKL(nn.Module):
    """The Stable Diffusion KL autoencoder, laid out like diffusers' ``AutoencoderKL``."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = parse_vae_config(config)
        self.scaling_factor = self.config["scaling_factor"]
        self.latent_channels = self.config["latent_channels"]
        self.downscale_factor = 2 ** (len(self.config["block_out_channels"]) - 1)
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        latent2 = 2 * self.latent_channels
        self.quant_conv = nn.Conv2d(latent2, latent2, 1) if self.config["use_quant_conv"] else None
        lat = self.latent_channels
        self.post_quant_conv = nn.Conv2d(lat, lat, 1) if self.config["use_post_quant_conv"] else None

    def _param_like(self) -> torch.Tensor:
        return self.decoder.conv_in.weight

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_channels, H, W] in [-1, 1] -> the posterior mean (its mode), unscaled.

        The result is [B, latent_channels, H/f, W/f] with f = ``downscale_factor``; H and W must be
        multiples of f.
        """
        self._check_spatial(x, self.downscale_factor, "encode")
        if self.encoder is None:
            raise RuntimeError("this AutoencoderKL is decoder-only (its encoder was dropped): encode "
                               "with the standard VAE built from the same weights")
        p = self._param_like()
        moments = self.encoder(x.to(device=p.device, dtype=p.dtype))
        lat = self.latent_channels
        if self.quant_conv is None:
            return moments[:, :lat].contiguous()
        # Only the mean half of quant_conv's output is wanted; computing just those output channels
        # also gives a contiguous result.
        return F.conv2d(moments, self.quant_conv.weight[:lat], self.quant_conv.bias[:lat])

    def decode(self, z: torch.Tensor, wrap_x: bool = False) -> torch.Tensor:
        """Unscaled latent [B, latent, h, w] -> the decoder's raw output [B, out_channels, h*f, w*f].

        No ``(x + 1) / 2`` and no clamping: LEDiff's decoder emits log-HDR, which legitimately leaves [-1, 1].
        ``wrap_x`` makes the convolutions wrap horizontally: for an equirect panorama the result is
        then seamless across its left/right edge (decoding commutes with horizontal circular shifts).
        """
        self._check_spatial(z, 1, "decode")
        p = self._param_like()
        z = z.to(device=p.device, dtype=p.dtype)
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        self.decoder.set_wrap_x(wrap_x)
        try:
            return self.decoder(z)
        finally:
            self.decoder.set_wrap_x(False)

    def decode_tiled(
        self, z: torch.Tensor, tile: int, overlap: int, wrap_x: bool = False, on_tile=None
    ) -> torch.Tensor:
        """Like ``decode``, with the full-resolution part decoded in overlapping tiles of ``tile``
        latent pixels (bounded memory). The latent-resolution head (conv_in + mid block, whose
        attention sees the whole image) runs once on the whole latent: cheap at that resolution,
        and it keeps the tiles' global context, which halves the tile seams' error compared with
        tiling the latent itself (measured in tests/nodes/panorama/test_panorama.py)."""
        self._check_spatial(z, 1, "decode")
        p = self._param_like()
        z = z.to(device=p.device, dtype=p.dtype)
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        decoder = self.decoder
        try:
            decoder.set_wrap_x(wrap_x)
            features = decoder.head(z)
            # tiles narrower than the image use zero padding at their edges (the periodic tiling
            # provides the wrap); a tile spanning the whole width wraps by itself
            decoder.set_wrap_x(wrap_x and z.shape[-1] <= tile)
            return decode_tiled(decoder.tail, features, tile, overlap, self.downscale_factor, wrap_x, on_tile)
        finally:
            decoder.set_wrap_x(False)

    def _check_spatial(self, x: torch.Tensor, multiple: int, what: str) -> None:
        expected = self.config["in_channels"] if what == "encode" else self.latent_channels
        if x.ndim != 4 or x.shape[1] != expected:
            raise ValueError(f"AutoencoderKL.{what} expects [B, {expected}, H, W], got {list(x.shape)}")
        if x.shape[2] % multiple or x.shape[3] % multiple:
            raise ValueError(
                f"AutoencoderKL.{what}: height and width must be multiples of {multiple}, got "
                f"{x.shape[2]}x{x.shape[3]} (pad or crop the image first)"
            )

    def load_weights(self, state_dict: Mapping[str, torch.Tensor], source: str = "") -> None:
        """Copy a diffusers-format state dict into this model (strict: every key, every shape).

        Pre-0.14 attention names (``query``/``key``/``value``/``proj_attn``) are renamed first.
        Tensors are converted to each parameter's dtype and device. Raises WeightKeyError, leaving
        the model untouched, when keys are missing or unexpected or a shape differs.
        """
        where = f" in {source}" if source else ""
        targets = self.state_dict()
        attention_paths = {name for name, m in self.named_modules() if isinstance(m, Attention)}
        renamed: dict[str, torch.Tensor] = {}
        clashes = []
        for key, value in state_dict.items():
            m = _DEPRECATED_KEY.match(key)
            if m and m["path"] in attention_paths:
                new = f"{m['path']}.{_DEPRECATED_ATTENTION[m['old']]}.{m['kind']}"
                if new in state_dict:
                    clashes.append(f"{key} (and {new})")
                    continue
                key = new
            renamed[key] = value

        _check_vae_keys(targets, [*renamed, *clashes], where)

        wrong = []
        for key, target in targets.items():
            value = renamed[key]
            if not isinstance(value, torch.Tensor):
                value = renamed[key] = torch.as_tensor(value)
            if value.shape != target.shape:
                wrong.append(f"{key}: file {list(value.shape)} vs model {list(target.shape)}")
        if wrong:
            raise WeightKeyError(
                f"VAE weights{where} have {len(wrong)} tensor(s) of the wrong shape: {listing(wrong)}. "
                "The vae/config.json does not describe these weights (block_out_channels, latent_channels, "
                "layers_per_block ...)."
            )
        with torch.no_grad():
            for key, target in targets.items():
                target.copy_(renamed[key])  # state_dict() tensors share storage with the parameters


def vae_mismatches(config: Mapping, shapes: Mapping[str, tuple[int, ...]]) -> list[tuple[str, object, object]]:
    """The settings of a VAE config that its weights (diffusers names: key -> shape) contradict, as
    (key, config value, weights value): levels and widths, resnets per level, channels in, out and
    latent (``fit.check_settings`` turns them into the error)."""
    found = []
    levels = indices(shapes, "encoder.down_blocks.")
    if levels:
        widths = [dim(shapes, f"encoder.down_blocks.{i}.resnets.0.conv2.weight", 0) for i in levels]
        mismatch(found, config, "block_out_channels", None if None in widths else widths)
        mismatch(found, config, "layers_per_block", len(indices(shapes, "encoder.down_blocks.0.resnets.")))
    mismatch(found, config, "in_channels", dim(shapes, "encoder.conv_in.weight", 1))
    mismatch(found, config, "latent_channels", dim(shapes, "decoder.conv_in.weight", 1))
    mismatch(found, config, "out_channels", dim(shapes, "decoder.conv_out.weight", 0))
    return found


def check_vae_fits(config: Mapping, shapes: Mapping[str, tuple[int, ...]], config_name: str, weights_name: str) -> None:
    """The AutoencoderKL that ``config`` builds must hold exactly the weights' keys and shapes
    (``shapes``: diffusers names, pre-0.14 attention names allowed), checked before it is built
    (``fit``): the settings that size it, then every parameter of it built on the meta device."""
    check_settings(vae_mismatches(config, shapes), config_name, weights_name)
    model = meta_model(lambda: AutoencoderKL(config), len(shapes), config_name, weights_name)
    attention = {name for name, m in model.named_modules() if isinstance(m, Attention)}
    current = {}
    for key, shape in shapes.items():
        m = _DEPRECATED_KEY.match(key)
        if m and m["path"] in attention:
            key = f"{m['path']}.{_DEPRECATED_ATTENTION[m['old']]}.{m['kind']}"
        current[key] = shape
    expected = shapes_of(model.state_dict())
    _check_vae_keys(expected, list(current), f" in {weights_name}")  # names the layout of foreign files
    check_shapes(expected, current, config_name, weights_name)
