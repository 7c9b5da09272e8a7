"""OpenEXR image sequences: one file per frame, ``<name>.<frame>.exr``, in a folder of its own.

Writing: frames are written one at a time (memory does not grow with the clip) into a hidden
staging folder, which is published in one rename (``publish.write_numbered_folder``): a sequence
appears complete or not at all. Every frame carries OpenEXR's standard ``framesPerSecond``
attribute (a rational; ``frames_per_second`` maps 23.976 to 24000/1001 and so on), the frame
numbers are padded to 4 digits, the naming Nuke (``name.####.exr``), Blender, Resolve, OpenImageIO
and ffmpeg (``name.%04d.exr``) read, starting at 1001 by default (the VFX convention, which leaves
room for handles before the cut).

Reading: a folder or a ``name.####.exr`` / ``name.%04d.exr`` pattern, frames in numeric order
(``name.998.exr`` before ``name.1000.exr``), a span picked by position, count and step. A frame of
the span with no file (a hole) is an error naming it, or is filled by a policy (``MISSING_FRAMES``:
black, hold, nearest, like the missing-frame choice of Nuke's Read node); a damaged file or a frame
whose size or channels differ from the first is an error naming the frame's file under every
policy. Every frame is checked as it is opened (``access.check_readable``), not only its
folder: a frame that is a symbolic link leading outside the input folder, or a FIFO, device or
folder under a frame's name, is refused by name without being opened.
"""

from __future__ import annotations

import bisect
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import torch

from ..color.spaces import from_chromaticities
from .access import FileAccessError, check_readable, path_inside
from .exr import EXRError, read_exr, write_exr
from .limits import format_bytes
from .publish import write_numbered_folder

PADDING = 4  # digits of the frame number: name.1001.exr
DEFAULT_START_FRAME = 1001
FPS_ATTRIBUTE = "framesPerSecond"
# NTSC-family rates, n * 1000/1001 (23.976, 29.97, 47.952, 59.94, 119.88): a value within this of
# one of them (what people type, rounded to two or three decimals) is that rate exactly.
NTSC_TOLERANCE = 0.005
MAX_FPS_DENOMINATOR = 1001
# how deep below the input folder find_sequences looks (0 = the folder itself)
MAX_DEPTH = 3
# what Load EXR Sequence does with a frame of the span that has no file (select_frames)
MISSING_FRAMES = {
    "error": "stop, naming the missing frame's file",
    "black": "a frame of zeros (every channel, alpha too) of the sequence's size",
    "hold": "the previous frame on disk",
    "nearest": "the closest frame on disk by number (the earlier one on a tie)",
}

_FRAME_FILE = re.compile(r"^(?P<head>.*?)(?P<digits>\d+)(?P<tail>\.exr)$", re.IGNORECASE)
_PATTERN = re.compile(r"^(?P<head>.*?)(?:(?P<hashes>#+)|%(?P<width>0?\d*)d)(?P<tail>\.exr)$", re.IGNORECASE)


class SequenceError(EXRError):
    """An EXR sequence that cannot be written or read; the message names the frame and the fix."""


def frames_per_second(fps: float) -> Fraction:
    """The rational ``framesPerSecond`` for a frame rate: integers n/1, the NTSC-family rates
    (23.976, 29.97, 59.94 ...) n*1000/1001, others the closest fraction with a denominator up to
    1001 (12.5 -> 25/2)."""
    fps = float(fps)
    if not (math.isfinite(fps) and fps > 0):
        raise SequenceError(f"frame rate must be a positive number of frames per second, got {fps}")
    if abs(fps - round(fps)) < 1e-6:
        return Fraction(round(fps), 1)
    ntsc = round(fps * 1.001)
    if ntsc >= 1 and abs(fps - Fraction(ntsc * 1000, 1001)) <= NTSC_TOLERANCE:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(MAX_FPS_DENOMINATOR)


