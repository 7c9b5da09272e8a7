"""The attacks of issue 25, written as the attacks they are: crafted files that claim more than their
bytes can hold (Radiance headers, OpenEXR attributes and a tiled single-part layout, byte by byte from
the formats' specifications), absurd model configs beside small weights, lying safetensors headers,
and a child process that measures how much memory a read took (VmHWM after resetting it) under a data
limit, so that a regression fails there instead of taking the machine down."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np

from support import tiny_models as fx
from support.common import REPO


def hdr_header(width, height):
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {height} +X {width}\n".encode()


def attribute(name, kind, value):
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value


RGB_HALF = b"".join(c + b"\0" + struct.pack("<iB3xii", 1, 0, 1, 1) for c in (b"B", b"G", b"R")) + b"\0"


def exr_header(width: int, height: int, compression: int = 3, channels: bytes = RGB_HALF,
               tile: int | None = None) -> bytes:
    """The magic, version and header of a single-part EXR (the OpenEXR file layout) of ``channels``
    (a chlist, R, G, B half by default) over a ``width`` x ``height`` data window; tiled in
    ``tile`` x ``tile`` tiles of one level when ``tile`` is given, else scanline."""
    box = struct.pack("<4i", 0, 0, width - 1, height - 1)
    header = b"".join([
        attribute("channels", "chlist", channels),
        attribute("compression", "compression", bytes([compression])),
        attribute("dataWindow", "box2i", box),
        attribute("displayWindow", "box2i", box),
        attribute("lineOrder", "lineOrder", b"\0"),
        attribute("pixelAspectRatio", "float", struct.pack("<f", 1)),
        attribute("screenWindowCenter", "v2f", struct.pack("<2f", 0, 0)),
        attribute("screenWindowWidth", "float", struct.pack("<f", 1)),
        *([attribute("tiles", "tiledesc", struct.pack("<IIB", tile, tile, 0))] if tile else []),
    ]) + b"\0"
    return struct.pack("<ii", 20000630, 2 | (0x200 if tile else 0)) + header


def tiled_exr_bomb(size=16384, compression=3, data=bytes(8), tiles=None):
    """A single-part tiled EXR (OpenEXR file layout: magic, version 2 with the tiled flag 0x200,
    header attributes, offset table, chunks) claiming one size x size tile of R, G, B half, or a
    row of size x size tiles, one per entry of ``tiles`` (each its stored bytes)."""
    tiles = [data] if tiles is None else tiles
    start = exr_header(size * len(tiles), size, compression, tile=size)
    chunks = [struct.pack("<5i", x, 0, 0, 0, len(stored)) + stored for x, stored in enumerate(tiles)]
    offsets = np.cumsum([len(start) + 8 * len(tiles)] + [len(c) for c in chunks[:-1]])
    return start + struct.pack(f"<{len(tiles)}Q", *offsets) + b"".join(chunks)


MB = 1 << 20
GROWTH_LIMIT = 500 * MB
DATA_LIMIT = 3 << 30  # the most a regression may take in the child before it fails with MemoryError
# (part, setting, value, what the weights have): the attacks, against the fixture's small weights
ATTACKS = [
    ("vae", "block_out_channels", [4096] * 4, "[32, 64, 64, 64]"),
    ("vae", "layers_per_block", 1000, "1"),
    ("unet", "block_out_channels", [4096] * 4, "[32, 64, 64]"),
    ("unet", "block_out_channels", [4096] * 3, "[32, 64, 64]"),  # as many levels as its block types
    ("unet", "layers_per_block", 1000, "1"),
]
MEASURE = r"""
import json, re, resource, sys

def status(key):
    return int(re.search(key + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

def measured(run, limit):
    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    resource.setrlimit(resource.RLIMIT_DATA, (status("VmData") + limit, hard))
    open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS
    before = status("VmRSS")
    try:
        run()
        result = {"error": None}
    except BaseException as e:
        result = {"error": type(e).__name__, "message": str(e)}
    resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))
    result["grew"] = status("VmHWM") - before
    print(json.dumps(result), flush=True)
"""


def in_child(script: str, *args: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", script, str(DATA_LIMIT), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def attacked_folder(root, part: str, setting: str, value, name: str | None = None, **kwargs) -> str:
    """The fixture's official folder with one setting of ``part``'s config.json replaced."""
    folder = fx.write_official_folder(str(root), name or f"{part}_{setting}", extras=False, **kwargs)
    path = os.path.join(folder, part, "config.json")
    config = json.load(open(path))
    json.dump({**config, setting: value}, open(path, "w"))
    return folder


def assert_names_the_config(message: str, folder: str, part: str, setting: str, weights: str) -> None:
    assert os.path.join(folder, part, "config.json") in message, message
    assert f"{setting} is " in message and f"where the weights have {weights}" in message, message
    assert "re-download the model" in message, message


def safetensors_bytes(header: dict, data: bytes, length: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def f32(shape, start=0, end=8):
    return {"dtype": "F32", "shape": shape, "data_offsets": [start, end]}


# name -> (file bytes, what the refusal says). What the safetensors library guarantees is tested
# here, not assumed: it refuses each of these before allocating (checked for the installed version).
LIES = {
    "length beyond the file": (safetensors_bytes({"x": f32([2])}, b"\0" * 8, length=10 ** 6),
                               "claims a 1000000-byte header, beyond the file's"),
    "absurd header length": (safetensors_bytes({"x": f32([2])}, b"\0" * 8, length=1 << 62),
                             "beyond the file's"),
    "offsets beyond the file": (safetensors_bytes({"x": f32([1 << 30], 0, 4 << 30)}, b"\0" * 8),
                                "file not fully covered"),
    "a 1e12-element shape": (safetensors_bytes({"x": f32([10 ** 12])}, b"\0" * 8),
                             "invalid shape, data type, or offset"),
    "a shape whose size overflows": (safetensors_bytes({"x": f32([1 << 40, 1 << 40])}, b"\0" * 8), "overflow"),
    "a gap before a tensor": (safetensors_bytes({"x": f32([2], 8, 16)}, b"\0" * 16), "invalid offset"),
    "trailing bytes": (safetensors_bytes({"x": f32([2])}, b"\0" * (8 + MB)), "file not fully covered"),
    "a truncated length": (b"\x10\0\0", "shorter than a safetensors header's length field"),
}
