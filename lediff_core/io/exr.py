"""OpenEXR reading and writing through the official OpenEXR Python bindings.

Linear HDR goes in and out unchanged: float files are bit-exact copies, half files differ only by
half-float rounding, and values beyond the half range saturate at +/-65504 instead of becoming Inf.

A file holds one main image (channels ``R, G, B[, A]``) and optionally extra named layers
(``EXRLayer``): colour as ``<name>.R/.G/.B[/.A]``, a mask alone as ``<name>.Y``, the naming Nuke,
Blender and OpenImageIO read as layers. Colour layers are converted into the file's colour space
like the main image; data layers (depth, normals, masks) are written exactly as given and listed in
the ``lediff:dataLayers`` header attribute, so that a reader knows not to convert them.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import Imath
import numpy as np
import OpenEXR
import torch

from .. import LEDiffError
from ..color import REC709_CHROMATICITIES, srgb_to_linear
from ..color.chromaticities import luminance_weights
from ..color.ocio import CHROMATICITIES, WORKING_SPACE, convert_linear
from .access import check_readable
from .exr_layout import (
    MULTI_PART,
    PIXEL_TYPES,
    LayoutError,
    SinglePartView,
    lines_per_chunk,
    read_chunks,
    read_layout,
)
from .exr_yc import yca_to_rgb
from .limits import MAX_PIXELS, format_bytes, out_of_memory

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

# Tiles larger than this (and than the image) are refused as corrupt; OpenEXR's tools use 64x64.
MAX_TILE_PIXELS = 1024 * 1024

# Layers tried first when a file has no default (unprefixed) RGB layer.
PREFERRED_LAYERS = ("beauty", "rgba", "rgb", "combined", "color", "colour")


class EXRError(LEDiffError, ValueError):
    """An EXR file that cannot be written or read as an image; the message names the fix."""


@dataclass
class HDRImage:
    """A linear image read from disk: ``rgb`` [H, W, 3] float32, ``alpha`` [H, W] or None."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    header: dict = field(default_factory=dict)
    layer: str = ""
    part: int = 0
    view: str = ""

    @property
    def is_data(self) -> bool:
        """The layer read is one the writer marked as data (``lediff:dataLayers``): depth, normals,
        masks, not colour, so it must not be colour-converted."""
        return bool(self.layer) and self.layer in data_layers(self.header)


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


def _stored(planes: np.ndarray, precision: str, label: str, channel_axis: int) -> tuple[np.ndarray, int]:
    """Float32 ``planes`` as the file stores them in ``precision``, and how many values saturated
    in half. Refuses NaN/Inf (``label`` starts the message, ``channel_axis`` is where the channels
    are, for counting pixels)."""
    # one pass serves both checks: NaN propagates through min/max and Inf shows
    lo, hi = (v.item() for v in torch.aminmax(torch.from_numpy(planes)))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise EXRError(
            f"{label}{count_non_finite(np.moveaxis(planes, channel_axis, -1))} pixel(s) contain NaN or Inf; "
            "EXR output refuses them. Fix the node that produced them (e.g. a division by zero) or "
            "replace them before saving."
        )
    if precision == "half":
        return to_half(planes, peak=max(hi, -lo))
    return planes, 0


# Extra layers. encoding: how a layer's colour is given. linear: scene-linear in the working space,
# converted to the file's space like the main image; sRGB: sRGB-encoded (a VAE Decode, an ordinary
# IMAGE), linearised then converted; data: written exactly as given (depth, normals, ...).
# Masks (a layer's alpha, or a mask alone) are never converted.
LAYER_ENCODINGS = ("linear", "sRGB", "data")
LAYER_PRECISIONS = ("file", *PRECISIONS)  # file: the precision of the file's main image
DATA_LAYERS_ATTRIBUTE = "lediff:dataLayers"  # stringvector: the layers written unconverted
# Layer names that read as the main image: its own channels, and the name compositors give it
# (Nuke's main layer is "rgba"; the bindings themselves write an array keyed "RGB"/"RGBA" as R, G, B)
RESERVED_LAYER_NAMES = ("r", "g", "b", "a", "rgb", "rgba")
MAX_CHANNEL_NAME = 255  # bytes: OpenEXR's limit for channel names (Imf::Name)


def check_layer_name(name, taken: Sequence[str] = ()) -> None:
    """Raise EXRError, naming the fix, unless ``name`` can name a new layer beside ``taken``."""
    if not isinstance(name, str) or not name.strip():
        raise EXRError("an EXR layer needs a name (e.g. depth, mask, bracket_dark): fill in its name")
    if name != name.strip():
        raise EXRError(f"EXR layer name {name!r} starts or ends with whitespace: remove it")
    if name.startswith(".") or name.endswith(".") or ".." in name:
        raise EXRError(
            f"EXR layer name {name!r} has an empty part between dots: dots separate nested layers "
            "(e.g. aov.diffuse); remove the leading, trailing or doubled dot"
        )
    if name.lower() in RESERVED_LAYER_NAMES:
        raise EXRError(
            f"EXR layer name {name!r} reads as the main image (channels R, G, B, A; 'rgba' in Nuke): "
            "choose another name, e.g. beauty_copy"
        )
    if len(f"{name}.A".encode()) > MAX_CHANNEL_NAME:
        raise EXRError(f"EXR layer name {name[:40]!r}... is too long: channel names are limited to "
                       f"{MAX_CHANNEL_NAME} bytes; shorten it")
    if name in taken:
        raise EXRError(
            f"two EXR layers are named {name!r}: layer names must be unique in a file; rename one"
        )


