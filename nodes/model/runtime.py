"""Turning LEDiff weights into objects ComfyUI manages: the bracket denoiser as a MODEL, the HDR
VAE's weights as a standard VAE, and the HDR VAE itself (fusion and HDR decoding with their
device, precision, tiling and progress) under ComfyUI's device management."""

from __future__ import annotations

import comfy.diffusers_convert
import comfy.model_management as mm
import comfy.model_patcher
import comfy.sd
import comfy.utils
import folder_paths
import torch

from ...lediff_core.color import check_image_size
from ...lediff_core.model.backbones import Backbone, identify
from ...lediff_core.model.fit import check_settings, check_shapes, meta_model, shapes_of
from ...lediff_core.model.hdr_vae import HDRVAE, check_backbones, check_brackets, check_latent
from ...lediff_core.model.tiling import default_overlap, tile_count
from ...lediff_core.model.unet_config import ldm_unet_config, unet_mismatches
from ...lediff_core.model.weights import WeightError, check_keys, list_models, resolve_model
from .backbones import denoiser_model_config
from .memory import run_tiled

FOLDER = "lediff"


def model_names() -> list[str]:
    return list_models(folder_paths.get_folder_paths(FOLDER))


def model_path(name: str) -> str:
    return resolve_model(folder_paths.get_folder_paths(FOLDER), name)


def build_denoiser(config: dict, diffusers_sd: dict, source: str, config_name: str | None = None,
                   weights_name: str | None = None) -> comfy.model_patcher.ModelPatcher:
    """An 8-channel SD1.x or SDXL UNet from its diffusers config and weights, as a ComfyUI MODEL.

    The backbone is read from the config (``backbones.identify``) and built as its ComfyUI model
    config (``nodes.model.backbones``: SD1.x as ``SD15_instructpix2pix``, SDXL as
    ``SDXL_instructpix2pix``). ComfyUI has no diffusers-format detection entry
    for 8-channel UNets of other widths, so the model is built from the config: keys are converted
    with ComfyUI's own diffusers-to-ldm map and checked exactly. The config is checked against the
    weights before the model is built (``lediff_core.model.fit``: its sizing settings, then every
    parameter of the model built on the meta device); ``config_name`` and ``weights_name`` say where
    they came from in its errors.
    """
    config_name = config_name or f"the unet config of {source}"
    weights_name = weights_name or f"the unet weights of {source}"
    shapes = shapes_of(diffusers_sd)
    check_settings(unet_mismatches(config, shapes), config_name, weights_name)
    unet_config = ldm_unet_config(config)
    model_config = denoiser_model_config(identify(config, "unet"), unet_config)
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    params = sum(v.numel() for v in diffusers_sd.values())
    weight_dtype = next(iter(diffusers_sd.values())).dtype if diffusers_sd else None
    dtype = mm.unet_dtype(model_params=params, supported_dtypes=model_config.supported_inference_dtypes,
                          weight_dtype=weight_dtype)
    model_config.set_inference_dtype(dtype, mm.unet_manual_cast(dtype, load_device,
                                                                 model_config.supported_inference_dtypes))
    planned = meta_model(lambda: model_config.get_model({}, ""), len(shapes), config_name, weights_name)
    model_shapes = shapes_of(planned.diffusion_model.state_dict())
    key_map = _diffusers_key_map(model_config.unet_config, set(model_shapes))
    check_keys(model_shapes, key_map.values(), f"bracket denoiser {source} (key conversion)")
    check_keys(key_map.keys(), diffusers_sd.keys(), f"bracket denoiser {source}",
               "The unet/ weights do not match unet/config.json; re-download the model")
    check_shapes({d: model_shapes[ldm] for d, ldm in key_map.items()}, shapes, config_name, weights_name)
    model = model_config.get_model({}, "")
    try:
        model.load_model_weights({key_map[k]: v for k, v in diffusers_sd.items()}, "")
    except RuntimeError as e:  # shape mismatches
        raise WeightError(f"bracket denoiser {source}: {e}") from e
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def _diffusers_key_map(unet_config: dict, model_keys: set) -> dict:
    """diffusers key -> ldm key for the keys this model has. ComfyUI's map also names optional
    embeddings, and names the ADM embedding (``label_emb``) both ``class_embedding.*`` and SDXL's
    ``add_embedding.*``: SDXL's diffusers weights use the latter, so only it is kept."""
    return {d: ldm for d, ldm in comfy.utils.unet_to_diffusers(unet_config).items()
            if ldm in model_keys and not d.startswith("class_embedding.")}


def vae_working_dtype(family: Backbone | None) -> torch.dtype:
    """The dtype ComfyUI's own VAE computes in on this machine (bfloat16 on recent NVIDIA GPUs,
    float32 on a CPU, float16 with --fp16-vae), except float16 for a VAE that overflows it (SDXL's:
    ``Backbone.float16_safe``), which gets float32. bfloat16 has float32's exponent range and stays."""
    dtype = mm.vae_dtype(mm.vae_device(), [torch.bfloat16, torch.float32])
    unsafe = family is not None and not family.float16_safe
    return torch.float32 if unsafe and dtype == torch.float16 else dtype


