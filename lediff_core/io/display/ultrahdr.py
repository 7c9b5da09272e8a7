"""Ultra HDR JPEG (an SDR JPEG plus a gain map, ISO 21496-1) through libultrahdr in ``imagecodecs``.

libultrahdr's encoder takes linear RGBA half floats where 1.0 is SDR white (203 cd/m2), derives the
SDR base with its own global tone mapper, and stores a gain map whose maximum boost is
10000/203 (about 49, 5.62 stops) for linear input; brighter pixels are clipped to that boost.
``nits`` sets the target display peak, which becomes the metadata's alternate HDR headroom: the
display headroom from which the full HDR rendition is shown (less headroom gets an interpolation).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .metadata import jpeg_with_exif
from .registry import DisplayFormat, Encoded, FormatError, Settings, check_image, count_above, register

SDR_WHITE_NITS = 203.0  # BT.2408 reference white; libultrahdr's SDR white for linear input
MAX_BOOST = 10000.0 / SDR_WHITE_NITS  # libultrahdr's maximum content boost for linear input
MAX_HEADROOM_STOPS = math.log2(MAX_BOOST)
MIN_SIZE = 8  # libultrahdr refuses smaller images ("image dimensions cannot be less than 8x8")


def check_options(settings: Settings) -> None:
    if not (0 < settings.headroom_stops <= MAX_HEADROOM_STOPS + 1e-6):
        raise FormatError(f"headroom_stops must be in (0, {MAX_HEADROOM_STOPS:.2f}] for Ultra HDR "
                          f"(libultrahdr's largest boost is {MAX_BOOST:.1f}x), got {settings.headroom_stops}")


def encode(rgb: np.ndarray, settings: Settings, exif: bytes | None = None) -> Encoded:
    import imagecodecs
    from imagecodecs import ULTRAHDR

    t = check_image(rgb, settings, FORMAT)
    over = count_above(t, MAX_BOOST)
    rgba = torch.ones((*t.shape[:2], 4), dtype=torch.float16)
    rgba[..., :3] = t.clamp(0, MAX_BOOST).half()  # contiguous half first: 2.5x faster than one step
    data = imagecodecs.ultrahdr_encode(
        rgba.numpy(), level=settings.quality,
        gamut=ULTRAHDR.CG.BT_709, transfer=ULTRAHDR.CT.LINEAR,
        nits=SDR_WHITE_NITS * 2.0 ** settings.headroom_stops,
    )
    if exif:
        data = jpeg_with_exif(bytes(data), exif)
    return Encoded(bytes(data), over, f"{MAX_BOOST:.1f}x reference white (libultrahdr's largest gain)")


FORMAT = register(DisplayFormat("ultrahdr", ".jpg", encode,
                                "JPEG with an ISO 21496-1 gain map: SDR everywhere, HDR on capable screens",
                                min_size=MIN_SIZE, min_size_reason="libultrahdr's smallest image",
                                check_options=check_options))
