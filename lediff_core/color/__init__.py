"""Colour science: the working colour space, conversions between linear spaces, transfer curves.

Owns the pack's working space (linear Rec.709/sRGB primaries, D65) and, here, its sRGB transfer
function and luminance; chromaticities and RGB/XYZ matrices (``chromaticities``); every conversion
between linear colour spaces, a config's display/view transforms and looks, and LUT files, through
one OpenColorIO helper (``ocio``); ComfyUI's HLG and PQ image
conventions (``spaces``, ``transfer``); exact PQ/HLG code quantisation (``quantize``) and tone
mapping for previews (``tonemap``). Torch tensors or numpy arrays, never clamped. Also, here, the
checks every image gets before anything computes on it: its size (``check_image_size``: an empty
batch or a 0x0 picture is an error naming the input, the size and the minimum) and its NaN/Inf
pixels (``nonfinite_pixels``, ``describe_nonfinite``; previews paint them ``NONFINITE_RGB`` and log
``nonfinite_warning``).
Imports nothing else of lediff_core; never ComfyUI, ``nodes`` or ``lediff_runner``.
"""

from __future__ import annotations

import torch

from .. import LEDiffError

# Rec.709 / sRGB primaries with a D65 white point, as (Rx, Ry, Gx, Gy, Bx, By, Wx, Wy): what an
# EXR `chromaticities` attribute holds for linear sRGB data.
REC709_CHROMATICITIES = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)

# Relative luminance of linear Rec.709 RGB (ITU-R BT.709).
REC709_LUMA = (0.2126, 0.7152, 0.0722)

# What previews (Tone Map, Exposure Strip, HDR Decode's preview) paint NaN/Inf pixels: pure cyan, a
# colour no tone curve gives a natural scene and not the Exposure Strip's magenta clip outline.
NONFINITE_RGB = (0.0, 1.0, 1.0)
NONFINITE_COLOUR = "cyan (0, 1, 1)"


class ImageSizeError(LEDiffError, ValueError):
    """An image, or a batch of them, too small for the step it is given to: the message names the
    input, its size, the minimum and the fix."""


def check_image_size(pixels, name: str = "image", min_size: int = 1, batched: bool = True,
                     why: str = "", channels: int = 3) -> None:
    """Refuse an empty batch, a picture under ``min_size`` x ``min_size`` pixels or one with fewer
    than ``channels`` colour channels, before any library sees it (they fail with ``aminmax():
    cannot compute``, ``division by zero``, ``index 0 is out of bounds`` or a broadcasting error,
    naming nothing). ``pixels``: ComfyUI's IMAGE [B, H, W, C] or MASK [B, H, W] (``batched``), or
    one image [H, W(, C)] (torch or numpy). ``why``: what the minimum comes from, for the message."""
    shape = tuple(pixels.shape)
    if batched:
        if len(shape) not in (3, 4):
            raise ImageSizeError(f"{name}: expected an image batch [batch, height, width, channels], got shape "
                                 f"{list(shape)}")
        if shape[0] == 0:
            raise ImageSizeError(
                f"{name} is an empty batch (no images); at least 1 image of at least {min_size}x{min_size} "
                "pixels is needed. The node that made it kept no image (e.g. a batch filter or selection "
                "that matched nothing): check its settings")
        shape = shape[1:]
    if len(shape) not in (2, 3):
        raise ImageSizeError(f"{name}: expected one image [height, width, channels], got shape {list(shape)}")
    h, w = shape[:2]
    if h < min_size or w < min_size:
        raise ImageSizeError(
            f"{name} is {w}x{h} pixels (width x height); at least {min_size}x{min_size} is needed{why}. The node "
            "that made it gave an empty or tiny picture (e.g. a crop outside the image, a scale near 0): check its "
            "size settings, or resize the image")
    if len(shape) == 3 and shape[2] < channels:
        raise ImageSizeError(
            f"{name} has {shape[2]} channel(s); at least {channels} (RGB) are needed. ComfyUI's IMAGE is RGB or "
            "RGBA: turn a mask or a one-channel picture into one with core's Convert Mask to Image")


def nonfinite_pixels(rgb: torch.Tensor) -> torch.Tensor:
    """Bool [..., H, W]: the pixels of [..., H, W, C] with a NaN or +-Inf in any colour channel."""
    return ~torch.isfinite(rgb[..., :3]).all(dim=-1)


def describe_nonfinite(pixels: torch.Tensor, name: str = "image") -> list[str]:
    """One line per batch item of an IMAGE [B, H, W, C] that holds NaN/Inf pixels (none when all are
    finite), e.g. ``image 2 of 4: 3 of 4096 pixel(s) NaN/Inf (2 NaN, 1 Inf)``."""
    rgb = pixels[..., :3]
    lines = []
    for i in range(rgb.shape[0]):
        bad = int(nonfinite_pixels(rgb[i]).sum())
        if bad:
            nan = int(torch.isnan(rgb[i]).any(dim=-1).sum())
            lines.append(f"{name} {i + 1} of {rgb.shape[0]}: {bad} of {rgb.shape[1] * rgb.shape[2]} pixel(s) NaN/Inf "
                         f"({nan} NaN, {bad - nan} Inf)")
    return lines


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """Inverse sRGB transfer function (IEC 61966-2-1), extended to values outside 0..1.

    Values above 1 continue the power segment and negatives mirror it, so nothing is clamped.
    """
    a = x.abs()
    lin = torch.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4)
    return torch.sign(x) * lin


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """sRGB transfer function, extended to values outside 0..1 the same way as its inverse."""
    a = x.abs()
    enc = torch.where(a <= 0.0031308, a * 12.92, 1.055 * a ** (1 / 2.4) - 0.055)
    return torch.sign(x) * enc


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Luminance of linear Rec.709 RGB in the last dimension (keeps that dimension, size 1)."""
    w = torch.tensor(REC709_LUMA, dtype=rgb.dtype, device=rgb.device)
    return (rgb[..., :3] * w).sum(dim=-1, keepdim=True)


def nonfinite_warning(pixels: torch.Tensor, name: str = "image") -> str | None:
    """The warning a preview logs for the NaN/Inf pixels it painted ``NONFINITE_RGB`` (None when
    there are none): which batch items, how many, and where to look."""
    lines = describe_nonfinite(pixels, name)
    if not lines:
        return None
    return ("; ".join(lines) + f": painted {NONFINITE_COLOUR} in the picture. They come from an earlier node (e.g. "
            "a decode whose exp() overflowed, a division by zero in a custom node): find it; Save EXR and "
            "Save HDR Image refuse them")


def check_finite(pixels: torch.Tensor, name: str, use: str) -> None:
    """Refuse NaN/Inf pixels where painting them is no answer (``use``: what they would spoil, e.g.
    statistics, or the light of a whole environment), naming the batch items and the counts."""
    lines = describe_nonfinite(pixels, name)
    if lines:
        raise ValueError("; ".join(lines) + f": {use}. Find the node that made them (Tone Map paints them "
                         f"{NONFINITE_COLOUR} to show where)")