def frame_file_name(name: str, frame: int) -> str:
    """``name.1001.exr``: the frame number padded to PADDING digits."""
    if frame < 0:
        raise SequenceError(f"frame numbers start at 0 or above, got {frame}")
    return f"{name}.{frame:0{PADDING}d}.exr"


def write_exr_sequence(
    folder: str,
    name: str,
    frames: Iterable[tuple[np.ndarray, np.ndarray | None]],
    start_frame: int = DEFAULT_START_FRAME,
    fps: float = 24.0,
    attributes: dict | None = None,
    first_frame_attributes: dict | None = None,
    on_frame: Callable[[int], None] | None = None,
    **exr_options,
) -> tuple[list[str], int]:
    """Write ``frames`` (each (rgb [H, W, 3], alpha [H, W] or None), taken one at a time from the
    iterable) into the existing ``folder`` as ``name.<start_frame>.exr``, ... through ``write_exr``
    (``exr_options``: precision, compression, chromaticities, colorspace, ...).

    Every frame gets ``attributes`` and ``framesPerSecond``; the first also gets
    ``first_frame_attributes`` (the workflow). ``on_frame(i)`` runs after frame ``i`` (progress,
    interrupts). Returns the file names and the number of values saturated in half. A failure
    raises SequenceError (bad pixels) or OSError (the write), naming the frame; files already
    written stay in ``folder``: write into a staging folder (``save_exr_sequence``).
    """
    if not name or name != os.path.basename(name) or name in (".", ".."):
        raise SequenceError(f"sequence name {name!r} must be a plain file name without folders")
    rate = frames_per_second(fps)
    common = {**(attributes or {}), FPS_ATTRIBUTE: rate}
    files, saturated, size = [], 0, None
    for i, (rgb, alpha) in enumerate(frames):
        frame = start_frame + i
        file = frame_file_name(name, frame)
        if size is None:
            size = rgb.shape
        elif rgb.shape != size:
            raise SequenceError(f"frame {frame} ({file}) is {list(rgb.shape)} but the first frame is "
                                f"{list(size)}: every frame of a sequence has the same size")
        header = {**common, **(first_frame_attributes or {})} if i == 0 else common
        try:
            saturated += write_exr(os.path.join(folder, file), rgb, alpha, attributes=header, **exr_options)
        except EXRError as e:
            raise SequenceError(f"frame {frame} ({file}, frame {i + 1} of the clip): {e}") from e
        except Exception as e:  # the bindings report a failed write (disk full, quota) as RuntimeError
            raise OSError(f"writing frame {frame} ({file}) failed: {e}") from e
        files.append(file)
        if on_frame is not None:
            on_frame(i)
    if not files:
        raise SequenceError("an EXR sequence needs at least one frame")
    return files, saturated


def save_exr_sequence(
    parent: str,
    folder_for: Callable[[int], str],
    counter: int,
    name: str,
    frames: Iterable[tuple[np.ndarray, np.ndarray | None]],
    **options,
) -> tuple[str, int, list[str], int]:
    """Write a sequence (``write_exr_sequence``'s ``options``) into a new folder of ``parent``,
    the first free name among ``folder_for(counter)``, ``folder_for(counter + 1)``, ...: staged
    under a hidden name and published in one rename, never replacing anything; on any failure
    nothing is published and the staging folder is removed.

    Returns (folder name, counter used, file names, saturated values)."""
    folder, counter, (files, saturated) = write_numbered_folder(
        parent, folder_for, counter, lambda staging: write_exr_sequence(staging, name, frames, **options)
    )
    return folder, counter, files, saturated


