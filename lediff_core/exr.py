"""OpenEXR reading and writing through the official OpenEXR Python bindings.

Linear HDR goes in and out unchanged: float files are bit-exact copies, half files differ only by
half-float rounding, and values beyond the half range saturate at +/-65504 instead of becoming Inf.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import OpenEXR
import torch

from .color import REC709_CHROMATICITIES

COMPRESSIONS = {
    "none": OpenEXR.NO_COMPRESSION,
    "rle": OpenEXR.RLE_COMPRESSION,
    "zips": OpenEXR.ZIPS_COMPRESSION,
    "zip": OpenEXR.ZIP_COMPRESSION,
    "piz": OpenEXR.PIZ_COMPRESSION,
    "pxr24": OpenEXR.PXR24_COMPRESSION,
    "b44": OpenEXR.B44_COMPRESSION,
    "b44a": OpenEXR.B44A_COMPRESSION,
    "dwaa": OpenEXR.DWAA_COMPRESSION,
    "dwab": OpenEXR.DWAB_COMPRESSION,
}
# Lossless for both half and float data; pxr24 is lossless for half only, b44/dwa are lossy.
LOSSLESS = ("none", "rle", "zips", "zip", "piz")
PRECISIONS = {"half": np.float16, "float": np.float32}
ENVMAPS = {"none": None, "latlong": OpenEXR.ENVMAP_LATLONG}
HALF_MAX = float(np.finfo(np.float16).max)  # 65504

# Refuse to decode images larger than this many pixels (a hostile header can claim any size).
MAX_PIXELS = 16384 * 16384

# Layers tried first when a file has no default (unprefixed) RGB layer.
PREFERRED_LAYERS = ("beauty", "rgba", "rgb", "combined", "color", "colour")


class EXRError(ValueError):
    """An EXR file that cannot be written or read as an image; the message names the fix."""


@dataclass
class HDRImage:
    """A linear image read from disk: ``rgb`` [H, W, 3] float32, ``alpha`` [H, W] or None."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    header: dict = field(default_factory=dict)
    layer: str = ""


def count_non_finite(array: np.ndarray) -> int:
    """Number of pixels ([H, W, C] or [H, W]) with at least one NaN or Inf component."""
    bad = ~np.isfinite(array)
    return int(bad.any(axis=-1).sum() if bad.ndim == 3 else bad.sum())


def to_half(array: np.ndarray, peak: float | None = None) -> tuple[np.ndarray, int]:
    """Convert float32 to float16, saturating at +/-65504; returns the array and how many values
    saturated. ``peak`` is max(|array|) when the caller already knows it (saves a pass).

    torch's conversion rounds exactly like numpy's (to nearest, ties to even) and is an order of
    magnitude faster (vectorised F16C).
    """
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if peak is None:
        lo, hi = torch.aminmax(t)
        peak = max(hi.item(), -lo.item())
    if peak <= HALF_MAX:
        return t.half().numpy(), 0
    n = int((t.abs() > HALF_MAX).sum())
    return t.clamp(-HALF_MAX, HALF_MAX).half().numpy(), n


def write_exr(
    path: str,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    precision: str = "half",
    compression: str = "zip",
    attributes: dict | None = None,
    envmap: str = "none",
    chromaticities: tuple | None = None,
) -> int:
    """Write linear RGB [H, W, 3] (and optional alpha [H, W]) as a scanline EXR.

    ``attributes`` are extra header attributes (str, float, int, tuples the bindings understand).
    The file is tagged with ``chromaticities`` (8 numbers; default Rec.709/D65, the working space's
    primaries), which must describe the pixels' primaries; ``envmap="latlong"`` adds the standard
    ``envmap`` attribute of an equirectangular environment map. Returns the number of values that
    saturated when converting to half (always 0 for ``float``). Raises EXRError for NaN/Inf input,
    bad shapes or unknown options. Writes ``path`` directly: publish through ``write_new_file``.
    """
    if precision not in PRECISIONS:
        raise EXRError(f"unknown precision {precision!r}; choose one of {tuple(PRECISIONS)}")
    if compression not in COMPRESSIONS:
        raise EXRError(f"unknown compression {compression!r}; choose one of {tuple(COMPRESSIONS)}")
    if envmap not in ENVMAPS:
        raise EXRError(f"unknown envmap {envmap!r}; choose one of {tuple(ENVMAPS)}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise EXRError(f"expected an RGB image of shape [H, W, 3], got {list(rgb.shape)}")
    if alpha is not None and alpha.shape != rgb.shape[:2]:
        raise EXRError(
            f"alpha of shape {list(alpha.shape)} does not match the image's {list(rgb.shape[:2])}: "
            "resize the mask to the image first"
        )
    planes = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)
    planes = np.ascontiguousarray(planes, dtype=np.float32)
    # one pass serves both checks: NaN propagates through min/max and Inf shows
    lo, hi = (v.item() for v in torch.aminmax(torch.from_numpy(planes)))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise EXRError(
            f"{count_non_finite(planes)} pixel(s) contain NaN or Inf; EXR output refuses them. Fix "
            "the node that produced them (e.g. a division by zero) or replace them before saving."
        )
    saturated = 0
    if precision == "half":
        planes, saturated = to_half(planes, peak=max(hi, -lo))
    header = {
        "compression": COMPRESSIONS[compression],
        "type": OpenEXR.scanlineimage,
        "chromaticities": tuple(chromaticities or REC709_CHROMATICITIES),
    }
    if ENVMAPS[envmap] is not None:
        header["envmap"] = ENVMAPS[envmap]
    header.update(attributes or {})
    name = "RGB" if alpha is None else "RGBA"
    with OpenEXR.File(header, {name: planes}) as f:
        f.write(path)
    return saturated


