"""TIFF masters through ``tifffile`` (zlib/Deflate compression by ``imagecodecs``):

- ``tiff_float`` / ``tiff_half``: 32- or 16-bit IEEE float samples (SampleFormat 3), linear
  Rec.709 primaries, D65, 1.0 = reference white: the working space as it is, values above 1 and
  negative components kept (half floats: up to 65504, about 0.05 % precision). No ICC profile:
  readers take float TIFF as scene-linear (OpenImageIO, Nuke, Resolve, Photoshop's 32-bit mode).
- ``tiff_16bit``: 16-bit integers, the sRGB transfer (IEC 61966-2-1) with Rec.709 primaries, D65,
  and an embedded sRGB ICC profile (Little CMS's, through Pillow): an SDR print/stock master.
  Reference white lands on code 65535; brighter values and negative components are clipped and
  counted (tone map first, e.g. with Tone Map, to keep highlights in an SDR master).

The workflow goes in the baseline TIFF tags Make/Model (and ImageDescription for a third entry), as
the Exif block of the other formats carries it, so exiftool reads it the same way.
"""

from __future__ import annotations

import io
from functools import lru_cache, partial

import numpy as np
import torch

from ...color import linear_to_srgb
from .metadata import exif_text
from .registry import DisplayFormat, Encoded, FormatError, Settings, check_image, count_above, register

# classic TIFF's 32-bit offsets, less room for the tags and the workflow; BigTIFF is not read
# everywhere (Photoshop before CC, many print RIPs), so a larger image is refused, not made BigTIFF
MAX_BYTES = 2**32 - 2**26
SAMPLE_BYTES = {"uint16": 2, "float16": 2, "float32": 4}


@lru_cache(maxsize=1)
def srgb_icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _workflow_tags(exif: bytes | None) -> list[tuple]:
    """The Exif block's ASCII entries as tifffile ``extratags`` (same tag numbers: they are baseline TIFF tags)."""
    return [(tag, "s", 0, value, True) for tag, value in exif_text(exif).items()] if exif else []


def check_size(width: int, height: int, *, dtype: str) -> None:
    """Refuses, from the size alone, an image whose samples (uncompressed: Deflate may not shrink
    noise) would not fit a classic TIFF."""
    size = width * height * 3 * SAMPLE_BYTES[dtype]
    if size > MAX_BYTES:
        smaller = " or tiff_half (half the bytes)" if dtype == "float32" else ""
        raise FormatError(f"the image is {width}x{height}: {size / 2**30:.1f} GiB of {dtype} samples, more than "
                          f"a classic TIFF holds ({MAX_BYTES / 2**30:.2f} GiB). Save an EXR (Save EXR){smaller} "
                          "instead, or crop or downscale the image")


def encode(rgb: np.ndarray, settings: Settings, exif: bytes | None = None, *, dtype: str) -> Encoded:
    import tifffile

    check_size(rgb.shape[1], rgb.shape[0], dtype=dtype)
    t = check_image(rgb, settings)
    over, peak, icc = 0, "none (float)", None
    if dtype == "uint16":
        over = count_above(t, 1.0) + int((t.amin(dim=-1) < 0).sum())
        codes = torch.round(linear_to_srgb(t.double().clamp(0, 1)) * 65535).to(torch.int32)
        pixels, icc = codes.numpy().astype(np.uint16), srgb_icc()
        peak = "reference white (SDR: code 65535; negative components also clipped, counted here)"
    elif dtype == "float16":
        over = count_above(t.abs(), 65504.0)
        pixels = t.clamp(-65504, 65504).numpy().astype(np.float16)
        peak = "65504x reference white (half float's largest)"
    else:
        pixels = t.numpy()
    buf = io.BytesIO()
    tifffile.imwrite(buf, pixels, photometric="rgb", compression="zlib", predictor=dtype == "uint16",
                     metadata=None, iccprofile=icc, extratags=_workflow_tags(exif))
    return Encoded(buf.getvalue(), over, peak)


register(DisplayFormat("tiff_16bit", ".tif", partial(encode, dtype="uint16"),
                       "16-bit integer TIFF, sRGB curve and primaries (ICC): SDR print/stock master",
                       check_size=partial(check_size, dtype="uint16")))
register(DisplayFormat("tiff_half", ".tif", partial(encode, dtype="float16"),
                       "16-bit float TIFF, linear Rec.709: HDR master",
                       check_size=partial(check_size, dtype="float16")))
register(DisplayFormat("tiff_float", ".tif", partial(encode, dtype="float32"),
                       "32-bit float TIFF, linear Rec.709: HDR master, exact",
                       check_size=partial(check_size, dtype="float32")))