def _tensor(x) -> torch.Tensor | None:
    if x is None:
        return None
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def _image_size(image: torch.Tensor) -> tuple[int, int]:
    """(width, height) of an image [(B,) H, W, C]."""
    return int(image.shape[-2]), int(image.shape[-3])


def _mask_size(mask: torch.Tensor) -> tuple[int, int]:
    """(width, height) of a mask [(B,) H, W]."""
    return int(mask.shape[-1]), int(mask.shape[-2])


def _batch(x: torch.Tensor | None, batched_ndim: int) -> int:
    """Images in ``x``: its first dimension when it has ``batched_ndim`` dimensions, else 1."""
    return int(x.shape[0]) if x is not None and x.ndim == batched_ndim else 1


@dataclass(frozen=True)
class EXRLayer:
    """An extra named layer of an EXR file, beside its main image.

    ``image``: colour [H, W, 3] or [H, W, 4] (the 4th channel is its alpha); ``mask``: [H, W], the
    layer's alpha, or alone a single-channel layer (``<name>.Y``). Both are torch tensors or numpy
    arrays and may carry a leading batch dimension ([B, H, W, C], [B, H, W]; see ``for_image``).
    ``encoding``: one of LAYER_ENCODINGS (for the colour; masks are never converted).
    ``precision``: one of LAYER_PRECISIONS. Raises EXRError for anything it cannot write.
    """

    name: str
    image: Any = None
    mask: Any = None
    encoding: str = "linear"
    precision: str = "file"

    def __post_init__(self):
        check_layer_name(self.name)
        if self.encoding not in LAYER_ENCODINGS:
            raise EXRError(f"EXR layer {self.name!r}: unknown encoding {self.encoding!r}; choose one of "
                           f"{LAYER_ENCODINGS}")
        if self.precision not in LAYER_PRECISIONS:
            raise EXRError(f"EXR layer {self.name!r}: unknown precision {self.precision!r}; choose one of "
                           f"{LAYER_PRECISIONS}")
        image, mask = _tensor(self.image), _tensor(self.mask)
        if image is None and mask is None:
            raise EXRError(f"EXR layer {self.name!r} has neither an image nor a mask: connect one")
        if image is not None and (image.ndim not in (3, 4) or image.shape[-1] not in (3, 4)):
            raise EXRError(f"EXR layer {self.name!r}: expected an RGB(A) image [H, W, 3|4] or a batch "
                           f"[B, H, W, 3|4], got {list(image.shape)}")
        if mask is not None and mask.ndim not in (2, 3):
            raise EXRError(f"EXR layer {self.name!r}: expected a mask [H, W] or a batch [B, H, W], got "
                           f"{list(mask.shape)}")
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "mask", mask)
        if image is not None and mask is not None:
            (iw, ih), (mw, mh) = _image_size(image), _mask_size(mask)
            if (iw, ih) != (mw, mh):
                raise EXRError(
                    f"EXR layer {self.name!r}: its mask is {mw}x{mh} but its image is {iw}x{ih}; "
                    "resize the mask to the image"
                )
            ni, nm = _batch(image, 4), _batch(mask, 3)
            if ni != nm and 1 not in (ni, nm):
                raise EXRError(f"EXR layer {self.name!r}: {ni} images but {nm} masks; give as many "
                               "of each, or one")

    @property
    def count(self) -> int:
        """How many images the layer holds (1 without a batch dimension)."""
        return max(_batch(self.image, 4), _batch(self.mask, 3))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return _image_size(self.image) if self.image is not None else _mask_size(self.mask)

    @property
    def is_data(self) -> bool:
        """Written unconverted: encoding ``data``, or a mask alone."""
        return self.encoding == "data" or self.image is None

    def for_image(self, index: int, count: int) -> EXRLayer:
        """The layer for image ``index`` of ``count`` saved images: one layer image per saved image,
        or one for all. Raises EXRError for any other batch size."""
        for what, x, batched_ndim in (("images", self.image, 4), ("masks", self.mask, 3)):
            n = _batch(x, batched_ndim)
            if n not in (1, count):
                raise EXRError(
                    f"EXR layer {self.name!r} has {n} {what} for {count} saved image(s): give one per "
                    f"saved image or one for all"
                )

        def pick(x, batched_ndim):
            return x if x is None or x.ndim < batched_ndim else x[min(index, x.shape[0] - 1)]

        return replace(self, image=pick(self.image, 4), mask=pick(self.mask, 3))

    def planes(self, colorspace: str, file_precision: str) -> tuple[dict[str, np.ndarray], int]:
        """The layer's channels ({channel name: contiguous [H, W] plane}) as the file stores them:
        colour converted to ``colorspace`` as its encoding says, alpha/mask as given, in its
        precision. Returns them and the number of values that saturated in half. The layer must
        hold one image (``for_image``)."""
        if self.count != 1:
            raise EXRError(f"EXR layer {self.name!r} holds {self.count} images; pick one with for_image")
        image = None if self.image is None else self.image.reshape(self.image.shape[-3:])
        mask = None if self.mask is None else self.mask.reshape(self.mask.shape[-2:])
        stack, names = [], []
        if image is not None:
            rgb = image[..., :3].float()
            if self.encoding == "sRGB":
                rgb = srgb_to_linear(rgb)
            if self.encoding != "data":
                rgb = convert_linear(rgb, WORKING_SPACE, colorspace)
            stack.append(rgb.permute(2, 0, 1))
            names += ["R", "G", "B"]
            alpha = mask if mask is not None else (image[..., 3] if image.shape[-1] == 4 else None)
            if alpha is not None:
                stack.append(alpha.to(device=rgb.device, dtype=torch.float32)[None])
                names.append("A")
        else:
            stack.append(mask.float()[None])
            names.append("Y")
        planes = torch.cat(stack).to(device="cpu", dtype=torch.float32).contiguous().numpy()
        precision = file_precision if self.precision == "file" else self.precision
        planes, saturated = _stored(planes, precision, f"EXR layer {self.name!r}: ", channel_axis=0)
        return {f"{self.name}.{c}": planes[k] for k, c in enumerate(names)}, saturated