ENCODED_BY = "lediff_backbone"  # attribute of the latent tensors the HDR VAE's vae (PhotoVAE) encodes


def _tag(samples: torch.Tensor, backbone: Backbone | None) -> torch.Tensor:
    if backbone is not None:
        setattr(samples, ENCODED_BY, backbone.name)
    return samples


def encoded_backbone(samples: torch.Tensor) -> str | None:
    """The name of the backbone of the HDR VAE whose ``vae`` output encoded these latents (None:
    unknown, e.g. from KSampler, another VAE, or a node that made a new tensor)."""
    return getattr(samples, ENCODED_BY, None)


class PhotoVAE(comfy.sd.VAE):
    """ComfyUI's VAE over the HDR VAE's weights (``build_comfy_vae``), as core VAE Encode uses it on
    users' photos.

    Its encode tiles when a photo does not fit the free memory and retries in smaller tiles when it
    runs out of memory (``memory.run_tiled``): core's own fallback misses a CPU's out-of-memory
    error, and its encoder attention grows with the square of the pixels.

    Its encodes say which backbone's latent space they are in. Core VAE Encode returns
    ``{"samples": tensor}`` and nothing else, so the tensor itself carries the tag (attribute
    ``lediff_backbone``) to the bracket nodes, which compare it with their denoiser's before any
    sampling: SD1.5 and SDXL latents both have 4 channels, so nothing else could tell them apart.
    Nodes that make a new tensor (upscale, batch, crop) drop the tag; then the mismatch is caught
    where the brackets meet the HDR VAE (``LEDIFF_HDR_VAE.check_made_by``)."""

    backbone: Backbone | None = None
    encode_width = 256  # first block width x its layers, set by build_comfy_vae

    def encode_memory(self, rows: int, cols: int) -> int:
        """Bytes one encode of a ``rows`` x ``cols`` latent needs (per image). Measured peak RSS on a
        CPU: about 12 bytes per output pixel per unit of ``encode_width`` per activation byte (11.6 KB
        a pixel for SD's VAE in float32, 1.44 KB for a 32-wide one-layer VAE), and, where the host's
        VAE attention is not PyTorch's memory-efficient one, two float matrices of latent pixels
        squared (7.5 bytes per pair measured)."""
        size = mm.dtype_size(self.vae_dtype)
        f = self.spacial_compression_encode()
        memory = 12 * self.encode_width * size * rows * cols * f * f
        if not mm.pytorch_attention_enabled_vae():
            memory += 2 * size * (rows * cols) ** 2
        return memory

    def encode(self, pixel_samples):
        f = self.spacial_compression_encode()
        check_image_size(pixel_samples, "pixels", f, why=f" by VAE Encode (one latent pixel is {f}x{f} pixels)")
        height, width = pixel_samples.shape[1:3]

        def run(tile):
            if not tile:
                return super(PhotoVAE, self).encode(pixel_samples)
            side = tile * f
            return super(PhotoVAE, self).encode_tiled(pixel_samples, tile_x=side, tile_y=side, overlap=side // 8)

        samples = run_tiled("VAE Encode", (width, height), (height // f, width // f), 0, self.encode_memory,
                            self.device, run, f)
        return _tag(samples, self.backbone)

    def encode_tiled(self, *args, **kwargs):
        return _tag(super().encode_tiled(*args, **kwargs), self.backbone)


def build_comfy_vae(config: dict, diffusers_sd: dict, source: str) -> PhotoVAE:
    """A standard ComfyUI VAE (for VAE Encode of photos and bracket previews) from the HDR VAE's
    weights; its decoder is LEDiff's HDR decoder, so VAE Decode shows a log-encoded view.

    ComfyUI's VAE encodes to and decodes from *unscaled* latents (the MODEL's latent_format applies
    the scale), so the backbones' scaling_factor plays no part here; its dtype follows
    ``vae_working_dtype`` (an SDXL VAE never in float16)."""
    widths = list(config["block_out_channels"])
    if config.get("norm_num_groups", 32) != 32 or not config.get("mid_block_add_attention", True):
        raise WeightError(f"{source}: ComfyUI's VAE needs 32 GroupNorm groups and mid-block attention")
    ddconfig = {
        "double_z": True, "z_channels": config.get("latent_channels", 4), "resolution": 256,
        "in_channels": config.get("in_channels", 3), "out_ch": config.get("out_channels", 3),
        "ch": widths[0], "ch_mult": [w // widths[0] for w in widths],
        "num_res_blocks": config.get("layers_per_block", 2), "attn_resolutions": [], "dropout": 0.0,
    }
    ldm_sd = comfy.diffusers_convert.convert_vae_state_dict(dict(diffusers_sd))
    family = identify(config, "vae")
    vae = PhotoVAE(sd=dict(ldm_sd), config={"params": {"ddconfig": ddconfig, "embed_dim": ddconfig["z_channels"]}},
                   dtype=vae_working_dtype(family))
    vae.encode_width = widths[0] * ddconfig["num_res_blocks"]
    vae.backbone = family
    # ComfyUI loads VAE weights with strict=False: check that every weight really arrived
    loaded = vae.first_stage_model.state_dict()
    check_keys(loaded.keys(), ldm_sd.keys(), f"VAE {source}")
    return vae


PRECISION_EXACT = "float32 (exact)"
PRECISION_FAST = "vae dtype (fast)"
PRECISIONS = (PRECISION_EXACT, PRECISION_FAST)


class HDRVAEModel:
    """The LEDIFF_HDR_VAE value: LEDiff's HDR decoder and fusion module under ComfyUI's device
    management, with their runtime (device, precision, tiling, progress, interrupts).

    Weights stay float32 whatever ComfyUI's VAE dtype is (bfloat16 on recent NVIDIA GPUs): the
    decoder emits a logarithm that goes through exp(), so bfloat16's 8 mantissa bits become
    percent-level HDR errors. ``decode(..., precision=PRECISION_FAST)`` opts into computing in the
    VAE dtype (autocast: convolutions and matrix products in that dtype, weights untouched), never
    float16 for an SDXL HDR VAE (``vae_working_dtype``).
    The SD encoder is dropped: photos are encoded with the standard VAE built from the same file.

    ``backbone`` (a ``lediff_core.model.backbones`` record, or None for another latent scale) comes
    from the VAE config's ``scaling_factor`` (``backbones.identify``); ``check_made_by`` compares it
    with the backbone tags of bracket LATENTs.
    """

    def __init__(self, core: HDRVAE, name: str):
        core.drop_encoder()
        self.core = core.eval().float()
        self.name = name
        self.backbone = identify(core.vae.config, "vae")
        self.patcher = comfy.model_patcher.ModelPatcher(
            self.core, load_device=mm.vae_device(), offload_device=mm.vae_offload_device())
        # what ComfyUI's own VAE would compute in on this machine (the opt-in fast precision)
        self.fast_dtype = vae_working_dtype(self.backbone)

    @property
    def latent_channels(self) -> int:
        return self.core.latent_channels

    @property
    def downscale_factor(self) -> int:
        return self.core.downscale_factor

    def check_made_by(self, made_by: dict[str, str | None]) -> None:
        """Latent name -> backbone tag of the LEDiff denoiser that made it (None: untagged, e.g. from
        KSampler or VAE Encode): a tag of the other backbone is an error naming both and the fix."""
        check_backbones(made_by, self.backbone, repr(self.name))

    def compute_dtype(self, precision: str) -> torch.dtype:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        return self.fast_dtype if precision == PRECISION_FAST else torch.float32

    def load(self, memory: int = 0) -> torch.device:
        """Load to the VAE device with ``memory`` bytes of room for the work (like ComfyUI's VAE)."""
        mm.load_models_gpu([self.patcher], memory_required=memory)
        return self.patcher.load_device

    def fuse(self, brackets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Named unscaled bracket latents, darkest first -> (fused latent, weights [N, B, C, h, w]),
        both on ComfyUI's intermediate device. Always float32 (the module is tiny)."""
        check_brackets(brackets, self.latent_channels)
        device = self.load()
        with torch.inference_mode():
            fused, weights = self.core.fuse([s.to(device, torch.float32) for s in brackets.values()])
        out = mm.intermediate_device()
        return fused.to(out), weights.to(out)

    def decode(self, samples: torch.Tensor, wrap_x: bool = False, tile_size: int = 0,
               precision: str = PRECISION_EXACT) -> torch.Tensor:
        """Unscaled latent [B, C, h, w] -> linear HDR [B, H, W, 3] float32 (exp of the decoder,
        never clamped) on ComfyUI's intermediate device. ``tile_size`` in image pixels (0: automatic,
        one piece when it fits the free memory, ``nodes.model.memory.run_tiled``); one ComfyUI progress
        step per image or tile, interruptible between them."""
        check_latent(samples, "latent", self.latent_channels)
        dtype = self.compute_dtype(precision)
        b, c, h, w = samples.shape
        f = self.downscale_factor

        def need(rows, cols):
            return self.core.decode_memory(rows, cols, dtype_size=mm.dtype_size(dtype))

        device = self.load(int(need(h, w)))

        def decode_all(tile):
            overlap = default_overlap(tile) if tile else 0
            tiles = tile_count(h, w, tile, overlap, wrap_x) if tile else 1
            progress = comfy.utils.ProgressBar(b * tiles)

            def on_tile():
                progress.update(1)
                mm.throw_exception_if_processing_interrupted()

            images = []
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                for i in range(b):  # one image at a time bounds the decoder's memory
                    mm.throw_exception_if_processing_interrupted()
                    hdr = self.core.decode_hdr(samples[i:i + 1].to(device), wrap_x, tile, overlap,
                                               on_tile if tile else None)  # exp() always in float32
                    images.append(hdr.to(mm.intermediate_device()))
                    if not tile:
                        progress.update(1)
            return torch.cat(images)

        return run_tiled("HDR Decode", (w * f, h * f), (h, w), tile_size, need, device, decode_all, f)

    def __repr__(self):
        return f"LEDiff HDR VAE ({self.name}, {self.backbone.label if self.backbone else 'unknown backbone'})"
