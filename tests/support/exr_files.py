"""EXR files for the tests, written with the official OpenEXR bindings (an independent writer: not
the pack's ``lediff_core.io.exr``), and what the savers left in a host's output folder."""

from __future__ import annotations

import os

import numpy as np
import OpenEXR


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
