"""The one saving path of the pack's output nodes (Save EXR, Save HDR Image, Save EXR Sequence).

Numbering like core's savers (``folder_paths.get_save_image_path``), the prefix confined to the
output folder, each file written under a temporary name and published without ever overwriting
(``lediff_core.io.publish``), the workflow metadata (``prompt`` and ComfyUI's extra PNG info, unless
``--disable-metadata``), and the ``ui.images`` listing the frontend shows. A saver supplies only
the file extension and a function that writes one image to a path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import comfy.model_management as mm
import comfy.utils
import folder_paths
import torch
from comfy.cli_args import args
from comfy_api.latest import io, ui

from ...lediff_core.color.tonemap import thumbnail, tone_map
from ...lediff_core.io.publish import path_inside, write_numbered_file

T = TypeVar("T")


def workflow_metadata(prompt, extra_pnginfo) -> tuple[dict | None, dict]:
    """(prompt, extra info such as ``workflow``) to store in a file, both empty with
    ``--disable-metadata``."""
    if args.disable_metadata:
        return None, {}
    return prompt, dict(extra_pnginfo or {})


def output_location(label: str, filename_prefix: str, width: int, height: int) -> tuple[str, str, int, str]:
    """(folder, name, next counter, subfolder) for ``filename_prefix`` in the output folder, as
    core's savers number; a prefix leaving the output folder is refused (``label`` names the node)."""
    output_dir = folder_paths.get_output_directory()
    if not path_inside(output_dir, os.path.join(output_dir, filename_prefix)):
        raise ValueError(
            f"{label}: filename_prefix {filename_prefix!r} points outside the output folder; "
            "use a relative prefix such as 'LEDiff/hdr'"
        )
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
        filename_prefix, output_dir, width, height
    )
    return folder, name, counter, subfolder


def frame_progress(total: int) -> Callable[[int], None]:
    """An ``on_frame(i)`` for writers that stream frames: one progress bar of ``total`` frames, and
    Cancel honoured after each frame."""
    bar = comfy.utils.ProgressBar(total)

    def on_frame(_i):
        bar.update(1)
        mm.throw_exception_if_processing_interrupted()

    return on_frame


def save_numbered(
    label: str,
    filename_prefix: str,
    count: int,
    width: int,
    height: int,
    extension: str,
    write: Callable[[int, str], T],
) -> list[tuple[ui.SavedResult, T]]:
    """Write ``count`` images as ``<prefix>_00001<extension>``, ... in the output folder.

    ``write(i, path)`` writes image ``i`` completely to ``path`` (a temporary name that is
    published afterwards) and may return a value, handed back next to each file's UI entry.
    ``label`` names the node in error messages.
    """
    folder, name, counter, subfolder = output_location(label, filename_prefix, width, height)
    saved = []
    for i in range(count):
        stem = name.replace("%batch_num%", str(i))
        file, counter, result = write_numbered_file(
            folder,
            lambda n, stem=stem: f"{stem}_{n:05}{extension}",
            counter,
            lambda path, i=i: write(i, path),
        )
        saved.append((ui.SavedResult(file, subfolder, io.FolderType.output), result))
        counter += 1
    return saved


def tone_mapped_preview(rgb: torch.Tensor) -> list[ui.SavedResult]:
    """A small, uncompressed, metadata-free PNG of linear HDR [B, H, W, 3] in the temp folder:
    cheap beside the real write, for files the browser cannot show (EXR, JPEG XL)."""
    return ui.ImageSaveHelper.save_images(
        tone_map(thumbnail(rgb), "aces", auto_exposure=True), "LEDiffPreview",
        io.FolderType.temp, cls=None, compress_level=0,
    )
