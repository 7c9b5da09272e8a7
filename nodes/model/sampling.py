"""The bracket sampling runtime behind Highlight Bracket and Shadow Bracket: LEDiff's bracket
denoisers run twice on ComfyUI's sampler.

Pass A makes the next exposure from the input latent, pass B the one after from pass A's result,
with the official seeds (seed, seed + 22). The condition latent rides in the conditioning as
``concat_latent_image``: ComfyUI concatenates it to the noisy latent (noisy first) in both CFG
branches, and at CFG 1 skips the unconditional branch (half the UNet evaluations).

A batch is sampled in chunks of ``chunk_frames``; with ``frames`` = video the batch is one shot,
whose noise and predictions follow its motion (docs/video.md).

The denoiser is SD1.5- or SDXL-family (``backbones.model_backbone``); an SDXL one takes SDXL conditioning
(pooled text and size/crop values, which ComfyUI's SDXL model turns into its ADM input). Every
output LATENT says which family made it: ``"lediff_backbone": "sd15" | "sdxl"``.

The node's sampler inputs travel as one value, ``BracketSampling``.
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.model_management as mm
import comfy.sample
import comfy.utils
import node_helpers
import torch

from ...lediff_core.color import check_image_size
from ...lediff_core.model.backbones import LEDIFF_IN_CHANNELS, Backbone, label
from ...lediff_core.model.hdr_vae import LatentError, check_latent
from ...lediff_core.model.tiling import blend_tiles, default_overlap
from ...lediff_core.video import FRAMES
from ...lediff_core.video.noise import shot_noise
from ...lediff_core.video.temporal import latent_guides, shot_motion, temporal_blend
from ..panorama.seamless import wrap_model_x
from .backbones import COMFY, model_backbone
from .memory import run_tiled
from .runtime import encoded_backbone

SEED_OFFSET_PASS_B = 22  # the official release's second-pass seed
DEFAULT_CHUNK = 8  # frames per sampler call: a batch of 8 512x512 latents (16 with CFG) fits 8 GB
BACKBONE_KEY = "lediff_backbone"  # in every bracket LATENT: the name of the family of the denoiser that made it


@dataclass(frozen=True)
class BracketSampling:
    """How a bracket node samples: its sampler inputs as one value (checked when made).

    ``seed``: pass A's noise seed; pass B uses seed + ``SEED_OFFSET_PASS_B``. ``steps``, ``cfg``,
    ``sampler_name``, ``scheduler``: ComfyUI's sampler settings, the same for both passes.
    ``tile_size`` (pixels, 0 = automatic: one piece when ComfyUI's estimate of the UNet's memory
    fits the free memory, else tiles; ``memory.run_tiled``): latents larger than this are denoised
    in overlapping tiles.
    ``wrap_x``: the latent is a 360-degree panorama; tiles narrower than the latent continue across
    the left/right edge, and otherwise (untiled, or tiles as wide as the latent) the UNet's
    convolutions wrap, exactly as with the Seamless Panorama node.
    ``frames``: ``independent`` (every batch item on its own) or ``video`` (the batch is the
    frames of one shot: noise warped along the input's motion, predictions blended along it).
    ``chunk_frames``: at most this many frames go through the sampler at once (memory); a video
    chunk continues from the last finished frame of the chunk before it."""

    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    tile_size: int = 0
    wrap_x: bool = False
    frames: str = "independent"
    chunk_frames: int = DEFAULT_CHUNK

    def __post_init__(self):
        if self.frames not in FRAMES:
            raise ValueError(f"frames must be one of {FRAMES}, got {self.frames!r}")
        if int(self.chunk_frames) < 1:
            raise ValueError(f"chunk_frames must be at least 1, got {self.chunk_frames}")


def _check_denoiser(model) -> None:
    channels = model.model.diffusion_model.in_channels if hasattr(model.model, "diffusion_model") else None
    if channels != LEDIFF_IN_CHANNELS:
        raise ValueError(
            f"this MODEL's UNet takes {channels} input channels; a bracket needs an 8-channel LEDiff "
            "denoiser: load one with 'Load Bracket Denoiser' (an ordinary SD checkpoint won't do)"
        )


def _width_source(width: int) -> str:
    known = {768: " (SD1.5's CLIP-L)", 1024: " (SD2's CLIP-H)", 2048: " (an SDXL checkpoint's CLIP)"}
    return known.get(width, "")


def _check_conditioning(model, family: Backbone, positive, negative) -> None:
    """The text embeddings' width (and for SDXL the pooled output's) against what this denoiser
    takes: ComfyUI would otherwise fail deep inside the UNet with a bare shape error."""
    unet_config = model.model.model_config.unet_config
    context_dim = unet_config.get("context_dim")
    name, fix = family.label, COMFY[family].conditioning_fix
    for which, conditioning in (("positive", positive), ("negative", negative)):
        for cond, extra in conditioning:
            if not torch.is_tensor(cond):
                continue
            width = cond.shape[-1]
            if context_dim is not None and width != context_dim:
                raise ValueError(
                    f"{which} conditioning has text embeddings {width} wide{_width_source(width)}; this {name} "
                    f"bracket denoiser takes {context_dim}{_width_source(context_dim)}: {fix}"
                )
            if not family.time_ids or "unclip_conditioning" in extra:
                continue
            want = unet_config["adm_in_channels"] - family.time_ids * family.time_embed_dim
            pooled = extra.get("pooled_output")
            if pooled is None:
                raise ValueError(
                    f"{which} conditioning has no pooled_output; this SDXL bracket denoiser needs the pooled "
                    f"text embedding ({want} wide) as well: {fix}"
                )
            if pooled.shape[-1] != want:
                raise ValueError(
                    f"{which} conditioning's pooled_output is {pooled.shape[-1]} wide; this SDXL bracket denoiser "
                    f"takes {want} (its ADM input {unet_config['adm_in_channels']} = pooled + "
                    f"{family.time_ids} x {family.time_embed_dim}): {fix}"
                )


def _check_input_latent(model, family: Backbone, latent: dict) -> None:
    samples = latent["samples"]
    channels = model.model.latent_format.latent_channels
    name = family.label
    if samples.ndim == 4 and samples.shape[1] != channels:
        raise LatentError(
            f"latent has {samples.shape[1]} channels; this {name} bracket denoiser works on {name} latents with "
            f"{channels} (SD3/Flux/SDXL-refiner latents cannot be used: encode the image with the HDR VAE's vae "
            "output instead)"
        )
    made_by = latent.get(BACKBONE_KEY)
    if made_by is not None and made_by != family.name:
        raise LatentError(
            f"this latent was made by an {label(made_by)} LEDiff bracket node ({BACKBONE_KEY} "
            f"{made_by!r}); this bracket denoiser is {name}: use {label(made_by)} denoisers for "
            f"all brackets of one image, or start from a {name} latent"
        )
    encoded_by = encoded_backbone(samples)
    if encoded_by is not None and encoded_by != family.name:
        other = label(encoded_by)
        raise LatentError(
            f"latent space mismatch: the latent was encoded by the vae of an {other} HDR VAE (Load HDR VAE), "
            f"but this bracket denoiser is {name}. Encode with the vae of the {name} LEDiff model's Load HDR "
            f"VAE, or load {other} bracket denoisers (the fusion would refuse these brackets after all the "
            "sampling)"
        )
    check_latent(samples, "latent", channels)


def _bracket_pass(model, positive, negative, condition, noise, seed, sampling: BracketSampling, on_step):
    """One pass: sample a new latent conditioned on ``condition`` (unscaled) from ``noise`` with
    ``seed`` and ``sampling``'s sampler settings; returns unscaled."""
    # LEDiff's condition is the *scaled* latent, and ComfyUI passes SD1.5 InstructPix2Pix
    # conditions through unscaled: scale it here
    scaled = model.model.latent_format.process_in(condition)
    pos = node_helpers.conditioning_set_values(positive, {"concat_latent_image": scaled})
    neg = node_helpers.conditioning_set_values(negative, {"concat_latent_image": scaled})
    empty = torch.zeros_like(condition)
    return comfy.sample.sample(model, noise, sampling.steps, sampling.cfg, sampling.sampler_name, sampling.scheduler,
                               pos, neg, empty, denoise=1.0, callback=on_step, disable_pbar=True, seed=seed)


