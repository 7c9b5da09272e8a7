"""The one saving path of the pack's output nodes (Save EXR, Save HDR Image, Save EXR Sequence,
Save HDR Video).

The input checked whole before any library call (``check_images``: empty batches, 0x0 images,
NaN/Inf, naming the batch item); numbering like core's savers (``folder_paths.get_save_image_path``);
the prefix confined to the output folder; every file of a batch written under a temporary name and
published only once all are written, never overwriting (``lediff_core.io.publish``), so a batch is
saved whole or not at all; the workflow metadata (``prompt`` and ComfyUI's extra PNG info, unless
``--disable-metadata``); the ``ui.images`` listing the frontend shows, with tone-mapped previews
whose failure, once the files are published, is a warning rather than a failed node. A saver
supplies only the file extension and a function that writes one image to a path.

Every picture a node of the pack shows (the savers' previews, Exposure Strip, HDR Stats) goes
through ``preview_images``: PNGs in ComfyUI's temp folder, published whole, and a warning instead of
a failed node when they cannot be written.
"""

from __future__ import annotations

import json
import logging
import math
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
from ...lediff_core.io.access import path_inside
from ...lediff_core.io.publish import write_numbered_files

log = logging.getLogger("lediff")

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


def check_images(label: str, images: torch.Tensor, noun: str = "image", min_size: int = 1,
                 min_size_reason: str = "", finite: bool = True,
                 detail: Callable[[int], str] | None = None) -> None:
    """Refuse, before any library call, what no file can hold: an IMAGE that is not [B, H, W, C]
    with RGB or RGBA, an empty batch, images under ``min_size`` pixels on a side (1: a 0x0 image;
    ``min_size_reason`` says who needs more), and (``finite``) NaN/Inf in the colour channels,
    naming the batch item (``noun`` 2 of 4, and ``detail(i)`` where given: its file). ``label``
    names the node."""
    if images.ndim != 4:
        raise ValueError(f"{label}: images of shape {list(images.shape)}; expected an IMAGE batch "
                         f"[{noun}s, height, width, channels]")
    count, height, width, channels = images.shape
    if count == 0:
        raise ValueError(
            f"{label}: images is an empty batch (0 {noun}s of {width}x{height}); at least 1 {noun} is "
            "needed. The node before it produced nothing: check its batch index, length or filter")
    if height < min_size or width < min_size:
        raise ValueError(
            f"{label}: images are {width}x{height} pixels ({count} {noun}(s)); the minimum is "
            f"{min_size}x{min_size}{min_size_reason}. Check the node before it (a crop or resize to "
            "nothing), or upscale or pad the images")
    if channels not in (3, 4):
        raise ValueError(f"{label}: expected RGB or RGBA {noun}s, got {channels} channels")
    if not finite:
        return
    rgb = images[..., :3]
    # one pass over the batch (NaN propagates through min/max, Inf shows); per item only on failure
    lo, hi = (v.item() for v in torch.aminmax(rgb))
    if math.isfinite(lo) and math.isfinite(hi):
        return
    bad = (~torch.isfinite(rgb)).any(dim=-1).flatten(1).sum(dim=1).tolist()
    items = [i for i, n in enumerate(bad) if n]
    first = items[0]
    also = ""
    if len(items) > 1:
        also = f" (and {noun}s {', '.join(str(i + 1) for i in items[1:6])}{', ...' if len(items) > 6 else ''})"
    raise ValueError(
        f"{label}: {_item(noun, first, count, detail)}{bad[first]} pixel(s) contain NaN or Inf{also}; nothing "
        "was saved. Fix the node that produced them (e.g. a division by zero) or replace them "
        "before saving")


def _item(noun: str, i: int, count: int, detail: Callable[[int], str] | None = None) -> str:
    """``image 2 of 4: `` for an item of a batch (``image 2 of 4 (<detail>): ``), nothing for a
    lone image (or ``<detail>: ``)."""
    where = [f"{noun} {i + 1} of {count}"] if count > 1 else []
    if detail is not None:
        where.append(f"({detail(i)})" if where else detail(i))
    return " ".join(where) + ": " if where else ""


def _item_failed(label: str, noun: str, i: int, count: int, e: BaseException) -> BaseException | None:
    """The error for item ``i`` of ``count`` that failed with ``e``, naming the node and the item;
    None to raise ``e`` unchanged (not an input or a file-system problem)."""
    text = str(e)
    if text.startswith(f"{label}: "):  # the saver phrased it already
        text = text[len(label) + 2:]
    where = f"{label}: {_item(noun, i, count)}"
    if isinstance(e, OSError):
        if e.strerror:  # without the path: a hidden temporary name
            text = e.strerror
        message = f"{where}{text}; nothing was saved. Free disk space or choose another output folder"
        return OSError(e.errno, message) if e.errno is not None else OSError(message)
    if isinstance(e, ValueError):
        message = f"{where}{text}" + ("" if count == 1 else f" (none of the {count} {noun}s was saved)")
        try:
            return type(e)(message)
        except Exception:
            return ValueError(message)
    if count > 1:
        e.add_note(f"{where}failed; none of the {count} {noun}s was saved")
    return None


