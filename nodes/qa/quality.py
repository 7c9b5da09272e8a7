"""Look at and measure HDR: Exposure Strip, HDR Stats, HDR Metrics (category LEDiff/qa)."""

from __future__ import annotations

import logging

import comfy.model_management as mm
import numpy as np
import torch
from comfy_api.latest import io

from ...lediff_core.color import check_finite, check_image_size, nonfinite_warning
from ...lediff_core.qa.exposure import ev_steps, exposure_strip
from ...lediff_core.qa.metrics import (
    HIGHLIGHT_THRESHOLD,
    METRICS,
    NO_REFERENCE,
    REGION_DILATION,
    SCALINGS,
    SHADOW_THRESHOLD,
    compute_metric_regions,
    piqe_scale,
)
from ...lediff_core.qa.stats import image_stats
from ...lediff_core.video.consistency import clip_warping_error
from ..io.savers import preview_images, workflow_metadata

log = logging.getLogger("lediff")

CLIP_TOOLTIP = "An LDR pixel counts as clipped when any channel is at or above this (display-encoded 0..1) value."


def _to_image(arrays) -> torch.Tensor:
    """List of HxWx3 (or HxW) arrays/tensors of one size -> IMAGE batch on ComfyUI's device."""
    out = []
    for a in arrays:
        t = torch.as_tensor(np.asarray(a, dtype=np.float32))
        out.append(t[..., None].expand(-1, -1, 3) if t.ndim == 2 else t)
    return torch.stack(out).to(mm.intermediate_device(), mm.intermediate_dtype())


def _pick(batch: torch.Tensor | None, i: int) -> torch.Tensor | None:
    """Item i of a batch; a batch of one pairs with every item."""
    return None if batch is None else batch[min(i, batch.shape[0] - 1)]


def _preview(cls, label: str, images: torch.Tensor) -> list:
    """The node's picture shown on it, with the workflow in the PNG as core's previews carry it; one
    that cannot be written (a full temp folder) is a warning, and the node still returns its outputs
    (``savers.preview_images``)."""
    metadata = workflow_metadata(cls.hidden.prompt, cls.hidden.extra_pnginfo)
    return preview_images(label, lambda: images, metadata=metadata, compress_level=1)


def _check_batches(a: torch.Tensor, b: torch.Tensor | None, names: str) -> None:
    """Both inputs big enough (``a`` required, ``b`` optional), and their batches pair up."""
    first, second = names.split(" and ")
    check_image_size(a, first)
    if b is not None:
        check_image_size(b, second)
    if b is not None and b.shape[0] not in (1, a.shape[0]):
        raise ValueError(f"{names}: batch sizes {a.shape[0]} and {b.shape[0]} do not pair up: give batches "
                         "of the same size, or a single image for the second input")


class ExposureStrip(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffExposureStrip",
            display_name="Exposure Strip",
            category="LEDiff/qa",
            description="A labelled contact sheet of a linear HDR image at several exposures, each panel as a "
            "camera would show it (x 2^EV, clipped at SDR white, sRGB); optionally outlines the clipped pixels "
            "of the LDR input so the recovered highlights stand out.",
            is_output_node=True,
            inputs=[
                io.Image.Input("image", tooltip="Linear HDR image (1.0 = SDR white), e.g. from HDR Decode."),
                io.Float.Input("ev_min", default=-4.0, min=-32.0, max=32.0, step=0.5,
                               tooltip="Exposure of the first (darkest) panel, in stops."),
                io.Float.Input("ev_max", default=4.0, min=-32.0, max=32.0, step=0.5,
                               tooltip="Exposure of the last panel, in stops (included when the steps reach it)."),
                io.Float.Input("ev_step", default=2.0, min=0.25, max=16.0, step=0.25,
                               tooltip="Stops between neighbouring panels."),
                io.Int.Input("panel_width", default=512, min=0, max=8192, step=8,
                             tooltip="Width of each panel in pixels (the image is scaled, averaging linear "
                             "light); 0 keeps the image's width."),
                io.Image.Input("ldr", optional=True,
                               tooltip="Optional LDR input (display-encoded, e.g. from Load Image): its clipped "
                               "pixels are outlined in magenta on every panel."),
                io.Float.Input("clip_threshold", default=0.99, min=0.5, max=1.0, step=0.005, optional=True,
                               tooltip=CLIP_TOOLTIP),
            ],
            outputs=[io.Image.Output("strip", tooltip="The contact sheet (one per batch item), display-encoded "
                                     "0..1.")],
        )

    @classmethod
    def execute(cls, image, ev_min, ev_max, ev_step, panel_width, ldr=None, clip_threshold=0.99) -> io.NodeOutput:
        evs = ev_steps(ev_min, ev_max, ev_step)
        _check_batches(image, ldr, "image and ldr")
        if note := nonfinite_warning(image):
            log.warning("Exposure Strip: %s", note)
        sheets = [exposure_strip(image[i], evs, _pick(ldr, i), clip_threshold, panel_width)
                  for i in range(image.shape[0])]
        strip = _to_image(sheets)
        return io.NodeOutput(strip, ui={"images": _preview(cls, "Exposure Strip", strip)})