class _Shot:
    """The motion of a batch of frames (``frames`` = video) at latent resolution, measured on the
    motion frames or else on the latent's RGB preview: noise that follows it, and the temporal
    blending of each chunk (lediff_core.video)."""

    def __init__(self, model, samples: torch.Tensor, motion: torch.Tensor | None):
        fmt = model.model.latent_format
        self.process_in = fmt.process_in
        if motion is not None:
            if motion.ndim != 4 or motion.shape[0] != samples.shape[0]:
                raise ValueError(f"motion has {motion.shape[0] if motion.ndim == 4 else 'no'} frames, the latent "
                                 f"{samples.shape[0]}: give the frames the latent was encoded from")
            guides = motion[..., :3].float().cpu().clamp(0, 1)
            what = "frames = video: the motion frames"
        elif fmt.latent_rgb_factors is None:
            raise ValueError("frames = video without motion frames needs the latent format's RGB preview factors "
                             f"to find the motion; {type(fmt).__name__} has none: connect motion")
        else:
            guides = latent_guides(fmt.process_in(samples.float().cpu()), fmt.latent_rgb_factors,
                                   fmt.latent_rgb_factors_bias)
            h, w = samples.shape[-2:]
            what = (f"frames = video without motion frames: the latent's RGB preview (the {w}x{h} latent "
                    f"enlarged {guides.shape[2] // max(w, 1)}x; connect motion)")
        self.flows, self.visible = shot_motion(guides, tuple(samples.shape[-2:]), what)

    def noise(self, first: torch.Tensor, seed: int) -> torch.Tensor:
        """Noise of the whole shot: ``first`` for frame 0, warped on along the motion."""
        return shot_noise(first, self.flows, self.visible > 0.999, seed).to(first.dtype)

    def chunk_model(self, model, start: int, end: int, anchor: torch.Tensor | None):
        """A clone of ``model`` blending the predictions of frames start..end-1 along the motion,
        continuing from ``anchor`` (the unscaled finished latent of frame start-1) if given."""
        first = start - 1 if anchor is not None else start
        flows, visible = self.flows[first : end - 1], self.visible[first : end - 1]
        scaled = None if anchor is None else self.process_in(anchor)

        def blend(args):
            denoised = args["denoised"]
            prev = None if scaled is None else scaled.to(denoised.device, denoised.dtype)
            return temporal_blend(denoised, flows, visible, prev)

        clone = model.clone()
        clone.set_model_sampler_post_cfg_function(blend)
        return clone