def save_numbered(
    label: str,
    filename_prefix: str,
    count: int,
    width: int,
    height: int,
    extension: str,
    write: Callable[[int, str], T],
    noun: str = "image",
) -> list[tuple[ui.SavedResult, T]]:
    """Write ``count`` images as ``<prefix>_00001<extension>``, ... in the output folder, all of
    them or none (``publish.write_numbered_files``).

    ``write(i, path)`` writes image ``i`` completely to ``path`` (a temporary name that is
    published once every image is written) and may return a value, handed back next to each
    file's UI entry. Check the images first (``check_images``). A failure names ``label`` (the
    node) and the item (``image 2 of 4``); Cancel is honoured after each image.
    """
    folder, name, counter, subfolder = output_location(label, filename_prefix, width, height)

    def write_item(i, path):
        try:
            result = write(i, path)
        except Exception as e:
            failure = _item_failed(label, noun, i, count, e)
            if failure is None:
                raise
            raise failure from e
        mm.throw_exception_if_processing_interrupted()
        return result

    saved = write_numbered_files(
        folder, lambda i, n: f"{name.replace('%batch_num%', str(i))}_{n:05}{extension}", counter, count,
        write_item,
    )
    return [(ui.SavedResult(file, subfolder, io.FolderType.output), result) for file, _, result in saved]


def saved_names(results: list[ui.SavedResult]) -> str:
    """The published files as the log names them (``LEDiff/hdr_00001.exr, ...``), output folder relative."""
    return ", ".join(os.path.join(r.subfolder, r.filename) for r in results)


PREVIEW_PREFIX = "LEDiffPreview"


def preview_images(label: str, render: Callable[[], torch.Tensor], saved: list[ui.SavedResult] = (),
                   metadata: tuple[dict | None, dict] | None = None,
                   compress_level: int = 0) -> list[ui.SavedResult]:
    """The pack's one way to show pictures on a node: ``render()`` gives sRGB [B, H, W, 3] in 0..1,
    written as PNGs to ComfyUI's temp folder, all of them or none (``publish.write_numbered_files``:
    no partial PNG is left), with the workflow (``metadata``: ``workflow_metadata(...)``) as PNG
    text chunks where given, as core's previews carry it.

    A preview is never worth failing a node for: a preview that cannot be made or written (a full
    or unwritable temp folder) is a warning naming the node, what could not be written, where and
    why, and the node goes on without it, returning its outputs (a failed node stops the whole
    prompt, savers that had not run yet included). For a saver, its files (``saved``) are already
    published, and the warning names them (a re-queue would write them twice).
    """
    try:
        srgb = render()
        return _write_previews(srgb, metadata, compress_level)
    except Exception as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        what = f"saved {saved_names(saved)}, but its preview" if saved else "its preview image(s)"
        log.warning("%s: %s could not be written to ComfyUI's temp folder %s (%s); the node goes on without "
                    "the preview%s. Free space there to see previews again.", label, what,
                    folder_paths.get_temp_directory(), reason, "" if saved else " (its outputs are unaffected)")
        return []


def tone_mapped_preview(label: str, rgb: torch.Tensor, saved: list[ui.SavedResult]) -> list[ui.SavedResult]:
    """A small, uncompressed, metadata-free PNG of linear HDR [B, H, W, 3] in the temp folder:
    cheap beside the real write, for files the browser cannot show (EXR, JPEG XL). A failure is a
    warning naming the saved files (``preview_images``)."""
    return preview_images(label, lambda: tone_map(thumbnail(rgb), "aces", auto_exposure=True), saved)


def _write_previews(srgb: torch.Tensor, metadata: tuple[dict | None, dict] | None,
                    compress_level: int) -> list[ui.SavedResult]:
    """sRGB [B, h, w, 3] in 0..1 as PNGs in the temp folder, published like every other file."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = None
    if metadata is not None and (metadata[0] is not None or metadata[1]):
        prompt, extra = metadata
        info = PngInfo()
        if prompt is not None:
            info.add_text("prompt", json.dumps(prompt))
        for key, value in extra.items():
            info.add_text(key, json.dumps(value))
    temp = folder_paths.get_temp_directory()
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
        PREVIEW_PREFIX, temp, srgb.shape[2], srgb.shape[1])
    pixels = (srgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    saved = write_numbered_files(
        folder, lambda i, n: f"{name.replace('%batch_num%', str(i))}_{n:05}_.png", counter, len(pixels),
        lambda i, path: Image.fromarray(pixels[i]).save(path, format="PNG", pnginfo=info,
                                                        compress_level=compress_level),
    )
    return [ui.SavedResult(file, subfolder, io.FolderType.temp) for file, _, _ in saved]