@contextmanager
def _open(path: str, **kwargs):
    """OpenEXR.File for reading; any failure of the bindings becomes an EXRError naming the file."""
    try:
        with OpenEXR.File(path, **kwargs) as f:
            yield f
    except EXRError:
        raise
    except Exception as e:  # the bindings raise RuntimeError/ValueError with terse messages
        raise EXRError(
            f"cannot read {path!r} as OpenEXR ({e}); the file is truncated, corrupt or not an EXR"
        ) from e


def _channel_names(layer: str, names) -> tuple[list[str] | None, str | None]:
    """Colour channel names and alpha name for ``layer`` ('' = the default layer), if present."""
    prefix = f"{layer}." if layer else ""
    for colour in (["R", "G", "B"], ["Y"]):
        wanted = [prefix + c for c in colour]
        if all(n in names for n in wanted):
            alpha = prefix + "A"
            return wanted, alpha if alpha in names else None
    return None, None


def _layers(names) -> list[str]:
    found = sorted({n.rsplit(".", 1)[0] for n in names if "." in n})
    return [layer for layer in found if _channel_names(layer, names)[0]]


def read_exr(path: str, layer: str = "") -> HDRImage:
    """Read a linear image from an EXR file (first part).

    ``layer`` names a layer such as ``beauty`` (channels ``beauty.R`` ...). Empty means: the
    default RGB(A) or Y channels, else a layer named like a beauty pass, else the first layer
    with R, G, B channels. Half and float data are returned as exact float32 values; Y-only
    images are replicated to RGB.
    """
    with _open(path, header_only=True) as f:
        (x0, y0), (x1, y1) = (np.asarray(v) for v in f.header()["dataWindow"])
    width, height = int(x1 - x0 + 1), int(y1 - y0 + 1)
    if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
        raise EXRError(
            f"{path!r} claims a {width}x{height} data window; refusing images above "
            f"{MAX_PIXELS} pixels or with an empty window"
        )
    # The bindings free the pixel arrays when the file closes: copy them out inside the block.
    with _open(path, separate_channels=True) as f:
        channels = f.channels()
        header = dict(f.header())
        colour, alpha, layer = _select_channels(path, set(channels), layer)
        planes = [_plane(channels[n], n, path, height, width) for n in colour]
        a = _plane(channels[alpha], alpha, path, height, width) if alpha else None
    rgb = np.stack(planes * 3 if len(planes) == 1 else planes, axis=-1)
    return HDRImage(rgb=rgb, alpha=a, header=header, layer=layer)


def _select_channels(path: str, names: set, layer: str) -> tuple[list[str], str | None, str]:
    if layer:
        colour, alpha = _channel_names(layer, names)
        if colour is None:
            raise EXRError(
                f"{path!r} has no layer {layer!r} with R, G, B or Y channels; its layers with "
                f"colour are {_layers(names) or 'none'} (leave the layer empty for the default)"
            )
        return colour, alpha, layer
    colour, alpha = _channel_names("", names)
    if colour is not None:
        return colour, alpha, ""
    candidates = _layers(names)
    preferred = [c for c in candidates if c.rsplit(".", 1)[-1].lower() in PREFERRED_LAYERS]
    ordered = preferred + [c for c in candidates if c not in preferred]
    if not ordered:
        raise EXRError(
            f"{path!r} has no colour channels (R, G, B or Y); its channels are {sorted(names)}"
        )
    colour, alpha = _channel_names(ordered[0], names)
    return colour, alpha, ordered[0]


def _plane(channel, name: str, path: str, height: int, width: int) -> np.ndarray:
    pixels = channel.pixels
    if pixels.dtype.kind != "f":
        raise EXRError(
            f"channel {name!r} of {path!r} holds {pixels.dtype} integers, not colour: choose a "
            "layer with half or float channels"
        )
    if pixels.shape != (height, width):
        raise EXRError(
            f"channel {name!r} of {path!r} is subsampled ({pixels.shape[1]}x{pixels.shape[0]} in a "
            f"{width}x{height} image); subsampled channels are not supported"
        )
    return pixels.astype(np.float32)  # a copy, also for float32 input
