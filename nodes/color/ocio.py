"""OCIO nodes: a config's display/view transform with looks (OCIO Display/View), and LUT files
through OCIO's FileTransform (File LUT). The maths and every name check: ``lediff_core.color.ocio``."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ...lediff_core.color import check_image_size
from ...lediff_core.color.ocio import (
    DIRECTIONS,
    INTERPOLATIONS,
    STUDIO_CONFIG,
    apply_processor,
    config_source,
    display_names,
    display_view_processor,
    load_config,
    lut_extensions,
    lut_file_processor,
    view_names,
)
from ...lediff_core.io.access import check_readable, path_inside
from ..io.exr import input_path

_DEFAULT_DISPLAY = "sRGB - Display"
_DEFAULT_VIEW = "ACES 2.0 - SDR 100 nits (Rec.709)"


def _config(config: str):
    """The config the node uses; a file is checked like every file the pack opens: a typed path must
    stay inside ComfyUI's input folder after links (relative paths are from there), and a FIFO is
    refused before OCIO would block on it. ``$OCIO`` is the server's own setting: not confined."""
    inputs = folder_paths.get_input_directory()
    name = config_source(config, inputs)
    if not name.startswith("ocio://"):
        root = None if config.strip() == "$OCIO" else inputs
        if os.path.lexists(name) or (root is not None and not path_inside(root, name)):
            check_readable(name, root, name=f"OCIO config {name}", folder="ComfyUI's input folder")
    return load_config(config, inputs)


class OCIODisplay(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffOCIODisplay",
            display_name="OCIO Display/View",
            category="LEDiff/color",
            description="Applies an OpenColorIO config's display/view transform (by default OCIO's built-in "
            "ACES 2.0 studio config: ACES 2.0 Output Transforms for SDR and HDR displays), with optional "
            "looks, to a linear HDR image in the working space.",
            inputs=[
                io.Image.Input("image", tooltip="Linear HDR in the working space (scene-linear Rec.709, D65); "
                               "alpha passes through."),
                io.Combo.Input(
                    "display", options=display_names(), default=_DEFAULT_DISPLAY,
                    tooltip="The display, by its name in the built-in ACES 2.0 studio config (sRGB, Display "
                    "P3, Rec.1886, Rec.2100-PQ/HLG, ...). For another config type its name in custom_display.",
                ),
                io.Combo.Input(
                    "view", options=view_names(), default=_DEFAULT_VIEW,
                    tooltip="The view of that display (ACES 2.0 SDR 100 nits or HDR 500-4000 nits Output "
                    "Transforms, Un-tone-mapped, Video (colorimetric), Raw). Not every view exists for every "
                    "display: the error lists the display's views. For another config use custom_view.",
                ),
                io.String.Input(
                    "looks", default="", optional=True,
                    tooltip="Looks to apply before the view, comma-separated names of the config's looks (a "
                    "leading - inverts one), e.g. 'ACES 1.3 Reference Gamut Compression'. Empty: none.",
                ),
                io.String.Input(
                    "config", default="", optional=True,
                    tooltip="Empty: OCIO's built-in ACES 2.0 studio config (" + STUDIO_CONFIG + "). Or the "
                    "path of a config.ocio in ComfyUI's input folder (relative to it; paths leading out are "
                    "refused), $OCIO for the config the OCIO environment variable names, or another built-in "
                    "ocio:// config.",
                ),
                io.String.Input(
                    "custom_display", default="", optional=True,
                    tooltip="A display name typed in, used instead of display (for a config other than the "
                    "built-in one). Checked at run time: the error lists the config's displays.",
                ),
                io.String.Input(
                    "custom_view", default="", optional=True,
                    tooltip="A view name typed in, used instead of view. Checked at run time: the error "
                    "lists the display's views.",
                ),
                io.String.Input(
                    "input_space", default="", optional=True,
                    tooltip="The config's colour space the image is in. Empty: the config's linear Rec.709 "
                    "(D65) space (Linear Rec.709 (sRGB), or its ACES 1.x name Utility - Linear - sRGB).",
                ),
            ],
            outputs=[io.Image.Output(
                "image", tooltip="Display-encoded, not linear: the signal the display expects, e.g. sRGB - "
                "Display: sRGB-encoded 0..1; Rec.2100-PQ: PQ (ST 2084) signal 0..1; Rec.2100-HLG: HLG "
                "signal; Raw: unchanged. For Save Image / previews (SDR displays) or as a display signal.")],
        )

    @classmethod
    def execute(cls, image, display, view, looks="", config="", custom_display="", custom_view="",
                input_space="") -> io.NodeOutput:
        check_image_size(image, "image")
        processor = display_view_processor(
            _config(config), custom_display.strip() or display, custom_view.strip() or view, looks,
            input_space)
        return io.NodeOutput(apply_processor(processor, image))