def tiled_model(model, tile: int, wrap_x: bool):
    """A clone of ``model`` whose UNet runs on overlapping ``tile`` x ``tile`` latent tiles (a quarter
    tile of overlap) and blends the predictions at every step, so large latents need only a tile's
    worth of UNet memory. With ``wrap_x`` the tiles continue across the left/right edge."""

    def wrapper(apply_model, args):
        x, t, c = args["input"], args["timestep"], args["c"]
        concat = c.get("c_concat")

        def produce(y0, y1, cols):
            cols = cols.to(x.device)
            sub = dict(c)
            if concat is not None:  # the condition latent is tiled exactly like the noisy one
                sub["c_concat"] = concat[:, :, y0:y1].index_select(3, cols)
            return apply_model(x[:, :, y0:y1].index_select(3, cols), t, **sub)

        return blend_tiles(produce, x.shape[-2], x.shape[-1], tile, default_overlap(tile), 1, wrap_x).to(x.dtype)

    clone = model.clone()
    clone.set_model_unet_function_wrapper(wrapper)
    return clone


def _check_inputs(model, family: Backbone, positive, negative, latent: dict, motion) -> None:
    """Everything a bracket checks before sampling, for a denoiser of ``family``."""
    _check_input_latent(model, family, latent)
    if motion is not None:
        check_image_size(motion, "motion")
    _check_conditioning(model, family, positive, negative)
    return family


