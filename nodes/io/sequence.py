"""EXR sequence nodes: Save EXR Sequence (an IMAGE batch as the frames of a new sequence folder)
and Load EXR Sequence (a sequence from the input folder as an IMAGE batch). Over
``lediff_core.io.sequence``; the EXR options are Save EXR's and Load EXR's own inputs."""

from __future__ import annotations

import logging
import os

import folder_paths
import torch
from comfy_api.latest import io, ui

from ...lediff_core.color.ocio import WORKING_SPACE
from ...lediff_core.color.spaces import exr_color_tags
from ...lediff_core.io.sequence import (
    DEFAULT_START_FRAME,
    MISSING_FRAMES,
    SequenceError,
    describe_filled,
    find_sequences,
    frame_file_name,
    frames_per_second,
    read_exr_sequence,
    read_fps,
    resolve_sequence,
    save_exr_sequence,
    select_frames,
)
from .exr import LoadEXR, SaveEXR, _header_attributes
from .savers import check_images, frame_progress, output_location, tone_mapped_preview

log = logging.getLogger("lediff")


def _inputs_of(node, *names):
    """Inputs of another node's schema, reused as they are (options, defaults, tooltips)."""
    inputs = {i.id: i for i in node.define_schema().inputs}
    return [inputs[n] for n in names]


def _check_fps(fps) -> str | None:
    try:
        frames_per_second(fps)
    except (SequenceError, TypeError, ValueError) as e:
        return f"{e}; e.g. 24, 25, 23.976 or 29.97"
    return None


def _frames(images: torch.Tensor):
    """(rgb, alpha) numpy frames, one at a time: only the frame being written is copied."""
    for i in range(images.shape[0]):
        frame = images[i].float().cpu()
        rgb = frame[..., :3].contiguous().numpy()
        yield rgb, (frame[..., 3].contiguous().numpy() if frame.shape[-1] == 4 else None)