class HDRStats(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffHDRStats",
            display_name="HDR Stats",
            category="LEDiff/qa",
            description="Dynamic range of a linear HDR image in stops (1st-99th percentile and peak/floor), the "
            "share of pixels above SDR white, and a histogram of log2 luminance as a plot; with an LDR input, "
            "the same for it and a before/after summary. For a batch of video frames, also the warping error "
            "(temporal flicker, Lai et al. 2018) overall and in the clipped regions.",
            is_output_node=True,
            inputs=[
                io.Image.Input("image", tooltip="Linear HDR image (1.0 = SDR white)."),
                io.Image.Input("ldr", optional=True,
                               tooltip="Optional LDR to compare with (display-encoded sRGB, e.g. the photo "
                               "given to LEDiff); it is linearised with the sRGB curve."),
                io.Float.Input("clip_threshold", default=0.99, min=0.5, max=1.0, step=0.005, optional=True,
                               tooltip=CLIP_TOOLTIP),
            ],
            outputs=[
                io.Image.Output("histogram", tooltip="Histogram of log2 luminance (0 = SDR white), HDR in orange, "
                                "LDR in blue; dashed lines at the 1st/99th percentiles."),
                io.String.Output("summary", tooltip="One line per image, e.g. 'LDR: 7.9 stops, 4.1 % clipped -> "
                                 "HDR: 14.2 stops, 3.0 % above SDR white'."),
                io.Float.Output("stops", tooltip="Dynamic range of the (first) HDR image: log2(P99/P1) of "
                                "luminance."),
                io.Float.Output("peak_floor_stops", tooltip="log2(peak / smallest positive luminance) of the "
                                "(first) HDR image."),
                io.Float.Output("above_white_percent", tooltip="Percent of pixels of the (first) HDR image with a "
                                "channel above 1.0 (SDR white)."),
                io.Float.Output("warping_error", tooltip="For a batch of consecutive frames: the warping error of "
                                "the HDR frames in stops^2 (mean squared log2-luminance change between each frame "
                                "and the previous one warped along the optical flow of the LDR frames, or of the "
                                "HDR when no LDR batch is given; occluded pixels left out). 0 for a single image."),
                io.Float.Output("warping_error_clipped", tooltip="The same within the clipped pixels of each frame "
                                "(LDR at or above clip_threshold; without an LDR batch, HDR above SDR white): "
                                "the flicker of the recovered highlights. 0 when there are none."),
            ],
        )

    @classmethod
    def execute(cls, image, ldr=None, clip_threshold=0.99) -> io.NodeOutput:
        _check_batches(image, ldr, "image and ldr")
        for name, pixels in (("image", image), ("ldr", ldr)):
            if pixels is not None:
                check_finite(pixels, name, "statistics of them would mean nothing")
        per_image = [image_stats(image[i], _pick(ldr, i), clip_threshold) for i in range(image.shape[0])]
        first = per_image[0][0]
        lines = [line if image.shape[0] == 1 else f"[{i}] {line}" for i, (_, _, line) in enumerate(per_image)]
        temporal = 0.0, 0.0
        if image.shape[0] > 1:
            line, temporal = clip_warping_error(image, ldr, clip_threshold)
            lines.append(line)
        summary = "\n".join(lines)
        hist = _to_image([plot for _, plot, _ in per_image])
        shown = {"images": _preview(cls, "HDR Stats", hist), "text": (summary,)}
        return io.NodeOutput(hist, summary, first.robust_stops, first.peak_floor_stops, 100.0 * first.above_white,
                             *temporal, ui=shown)


REGION_TOOLTIP = (f"the pixels of the LDR photo with a channel at or above {HIGHLIGHT_THRESHOLD} (clipped)"
                  f", grown by {REGION_DILATION} pixels")


