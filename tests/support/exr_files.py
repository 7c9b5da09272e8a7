"""EXR files for the tests, written with the official OpenEXR bindings (an independent writer: not
the pack's ``lediff_core.io.exr``) and read back by Debian's exrheader (an independent reader); HDR
frames; what the savers left in a host's output folder."""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import OpenEXR

from support.common import HDRI_DIR, require_tool


def read_hdri(name: str, step: int = 1) -> np.ndarray:
    """One of the CC0 HDRIs of tests/data/hdri (``name`` without .exr) as the official bindings read it,
    negatives set to 0, every ``step``-th pixel, float32."""
    with OpenEXR.File(os.path.join(HDRI_DIR, f"{name}.exr")) as f:
        rgb = np.asarray(f.channels()["RGB"].pixels, dtype=np.float32)
    return np.ascontiguousarray(np.maximum(rgb, 0.0)[::step, ::step])


def write_exr(path, channels: dict, header=None) -> str:
    """An EXR at ``path`` (its folder made) holding ``channels`` ({name: array}, "RGB" for an
    (h, w, 3) image) with the bindings' default header updated by ``header``; returns the path."""
    path = str(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # the bindings ignore numpy strides: hand them contiguous planes
    channels = {k: np.ascontiguousarray(v) for k, v in channels.items()}
    with OpenEXR.File(header or {}, channels) as f:
        f.write(path)
    return path


def write_input(host, name, image, header=None) -> str:
    """An EXR in the host's input folder, for Load EXR: ``image`` is an RGB array (written as float32)
    or {channel: array}; returns ``name``."""
    channels = image if isinstance(image, dict) else {"RGB": np.asarray(image, dtype=np.float32)}
    write_exr(os.path.join(host.input_dir, name), channels, header)
    return name


def outputs_of(host) -> list[str]:
    """What the pack's savers published in the host's output folder (its LEDiff/ folder), sorted."""
    folder = os.path.join(host.output_dir, "LEDiff")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def hdr_frames(n, h=48, w=64, seed=0):
    """Positive linear HDR frames, 2^-8 .. 5000, a different picture per frame."""
    rng = np.random.default_rng(seed)
    return [np.exp2(rng.uniform(-8, np.log2(5000), (h, w, 3))).astype(np.float32) for _ in range(n)]


def read_rgb(path):
    with OpenEXR.File(path, separate_channels=True) as f:
        ch = f.channels()
        return np.stack([ch[c].pixels for c in "RGB"], -1), dict(f.header())


def listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def write_scanline_exr(path, channels, header=None, origin=(0, 0), display=None):
    """A scanline EXR with ``channels``; ``origin`` moves the data window, ``display`` is the
    display window (x0, y0, x1, y1), by default equal to the data window."""
    h, w = next(iter(channels.values())).shape[:2]
    data = (np.array(origin, "i4"), np.array((origin[0] + w - 1, origin[1] + h - 1), "i4"))
    disp = data if display is None else (np.array(display[:2], "i4"), np.array(display[2:], "i4"))
    full = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
            "dataWindow": data, "displayWindow": disp}
    full.update(header or {})
    with OpenEXR.File(full, channels) as f:
        f.write(str(path))
    return str(path)


def colourful(h=48, w=64, seed=0):
    """Smooth HDR colours (chroma subsampling keeps them), saturated patches, grey and black."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = np.stack([np.exp2(8 * xx - 2), np.exp2(6 * yy - 3), 0.5 + 0.4 * np.sin(9 * xx * yy)], -1)
    rgb *= rng.uniform(0.95, 1.05, (h, w, 1))
    rgb[4:14, 6:22] = (300.0, 2.0, 0.5)  # saturated, bright
    rgb[20:30, 30:50] = 0.25  # grey: the reader must keep it grey
    rgb[36:, :8] = 0.0  # black
    return rgb.astype(np.float16)


def half_ulps(a, b):
    ia = a.astype(np.float16).view(np.int16).astype(np.int64)
    ib = b.astype(np.float16).view(np.int16).astype(np.int64)
    return np.abs(ia - ib)


def exrheader(path) -> str:
    """What Debian's exrheader (OpenEXR 3.1, a separate build of the C++ library) prints of a file."""
    return subprocess.run([require_tool("exrheader"), path], capture_output=True, text=True, check=True).stdout


def exrheader_channels(path) -> tuple[dict[str, str], str]:
    """{channel: 'half'|'float'} as Debian's exrheader lists them, and its full text."""
    text = exrheader(path)
    found = re.findall(r"^ {4}(\S+), (16|32)-bit floating-point, sampling 1 1$", text, re.M)
    return {name: {"16": "half", "32": "float"}[bits] for name, bits in found}, text
