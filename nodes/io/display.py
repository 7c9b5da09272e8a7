"""Save HDR Image: linear HDR as Ultra HDR JPEG, AVIF (PQ/HLG) or JPEG XL, for HDR screens, or as
a master (16-bit PQ/HLG PNG, TIFF, Radiance .hdr) for other tools."""

from __future__ import annotations

import logging

from comfy_api.latest import io

from ...lediff_core.io.display import FORMAT_NAMES, FORMATS, FormatError, Settings, check_settings
from ...lediff_core.io.display.metadata import APP1_MAX, comfy_exif
from ...lediff_core.io.display.ultrahdr import MAX_HEADROOM_STOPS
from .savers import check_images, save_numbered, tone_mapped_preview, workflow_metadata

log = logging.getLogger("lediff")

# Every current browser engine shows these itself; JPEG XL (not decoded by Firefox, for one)
# gets a tone-mapped preview beside it.
BROWSER_FORMATS = ("ultrahdr", "avif_pq", "avif_hlg", "png_pq", "png_hlg")


class SaveHDRImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffSaveHDRImage",
            display_name="Save HDR Image",
            category="LEDiff/image",
            description="Saves linear HDR as a display format that phones, browsers and viewers "
            "show as HDR: Ultra HDR JPEG (gain map), AVIF PQ/HLG or JPEG XL; or as a master for other "
            "tools: 16-bit PQ or HLG PNG, TIFF, Radiance .hdr.",
            inputs=[
                io.Image.Input("images", tooltip="Linear HDR images in the working space (linear "
                               "Rec.709), as HDR Decode or Blend with LDR give them."),
                io.String.Input(
                    "filename_prefix", default="LEDiff/hdr",
                    tooltip="Prefix of the file names, relative to the output folder; may contain "
                    "subfolders and tokens such as %date:yyyy-MM-dd%.",
                ),
                io.Combo.Input(
                    "format", options=list(FORMAT_NAMES), default="ultrahdr",
                    tooltip="ultrahdr: JPEG + gain map (.jpg), SDR on any screen, HDR on phones and "
                    "Chrome. avif_pq / avif_hlg: 10-bit BT.2020 AVIF with the PQ or HLG curve. "
                    "jxl_linear: float JPEG XL, linear Rec.709, no peak. png_pq / png_hlg: 16-bit PNG, "
                    "BT.2020 PQ (cICP, mDCV, cLLI) or HLG (cICP). tiff_half / tiff_float: float TIFF, "
                    "linear Rec.709. tiff_16bit: 16-bit sRGB TIFF (SDR print master, clipped at reference "
                    "white). radiance_hdr: Radiance RGBE (.hdr), linear Rec.709, for IBL/HDRI tools (no "
                    "workflow in the file).",
                ),
                io.Float.Input(
                    "reference_white", default=1.0, min=1e-6, max=1e6, step=0.01,
                    tooltip="The linear value that is diffuse (SDR) white. It lands on BT.2408's "
                    "reference white: 203 cd/m2 for PQ, 75 % signal for HLG, the SDR white of the "
                    "Ultra HDR base image, 1.0 in JPEG XL.",
                ),
                io.Int.Input(
                    "quality", default=90, min=1, max=100,
                    tooltip="Encoder quality, 1..100 (JPEG quality for ultrahdr, libavif/libjxl "
                    "quality otherwise).",
                ),
                io.Float.Input(
                    "headroom_stops", default=3.0, min=0.1, max=round(MAX_HEADROOM_STOPS, 2),
                    step=0.1,
                    tooltip="ultrahdr only: display headroom (stops above SDR white) from which "
                    "the full HDR rendition is shown; smaller screens get a blend. Pixels above "
                    f"{2 ** MAX_HEADROOM_STOPS:.0f}x reference white are clipped by libultrahdr.",
                ),
                io.Float.Input(
                    "mastering_peak", default=1000.0, min=100.0, max=10000.0, step=10.0,
                    tooltip="avif_pq and png_pq only: peak luminance in cd/m2; brighter values are clipped "
                    "to it (1000 suits most HDR displays; 10000 keeps everything PQ can hold).",
                ),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, filename_prefix, format, reference_white, quality, headroom_stops,
                mastering_peak) -> io.NodeOutput:
        if format not in FORMATS:
            raise ValueError(f"Save HDR Image: unknown format {format!r}; choose one of {FORMAT_NAMES}")
        fmt = FORMATS[format]
        check_images("Save HDR Image", images, min_size=fmt.min_size,
                     min_size_reason=f" for {format} ({fmt.min_size_reason})" if fmt.min_size > 1 else "")
        settings = Settings(reference_white=reference_white, quality=quality,
                            headroom_stops=headroom_stops, mastering_peak=mastering_peak)
        try:  # before the output folder (the prefix's subfolders) is created
            check_settings(settings, fmt)
            if fmt.check_size is not None:  # a size the file cannot hold, before any pixel is converted
                fmt.check_size(images.shape[2], images.shape[1])
        except FormatError as e:
            raise FormatError(f"Save HDR Image ({format}): {e}") from None
        rgb = images[..., :3].float().cpu()
        exif = _exif(fmt.extension, *workflow_metadata(cls.hidden.prompt, cls.hidden.extra_pnginfo))
        if exif is not None and not fmt.workflow:
            log.info("Save HDR Image: %s files carry no workflow; save a PNG, AVIF or EXR alongside to keep it",
                     format)

        def write(i, path):
            encoded = fmt.encode(rgb[i].numpy(), settings, exif)
            with open(path, "wb") as f:
                f.write(encoded.data)
            return encoded

        saved = save_numbered("Save HDR Image", filename_prefix, rgb.shape[0], images.shape[2],
                              images.shape[1], fmt.extension, write)
        for result, encoded in saved:
            log.info("Save HDR Image: %s, %d pixel(s) above the peak of %s%s", result.filename,
                     encoded.over_peak, encoded.peak, " (clipped)" if encoded.over_peak else "")
        results = [r for r, _ in saved]
        if format not in BROWSER_FORMATS:
            results += tone_mapped_preview("Save HDR Image", rgb, results)
        return io.NodeOutput(ui={"images": results})


def _exif(extension: str, prompt, info: dict) -> bytes | None:
    """The workflow's Exif block. A JPEG has room for one APP1 segment (64 KB): when the workflow
    does not fit, only the prompt is kept, and when that does not fit either, nothing."""
    exif = comfy_exif(prompt, info)
    if exif is None or extension != ".jpg" or len(exif) + 6 <= APP1_MAX:
        return exif
    exif = comfy_exif(prompt, {})
    if exif is not None and len(exif) + 6 <= APP1_MAX:
        log.warning("Save HDR Image: the workflow is too large for a JPEG's Exif segment (64 KB); "
                    "the file keeps only the prompt. Save an EXR or AVIF alongside to keep it.")
        return exif
    log.warning("Save HDR Image: the prompt is too large for a JPEG's Exif segment (64 KB); the "
                "file carries no workflow. Save an EXR or AVIF alongside to keep it.")
    return None


NODES = [SaveHDRImage]
