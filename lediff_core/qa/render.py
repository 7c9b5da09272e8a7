"""Small drawing helpers shared by the QA pictures (PIL's built-in font, float RGB arrays)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def font(size: int):
    """PIL's default font at ``size`` pixels (a scalable font when Pillow has FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def to_pil(rgb01: np.ndarray) -> Image.Image:
    """HxWx3 display values in 0..1 (already encoded) to an 8-bit PIL image."""
    return Image.fromarray((np.clip(rgb01, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")


def from_pil(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def label_band(width: int, height: int, text: str, size: int) -> np.ndarray:
    """A dark band ``height`` pixels high with ``text`` centred in white."""
    band = Image.new("RGB", (width, height), (32, 32, 32))
    draw = ImageDraw.Draw(band)
    f = font(size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=f)
    draw.text(
        ((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top), text, fill=(255, 255, 255), font=f
    )
    return from_pil(band)
