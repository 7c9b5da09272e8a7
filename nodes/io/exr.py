"""OpenEXR (and Radiance .hdr) nodes: Save EXR, EXR Layer (extra named layers for Save EXR),
Load EXR."""

from __future__ import annotations

import hashlib
import json
import logging
import os

import folder_paths
import numpy as np
import torch
from comfy_api.latest import io

from ...lediff_core import SOFTWARE
from ...lediff_core.color import check_finite, check_image_size, srgb_to_linear
from ...lediff_core.color.ocio import LINEAR_SPACES, WORKING_SPACE
from ...lediff_core.color.spaces import exr_color_tags, from_chromaticities
from ...lediff_core.io.access import FileAccessError, check_readable
from ...lediff_core.io.exr import (
    COMPRESSIONS,
    ENVMAPS,
    LAYER_ENCODINGS,
    LAYER_PRECISIONS,
    PRECISIONS,
    WINDOWS,
    EXRError,
    EXRLayer,
    check_layer_name,
    write_exr,
)
from ...lediff_core.io.readers import EXTENSIONS, read_linear_image
from .savers import check_images, save_numbered, tone_mapped_preview, workflow_metadata

log = logging.getLogger("lediff")

ENCODINGS = ("linear", "sRGB")
# a tuple of lediff_core.io.exr.EXRLayer, one per EXR Layer node of the chain, first node first
EXR_LAYERS = io.Custom("LEDIFF_EXR_LAYERS")


def _alpha_planes(alpha: torch.Tensor | None, images: torch.Tensor) -> list[np.ndarray | None]:
    """Per-image alpha planes from an optional MASK ([H, W] or [B, H, W]) or an RGBA image."""
    b, h, w, c = images.shape
    if alpha is None:
        return [images[i, ..., 3].float().cpu().numpy() if c == 4 else None for i in range(b)]
    alpha = alpha.reshape(-1, *alpha.shape[-2:])
    if tuple(alpha.shape[-2:]) != (h, w) or alpha.shape[0] not in (1, b):
        raise ValueError(
            f"Save EXR: alpha mask of shape {list(alpha.shape)} does not fit {b} image(s) of "
            f"{w}x{h}; give one mask or one per image, of the image's size"
        )
    return [alpha[min(i, alpha.shape[0] - 1)].float().cpu().numpy() for i in range(b)]