def data_layers(header: dict) -> tuple[str, ...]:
    """The layers a file's ``lediff:dataLayers`` attribute marks as data (never colour-converted)."""
    value = header.get(DATA_LAYERS_ATTRIBUTE, ())
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


def write_exr(
    path: str,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    precision: str = "half",
    compression: str = "zip",
    attributes: dict | None = None,
    envmap: str = "none",
    chromaticities: tuple | None = None,
    layers: Sequence[EXRLayer] = (),
    colorspace: str = WORKING_SPACE,
) -> int:
    """Write linear RGB [H, W, 3] (and optional alpha [H, W]) as a scanline EXR, with optional
    extra ``layers`` (EXRLayer, each holding one image of the same size).

    ``rgb`` and the layers' colour are in the working space (linear Rec.709/sRGB primaries, D65);
    the file is written in ``colorspace`` (an OCIO name of ``ocio.LINEAR_SPACES``), converted with
    ``ocio.convert_linear``, except data layers and masks. The file is tagged with
    ``chromaticities`` (8 numbers; default: those of ``colorspace``), which must describe the pixels'
    primaries. ``attributes`` are extra header attributes (str, float, int, tuples the bindings
    understand); ``envmap="latlong"`` adds the standard ``envmap`` attribute of an equirectangular
    environment map. Returns the number of values that saturated when converting to half, main
    image and layers together (always 0 for ``float``). Raises EXRError for NaN/Inf input, bad
    shapes, bad or duplicate layer names or unknown options, before writing anything, and OSError
    when the file cannot be written (a full disk). Writes ``path`` directly: publish through
    ``write_new_file``.
    """
    if precision not in PRECISIONS:
        raise EXRError(f"unknown precision {precision!r}; choose one of {tuple(PRECISIONS)}")
    if compression not in COMPRESSIONS:
        raise EXRError(f"unknown compression {compression!r}; choose one of {tuple(COMPRESSIONS)}")
    if envmap not in ENVMAPS:
        raise EXRError(f"unknown envmap {envmap!r}; choose one of {tuple(ENVMAPS)}")
    if colorspace not in CHROMATICITIES:
        raise EXRError(f"unknown colour space {colorspace!r}; choose one of {tuple(CHROMATICITIES)}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise EXRError(f"expected an RGB image of shape [H, W, 3], got {list(rgb.shape)}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise EXRError(f"the image is {rgb.shape[1]}x{rgb.shape[0]} pixels; an EXR needs at least 1x1")
    if alpha is not None and alpha.shape != rgb.shape[:2]:
        raise EXRError(
            f"alpha of shape {list(alpha.shape)} does not match the image's {list(rgb.shape[:2])}: "
            "resize the mask to the image first"
        )
    height, width = rgb.shape[:2]
    for i, layer in enumerate(layers):
        check_layer_name(layer.name, [other.name for other in layers[:i]])
        if layer.size != (width, height):
            raise EXRError(
                f"EXR layer {layer.name!r} is {layer.size[0]}x{layer.size[1]} but the image is "
                f"{width}x{height}: layers must match the image's size; resize the layer (e.g. with "
                "Upscale Image) or save it in its own file"
            )
        if layer.count != 1:
            raise EXRError(f"EXR layer {layer.name!r} holds {layer.count} images for one file; pick "
                           "one with EXRLayer.for_image")
    # through torch, like the layers: a linear layer equal to the image is stored identically
    main = convert_linear(torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)), WORKING_SPACE,
                          colorspace)
    if alpha is not None:
        main = torch.cat([main, torch.from_numpy(np.asarray(alpha, dtype=np.float32))[..., None]], dim=2)
    planes, saturated = _stored(main.contiguous().numpy(), precision, "", channel_axis=2)
    channels = {"RGB" if alpha is None else "RGBA": planes}
    for layer in layers:
        layer_planes, layer_saturated = layer.planes(colorspace, precision)
        channels.update(layer_planes)
        saturated += layer_saturated
    header = {
        "compression": COMPRESSIONS[compression],
        "type": OpenEXR.scanlineimage,
        "chromaticities": tuple(chromaticities or CHROMATICITIES[colorspace]),
    }
    if ENVMAPS[envmap] is not None:
        header["envmap"] = ENVMAPS[envmap]
    header.update(attributes or {})
    data = [layer.name for layer in layers if layer.is_data]
    if data:
        header[DATA_LAYERS_ATTRIBUTE] = data
    try:
        with OpenEXR.File(header, channels) as f:
            f.write(path)
    except RuntimeError as e:  # the bindings report a failed write (disk full, quota) as RuntimeError
        raise _write_failure(e) from e
    return saturated


