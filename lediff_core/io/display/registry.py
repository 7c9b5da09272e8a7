"""What every display format shares: the ``DisplayFormat`` record, the ``FORMATS`` registry the
format modules add themselves to, the node's ``Settings``, and the input checks every encoder runs
first. The format modules import this module, never the package: the package's ``__init__`` imports
them, so importing from it would make an import circle.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ... import LEDiffError


@dataclass(frozen=True)
class Settings:
    """What every display format understands, plus the per-format options of the node."""

    reference_white: float = 1.0  # linear value of diffuse / SDR white (BT.2408 reference white)
    quality: int = 90  # 0..100, the encoder's quality scale
    headroom_stops: float = 3.0  # ultrahdr: display headroom at which the full HDR rendition shows
    mastering_peak: float = 1000.0  # avif_pq: mastering display peak, cd/m2; brighter is clipped


@dataclass
class Encoded:
    data: bytes
    over_peak: int  # pixels with a component above the format's peak (clipped by the format)
    peak: str  # that peak, in words, for the log


@dataclass(frozen=True)
class DisplayFormat:
    name: str
    extension: str
    encode: Callable[[np.ndarray, Settings, bytes | None], Encoded]
    description: str
    min_size: int = 1  # the smallest width and height the encoder takes
    min_size_reason: str = ""  # who says so, for the error
    check_options: Callable[[Settings], None] | None = None  # refuses options this format cannot use
    # refuses a width x height the file cannot hold, before anything is encoded or created
    check_size: Callable[[int, int], None] | None = None
    workflow: bool = True  # whether the file carries the workflow (the ``exif`` argument)


class FormatError(LEDiffError, ValueError):
    """Input a display format cannot encode; the message names the fix."""


FORMATS: dict[str, DisplayFormat] = {}


def register(fmt: DisplayFormat) -> DisplayFormat:
    FORMATS[fmt.name] = fmt
    return fmt


def encoder_threads() -> int:
    """Threads for the encoders that take a count (libavif, libjxl): the CPUs this process may run
    on. imagecodecs' default is one thread, which made a 2048x1024 AVIF take 1.5x as long on two
    cores (``benchmarks/bench_save_hdr_image.py``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def check_settings(settings: Settings, fmt: DisplayFormat | None = None) -> None:
    """Every setting, refused with its range before any pixel is encoded and before the saver
    creates anything on disk: the ones all formats use, then ``fmt``'s own. ComfyUI checks a
    widget's range only for a typed-in value; a linked input (a Float node's output) arrives
    unchecked, NaN included."""
    if not (math.isfinite(settings.reference_white) and settings.reference_white > 0):
        raise FormatError(f"reference_white must be a positive number, got {settings.reference_white}")
    if not 1 <= settings.quality <= 100:
        raise FormatError(f"quality must be in 1..100, got {settings.quality}")
    if fmt is not None and fmt.check_options is not None:
        fmt.check_options(settings)


def check_image(rgb: np.ndarray, settings: Settings, fmt: DisplayFormat | None = None) -> torch.Tensor:
    """The common input checks (``fmt``: the format's smallest and largest sizes too); returns the
    image as a float32 torch tensor scaled so that the reference white is 1.0 (no copy of the
    caller's array is modified)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise FormatError(f"expected an RGB image of shape [H, W, 3], got {list(rgb.shape)}")
    smallest = fmt.min_size if fmt is not None else 1
    if rgb.shape[0] < smallest or rgb.shape[1] < smallest:
        why = f" for {fmt.name} ({fmt.min_size_reason})" if smallest > 1 else ""
        raise FormatError(f"the image is {rgb.shape[1]}x{rgb.shape[0]} pixels; the minimum is "
                          f"{smallest}x{smallest}{why}: upscale or pad it")
    if fmt is not None and fmt.check_size is not None:
        fmt.check_size(rgb.shape[1], rgb.shape[0])
    check_settings(settings, fmt)
    t = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32))
    # one pass: NaN propagates through min/max and Inf shows; the count only on failure
    lo, hi = (v.item() for v in torch.aminmax(t))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        n = int((~torch.isfinite(t)).any(dim=-1).sum())
        raise FormatError(
            f"{n} pixel(s) contain NaN or Inf; display formats refuse them. Fix the node that "
            "produced them (e.g. a division by zero) or replace them before saving."
        )
    return t if settings.reference_white == 1.0 else t / settings.reference_white


def count_above(t: torch.Tensor, peak: float) -> int:
    """Pixels with any component above ``peak``."""
    return int((t.amax(dim=-1) > peak).sum())