class SaveEXRSequence(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffSaveEXRSequence",
            display_name="Save EXR Sequence",
            category="LEDiff/image",
            description="Saves a batch of linear HDR frames as an OpenEXR sequence (name.1001.exr, ...) in a "
                        "new folder, which appears complete or not at all.",
            inputs=[
                io.Image.Input("images", tooltip="The frames (an IMAGE batch, first frame first): linear HDR "
                               "in the working space (Rec.709/sRGB primaries, D65), never clamped. RGBA frames "
                               "write their 4th channel as alpha."),
                io.String.Input(
                    "filename_prefix",
                    default="LEDiff/sequence",
                    tooltip="Relative to the output folder. Each run writes a new folder <prefix>_00001/ "
                    "holding <name>.1001.exr, ... (name = the prefix's last part), as Nuke (name.####.exr), "
                    "Blender and ffmpeg (name.%04d.exr) read sequences.",
                ),
                io.Float.Input("fps", default=24.0, min=0.001, max=1000.0, step=0.001,
                               tooltip="Frame rate, stored in every frame as OpenEXR's framesPerSecond "
                               "(23.976 -> 24000/1001, 29.97 -> 30000/1001, 59.94 -> 60000/1001)."),
                io.Int.Input("start_frame", default=DEFAULT_START_FRAME, min=0, max=9_999_999,
                             tooltip="Number of the first frame. 1001 is the VFX convention (room for "
                             "handles before the cut); Blender and ffmpeg start wherever it says."),
                *_inputs_of(SaveEXR, "precision", "compression", "colorspace"),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, filename_prefix, fps, start_frame, precision, compression,
                colorspace=WORKING_SPACE) -> io.NodeOutput:
        problem = _check_fps(fps)
        if problem:
            raise ValueError(f"Save EXR Sequence: {problem}")
        # every check before output_location: ComfyUI's numbering creates the prefix's folders, which a
        # refused input must not leave behind empty. Errors name the file by the prefix's last part.
        named = os.path.basename(os.path.normpath(filename_prefix))
        check_images("Save EXR Sequence", images, noun="frame",
                     detail=lambda i: f"frame {start_frame + i}, {frame_file_name(named, start_frame + i)}")
        chromaticities, color_attributes, note = exr_color_tags(colorspace, precision, compression)
        count, height, width = images.shape[0], images.shape[1], images.shape[2]
        parent, name, counter, subfolder = output_location("Save EXR Sequence", filename_prefix, width, height)
        if note:
            log.info("Save EXR Sequence: %s", note)
        attributes = {**_header_attributes(None, None, "linear"), **color_attributes}
        workflow = _header_attributes(cls.hidden.prompt, cls.hidden.extra_pnginfo, "linear")
        folder, _, files, saturated = save_exr_sequence(
            parent, lambda n: f"{name}_{n:05}", counter, name, _frames(images),
            start_frame=start_frame, fps=fps, attributes=attributes, first_frame_attributes=workflow,
            on_frame=frame_progress(count), precision=precision, compression=compression,
            chromaticities=chromaticities, colorspace=colorspace,
        )
        if saturated:
            log.warning("Save EXR Sequence: %d value(s) beyond the half-float range (+/-65504) were saturated "
                        "in %s; choose precision 'float' to keep them", saturated, folder)
        first = ui.SavedResult(files[0], os.path.join(subfolder, folder) if subfolder else folder,
                               io.FolderType.output)
        # the first frame, listed first, opens in the frontend's HDR viewer; a preview of it follows
        preview = tone_mapped_preview("Save EXR Sequence", images[:1, ..., :3].float(), [first])
        return io.NodeOutput(ui={"images": [first, *preview]})

    @classmethod
    def validate_inputs(cls, fps=None):
        if fps is None:  # linked: checked when it runs
            return True
        problem = _check_fps(fps)
        return f"Save EXR Sequence: {problem}" if problem else True


def _sequence_options() -> list[str]:
    folder = folder_paths.get_input_directory()
    return find_sequences(folder) if os.path.isdir(folder) else []


def _resolve(sequence: str):
    return resolve_sequence(folder_paths.get_input_directory(), sequence)


class LoadEXRSequence(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffLoadEXRSequence",
            display_name="Load EXR Sequence",
            category="LEDiff/image",
            description="Loads an OpenEXR sequence (name.1001.exr, ...) from the input folder as a batch of "
                        "linear HDR frames, in numeric frame order.",
            inputs=[
                io.Combo.Input(
                    "sequence",
                    options=_sequence_options(),
                    tooltip="A sequence in the input folder (its subfolders too, 3 levels deep), listed as "
                    "folder/name.####.exr; refresh after copying one in. Graphs sent to the API may also "
                    "give a folder holding one sequence, or a name.%04d.exr pattern.",
                ),
                io.Int.Input("start", default=0, min=0, max=9_999_999,
                             tooltip="First frame to load, by position: 0 = the sequence's first frame "
                             "(e.g. 1001), 10 = ten frames later (1011)."),
                io.Int.Input("count", default=0, min=0, max=9_999_999,
                             tooltip="Most frames to load; 0 = all up to the last frame."),
                io.Int.Input("step", default=1, min=1, max=10_000,
                             tooltip="Load every step-th frame (2 = every other frame)."),
                io.Float.Input("fps", default=24.0, min=0.001, max=1000.0, step=0.001,
                               tooltip="Frame rate when the first frame has no framesPerSecond attribute; "
                               "a file's own rate wins."),
                *_inputs_of(LoadEXR, "layer", "part", "view", "window", "colorspace"),
                # last, so that saved workflows' widget values keep their places
                io.Combo.Input(
                    "missing_frames",
                    options=list(MISSING_FRAMES),
                    default="error",
                    optional=True,
                    tooltip="A frame inside the span loaded (the sequence's first to last file, start/count/"
                    "step) with no file: " + "; ".join(f"{k}: {v}" for k, v in MISSING_FRAMES.items())
                    + ". The filled frames are logged. A damaged frame is an error whatever this says.",
                ),
            ],
            outputs=[
                io.Image.Output("images", tooltip="The frames, linear HDR in the chosen colour space (default "
                                "the working space), never clamped."),
                io.Mask.Output("alpha", tooltip="Each frame's alpha (1 = opaque), all ones without one."),
                io.Float.Output("fps", tooltip="The frame rate: the first frame's framesPerSecond (divided "
                                "out, 24000/1001 = 23.976...), else the fps input; divided by step."),
                io.Int.Output("frame_count", tooltip="How many frames were loaded."),
                io.Int.Output("first_frame", tooltip="The frame number of the first frame loaded (e.g. 1001): "
                              "connect it to Save EXR Sequence's start_frame to keep the numbering."),
            ],
        )

    @classmethod
    def execute(cls, sequence, start, count, step, fps, layer, part="", view="", window="data",
                colorspace=WORKING_SPACE, missing_frames="error") -> io.NodeOutput:
        frames = select_frames(_resolve(sequence), start, count, step, missing_frames)
        # every frame is checked as it is opened: inside the input folder (links followed), a regular file
        loaded = read_exr_sequence(frames, layer.strip(), part=part.strip(), view=view.strip(), window=window,
                                   colorspace=colorspace, on_frame=frame_progress(len(frames)),
                                   root=folder_paths.get_input_directory())
        filled = describe_filled(frames, missing_frames, step)
        if filled:
            log.warning("Load EXR Sequence: %s: %s", sequence, filled)
        if loaded.is_data:
            log.info("Load EXR Sequence: layer %r of %s is data (lediff:dataLayers): loaded unconverted",
                     layer, sequence)
        elif loaded.read_as not in (None, colorspace):
            log.info("Load EXR Sequence: %s read as %s, converted to %s", sequence, loaded.read_as, colorspace)
        rate = read_fps(loaded.header) or float(fps)
        rate /= step  # the frames loaded span the same time
        return io.NodeOutput(loaded.rgb, loaded.alpha, rate, len(frames), frames[0].frame)

    @classmethod
    def fingerprint_inputs(cls, sequence, start, count, step, fps, layer, part="", view="", window="data",
                           colorspace=WORKING_SPACE, missing_frames="error"):
        # stat, not a hash of the contents: a clip is gigabytes, queued again and again; a dangling
        # link or a FIFO among the frames is named when the node runs. Every file is stamped, so a
        # hole filled later (a new file) changes it, as does a frame outside the span that fills one.
        try:
            stats = _resolve(sequence).stamp()
        except SequenceError as e:
            return str(e)
        return "|".join((*stats, str(start), str(count), str(step), str(fps), layer, part, view, window,
                         colorspace, missing_frames))

    @classmethod
    def validate_inputs(cls, sequence):
        try:
            _resolve(sequence)
        except SequenceError as e:
            return f"Load EXR Sequence: {e}"
        return True


NODES = [SaveEXRSequence, LoadEXRSequence]