class SaveEXR(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffSaveEXR",
            display_name="Save EXR",
            category="LEDiff/image",
            description="Saves linear HDR images as OpenEXR files in the output folder, never clamped.",
            inputs=[
                io.Image.Input("images", tooltip="Linear HDR images in the working space (Rec.709/sRGB "
                               "primaries, D65); values above 1 are kept."),
                io.String.Input(
                    "filename_prefix",
                    default="LEDiff/hdr",
                    tooltip="Prefix of the file names, relative to the output folder; may contain "
                    "subfolders and tokens such as %date:yyyy-MM-dd%.",
                ),
                io.Combo.Input(
                    "precision",
                    options=list(PRECISIONS),
                    default="half",
                    tooltip="half: 16-bit float, half the size, saturates beyond +/-65504. "
                    "float: 32-bit float, a bit-exact copy of the input.",
                ),
                io.Combo.Input(
                    "compression",
                    options=list(COMPRESSIONS),
                    default="zip",
                    tooltip="EXR compression. Lossless: none, rle, zips, zip, piz (pxr24 is lossless "
                    "for half only). Lossy: b44, b44a, dwaa, dwab.",
                ),
                io.Combo.Input(
                    "input_encoding",
                    options=list(ENCODINGS),
                    default="linear",
                    tooltip="linear: the input is scene-linear (HDR decode output) and is written "
                    "unchanged. sRGB: the input is sRGB-encoded (an ordinary IMAGE) and is linearised.",
                ),
                io.Combo.Input(
                    "envmap",
                    options=list(ENVMAPS),
                    default="none",
                    tooltip="latlong: tag the file as an equirectangular environment map (EXR "
                    "'envmap' attribute) for image-based lighting.",
                ),
                io.Mask.Input(
                    "alpha",
                    optional=True,
                    tooltip="Optional alpha channel (1 = opaque), written as the EXR's A channel.",
                ),
                io.Combo.Input(
                    "colorspace",
                    options=list(LINEAR_SPACES),
                    default=WORKING_SPACE,
                    optional=True,
                    tooltip="Linear colour space of the file. The input is in the working space "
                    "(linear Rec.709/sRGB primaries, D65) and is converted with OpenColorIO, like colour "
                    "layers; the file's chromaticities attribute says which (AP1 for ACEScg, AP0 for "
                    "ACES2065-1, which at half precision without compression and without layers is also "
                    "tagged as an ACES container).",
                ),
                EXR_LAYERS.Input(
                    "layers",
                    optional=True,
                    tooltip="Extra named layers from EXR Layer nodes (depth, masks, brackets...), written "
                    "in the same file as <name>.R/G/B[/A] or <name>.Y; same size as the images, one per "
                    "image or one for all.",
                ),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(
        cls,
        images,
        filename_prefix,
        precision,
        compression,
        input_encoding,
        envmap,
        alpha=None,
        colorspace=WORKING_SPACE,
        layers=None,
    ) -> io.NodeOutput:
        check_images("Save EXR", images)
        alphas = _alpha_planes(alpha, images)
        rgb = images[..., :3].float()
        if input_encoding == "sRGB":
            rgb = srgb_to_linear(rgb)
        layers = tuple(layers or ())
        attributes = _header_attributes(cls.hidden.prompt, cls.hidden.extra_pnginfo, input_encoding)
        chromaticities, color_attributes, note = exr_color_tags(colorspace, precision, compression,
                                                                extra_layers=bool(layers))
        attributes.update(color_attributes)
        if note:
            log.info("Save EXR: %s", note)
        count = rgb.shape[0]
        for i in range(count):  # a layer batch that does not fit is refused before any file is written
            for layer in layers:
                layer.for_image(i, count)

        def write(i, path):
            return write_exr(path, rgb=rgb[i].cpu().numpy(), alpha=alphas[i], precision=precision,
                             compression=compression, attributes=attributes, envmap=envmap,
                             chromaticities=chromaticities, colorspace=colorspace,
                             layers=[layer.for_image(i, count) for layer in layers])

        saved = save_numbered("Save EXR", filename_prefix, rgb.shape[0], images.shape[2],
                              images.shape[1], ".exr", write)
        for result, saturated in saved:
            if saturated:
                log.warning(
                    "Save EXR: %d value(s) beyond the half-float range (+/-65504) were saturated "
                    "in %s; choose precision 'float' (of the file, or of the EXR Layer) to keep them",
                    saturated, result.filename)
        # the EXR itself, listed first, opens full size in the frontend's HDR viewer
        results = [r for r, _ in saved]
        return io.NodeOutput(ui={"images": results + tone_mapped_preview("Save EXR", rgb, results)})


class EXRLayerNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffEXRLayer",
            display_name="EXR Layer",
            category="LEDiff/image",
            description="Adds a named layer (an image, a mask, or both) for Save EXR to write in the same "
                        "file as its main image; chain several for depth, masks, brackets, AOVs.",
            inputs=[
                io.String.Input(
                    "name",
                    default="",
                    placeholder="e.g. depth, mask, bracket_dark",
                    tooltip="Layer name: channels <name>.R/.G/.B[/.A], or <name>.Y for a mask alone, as "
                    "Nuke, Blender and OpenImageIO read layers. Unique in the chain; dots nest layers "
                    "(aov.diffuse); not R, G, B, A, RGB or RGBA (the main image).",
                ),
                io.Combo.Input(
                    "encoding",
                    options=list(LAYER_ENCODINGS),
                    default="linear",
                    tooltip="How the image is encoded. linear: scene-linear colour in the working space "
                    "(HDR Decode output), converted to the file's colorspace. sRGB: sRGB-encoded colour "
                    "(VAE Decode, Load Image), linearised, then converted. data: not colour (depth, "
                    "normals, motion): written exactly as given, and Load EXR returns it unconverted. "
                    "Masks are never converted.",
                ),
                io.Combo.Input(
                    "precision",
                    options=list(LAYER_PRECISIONS),
                    default="file",
                    tooltip="file: the precision Save EXR writes the image in. half: 16-bit float (saturates "
                    "beyond +/-65504). float: 32-bit float, exact (e.g. for depth).",
                ),
                io.Image.Input("image", optional=True, tooltip="The layer's colour (RGB or RGBA), the size "
                               "of Save EXR's images; one per saved image or one for all."),
                io.Mask.Input("mask", optional=True, tooltip="With an image: the layer's alpha (<name>.A). "
                              "Alone: a single-channel layer (<name>.Y), written as given."),
                EXR_LAYERS.Input("layers", optional=True, tooltip="Layers from another EXR Layer node, "
                                 "to add this one to."),
            ],
            outputs=[EXR_LAYERS.Output("layers", tooltip="The chain with this layer added; connect to "
                                       "Save EXR's layers or to another EXR Layer.")],
        )

    @classmethod
    def execute(cls, name, encoding, precision, image=None, mask=None, layers=None) -> io.NodeOutput:
        # refused here, by input name, rather than by Save EXR after it has chosen its output folder
        use = f"EXR layer {name!r} cannot hold them (Save EXR refuses NaN/Inf)"
        if image is not None:
            check_image_size(image, "image")
            check_finite(image, "image", use)
        if mask is not None:
            check_image_size(mask, "mask", batched=mask.ndim == 3)  # ComfyUI's MASK: [B, H, W] or [H, W]
            check_finite(mask[..., None], "mask", use)
        chain = tuple(layers or ())
        check_layer_name(name, [layer.name for layer in chain])
        return io.NodeOutput((*chain, EXRLayer(name, image=image, mask=mask, encoding=encoding,
                                               precision=precision)))

    @classmethod
    def validate_inputs(cls, name=None):
        if name is None:  # linked: checked when it runs
            return True
        try:
            check_layer_name(name)
        except EXRError as e:
            return str(e)
        return True


def _header_attributes(prompt, extra_pnginfo, input_encoding: str) -> dict:
    """EXR header attributes: provenance, and prompt/workflow where core's SaveImageAdvanced puts them."""
    attributes = {"software": SOFTWARE, "lediff:inputEncoding": input_encoding}
    prompt, info = workflow_metadata(prompt, extra_pnginfo)
    if prompt is not None:
        attributes["prompt"] = json.dumps(prompt)
    for key, value in info.items():
        attributes[key] = json.dumps(value)
    return attributes


def _input_files() -> list[str]:
    folder = folder_paths.get_input_directory()
    return sorted(
        f for f in os.listdir(folder)
        if f.lower().endswith(EXTENSIONS) and os.path.isfile(os.path.join(folder, f))
    )


def input_path(image: str) -> str:
    """The file a node reads from ComfyUI's folders for ``image`` (Load EXR's image, File LUT's LUT:
    ``name``, ``sub/name``, or ComfyUI's annotated ``name [output]``), checked before anything opens
    it: inside the folder it is named in after links are followed (ComfyUI's own rule for Load
    Image), and a regular file (a FIFO would hang the read and the change fingerprint). Raises
    FileAccessError or FileNotFoundError naming it."""
    name, base = folder_paths.annotated_filepath(image)
    kind = image[len(name):].strip(" []") or "input"  # "x.exr [output]": ComfyUI's output folder
    base = base or folder_paths.get_input_directory()
    path = os.path.abspath(os.path.join(base, name))
    check_readable(path, base, name=image, folder=f"ComfyUI's {kind} folder")
    return path


class LoadEXR(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffLoadEXR",
            display_name="Load EXR",
            category="LEDiff/image",
            description="Loads an OpenEXR or Radiance .hdr file from the input folder as linear HDR.",
            inputs=[
                io.Combo.Input(
                    "image",
                    options=_input_files(),
                    upload=io.UploadType.image,
                    tooltip="An .exr (half or float; RGB(A), luminance/chroma YC, Y, layers, parts, "
                    "views, tiled or mip-mapped) or .hdr file in the input folder.",
                ),
                io.String.Input(
                    "layer",
                    default="",
                    tooltip="EXR layer to load, e.g. 'beauty' for beauty.R/G/B, or a layer EXR Layer "
                    "wrote (a mask layer <name>.Y loads as a grey image). Empty: the default RGB(A) or Y "
                    "channels, else the beauty-like or first layer. Layers the file marks as data "
                    "(lediff:dataLayers: data layers, masks) load exactly as stored, not converted.",
                ),
                io.String.Input(
                    "part",
                    default="",
                    optional=True,
                    tooltip="Multi-part EXR: the part to load, by name or number (0 = first). "
                    "Empty: the first part (or the first part of the chosen view).",
                ),
                io.String.Input(
                    "view",
                    default="",
                    optional=True,
                    tooltip="Multi-view (stereo) EXR: the view to load, e.g. 'right'. Empty: the "
                    "file's default view (the first one listed).",
                ),
                io.Combo.Input(
                    "window",
                    options=list(WINDOWS),
                    default="data",
                    optional=True,
                    tooltip="data: the pixels the file stores (its data window). display: the "
                    "frame the file asks to show (its display window): overscan outside it is "
                    "cropped, and area without data is 0 with alpha 0.",
                ),
                io.Combo.Input(
                    "colorspace",
                    options=list(LINEAR_SPACES),
                    default=WORKING_SPACE,
                    optional=True,
                    tooltip="Linear colour space to load colour into (data layers are never converted). "
                    "Default: the working space (linear "
                    "Rec.709/sRGB primaries, D65, what the other nodes expect). The file's chromaticities "
                    "attribute says what it holds (none = Rec.709): ACES, Rec.2020, P3-D65 convert with "
                    "OpenColorIO, other primaries (XYZ, cameras) with OpenEXR's matrices.",
                ),
            ],
            outputs=[
                io.Image.Output("image", tooltip="Linear HDR image in the chosen colour space (default "
                                "the working space), never clamped."),
                io.Mask.Output(
                    "alpha",
                    tooltip="The file's alpha (1 = opaque), or all ones when it has none. Core's "
                    "Load Image gives 1 - alpha instead: use Invert Mask to match it.",
                ),
            ],
        )

    @classmethod
    def execute(cls, image, layer, part="", view="", window="data", colorspace=WORKING_SPACE) -> io.NodeOutput:
        loaded = read_linear_image(
            input_path(image), layer.strip(), part=part.strip(), view=view.strip(), window=window,
        )
        if loaded.is_data:
            pixels = loaded.rgb
            log.info("Load EXR: layer %r of %s is data (lediff:dataLayers): loaded unconverted",
                     loaded.layer, image)
        else:
            pixels, read_as = from_chromaticities(loaded.rgb, loaded.header.get("chromaticities"), colorspace)
            if read_as != colorspace:
                log.info("Load EXR: %s read as %s, converted to %s", image, read_as, colorspace)
        rgb = torch.from_numpy(pixels)[None]
        alpha = loaded.alpha if loaded.alpha is not None else np.ones(loaded.rgb.shape[:2], np.float32)
        return io.NodeOutput(rgb, torch.from_numpy(alpha)[None])

    @classmethod
    def fingerprint_inputs(cls, image, layer, part="", view="", window="data", colorspace=WORKING_SPACE):
        digest = hashlib.sha256()
        try:
            path = input_path(image)  # before opening: a FIFO named x.exr would block the hash forever
        except (FileAccessError, OSError) as e:
            return f"Load EXR: {e}"  # the run reports it
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return "|".join((digest.hexdigest(), layer, part, view, window, colorspace))

    @classmethod
    def validate_inputs(cls, image, layer, part="", view="", window="data", colorspace=WORKING_SPACE):
        try:
            input_path(image)
        except FileAccessError as e:
            return f"Load EXR: {e}"
        except OSError:
            return f"Load EXR: no file {image!r} in the input folder"
        if not image.lower().endswith(EXTENSIONS):
            return f"Load EXR: {image!r} is not an {'/'.join(EXTENSIONS)} file"
        return True


NODES = [SaveEXR, EXRLayerNode, LoadEXR]
