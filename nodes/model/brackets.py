"""Highlight Bracket and Shadow Bracket: the schemas of LEDiff's two bracket nodes. Their inputs
become a ``sampling.BracketSampling``; the two passes on ComfyUI's sampler are
``sampling.run_brackets``."""

from __future__ import annotations

import comfy.samplers
from comfy_api.latest import io

from ...lediff_core.video import FRAMES
from .sampling import DEFAULT_CHUNK, BracketSampling, run_brackets


def _inputs(direction: str):
    return [
        io.Model.Input("model", tooltip=f"The LEDiff {direction} denoiser (Load Bracket Denoiser)."),
        io.Conditioning.Input("positive", tooltip="Prompt describing the scene (any text works; LEDiff "
                              "is prompt-agnostic at CFG 1)."),
        io.Conditioning.Input("negative", tooltip="Negative prompt (unused at CFG 1)."),
        io.Latent.Input("latent", tooltip="The input exposure: a latent from any node (KSampler, VAE "
                        "Encode of a photo...)."),
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                     tooltip="Noise seed of pass A; pass B uses seed + 22 (the official seeds)."),
        io.Int.Input("steps", default=50, min=1, max=10000, tooltip="Sampling steps per pass."),
        io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                       tooltip="Classifier-free guidance. 1 = prompt-free and twice as fast."),
        io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="ddim",
                       tooltip="Sampler (ddim + ddim_uniform reproduce the official DDIM loop)."),
        io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="ddim_uniform",
                       tooltip="Noise schedule."),
        io.Int.Input("tile_size", default=0, min=0, max=16384, step=64, optional=True,
                     tooltip="0: automatic (one piece when it fits the free memory, else the largest tiles "
                     "that fit; smaller tiles if it still runs out of memory; the log says when it tiles). "
                     "Otherwise latents larger than this many pixels are denoised in overlapping tiles "
                     "(predictions blended every step), bounding the UNet's memory on small GPUs."),
        io.Boolean.Input("wrap_x", default=False, optional=True,
                         tooltip="The latent is a 360-degree panorama: the bracket stays seamless across "
                         "the left/right edge (the UNet wraps horizontally; with tiles, they continue "
                         "across the edge). No need for Seamless Panorama on the model as well."),
        io.Combo.Input("frames", options=list(FRAMES), default="independent", optional=True,
                       tooltip="independent: every latent of the batch on its own. video: the batch is "
                       "consecutive frames of one shot: the noise follows the input's motion and each "
                       "frame's prediction is blended with the previous frame's along it, so hallucinated "
                       "highlights move with the picture instead of flickering. Use a deterministic "
                       "sampler (ddim, euler)."),
        io.Int.Input("chunk_frames", default=DEFAULT_CHUNK, min=1, max=4096, optional=True,
                     tooltip="At most this many frames are sampled at once: lower it if a long clip runs "
                     "out of memory (a video chunk continues from the last frame of the one before)."),
        io.Image.Input("motion", optional=True,
                       tooltip="frames = video: the frames the latent was encoded from (e.g. Get Video "
                       "Components' images). The motion is measured on them at full resolution; without "
                       "them, on the latent's RGB preview, which is coarser."),
    ]


class _Bracket(io.ComfyNode):
    """Both bracket nodes: the same inputs and passes; they differ in which way the exposures go,
    so in which output slot (darkest first) the input and the two passes land."""

    NODE_ID = DISPLAY_NAME = DIRECTION = DESCRIPTION = ""
    OUTPUT_TOOLTIPS: tuple[str, str, str] = ("", "", "")

    @classmethod
    def define_schema(cls):
        dark, mid, bright = cls.OUTPUT_TOOLTIPS
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category="LEDiff/brackets",
            description=cls.DESCRIPTION,
            inputs=_inputs(cls.DIRECTION),
            outputs=[io.Latent.Output("dark", tooltip=dark), io.Latent.Output("mid", tooltip=mid),
                     io.Latent.Output("bright", tooltip=bright)],
        )

    @classmethod
    def order(cls, given, a, b):
        raise NotImplementedError

    @classmethod
    def execute(cls, model, positive, negative, latent, seed, steps, cfg, sampler_name, scheduler,
                tile_size=0, wrap_x=False, frames="independent", chunk_frames=DEFAULT_CHUNK,
                motion=None) -> io.NodeOutput:
        sampling = BracketSampling(seed, steps, cfg, sampler_name, scheduler, tile_size, wrap_x, frames, chunk_frames)
        given, a, b = run_brackets(model, positive, negative, latent, sampling, motion, cls.DISPLAY_NAME)
        return io.NodeOutput(*cls.order(given, a, b))


class HighlightBracket(_Bracket):
    NODE_ID, DISPLAY_NAME, DIRECTION = "LEDiffHighlightBracket", "Highlight Bracket", "Highlight"
    DESCRIPTION = "Hallucinates two darker exposures of a latent, recovering clipped highlights."
    OUTPUT_TOOLTIPS = ("Pass B: the darkest exposure.", "Pass A: one step darker than the input.",
                       "The input latent, unchanged.")

    @classmethod
    def order(cls, given, a, b):
        return b, a, given


class ShadowBracket(_Bracket):
    NODE_ID, DISPLAY_NAME, DIRECTION = "LEDiffShadowBracket", "Shadow Bracket", "Shadow"
    DESCRIPTION = "Hallucinates two brighter exposures of a latent, recovering crushed shadows."
    OUTPUT_TOOLTIPS = ("The input latent, unchanged.", "Pass A: one step brighter than the input.",
                       "Pass B: the brightest exposure.")

    @classmethod
    def order(cls, given, a, b):
        return given, a, b


NODES = [HighlightBracket, ShadowBracket]
