"""Decompression bombs and unlucky large files, written as the attacks they are (issue 25, class 1).

Every reader checks the header against the file's size before it allocates: a Radiance file whose
scanlines cannot fit in its bytes, and an EXR whose images its compression cannot expand to from
the file's bytes, are refused at once. Legitimate decodes peak at about their output; trailing bytes
are not read; a genuine allocation failure is reported as memory. Memory and bytes read are
measured in a child process (/proc/self/status VmHWM after resetting it, /proc/self/io rchar)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import OpenEXR
import pytest

from lediff_core.io.exr import EXRError, read_exr
from lediff_core.io.radiance import min_scanline_bytes, read_hdr
from support.attacks import exr_header, hdr_header, tiled_exr_bomb
from support.common import REPO, require_tool

MiB = 1 << 20

CHILD = r"""
import ctypes, json, re, resource, sys
from lediff_core.io.readers import read_linear_image

# Reads one after another measure alike: large blocks always mmapped (glibc would raise its
# threshold after the first big free and keep later ones in the heap), freed heap handed back.
libc = ctypes.CDLL("libc.so.6")
libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD, fixed
trim = libc.malloc_trim

def status(key):
    return int(re.search(key + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

def rchar():
    return int(re.search(r"rchar: (\d+)", open("/proc/self/io").read()).group(1))

hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
for path, limit in zip(sys.argv[2::2], map(int, sys.argv[3::2])):
    trim(0)
    resource.setrlimit(resource.RLIMIT_DATA, (status("VmData") + limit if limit else hard, hard))
    open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS
    before = status("VmRSS")
    read_before = rchar()
    try:
        image = read_linear_image(path)
        result = {"output": image.rgb.nbytes + (0 if image.alpha is None else image.alpha.nbytes)}
        del image
    except Exception as e:
        result = {"error": type(e).__name__, "message": str(e)}
    read = rchar() - read_before
    result.update(grew=status("VmHWM") - before, read=read)
    print(json.dumps(result), flush=True)
"""


def read_in_child(*paths, memory_limit=0):
    """Read each of ``paths`` in one fresh process; returns for each its result, how far the peak
    RSS grew during the read, and the bytes read (``memory_limit``: extra data memory allowed,
    0 = no limit; a list gives one per path). One result when one path is given."""
    limits = memory_limit if isinstance(memory_limit, list) else [memory_limit] * len(paths)
    args = [str(x) for path, limit in zip(paths, limits, strict=True) for x in (path, limit)]
    proc = subprocess.run([sys.executable, "-c", CHILD, "-", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.strip().splitlines() if line.startswith("{")]
    return results[0] if len(paths) == 1 else results


# ---------------------------------------------------------------- Radiance .hdr


def rle_scanline(values):
    """A new-style run-length scanline: marker, then each component as runs (<= 127) and literals."""
    width = len(values)
    out = bytearray([2, 2, width >> 8, width & 255])
    for c in range(4):
        comp = values[:, c]
        x = 0
        while x < width:
            run = 1
            while x + run < width and run < 127 and comp[x + run] == comp[x]:
                run += 1
            if run >= 3:
                out += bytes([128 + run, comp[x]])
                x += run
            else:
                n = min(128, width - x)
                out += bytes([n]) + comp[x : x + n].tobytes()
                x += n
    return bytes(out)


def test_a_small_hdr_claiming_16384_squared_is_refused_before_allocating(tmp_path):
    """The original format's repeat markers ((1, 1, 1, n), consecutive ones shifted 8 bits more)
    let 12 bytes claim a whole 16384-pixel scanline: 196 kB for 3 GiB of float32. The header and
    the file's size show the scanlines cannot all be there, with repeats of at most 255."""
    line = bytes([128, 128, 128, 129, 1, 1, 1, 255, 1, 1, 1, 63])  # 1 + 255 + 63 * 256 = 16384 px
    path = tmp_path / "bomb.hdr"
    path.write_bytes(hdr_header(16384, 16384) + line * 16384)
    assert 190_000 < os.path.getsize(path) < 210_000
    result = read_in_child(path)
    assert result["error"] == "RadianceError"
    assert "bomb.hdr' claims 16384x16384 pixels (3.0 GiB decoded)" in result["message"]
    assert f"at least {16384 * min_scanline_bytes(16384)} bytes of pixel data" in result["message"]
    assert "truncated or forged (a decompression bomb): refused before decoding" in result["message"]
    assert result["grew"] < 16 * MiB and result["read"] < 4096  # nothing big allocated, nothing read


def test_the_scanline_bound_is_what_the_encodings_can_reach():
    # new-style RLE: 4 + 4 components x 2 bytes per run of <= 127
    assert min_scanline_bytes(127) == min(4 + 8, 8)
    assert min_scanline_bytes(16384) == min(4 + 8 * 130, 8 * 64) == 512
    # flat: a pixel and one repeat marker per 256 pixels; 4 bytes for the last single pixel
    assert min_scanline_bytes(1) == 4 and min_scanline_bytes(257) == 12 and min_scanline_bytes(7) == 8


def mixed_hdr(width, height, seed=0):
    """RGBE bytes of rows alternating flat noise, runs, and run-length literals, and the file."""
    rng = np.random.default_rng(seed)
    rgbe = rng.integers(2, 256, (height, width, 4), dtype=np.uint8)
    rgbe[1::3, :, :] = rng.integers(2, 256, (1, 4), dtype=np.uint8)  # constant rows: runs
    rgbe[2::3, : width // 2, 3] = 0  # black half rows
    body = b"".join(rle_scanline(row) if y % 3 else row.tobytes() for y, row in enumerate(rgbe))
    return rgbe, hdr_header(width, height) + body


def reference(rgbe):
    """The reference decoding (Radiance's colr_color), in float64."""
    e = rgbe[..., 3].astype(np.int64)
    scale = np.where(e > 0, np.ldexp(1.0, e - 136), 0.0)
    return (rgbe[..., :3] + 0.5) * scale[..., None]


def test_radiance_decodes_exactly_in_float32_for_every_mantissa_and_exponent(tmp_path):
    m, e = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    rgbe = np.stack([m, 255 - m, m, e], -1).astype(np.uint8)  # never a (1, 1, 1, n) repeat marker
    path = tmp_path / "all.hdr"
    path.write_bytes(hdr_header(256, 256) + rgbe.tobytes())  # flat rows
    rgb = read_hdr(str(path)).rgb
    assert rgb.dtype == np.float32 and np.array_equal(rgb, reference(rgbe).astype(np.float32))


def test_a_legitimate_decode_peaks_near_its_output_and_trailing_bytes_are_not_read(tmp_path):
    rgbe, data = mixed_hdr(2048, 1536)
    path = tmp_path / "big.hdr"
    path.write_bytes(data + os.urandom(4 * MiB))  # trailing garbage after the last scanline
    result = read_in_child(path)
    output = 2048 * 1536 * 12
    assert result["output"] == output, result
    assert result["grew"] < 1.25 * output, result  # float64 temporaries made it 4.7x
    assert result["read"] <= len(data) + 4096, result  # 4 MiB of trailing bytes stay unread
    assert np.array_equal(read_hdr(str(path)).rgb, reference(rgbe).astype(np.float32))


def test_the_last_scanline_is_read_exactly_up_to_its_end(tmp_path):
    """A run-length last scanline: the reader asks for its packets one by one."""
    rgbe, data = mixed_hdr(300, 5, seed=1)
    path = tmp_path / "short.hdr"
    path.write_bytes(data + b"\x02\x02" + bytes(8 * MiB))
    result = read_in_child(path)
    assert "error" not in result and result["read"] <= len(data) + 1024, result
    assert np.array_equal(read_hdr(str(path)).rgb, reference(rgbe).astype(np.float32))


def test_hdr_written_by_oiiotool_decodes_to_the_same_bytes(tmp_path):
    """OpenImageIO writes run-length scanlines; it decodes m * 2^(e-136) (no + 0.5), so each pixel
    of ours must be its value plus half a step of the shared exponent: same mantissas, same e."""
    rng = np.random.default_rng(3)
    h, w = 120, 333
    rgb = np.exp2(rng.uniform(-12, 12, (h, w, 3))).astype(np.float32)
    rgb[20:60, 10:300] = (3.0, 0.25, 1e-3)  # runs
    rgb[90:] = 0
    write_exr(tmp_path / "src.exr", {"RGB": rgb})
    oiiotool = require_tool("oiiotool")
    subprocess.run([oiiotool, str(tmp_path / "src.exr"), "-o", str(tmp_path / "o.hdr")], check=True)
    subprocess.run([oiiotool, str(tmp_path / "o.hdr"), "-d", "float", "-o", str(tmp_path / "back.exr")],
                   check=True)
    assert open(tmp_path / "o.hdr", "rb").read().count(b"\x02\x02\x01\x4d") == h  # RLE scanlines
    ours = read_hdr(str(tmp_path / "o.hdr")).rgb.astype(np.float64)
    with OpenEXR.File(str(tmp_path / "back.exr")) as f:
        theirs = f.channels()["RGB"].pixels.astype(np.float64)
    half_step = ours - theirs
    assert (half_step[..., :1] == half_step).all()  # one shared exponent per pixel
    step = 2 * half_step[..., 0]
    black = step == 0
    assert (ours[black] == 0).all() and (theirs[black] == 0).all()
    mantissa = theirs[~black] / step[~black][:, None]
    assert np.array_equal(mantissa, np.round(mantissa)) and mantissa.max() <= 255
    assert (np.log2(step[~black]) == np.round(np.log2(step[~black]))).all()


# ---------------------------------------------------------------- OpenEXR

def write_exr(path, channels, header=None):
    full = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    full.update(header or {})
    with OpenEXR.File(full, channels) as f:
        f.write(str(path))
    return str(path)


def test_the_crafted_tiled_layout_is_one_the_library_reads():
    """The same layout at a size its data can hold is a valid file: the bomb differs only in its claim."""
    data = bytes(8 * 8 * 6)  # stored as is: ZIP keeps a chunk that does not shrink uncompressed
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"lediff-tile-{os.getpid()}.exr")
    try:
        open(path, "wb").write(tiled_exr_bomb(8, data=data))
        exrheader = subprocess.run([require_tool("exrheader"), path], capture_output=True, text=True)
        assert "single level" in exrheader.stdout and "tile size 8 by 8" in exrheader.stdout
        assert read_exr(path).rgb.shape == (8, 8, 3)
    finally:
        os.unlink(path)


def test_a_377_byte_tiled_exr_claiming_one_16384_squared_tile_is_refused_at_once(tmp_path):
    path = tmp_path / "tile-bomb.exr"
    path.write_bytes(tiled_exr_bomb())
    assert os.path.getsize(path) == 377
    result = read_in_child(path)
    assert result["error"] == "EXRError", result
    message = result["message"]
    assert "tile-bomb.exr' is 377 bytes but part 0 claims a 16384x16384 image of 3 channel(s)" in message
    assert "ZIP_COMPRESSION expands at most 1032:1" in message
    assert "decompression bomb): refused before decoding" in message
    assert result["grew"] < 16 * MiB, result  # the library allocated 1.4-2.9 GB before


@pytest.mark.parametrize("compression, name, ratio", [
    (0, "NO_COMPRESSION", 1), (1, "RLE_COMPRESSION", 64), (4, "PIZ_COMPRESSION", 454),
    (5, "PXR24_COMPRESSION", 1376), (6, "B44_COMPRESSION", 11), (9, "DWAB_COMPRESSION", 66048),
])
def test_every_compression_has_its_expansion_bound(tmp_path, compression, name, ratio):
    path = tmp_path / "bomb.exr"
    path.write_bytes(tiled_exr_bomb(4096, compression))
    with pytest.raises(EXRError, match=f"{name} expands at most {ratio}:1"):
        read_exr(str(path))


def test_valid_files_of_every_compression_pass_the_bound(tmp_path):
    """Files at their compression's best (a constant image) are far inside the bound."""
    flat = np.full((256, 256, 4), 0.5, np.float16)
    for comp in ("NO", "RLE", "ZIPS", "ZIP", "PIZ", "PXR24", "B44", "B44A", "DWAA", "DWAB", "HTJ2K256",
                 "HTJ2K32", "LJ2K", "ZSTD"):  # the last four: OpenEXR 3.4+ (LJ2K lossy)
        path = write_exr(tmp_path / f"{comp}.exr", {"RGBA": flat},
                         {"compression": getattr(OpenEXR, f"{comp}_COMPRESSION")})
        lossy = comp.startswith(("DWA", "LJ2K"))
        assert np.allclose(read_exr(path).rgb, 0.5, rtol=0.01 if lossy else 0), comp


def test_one_tiny_chunk_claiming_a_huge_tile_is_refused_though_the_file_is_big_enough(tmp_path):
    """Two 4096x4096 tiles: the first stored in 200 kB, which the file-wide bound accepts (both
    tiles need 195 kB at ZIP's 1032:1), the second in 8 bytes, which no ZIP stream expands to 96
    MiB. Each chunk's stored size is checked against its own claim, before the library decodes."""
    path = tmp_path / "one-tiny-tile.exr"
    path.write_bytes(tiled_exr_bomb(4096, tiles=[os.urandom(200_000), bytes(8)]))
    result = read_in_child(path)
    assert result["error"] == "EXRError", result
    assert result["message"].startswith(f"{str(path)!r}: chunk 1 of part 0 (tile (1, 0) of level (0, 0), "
                                        "4096x4096 pixels) is stored in 8 bytes of ZIP_COMPRESSION, which "
                                        "expands at most 1032:1, but claims 100663296 bytes of pixels (96 MiB)")
    assert "decompression bomb) or corrupt: refused before decoding" in result["message"]
    assert result["grew"] < 16 * MiB and result["read"] < 64 * 1024, result  # read: headers and prefixes


def scanline_exr(width, chunks, compression=3, lines=16):
    """A single-part scanline EXR of R, G, B half, ``lines`` lines per chunk, one chunk per entry
    of ``chunks`` (each its stored bytes)."""
    start = exr_header(width, lines * len(chunks), compression)
    stored = [struct.pack("<ii", k * lines, len(data)) + data for k, data in enumerate(chunks)]
    offsets = np.cumsum([len(start) + 8 * len(stored)] + [len(c) for c in stored[:-1]])
    return start + offsets.astype("<u8").tobytes() + b"".join(stored)


def test_one_tiny_scanline_chunk_is_refused_by_its_own_claim(tmp_path):
    """The same attack on a scanline file: 16 lines of 100000 pixels are 9.6 MB; ZIP's first chunk
    holds 20 kB, its second 8 bytes."""
    path = tmp_path / "lines.exr"
    path.write_bytes(scanline_exr(8, [bytes(16 * 8 * 6)] * 2))  # the layout, valid: stored as is
    assert read_exr(str(path)).rgb.shape == (32, 8, 3)
    path.write_bytes(scanline_exr(100_000, [os.urandom(20_000), bytes(8)]))
    with pytest.raises(EXRError, match=r"lines.exr': chunk 1 of part 0 \(lines 16\.\.31\) is stored in 8 "
                                       r"bytes of ZIP_COMPRESSION, which expands at most 1032:1, but "
                                       r"claims 9600000 bytes of pixels \(9 MiB\)"):
        read_exr(str(path))
    # a chunk table pointing past the file's end is refused as truncated, not decoded
    data = bytearray(path.read_bytes())
    at = data.index(b"screenWindowWidth") + len(b"screenWindowWidth\0float\0") + 8 + 1 + 8
    data[at : at + 8] = struct.pack("<Q", len(data) + 100)
    path.write_bytes(bytes(data))
    with pytest.raises(EXRError, match=r"chunk 1's offset \d+ is outside the file .*truncated, corrupt"):
        read_exr(str(path))


def smooth(h, w, seed=0):
    """Linear HDR colour that compresses quickly (smooth gradients with a little noise)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    noise = np.random.default_rng(seed).uniform(0.9, 1.1, (h, w, 1)).astype(np.float32)
    return np.stack([4 * xx + 0.1, 2 * yy + 0.2, 8 * xx * yy + 0.05], -1) * noise


def yc_exr(path, y, ry, by):
    """An uncompressed scanline EXR of half Y and 2x2-sampled RY, BY, as OpenEXR's RGBA interface
    writes luminance/chroma (the Python bindings write no subsampled channels): per line its y,
    its size, then each channel's samples on that line (alphabetical: BY, RY, Y; chroma on even
    lines only)."""
    h, w = y.shape
    chlist = b"".join(name + b"\0" + struct.pack("<iB3xii", 1, 0, s, s)
                      for name, s in ((b"BY", 2), (b"RY", 2), (b"Y", 1))) + b"\0"
    start = exr_header(w, h, 0, chlist)
    lines = []
    for row in range(h):
        data = (by[row // 2].tobytes() + ry[row // 2].tobytes() if row % 2 == 0 else b"") + y[row].tobytes()
        lines.append(struct.pack("<ii", row, len(data)) + data)
    offsets = np.cumsum([len(start) + 8 * h] + [len(line) for line in lines[:-1]])
    with open(path, "wb") as f:
        f.write(start + offsets.astype("<u8").tobytes() + b"".join(lines))
    return str(path)


def test_every_kind_of_exr_peaks_below_twice_its_output(tmp_path):
    """Only the channels returned are decoded, band by band into float32. Before (measured at this
    size), the bindings decoded every channel of every part: float RGB(A) 2.06x, 3 AOV layers or a
    second part 3.1x, float AOVs 5.1x, YC 4.7-6.1x with its float32 reconstruction; now 1.1-1.7x."""
    h, w = 1536, 2048
    rgb = smooth(h, w)
    half = rgb.astype(np.float16)
    flat, tiled = {"compression": OpenEXR.NO_COMPRESSION}, OpenEXR.TileDescription()
    tiled.xSize = tiled.ySize = 64
    y = rgb.mean(-1).astype(np.float16)
    chroma = (rgb[::2, ::2, 0] / rgb[::2, ::2].mean(-1) - 1).astype(np.float16)
    aovs = {f"{layer}.{c}": half[..., i].copy() for layer in ("diffuse", "specular", "normal")
            for i, c in enumerate("RGB")}
    files = {
        "RGB half": ({"RGB": half}, flat),
        "RGB float": ({"RGB": rgb}, flat),
        "RGBA half": ({"RGBA": np.dstack([half, half[..., :1]])}, flat),
        "RGBA float": ({"RGBA": np.dstack([rgb, rgb[..., :1]])}, flat),
        "tiled, ZIP": ({"RGB": half}, {"type": OpenEXR.tiledimage, "tiles": tiled}),
        "YC, full chroma": ({"Y": y, "RY": y * 0, "BY": y * 0 + 0.5}, flat),
        "3 AOV layers": ({"RGB": half, **aovs}, flat),
    }
    paths = {name: write_exr(tmp_path / f"{i}.exr", channels, header)
             for i, (name, (channels, header)) in enumerate(files.items())}
    parts = [OpenEXR.Part({"type": OpenEXR.scanlineimage, "name": "depth"}, {"Z": rgb[..., 0]}),
             OpenEXR.Part({"type": OpenEXR.scanlineimage, "name": "aovs"}, dict(aovs)),
             OpenEXR.Part({"type": OpenEXR.scanlineimage, "name": "beauty"}, {"RGB": half})]
    with OpenEXR.File(parts) as f:
        f.write(str(tmp_path / "parts.exr"))
    paths["multi-part, colour in part 1 of 3"] = str(tmp_path / "parts.exr")
    paths["YC, 2x2 chroma"] = yc_exr(tmp_path / "yc.exr", y, chroma, -chroma)
    results = read_in_child(*paths.values())
    for name, result in zip(paths, results, strict=True):
        output = h * w * (16 if name.startswith("RGBA") else 12)
        assert result.get("output") == output, (name, result)
        assert result["grew"] < 2 * output, (name, result["grew"] / output)


def test_a_real_out_of_memory_is_reported_as_memory_not_as_a_damaged_file(tmp_path):
    rgb = np.random.default_rng(1).uniform(0, 4, (1024, 2048, 3)).astype(np.float16)
    exr = write_exr(tmp_path / "valid.exr", {"RGB": rgb})
    _, data = mixed_hdr(1024, 1024, seed=2)
    (tmp_path / "valid.hdr").write_bytes(data)
    y = rgb.mean(-1, dtype=np.float32).astype(np.float16)
    yc = yc_exr(tmp_path / "yc.exr", y, y[::2, ::2] * 0, y[::2, ::2] * 0)
    parts = [OpenEXR.Part({"type": OpenEXR.scanlineimage, "name": n}, c)
             for n, c in (("depth", {"Z": y}), ("beauty", {"RGB": rgb}))]
    with OpenEXR.File(parts) as f:
        f.write(str(tmp_path / "parts.exr"))
    results = read_in_child(exr, tmp_path / "valid.hdr", yc, tmp_path / "parts.exr", memory_limit=8 * MiB)
    for result in results:
        assert result["error"] == "MemoryError", result
        assert "not enough memory to read" in result["message"] and "The file is not damaged" in result["message"]
        assert "truncated" not in result["message"] and "corrupt" not in result["message"]
    assert "valid.exr': its 2048x1024 image needs about 28 MiB while loading" in results[0]["message"]
    assert "valid.hdr': its 1024x1024 image needs about" in results[1]["message"]
    assert "yc.exr': its 2048x1024 image needs about 36 MiB while loading" in results[2]["message"]
    assert "parts.exr': its 2048x1024 image needs about 28 MiB while loading" in results[3]["message"]


def test_running_out_inside_the_decoder_is_memory_too(tmp_path):
    """With room for the output but not for the decoder's buffers, OpenEXR fails in its own words
    ("Allocation failed", or "Unable to run decoder" with EXR_ERR_OUT_OF_MEMORY on stderr only):
    still memory, never a damaged file. YC files compute their luminance weights without LAPACK,
    whose first call makes OpenBLAS allocate, and exit the process when it cannot."""
    rgb = smooth(1024, 2048).astype(np.float16)
    y = rgb.mean(-1, dtype=np.float32).astype(np.float16)
    parts = [OpenEXR.Part({"type": OpenEXR.scanlineimage, "name": n}, c)
             for n, c in (("depth", {"Z": y}), ("beauty", {"RGB": rgb}))]
    with OpenEXR.File(parts) as f:
        f.write(str(tmp_path / "parts.exr"))
    files = [write_exr(tmp_path / "rgb.exr", {"RGB": rgb}), str(tmp_path / "parts.exr"),
             yc_exr(tmp_path / "yc.exr", y, y[::2, ::2] * 0, y[::2, ::2] * 0)]
    output = 2048 * 1024 * 12
    cases = [(path, output + extra * MiB) for path in files for extra in (1, 4, 8)]
    results = read_in_child(*(p for p, _ in cases), memory_limit=[limit for _, limit in cases])
    for (path, limit), result in zip(cases, results, strict=True):
        if "output" in result:  # the decode fitted: nothing to report
            assert result["output"] == output and limit > output + 4 * MiB, (path, result)
            continue
        assert result["error"] == "MemoryError", (path, limit - output, result)
        assert "not enough memory to read" in result["message"] and "corrupt" not in result["message"]
    assert all(r.get("error") == "MemoryError" for r in results[::3])  # 1 MiB beyond the output


# ---------------------------------------------------------------- the nodes in ComfyUI