@dataclass(frozen=True)
class EXRSequence:
    """The frames of one sequence: ``folder`` (absolute), file names ``head<digits>tail``, and
    ``frames`` {frame number: file name} in numeric order."""

    folder: str
    head: str
    tail: str
    frames: dict[int, str]

    @property
    def numbers(self) -> list[int]:
        return list(self.frames)

    @property
    def pattern(self) -> str:
        """``name.####.exr``, with as many # as the narrowest frame number has digits."""
        width = min(len(_FRAME_FILE.match(f)["digits"]) for f in self.frames.values())
        return f"{self.head}{'#' * width}{self.tail}"

    def file_for(self, frame: int) -> str:
        """The file name frame ``frame`` has (or would have) in this sequence."""
        if frame in self.frames:
            return self.frames[frame]
        width = min(len(_FRAME_FILE.match(f)["digits"]) for f in self.frames.values())
        return f"{self.head}{frame:0{width}d}{self.tail}"

    def stamp(self) -> list[str]:
        """One line per frame that changes when the frame is rewritten (its size, modification time
        or inode changes): ``os.stat`` only, no frame is opened or read, so a clip of gigabytes is
        stamped at once and a FIFO among the frames blocks nothing (reading it is refused later).
        A frame that cannot be stat'ed (a dangling link) is stamped with its errno."""
        stats = []
        for file in self.frames.values():
            try:
                st = os.stat(os.path.join(self.folder, file))
                stats.append(f"{file}:{st.st_mode}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
            except OSError as e:
                stats.append(f"{file}:{e.errno}")
        return stats


def _group(folder: str, files: Iterable[str], strict: bool = True) -> dict[tuple[str, str], dict[int, str]]:
    """Frame files of ``folder`` grouped by (head, tail), each {frame: file} sorted by number. Two
    files with the same number (``a.998.exr``, ``a.0998.exr``) raise SequenceError, or with
    ``strict`` False keep the first."""
    groups: dict[tuple[str, str], dict[int, str]] = {}
    for file in sorted(files):
        m = _FRAME_FILE.match(file)
        if not m:
            continue
        frames = groups.setdefault((m["head"], m["tail"]), {})
        number = int(m["digits"])
        if number in frames:
            if not strict:
                continue
            raise SequenceError(
                f"{file!r} and {frames[number]!r} in {folder!r} are both frame {number}: remove or "
                "rename one"
            )
        frames[number] = file
    return {key: dict(sorted(frames.items())) for key, frames in sorted(groups.items())}


def _exr_files(folder: str) -> list[str]:
    # every entry but folders, as os.walk lists files for find_sequences: a FIFO or a dangling link
    # under a frame's name is a frame, refused by name when read, not a silent gap
    with os.scandir(folder) as entries:
        return [e.name for e in entries
                if not e.name.startswith(".") and e.name.lower().endswith(".exr") and not e.is_dir()]


def find_sequences(root: str, max_depth: int = MAX_DEPTH) -> list[str]:
    """Patterns (``shot/name.####.exr``, relative to ``root``, ``/``-separated) of the sequences in
    ``root`` and its subfolders down to ``max_depth``; hidden folders (staging ones) skipped."""
    found = []
    root = os.path.abspath(root)
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        depth = 0 if rel == "." else rel.count(os.sep) + 1
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < max_depth else []
        exrs = [f for f in files if not f.startswith(".") and f.lower().endswith(".exr")]
        # not strict: a sequence with a duplicate frame is listed, and loading it names the files
        for (head, tail), frames in _group(folder, exrs, strict=False).items():
            pattern = EXRSequence(folder, head, tail, frames).pattern
            found.append(pattern if rel == "." else f"{rel.replace(os.sep, '/')}/{pattern}")
    return sorted(found)


def _check_relative(spec: str) -> str:
    if not isinstance(spec, str) or not spec.strip():
        raise SequenceError("no sequence given: choose a folder or a name.####.exr pattern in the input folder")
    if "\0" in spec:
        raise SequenceError(f"sequence path {spec!r} contains a NUL character")
    parts = re.split(r"[\\/]", spec)
    if os.path.isabs(spec) or re.match(r"^[A-Za-z]:", spec) or ".." in parts:
        raise SequenceError(
            f"sequence path {spec!r} must stay inside the input folder: give it relative to the input "
            "folder, without '..' or a leading '/'"
        )
    parts = [p for p in parts if p not in ("", ".")]
    return os.path.join(*parts) if parts else "."


def resolve_sequence(root: str, spec: str) -> EXRSequence:
    """The sequence ``spec`` names under ``root``: a folder holding one sequence, or a pattern
    ``folder/name.####.exr`` / ``folder/name.%04d.exr`` (``%d``: any width). Refuses paths that
    leave ``root`` (``..``, absolute paths, symlinks pointing out)."""
    rel = _check_relative(spec)
    path = os.path.join(os.path.abspath(root), rel)
    if not path_inside(root, path):
        raise SequenceError(f"sequence path {spec!r} leads outside the input folder (a symlink?); "
                            "copy the frames into the input folder")
    if os.path.isdir(path):
        groups = _group(path, _exr_files(path))
        if not groups:
            raise SequenceError(f"folder {spec!r} holds no numbered EXR frames (name.####.exr)")
        if len(groups) > 1:
            listing = ", ".join(EXRSequence(path, h, t, f).pattern for (h, t), f in groups.items())
            raise SequenceError(f"folder {spec!r} holds several sequences ({listing}); give one as "
                                f"{spec.rstrip('/')}/<pattern>")
        (head, tail), frames = next(iter(groups.items()))
        return EXRSequence(path, head, tail, frames)
    folder, pattern = os.path.split(path)
    m = _PATTERN.match(pattern)
    if not m:
        raise SequenceError(
            f"{spec!r} is neither a folder nor a sequence pattern: give a folder, or a pattern such as "
            "shot/name.####.exr or shot/name.%04d.exr"
        )
    if not os.path.isdir(folder) or not path_inside(root, folder):
        raise SequenceError(f"no folder {os.path.dirname(spec) or '.'!r} in the input folder for {spec!r}")
    # the # or %0Nd padding is not enforced: a frame past 9999 has 5 digits in a #### sequence
    for (head, tail), frames in _group(folder, [f for f in _exr_files(folder) if f.startswith(m["head"])]).items():
        if head == m["head"] and tail.lower() == m["tail"].lower():
            return EXRSequence(folder, head, tail, frames)
    raise SequenceError(f"no frames match {spec!r} in the input folder")


class SelectedFrame(NamedTuple):
    """One frame of the batch to load: its number, the file read for it (None: a black frame) and
    the number of the frame that file holds (``frame`` itself, another frame's number when it fills
    a hole, None for black)."""

    frame: int
    path: str | None
    source: int | None

    @property
    def filled(self) -> bool:
        return self.source != self.frame


def select_frames(sequence: EXRSequence, start: int = 0, count: int = 0, step: int = 1,
                  missing: str = "error") -> list[SelectedFrame]:
    """The frames to load: positions ``start``, ``start + step``, ... from the sequence's first
    frame (position 0), at most ``count`` of them (0: up to the last frame). The span is known only
    from the files: it lies within the sequence's first..last frame found, so frames dropped before
    the first file or after the last one are not holes (the clip is shorter).

    A frame of the span with no file is a hole, filled by ``missing`` (``MISSING_FRAMES``):
    ``error`` raises naming its file; ``black`` reads nothing for it; ``hold`` reads the previous
    frame on disk (any frame of the sequence, also one outside the span or off the step; the first
    one after it where none comes before); ``nearest`` the closest frame on disk by number, the
    earlier one on a tie. A span in which no frame exists is an error under every policy."""
    if start < 0 or count < 0 or step < 1:
        raise SequenceError(f"start ({start}) and count ({count}) must be 0 or more and step ({step}) 1 or more")
    if missing not in MISSING_FRAMES:
        raise SequenceError(f"missing-frame policy {missing!r} is not one of {', '.join(MISSING_FRAMES)}; "
                            "choose one of them")
    numbers = sequence.numbers
    first, last = numbers[0], numbers[-1]
    frame0 = first + start
    if frame0 > last:
        raise SequenceError(
            f"start {start} is past the end of {sequence.pattern} (frames {first}-{last}, positions "
            f"0-{last - first}); lower start"
        )
    wanted = range(frame0, last + 1, step)
    if count:
        wanted = wanted[:count]
    holes = [frame for frame in wanted if frame not in sequence.frames]
    if missing == "error" and holes:
        frame = holes[0]
        before = max((n for n in numbers if n < frame), default=None)
        after = min((n for n in numbers if n > frame), default=None)
        raise SequenceError(
            f"frame {frame} ({sequence.file_for(frame)}) is missing from {sequence.pattern} in "
            f"{sequence.folder!r}, between {sequence.frames.get(before)} and {sequence.frames.get(after)}; "
            "restore the frame, or set start/count to load around the gap"
        )
    if len(holes) == len(wanted):
        raise SequenceError(
            f"none of the frames asked for ({frame_ranges(holes, step)}) exists in {sequence.pattern} in "
            f"{sequence.folder!r} (frames found: {frame_ranges(numbers)}): no frame to fill them from; set "
            "start/count/step to take in at least one existing frame"
        )
    selected = []
    for frame in wanted:
        source = frame if frame in sequence.frames else _fill_source(numbers, frame, missing)
        path = None if source is None else os.path.join(sequence.folder, sequence.frames[source])
        selected.append(SelectedFrame(frame, path, source))
    return selected


def _fill_source(numbers: list[int], frame: int, missing: str) -> int | None:
    """The frame on disk that fills the hole ``frame`` under ``missing`` (None: black)."""
    if missing == "black":
        return None
    i = bisect.bisect_left(numbers, frame)
    before = numbers[i - 1] if i > 0 else None
    after = numbers[i] if i < len(numbers) else None
    if missing == "hold" or after is None:
        return before if before is not None else after
    if before is None:
        return after
    return before if frame - before <= after - frame else after  # a tie goes to the earlier frame


def frame_ranges(numbers: Iterable[int], step: int = 1) -> str:
    """``12-14, 20``: the frame numbers with runs ``step`` apart written first-last (``5-9x2``, Nuke's
    frame-range notation, when ``step`` is above 1)."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n - runs[-1][1] == step:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    every = f"x{step}" if step > 1 else ""
    return ", ".join(str(a) if a == b else f"{a}-{b}{every}" for a, b in runs)


def describe_filled(frames: list[SelectedFrame], missing: str, step: int = 1) -> str | None:
    """``filled 12-14, 20 (hold)``: the holes of ``select_frames``' result and the policy that filled
    them, or None when nothing was filled."""
    holes = [f.frame for f in frames if f.filled]
    return f"filled {frame_ranges(holes, step)} ({missing})" if holes else None


def _channel_names(header: dict) -> list[str]:
    return sorted(c.name for c in header.get("channels", ()))


def read_fps(header: dict) -> float | None:
    """The frame rate a frame's ``framesPerSecond`` attribute gives, or None."""
    value = header.get(FPS_ATTRIBUTE)
    try:
        fps = float(value) if isinstance(value, Fraction) else None
    except ZeroDivisionError:
        return None
    return fps if fps is not None and math.isfinite(fps) and fps > 0 else None


@dataclass
class LoadedSequence:
    """Frames read by ``read_exr_sequence``: ``rgb`` [N, H, W, 3] and ``alpha`` [N, H, W] float32
    tensors, the frame numbers, the first frame's header and whether its layer is data."""

    rgb: torch.Tensor
    alpha: torch.Tensor
    frames: list[int]
    header: dict
    is_data: bool
    read_as: str | None


def read_exr_sequence(
    frames: list[SelectedFrame],
    layer: str = "",
    part: str = "",
    view: str = "",
    window: str = "data",
    colorspace: str | None = None,
    on_frame: Callable[[int], None] | None = None,
    root: str | None = None,
    folder: str = "the input folder",
) -> LoadedSequence:
    """Read ``frames`` (``select_frames``) like ``read_exr`` (layer, part, view, window), converted
    from each frame's chromaticities to ``colorspace`` (None or a data layer: as stored). Every
    frame must match the first one's size, channels and layer; a mismatch or a damaged file
    raises SequenceError naming the frame's file, also when that frame would only fill a hole. With
    ``root`` (the folder the sequence was named in, called ``folder`` in messages) each frame must
    resolve inside it, links followed; every frame must be a regular file
    (``access.check_readable``, before it is opened). Pixels go straight into one preallocated
    batch; a file that fills several holes is read once and copied, a black hole is zeros in
    every channel (alpha 0 where the frames have alpha; without it the alpha output stays 1)."""
    rgb = alpha = None
    first = first_file = None
    read_as = None
    slots: dict[str, int] = {}  # file -> the batch index it was read into
    copies, blacks = [], []
    for i, (frame, path, source) in enumerate(frames):
        if path is None:
            blacks.append(i)
        elif path in slots:
            copies.append((i, slots[path]))
        else:
            slots[path] = i
            image = _read_frame(path, frame, source, layer, part, view, window, root, folder)
            file = os.path.basename(path)
            if first is None:
                first, first_file = image, file
                h, w = image.rgb.shape[:2]
                try:
                    rgb = torch.empty((len(frames), h, w, 3), dtype=torch.float32)
                    alpha = torch.ones((len(frames), h, w), dtype=torch.float32)
                except (MemoryError, RuntimeError) as e:  # torch's CPU allocator raises RuntimeError
                    raise SequenceError(
                        f"not enough memory for {len(frames)} frames of {w}x{h} ({file} first): they need "
                        f"about {format_bytes(16 * len(frames) * h * w)} ({e}); load fewer frames (count, "
                        "step) or free memory"
                    ) from e
            else:
                _check_like_first(image, first, source, file, first_file)
            pixels = image.rgb
            if colorspace is not None and not first.is_data:
                pixels, read_as = from_chromaticities(pixels, image.header.get("chromaticities"), colorspace)
            rgb[i] = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
            if image.alpha is not None:
                alpha[i] = torch.from_numpy(image.alpha)
        if on_frame is not None:
            on_frame(i)
    if first is None:
        raise SequenceError("no frames to read")
    for i, j in copies:
        rgb[i], alpha[i] = rgb[j], alpha[j]
    for i in blacks:
        rgb[i] = 0.0
        alpha[i] = 0.0 if first.alpha is not None else 1.0
    return LoadedSequence(rgb, alpha, [f.frame for f in frames], first.header, first.is_data, read_as)


def _read_frame(path, frame, source, layer, part, view, window, root, folder):
    file = os.path.basename(path)
    try:
        check_readable(path, root, name=file, folder=folder)
        return read_exr(path, layer, part=part, view=view, window=window)
    except (EXRError, FileAccessError, FileNotFoundError) as e:
        filling = f", read to fill missing frame {frame}" if source != frame else ""
        raise SequenceError(f"frame {source} ({file}) cannot be read{filling}: {e}") from e


def _check_like_first(image, first, frame: int, file: str, ref: str) -> None:
    if image.rgb.shape != first.rgb.shape:
        raise SequenceError(
            f"frame {frame} ({file}) is {image.rgb.shape[1]}x{image.rgb.shape[0]} but the first "
            f"frame ({ref}) is {first.rgb.shape[1]}x{first.rgb.shape[0]}: every frame must have the same size"
        )
    ours, theirs = _channel_names(image.header), _channel_names(first.header)
    if ours != theirs or image.layer != first.layer or (image.alpha is None) != (first.alpha is None):
        raise SequenceError(
            f"frame {frame} ({file}) has channels {ours} (layer {image.layer or 'default'!r}), the "
            f"first frame ({ref}) {theirs} (layer {first.layer or 'default'!r}): every frame must "
            "have the same channels"
        )