# what the bindings' write failures end with (the C library's strerror), mapped back to an errno
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS, errno.EACCES)


def _write_failure(e: RuntimeError) -> OSError:
    """An OpenEXR write failure as the OSError it is, with its errno where the message names one."""
    for code in _WRITE_ERRNOS:
        if os.strerror(code) in str(e):
            return OSError(code, os.strerror(code))
    return OSError(f"writing the EXR failed: {e}")
@contextmanager
def _open(path: str, **kwargs):
    """OpenEXR.File for reading (headers: the pixels are read by ``_pixel_reader``); any failure
    of the bindings becomes an EXRError naming the file, except running out of memory, which stays
    a MemoryError. Anything but a regular file (a FIFO, a device) is refused by name before the
    bindings open it (``access.check_readable``)."""
    check_readable(path)
    try:
        with OpenEXR.File(path, **kwargs) as f:
            yield f
    except (EXRError, MemoryError):
        raise
    except Exception as e:  # the bindings raise RuntimeError/ValueError with terse messages
        if _out_of_memory(e):
            raise MemoryError(str(e)) from e
        raise EXRError(
            f"cannot read {path!r} as OpenEXR ({e}); the file is truncated, corrupt or not an EXR"
        ) from e


# Channel names of a colour layer, tried in this order: OpenEXR's standard names, lower case and
# Nuke-style long names, then luminance/chroma (OpenEXR's RGBA interface with WRITE_YC), then
# luminance only. Alpha names likewise.
COLOUR_SETS = (("R", "G", "B"), ("r", "g", "b"), ("red", "green", "blue"), ("Y", "RY", "BY"), ("Y",))
ALPHA_NAMES = ("A", "a", "alpha")
WINDOWS = ("data", "display")


def _channel_names(layer: str, names) -> tuple[list[str] | None, str | None]:
    """Colour channel names and alpha name for ``layer`` ('' = the default layer), if present."""
    prefix = f"{layer}." if layer else ""
    for colour in COLOUR_SETS:
        wanted = [prefix + c for c in colour]
        if all(n in names for n in wanted):
            if colour == ("Y",) and (prefix + "RY" in names or prefix + "BY" in names):
                raise EXRError(
                    f"layer {layer or '(default)'!r} has luminance Y but only one of the chroma "
                    "channels RY, BY: the file is incomplete and cannot be shown in colour"
                )
            alpha = next((prefix + a for a in ALPHA_NAMES if prefix + a in names), None)
            return wanted, alpha
    return None, None


def _layers(names) -> list[str]:
    found = sorted({n.rsplit(".", 1)[0] for n in names if "." in n})
    return [layer for layer in found if _channel_names(layer, names)[0]]


def _window(header: dict, key: str) -> tuple[int, int, int, int]:
    (x0, y0), (x1, y1) = (np.asarray(v) for v in header[key])
    return int(x0), int(y0), int(x1), int(y1)


def _part_label(index: int, header: dict) -> str:
    label = f"{index}"
    if header.get("name"):
        label += f" {header['name']!r}"
    if header.get("view"):
        label += f" (view {header['view']!r})"
    return label


# Every chunk costs at least 16 bytes: its offset-table entry (8), its y or tile coordinates (4+),
# its data size (4).
MIN_CHUNK_BYTES = 16

# The most bytes one stored byte can decode to, per compression: a file whose images decode to
# more than this times its size cannot be valid, and is refused before the bindings allocate.
# Derived from each decoder's format (OpenEXR's ImfRle, ImfHuf, ImfB44Compressor, ImfDwaCompressor;
# zlib's documented deflate limit), rounded up:
#   NO: stored as is.  RLE: a run is a count byte c (0..127) and a value, c + 1 <= 128 bytes from 2.
#   ZIPS/ZIP: deflate expands at most 1032:1 (zlib's "technical details"); the zlib header only adds.
#   PXR24: zlib of floats cut to 24 bits: 1032 * 4 / 3.
#   PIZ: Huffman-coded 16-bit values whose run code (a code of >= 1 bit and an 8-bit count) repeats
#   the last value up to 255 times: 510 bytes from 9 bits, 453.3:1; the wavelet keeps the size.
#   B44/B44A: a 4x4 block of half values (32 bytes) in 14 bytes, or 3 when flat; others stored.
#   DWAA/DWAB: run-length then zlib (64 * 1032) for exact channels; a flat 8x8 DCT block costs a
#   zlib'd DC value and a deflated or run-coded end-of-block symbol, no less per float pixel.
# ZSTD (through Blosc2, which stores a constant buffer as a header) and the JPEG 2000 ones (a flat
# tile codes in a few bytes) have no fixed bound: they get DWA's, the largest, as a precaution.
MAX_EXPANSION = {"NO_": 1, "RLE": 64, "ZIPS": 1032, "ZIP_": 1032, "PXR24": 1376, "PIZ": 454,
                 "B44": 11, "DWA": 66048}
UNBOUNDED_EXPANSION = 66048