def _lut_files() -> list[str]:
    """LUT files in ComfyUI's input folder and its subfolders, as ``sub/name`` paths."""
    folder = folder_paths.get_input_directory()
    extensions = lut_extensions()
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.relpath(os.path.join(root, f), folder).replace(os.sep, "/")
                  for f in files if f.lower().endswith(extensions)]
    return sorted(found)


class FileLUT(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffFileLUT",
            display_name="File LUT",
            category="LEDiff/color",
            description="Applies a LUT file (.cube, .3dl, .spi3d, .spi1d, .clf, ...) from ComfyUI's input "
            "folder through OpenColorIO's FileTransform.",
            inputs=[
                io.Image.Input("image", tooltip="The image, in the encoding the LUT expects (most 3D LUTs "
                               "take a log or display-encoded signal in 0..1, not linear HDR: put HDR Color Space "
                               "(a log encoding) or OCIO Display/View before it). Alpha passes through."),
                io.Combo.Input(
                    "lut", options=_lut_files(),
                    tooltip="A LUT file in ComfyUI's input folder (or a subfolder), any format OCIO reads. "
                    "A 3D LUT holds its edge values outside its domain (usually 0..1): values above it are "
                    "clipped by the LUT itself.",
                ),
                io.Combo.Input(
                    "interpolation", options=list(INTERPOLATIONS), default="linear",
                    tooltip="linear: trilinear for 3D LUTs (the .cube convention), linear for 1D. "
                    "tetrahedral: 3D LUTs only, smoother through neutrals. best: OCIO's best for the LUT "
                    "(tetrahedral for 3D, linear for 1D).",
                ),
                io.Combo.Input(
                    "direction", options=list(DIRECTIONS), default="forward",
                    tooltip="forward: apply the LUT. inverse: undo it (OCIO inverts 1D LUTs exactly and 3D "
                    "LUTs iteratively, within their range).",
                ),
            ],
            outputs=[io.Image.Output("image", tooltip="The image through the LUT (float32), in the encoding "
                                     "the LUT produces.")],
        )

    @classmethod
    def execute(cls, image, lut, interpolation, direction) -> io.NodeOutput:
        check_image_size(image, "image")
        processor = lut_file_processor(input_path(lut), interpolation, direction)
        return io.NodeOutput(apply_processor(processor, image))

    @classmethod
    def fingerprint_inputs(cls, image, lut, interpolation, direction):
        try:
            st = os.stat(input_path(lut))  # checked first: stat only, nothing opened
        except (OSError, ValueError) as e:
            return f"File LUT: {e}"  # the run reports it
        return "|".join((lut, str(st.st_mtime_ns), str(st.st_size), interpolation, direction))

    @classmethod
    def validate_inputs(cls, lut):
        try:
            input_path(lut)
        except FileNotFoundError:
            return f"File LUT: no file {lut!r} in ComfyUI's input folder: put the LUT there and pick it again"
        except (OSError, ValueError) as e:
            return f"File LUT: {e}"
        if not lut.lower().endswith(lut_extensions()):
            return (f"File LUT: {lut!r} is not a LUT file OCIO reads; use one of "
                    f"{', '.join(lut_extensions())}")
        return True


NODES = [OCIODisplay, FileLUT]