class HDRMetrics(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffHDRMetrics",
            display_name="HDR Metrics",
            category="LEDiff/qa",
            description="HDR quality of a linear HDR test image against a linear HDR reference: PU21-PSNR, "
            "PU21-SSIM, HDR-FLIP (flip-evaluator), ColorVideoVDP (cvvdp) or FovVideoVDP (pyfvvdp), over the whole "
            "image and, given the LDR photo, over its clipped highlights and crushed shadows; or PU21-PIQE of the "
            "test alone (no reference, pypiqe).",
            is_output_node=True,
            inputs=[
                io.Image.Input("test", tooltip="Linear HDR image to score (e.g. LEDiff's output)."),
                io.Image.Input("reference", tooltip="Linear HDR reference of the same size (e.g. from Load EXR)."),
                io.Combo.Input("metric", options=list(METRICS), default="pu21_psnr",
                               tooltip="pu21_psnr (dB, higher is better), pu21_ssim (higher is better), hdr_flip "
                               "(lower is better), cvvdp and fvvdp (JOD, higher is better), pu21_piqe (no "
                               "reference, lower is better); cvvdp, fvvdp and pu21_piqe need "
                               "requirements-metrics.txt."),
                io.Combo.Input("scaling", options=list(SCALINGS), default="align",
                               tooltip="align: scale the test to the reference (median log-luminance ratio), then "
                               "map the reference's 99.9th percentile to 1000 cd/m^2; absolute: both are "
                               "already in cd/m^2; crf: align, then the SI-HDR CRF correction (a cubic of PQ "
                               "luminance and a regularised one of chroma fitted to the reference), recommended "
                               "for comparing single-image HDR methods. pu21_piqe ignores it."),
                io.Image.Input("ldr", optional=True,
                               tooltip="Optional: the LDR photo the method was given (display-encoded, e.g. from "
                               f"Load Image). Adds the scores over its highlights ({REGION_TOOLTIP}) and shadows "
                               f"(every channel at or below {SHADOW_THRESHOLD}, grown the same)."),
            ],
            outputs=[
                io.Float.Output("score", tooltip="The metric's score over the whole image (the mean over pairs for "
                                "a batch)."),
                io.Image.Output("map", tooltip="Per-pixel difference/visibility map (0 = no difference), grey."),
                io.String.Output("line", tooltip="One line per pair and region for a log: metric, score, scaling "
                                 "used."),
                io.Float.Output("highlights", tooltip="The score over the highlights of the ldr photo (NaN without "
                                "ldr, for pu21_piqe, or when no pixel is clipped)."),
                io.Float.Output("shadows", tooltip="The score over the shadows of the ldr photo (NaN without ldr, "
                                "for pu21_piqe, or when no pixel is crushed)."),
            ],
        )

    @classmethod
    def execute(cls, test, reference, metric, scaling, ldr=None) -> io.NodeOutput:
        _check_batches(test, reference, "test and reference")
        if ldr is not None:
            _check_batches(test, ldr, "test and ldr")
        device = mm.get_torch_device()
        tests = [test[i, ..., :3].float().cpu().numpy() for i in range(test.shape[0])]
        # PU21-PIQE scales a set by the mean of its 99.9th percentiles: the batch is the set
        factor = piqe_scale(tests) if metric in NO_REFERENCE else None
        regions = ("image", "highlights", "shadows") if ldr is not None else ("image",)
        results = [
            compute_metric_regions(t, _pick(reference, i)[..., :3].float().cpu().numpy(), metric,
                                   None if ldr is None else _pick(ldr, i)[..., :3].float().cpu().numpy(),
                                   scaling, device=device, regions=regions, piqe_factor=factor)
            for i, t in enumerate(tests)
        ]

        def mean(region):
            values = [r[region].score for r in results if region in r]
            return float(np.mean(values)) if values else float("nan")

        maps = [r["image"].map if r["image"].map is not None else np.zeros(test.shape[1:3], np.float32)
                for r in results]
        lines = [r[k].line if len(results) == 1 else f"[{i}] {r[k].line}" for i, r in enumerate(results) for k in r]
        line = "\n".join(lines)
        return io.NodeOutput(mean("image"), _to_image(maps), line, mean("highlights"), mean("shadows"),
                             ui={"text": (line,)})


NODES = [ExposureStrip, HDRStats, HDRMetrics]