# Bytes per channel value, for the file-wide bound (before the layout is read): the bindings do not
# report a channel's type in a header, so the least a file must store counts every channel as half.
MIN_VALUE_BYTES = 2


def _compression(header: dict) -> str:
    return str(header.get("compression", "")).rsplit(".", 1)[-1].split(":")[0]


def _chunks(header: dict, width: int, height: int) -> int:
    """A lower bound on the number of chunks a valid file with this header holds."""
    tiles = header.get("tiles")
    if tiles is not None:
        tx, ty = max(1, int(tiles.xSize)), max(1, int(tiles.ySize))
        return -(-width // tx) * -(-height // ty)  # full-resolution level only
    lines = lines_per_chunk(_compression(header))
    return -(-height // lines)


def _samples(header: dict) -> int:
    """Channel values of a part's full-resolution image (subsampled channels count their samples)."""
    x0, y0, x1, y1 = _window(header, "dataWindow")

    def count(a, b, step):  # multiples of step in [a, b]
        step = max(1, int(step))
        return max(0, b // step - (a + step - 1) // step + 1)

    return sum(count(x0, x1, c.xSampling) * count(y0, y1, c.ySampling) for c in header.get("channels", ()))


def _min_stored_bytes(header: dict) -> tuple[int, int]:
    """The fewest bytes a valid file can store a part's pixels in, and the expansion assumed."""
    ratio = _expansion(_compression(header))
    return -(-_samples(header) * MIN_VALUE_BYTES // ratio), ratio


def _expansion(compression: str) -> int:
    """The most bytes one stored byte of ``compression`` (e.g. ZIP_COMPRESSION) decodes to."""
    return next((r for key, r in MAX_EXPANSION.items() if compression.startswith(key)), UNBOUNDED_EXPANSION)


def _check_headers(path: str) -> tuple[list[dict], list[set], int, list]:
    """Every part's header, read without pixels, and the file's layout (version flags and each
    part's ``exr_layout.Part``); refuses windows a hostile header can inflate before the bindings
    allocate memory for them: sizes beyond MAX_PIXELS, absurd tiles, images needing more chunks,
    or more stored bytes (at their compression's largest expansion, MAX_EXPANSION), than the file
    has bytes for, and any chunk whose stored size cannot expand to the pixels it claims (a
    truncated, fuzzed or forged file that claims a huge image would otherwise allocate gigabytes
    before failing)."""
    with _open(path, header_only=True) as f:
        headers = [dict(p.header) for p in f.parts]
        # decode channel names here: a damaged name fails inside _open, as an EXRError
        names = [{c.name for c in h.get("channels", ())} for h in headers]
    chunks = stored = 0
    claims = []
    for i, header in enumerate(headers):
        try:
            x0, y0, x1, y1 = _window(header, "dataWindow")
            d = _window(header, "displayWindow") if "displayWindow" in header else (x0, y0, x1, y1)
        except (KeyError, TypeError, ValueError) as e:
            raise EXRError(
                f"{path!r}: part {i} has no valid data window ({e}); the file is corrupt"
            ) from e
        width, height = x1 - x0 + 1, y1 - y0 + 1
        dw, dh = d[2] - d[0] + 1, d[3] - d[1] + 1
        if width <= 0 or height <= 0 or width * height > MAX_PIXELS or dw * dh > MAX_PIXELS:
            raise EXRError(
                f"{path!r} claims a {width}x{height} data window (display window {dw}x{dh}) in part "
                f"{i}; refusing images above {MAX_PIXELS} pixels or with an empty window"
            )
        tiles = header.get("tiles")
        if tiles is not None:
            # A damaged tile description can claim tiles of millions of pixels for a tiny image;
            # the decoder then allocates and loops for seconds before failing.
            tile_area = int(tiles.xSize) * int(tiles.ySize)
            if tile_area > max(MAX_TILE_PIXELS, width * height):
                raise EXRError(
                    f"{path!r} claims {tiles.xSize}x{tiles.ySize} tiles for a {width}x{height} image "
                    f"in part {i}; the tile description is corrupt"
                )
        if "deep" not in str(header.get("type", "")).lower():
            chunks += _chunks(header, width, height)
            least, ratio = _min_stored_bytes(header)
            stored += least
            claims.append((least, i, width, height, ratio, _samples(header) * MIN_VALUE_BYTES))
    size = os.path.getsize(path)
    if chunks * MIN_CHUNK_BYTES > size:
        raise EXRError(
            f"{path!r} is {size} bytes but its header describes images needing at least "
            f"{chunks} chunks ({chunks * MIN_CHUNK_BYTES} bytes); the file is truncated or corrupt"
        )
    if chunks * MIN_CHUNK_BYTES + stored > size:
        least, i, width, height, ratio, decoded = max(claims)
        compression = _compression(headers[i])
        raise EXRError(
            f"{path!r} is {size} bytes but part {i} claims a {width}x{height} image of "
            f"{len(headers[i].get('channels', ()))} channel(s) in {compression}, which decodes to at "
            f"least {format_bytes(decoded)} and so takes at least {least} stored bytes "
            f"({compression} expands at most {ratio}:1); the file is truncated or forged (a "
            "decompression bomb): refused before decoding"
        )
    version, layout = _check_chunks(path, size, len(headers))
    return headers, names, version, layout


def _check_chunks(path: str, size: int, parts: int) -> tuple[int, list]:
    """The file's layout, after checking every chunk of every flat part: its stored size, times
    the most its compression expands (MAX_EXPANSION), must cover the pixels it claims. One tiny
    chunk claiming a huge tile is refused even when the file's other chunks are big."""
    try:
        version, layout = read_layout(path, max_chunks=size // MIN_CHUNK_BYTES)
        if len(layout) != parts:
            raise LayoutError(f"{len(layout)} part(s) in the layout, {parts} in the headers")
        for i, part in enumerate(layout):
            if part.deep:
                continue  # never decoded: Load EXR refuses deep parts
            ratio = _expansion(part.compression_name)
            for chunk in read_chunks(path, bool(version & MULTI_PART), i, part):
                if chunk.claimed > chunk.stored * ratio:
                    raise EXRError(
                        f"{path!r}: chunk {chunk.index} of part {i} ({chunk.what}) is stored in "
                        f"{chunk.stored} bytes of {part.compression_name}, which expands at most "
                        f"{ratio}:1, but claims {chunk.claimed} bytes of pixels "
                        f"({format_bytes(chunk.claimed)}); the file is forged (a decompression "
                        "bomb) or corrupt: refused before decoding"
                    )
    except (LayoutError, OSError, struct.error) as e:
        raise EXRError(
            f"cannot read {path!r} as OpenEXR ({e}); the file is truncated, corrupt or not an EXR"
        ) from e
    return version, layout


def _select_part(path: str, headers: list[dict], names: list[set], part: str, view: str) -> int:
    listing = ", ".join(_part_label(i, h) for i, h in enumerate(headers))
    if part:
        part_names = [h.get("name", "") for h in headers]
        if part in part_names:
            index = part_names.index(part)
        elif part.isdigit() and int(part) < len(headers):
            index = int(part)
        else:
            raise EXRError(
                f"{path!r} has no part {part!r}; its parts are: {listing} (give a name or a number, "
                "or leave part empty for the first)"
            )
        if view and headers[index].get("view") and headers[index]["view"] != view:
            raise EXRError(
                f"part {part!r} of {path!r} holds view {headers[index]['view']!r}, not {view!r}; "
                f"its parts are: {listing}"
            )
        return index
    part_views = [h.get("view") for h in headers]
    candidates = list(range(len(headers)))
    if view and any(part_views) and "multiView" not in headers[0]:
        candidates = [i for i, v in enumerate(part_views) if v == view]
        if not candidates:
            raise EXRError(
                f"{path!r} has no view {view!r}; its parts are: {listing} (leave view empty for the "
                "first part)"
            )
    # the first candidate with colour channels (a depth or motion part may come first)
    return next((i for i in candidates if _has_colour(names[i])), candidates[0])


def _has_colour(names: set) -> bool:
    try:
        return bool(_channel_names("", names)[0] or _layers(names))
    except EXRError:
        return True  # incomplete YC: let the read report it


def _view_channels(path: str, names, header: dict, view: str) -> tuple[dict[str, str], str]:
    """The channels of one view as {name without the view: name in the file}, and the view.

    OpenEXR's multi-view convention (ImfMultiView): the ``multiView`` attribute lists the views,
    the first is the default; a channel's view is its second-to-last name component when that is a
    view name (``right.R``, ``diffuse.right.R``), else the default view (``R``, ``diffuse.R``)."""
    views = [str(v) for v in header.get("multiView", [])]
    if not views:
        own = header.get("view", "")
        if view and view != own:
            have = f"holds only view {own!r}" if own else "has no views"
            raise EXRError(f"{path!r} (the part chosen) {have}; leave view empty")
        return {n: n for n in names}, own
    view = view or views[0]
    if view not in views:
        raise EXRError(f"{path!r} has no view {view!r}; its views are {views} (empty: {views[0]!r})")
    selected = {}
    for name in names:
        parts = name.split(".")
        if len(parts) > 1 and parts[-2] in views:
            if parts[-2] == view:
                selected[".".join(parts[:-2] + parts[-1:])] = name
        elif view == views[0]:
            selected[name] = name
    return selected, view


def read_exr(
    path: str, layer: str = "", part: str = "", view: str = "", window: str = "data"
) -> HDRImage:
    """Read a linear image from an EXR file.

    ``part``: a part's name or number in a multi-part file (empty: the first part with colour
    channels, among the parts of ``view`` when the file has one part per view). ``view``: a view
    of a multi-view file (empty: the default view).
    ``layer`` names a layer such as ``beauty`` (channels ``beauty.R`` ...). Empty means: the
    default RGB(A), YC or Y channels, else a layer named like a beauty pass, else the first layer
    with colour channels. Luminance/chroma layers (``Y``, ``RY``, ``BY``) are reconstructed to RGB
    like OpenEXR's RGBA interface (``exr_yc``); ``Y`` alone is grey. Tiled and
    mip-mapped files give their full-resolution level. ``window``: ``data`` returns the data
    window (the pixels the file stores); ``display`` returns the display window, cropping pixels
    outside it and filling the uncovered area with 0 (alpha 0 there). Half and float data come back
    as exact float32 values.
    """
    if window not in WINDOWS:
        raise EXRError(f"unknown window {window!r}; choose one of {WINDOWS}")
    headers, names, version, layout = _check_headers(path)
    index = _select_part(path, headers, names, part, view)
    header = headers[index]
    if "deep" in str(header.get("type", "")).lower():
        raise EXRError(
            f"part {_part_label(index, header)} of {path!r} is a deep image (several samples per "
            "pixel), which Load EXR does not flatten; choose another part or flatten it first"
        )
    x0, y0, x1, y1 = _window(header, "dataWindow")
    width, height = x1 - x0 + 1, y1 - y0 + 1
    stored = {c.name: c for c in layout[index].channels}
    mapping, view = _view_channels(path, list(stored), header, view)
    colour, alpha, layer = _select_channels(path, set(mapping), layer)
    yc = len(colour) == 3 and colour[1].endswith("RY")
    for name in colour + ([alpha] if alpha else []):
        channel = stored[mapping[name]]
        if channel.type not in (1, 2):
            raise EXRError(
                f"channel {name!r} of {path!r} holds {PIXEL_TYPES.get(channel.type, 'unknown')} "
                "integers, not colour: choose a layer with half or float channels"
            )
        if (channel.x_sampling, channel.y_sampling) != (1, 1) and not (yc and name != colour[0]):
            raise EXRError(
                f"channel {name!r} of {path!r} is subsampled ({channel.x_sampling}x"
                f"{channel.y_sampling} in a {width}x{height} image); subsampled channels are not "
                "supported"
            )
    # the output (float32 RGB and alpha), full-resolution luminance and chroma for YC, a band
    need = (16 if alpha else 12) * width * height + (4 * width * height if yc else 0) + BAND_BYTES
    try:
        with _pixel_reader(path, version, layout, index) as read:
            if yc:
                rgb = _yca_rgb(path, read, [mapping[n] for n in colour], stored, header, (x0, y0),
                               (height, width), _bands(height, width, layout[index], 3))
                a = None
                if alpha:
                    a = np.empty((height, width), np.float32)
                    for r0, r1 in _bands(height, width, layout[index], 1):
                        a[r0:r1] = read([mapping[alpha]], y0 + r0, y0 + r1, width)[0]
            else:
                rgb = np.empty((height, width, 3), np.float32)
                a = np.empty((height, width), np.float32) if alpha else None
                # Band by band, only the channels returned, converted to float32 by the library:
                # peak memory is the output and one band, whatever else the file holds.
                wanted = [mapping[n] for n in colour + ([alpha] if alpha else [])]
                for r0, r1 in _bands(height, width, layout[index], len(wanted)):
                    planes = read(wanted, y0 + r0, y0 + r1, width)
                    for k in range(3):
                        rgb[r0:r1, :, k] = planes[k if len(colour) == 3 else 0]
                    if alpha:
                        a[r0:r1] = planes[-1]
    except MemoryError as e:
        raise out_of_memory(path, width, height, need, e) from e
    result = HDRImage(rgb=rgb, alpha=a, header=header, layer=layer, part=index, view=view)
    return _display_window(result, header) if window == "display" else result


# Bytes of float32 read at a time, all channels of a band together (rounded up to whole chunks):
# the decoder's buffers stay small beside the output, and each chunk is decoded once. (The
# bindings' whole-file reader, ``OpenEXR.File``, decodes every channel of every part at once.)
BAND_BYTES = 4 << 20
_PIXEL_TYPES = {np.float32: Imath.PixelType(Imath.PixelType.FLOAT),
                np.float16: Imath.PixelType(Imath.PixelType.HALF)}


def _bands(height: int, width: int, part, channels: int) -> list[tuple[int, int]]:
    """Row ranges [r0, r1) of about BAND_BYTES of float32 for ``channels`` channels, in whole
    chunks (scan line chunks or tile rows) and an even number of rows (for 2x2-sampled chroma)."""
    unit = part.tiles[1] if part.tiles else part.lines
    unit = max(1, unit) * (1 if unit % 2 == 0 else 2)
    rows = max(unit, BAND_BYTES // (4 * width * channels) // unit * unit)
    return [(r, min(height, r + rows)) for r in range(0, height, rows)]


@contextmanager
def _pixel_reader(path: str, version: int, layout: list, index: int):
    """A function read(channels, first line, end line, samples per line) -> float32 planes
    [lines, samples], one per channel, for part ``index``, through OpenEXR's scanline/tile reader
    (the bindings' ``InputFile``, which decodes only the channels and lines asked for, each chunk
    once per call, and converts them to float32). That reader opens a file's first part; another
    part is presented to it as a single-part file (``exr_layout.SinglePartView``). Its failures
    become EXRError naming the file, except running out of memory (MemoryError)."""

    def failure(e: Exception) -> Exception:
        if _out_of_memory(e):
            return MemoryError(str(e))
        return EXRError(
            f"cannot read {path!r} as OpenEXR ({e}); the file is truncated, corrupt or not an EXR"
        )

    view = None
    try:
        if index:
            view = SinglePartView(path, version, layout[index])  # chunks read by _check_chunks
        f = OpenEXR.InputFile(view if view is not None else path)
    except (OSError, TypeError, ValueError) as e:
        if view is not None:
            view.close()
        raise failure(e) from e

    def read(names: list[str], first: int, end: int, samples: int, dtype=np.float32) -> list[np.ndarray]:
        try:  # channel() handles subsampled channels; channels() full-resolution ones
            if len(names) == 1:
                data = [f.channel(names[0], _PIXEL_TYPES[dtype], first, end - 1)]
            else:
                data = f.channels(names, _PIXEL_TYPES[dtype], first, end - 1)
        except (OSError, TypeError, ValueError) as e:
            raise failure(e) from e
        return [np.frombuffer(d, dtype).reshape(-1, samples) for d in data]

    try:
        yield read
    finally:
        f.close()
        if view is not None:
            view.close()


# What OpenEXR and the bindings say when an allocation fails (std::bad_alloc, the bindings' own
# buffers, the core's EXR_ERR_OUT_OF_MEMORY); lower case.
MEMORY_FAILURES = ("bad_alloc", "out of memory", "allocation failed", "unable to allocate")
# The decoder's own messages often hide the cause ("Unable to run decoder": the core prints
# EXR_ERR_OUT_OF_MEMORY to stderr only), so a failure is also taken for memory when this much can
# no longer be allocated right after it: a decode needs a band and its chunks, far less.
MEMORY_PROBE_BYTES = 4 * BAND_BYTES


def _out_of_memory(e: Exception) -> bool:
    """Whether the reader's failure ``e`` is running out of memory rather than a damaged file."""
    if any(words in str(e).lower() for words in MEMORY_FAILURES):
        return True
    try:
        np.empty(MEMORY_PROBE_BYTES, np.uint8)  # reserved, never touched: costs nothing
    except MemoryError:
        return True
    return False


def _yca_rgb(path, read, names, stored, header, origin, shape, bands) -> np.ndarray:
    """RGB from luminance/chroma channels ``names`` (Y, RY, BY as stored in the file)."""
    sampling = {(stored[n].x_sampling, stored[n].y_sampling) for n in names[1:]}
    if sampling == {(1, 1)}:
        subsampled = False
    elif sampling == {(2, 2)} and origin[0] % 2 == 0 and origin[1] % 2 == 0:
        subsampled = True
    else:
        raise EXRError(
            f"{path!r}: chroma channels {names[1:]} are sampled {sorted(sampling)} from origin "
            f"{origin}; only full-resolution or 2x2 chroma (as OpenEXR writes it) is supported"
        )
    height, width = shape
    y0 = origin[1]
    half = all(stored[n].type == 1 for n in names)
    rgb = np.empty((height, width, 3), np.float32)  # the output first: the largest allocation
    weights = luminance_weights(header.get("chromaticities", REC709_CHROMATICITIES))
    if not subsampled:  # each pixel on its own: band by band, like RGB
        for r0, r1 in bands:
            y, ry, by = read(names, y0 + r0, y0 + r1, width)
            yca_to_rgb(y, ry, by, weights, subsampled=False, half=half, out=rgb[r0:r1])
        return rgb
    # The filter reaches across bands: luminance whole (as half for half files: a sixth of the
    # output) and chroma (a quarter of the pixels), read band by band into them.
    dtype = np.float16 if half else np.float32
    luma = np.empty((height, width), dtype)
    ry, by = (np.empty((-(-height // 2), -(-width // 2)), dtype) for _ in range(2))
    for r0, r1 in bands:  # even rows from an even origin: whole chroma rows
        luma[r0:r1] = read(names[:1], y0 + r0, y0 + r1, width, dtype)[0]
        for plane, name in ((ry, names[1]), (by, names[2])):
            plane[r0 // 2 : -(-r1 // 2)] = read([name], y0 + r0, y0 + r1, plane.shape[1], dtype)[0]
    return yca_to_rgb(luma, ry, by, weights, subsampled=True, half=half, out=rgb)


def _display_window(image: HDRImage, header: dict) -> HDRImage:
    """Crop/pad a data-window image to the display window (0 where no data, alpha 0 there)."""
    x0, y0, x1, y1 = _window(header, "dataWindow")
    d0x, d0y, d1x, d1y = _window(header, "displayWindow")
    if (x0, y0, x1, y1) == (d0x, d0y, d1x, d1y):
        return image
    h, w = d1y - d0y + 1, d1x - d0x + 1
    rgb = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    src = image.alpha if image.alpha is not None else np.ones(image.rgb.shape[:2], np.float32)
    # overlap in display coordinates
    ox0, oy0, ox1, oy1 = max(x0, d0x), max(y0, d0y), min(x1, d1x), min(y1, d1y)
    if ox0 <= ox1 and oy0 <= oy1:
        dst = (slice(oy0 - d0y, oy1 - d0y + 1), slice(ox0 - d0x, ox1 - d0x + 1))
        srcs = (slice(oy0 - y0, oy1 - y0 + 1), slice(ox0 - x0, ox1 - x0 + 1))
        rgb[dst] = image.rgb[srcs]
        alpha[dst] = src[srcs]
    return HDRImage(
        rgb=rgb, alpha=alpha, header=image.header, layer=image.layer, part=image.part,
        view=image.view,
    )


def _select_channels(path: str, names: set, layer: str) -> tuple[list[str], str | None, str]:
    if layer:
        colour, alpha = _channel_names(layer, names)
        if colour is None:
            raise EXRError(
                f"{path!r} has no layer {layer!r} with R, G, B or Y channels; its layers are "
                f"{_layers(names) or 'none'} (leave the layer empty for the default)"
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
            f"{path!r} has no colour channels (R, G, B, Y/RY/BY or Y); its channels are "
            f"{sorted(names)}"
        )
    colour, alpha = _channel_names(ordered[0], names)
    return colour, alpha, ordered[0]