def _pass_noises(samples: torch.Tensor, seed: int, batch_index, shot: _Shot | None) -> list[torch.Tensor]:
    """The initial noise of pass A (``seed``) and pass B (seed + ``SEED_OFFSET_PASS_B``), as ComfyUI's
    KSampler makes it; in a shot, frame 0's noise warped on along the motion."""
    empty = torch.zeros_like(samples)
    noises = []
    for pass_seed in (seed, seed + SEED_OFFSET_PASS_B):
        noise = comfy.sample.prepare_noise(empty, pass_seed, batch_index)
        noises.append(noise if shot is None else shot.noise(noise[0], pass_seed))
    return noises


def run_brackets(model, positive, negative, latent, sampling: BracketSampling, motion=None, name="Bracket"):
    """(input, pass A, pass B) LATENT dicts sampled with ``sampling``; the input dict's other keys
    are kept on all three, and all three carry ``BACKBONE_KEY`` (the denoiser's family,
    ``backbones.model_backbone``).

    ``motion``: the frames the latent was made from (IMAGE, 0..1; ``frames`` = video): the motion
    is measured on them; without them, on the latent's RGB preview (coarser). ``name``: the node,
    for messages."""
    _check_denoiser(model)
    family = model_backbone(model)
    _check_inputs(model, family, positive, negative, latent, motion)
    seed, wrap_x, chunk_frames = sampling.seed, sampling.wrap_x, sampling.chunk_frames
    samples = latent["samples"]
    scale = model.model.latent_format.spacial_downscale_ratio
    h, w = samples.shape[-2:]

    def with_tiles(tile):
        """The denoiser in ``tile`` latent pixels (0: one piece), wrapping for a panorama."""
        tiled = model
        if wrap_x and not (tile and w > tile):
            tiled = wrap_model_x(tiled)
        return tiled_model(tiled, tile, wrap_x) if tile else tiled

    count, batch_index = samples.shape[0], latent.get("batch_index")
    shot = _Shot(model, samples, motion) if sampling.frames == "video" and count > 1 else None
    per_call = min(count, int(chunk_frames)) * (1 if sampling.cfg == 1.0 else 2)  # latents per UNet call

    def need(rows, cols):
        return model.model.memory_required([per_call, samples.shape[1], rows, cols])

    # one piece when it fits the free memory, else tiles; a pass that still runs out of memory is
    # run again in smaller tiles, which the later passes keep
    tiling = {"size": int(sampling.tile_size)}
    noises = _pass_noises(samples, seed, batch_index, shot)
    progress = comfy.utils.ProgressBar(2 * count * sampling.steps)  # frames x passes x steps, one bar for all
    out, anchors = ([], []), [None, None]
    for start in range(0, count, int(chunk_frames)):
        end = min(start + int(chunk_frames), count)
        condition = samples[start:end]
        for p in range(2):
            done = 2 * start + p * (end - start)  # frame-passes finished before this one

            def on_step(step, x0, x, total, done=done, n=end - start):
                # the sampler's own step count: ComfyUI's ddim_uniform visits one more step than
                # asked when the count does not divide 1000
                progress.update_absolute(done * total + (step + 1) * n, 2 * count * total)

            def run(tile, condition=condition, p=p, start=start, end=end, on_step=on_step):
                if tile:
                    tiling["size"] = tile * scale
                pass_model = with_tiles(tile)
                chunk_model = pass_model if shot is None else shot.chunk_model(pass_model, start, end, anchors[p])
                return _bracket_pass(chunk_model, positive, negative, condition, noises[p][start:end],
                                     seed + p * SEED_OFFSET_PASS_B, sampling, on_step)

            condition = run_tiled(name, (w * scale, h * scale), (h, w),
                                  tiling["size"], need, model.load_device, run, scale)
            out[p].append(condition.to(mm.intermediate_device()))
            anchors[p] = condition[-1:]
            mm.throw_exception_if_processing_interrupted()
    keep = {k: v for k, v in latent.items() if k not in ("samples", "noise_mask")}
    keep[BACKBONE_KEY] = family.name
    a, b = (torch.cat(chunks) for chunks in out)
    return {**latent, BACKBONE_KEY: family.name}, {**keep, "samples": a}, {**keep, "samples": b}
