"""Reading and writing Radiance RGBE (``.hdr`` / ``.pic``) images.

Format facts (Greg Ward's RGBE, as documented with Radiance): a text header starting with ``#?``,
``KEY=value`` lines (``FORMAT=32-bit_rle_rgbe``), a blank line, a resolution line such as
``-Y 512 +X 1024`` (rows top to bottom, columns left to right), then scanlines of 4-byte pixels
(mantissas R, G, B and a shared exponent), either flat or run-length encoded per component.
A pixel decodes as ``(m + 0.5) * 2**(e - 136)``, the reference implementation's rounding, with
``e == 0`` meaning black. ``EXPOSURE=`` lines are reported in the header but not applied.

Memory is bounded by what the file holds. Before anything is allocated, the header's size is
checked against the bytes after it: every scanline takes at least ``min_scanline_bytes`` (see
there), so a small file claiming a huge image is refused. Pixels are then decoded a few scanlines
at a time straight into the float32 output (peak memory about the output plus a megabyte), and the
file is read forward only as far as the rest of the image must reach, so bytes after the last
scanline are never read.

Writing (``encode_hdr``) produces what Radiance's own ``fwritecolrs`` does: each pixel scaled so
its largest component's mantissa is in 128..255 (``frexp``, mantissas truncated, the reader's
``+ 0.5`` centring them), new-style run-length scanlines for widths 8..32767 (runs of 4 or more
equal bytes as ``128 + n, byte``, the rest as literals of at most 128) and flat scanlines for other
widths. A flat pixel can never look like a marker: its largest mantissa is at least 128.
"""

from __future__ import annotations

import os

import numpy as np

from .. import LEDiffError
from .access import check_readable
from .exr import HDRImage
from .limits import MAX_PIXELS, format_bytes, out_of_memory

MAX_HEADER_BYTES = 1 << 20  # headers carry a few lines of history; a megabyte without an end is not one
HEADER_BLOCK = 512  # headers are read in small blocks: a tiny image's trailing bytes stay unread
READ_BLOCK = 1 << 20  # pixel data is read ahead at most this far
OUTPUT_BLOCK = 1 << 16  # pixels decoded to bytes before they are converted into the output
MIN_RLE_WIDTH, MAX_RLE_WIDTH = 8, 0x7FFF  # scanline widths the new-style run-length encoding covers


class RadianceError(LEDiffError, ValueError):
    """A file that is not a readable Radiance RGBE image; the message says what is wrong."""


def rgbe_to_float(rgbe: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """[..., 4] uint8 RGBE -> [..., 3] float32 linear RGB (into ``out`` when given).

    Computed in float32 without float64 temporaries, exactly: ``m + 0.5`` is exact in float32 and
    ``ldexp`` rounds once, like the float64 product rounded to float32 would."""
    e = rgbe[..., 3]
    mantissa = rgbe[..., :3].astype(np.float32)
    mantissa += np.float32(0.5)
    rgb = np.ldexp(mantissa, (e.astype(np.int32) - 136)[..., None], out=out)
    rgb[e == 0] = 0
    return rgb


def min_scanline_bytes(width: int) -> int:
    """The fewest bytes a scanline of ``width`` pixels can take.

    New-style run-length scanlines (8 <= width <= 32767): a 4-byte marker, then for each of the 4
    components runs of at most 127 equal bytes in 2 bytes each (a literal of k bytes takes k + 1),
    so at least ``4 + 4 * 2 * ceil(width / 127)``. Flat scanlines: 4 bytes per pixel, where the
    original format's ``(1, 1, 1, n)`` marker repeats the previous pixel n <= 255 times, so at
    least 8 bytes per 256 pixels. Consecutive markers (the original format's rarely written
    ``n << 8`` repeats) could go below this bound; a file that needs them to fit in its size is
    refused like a truncated one.
    """
    full, rest = divmod(width, 256)
    flat = 8 * full + (0, 4, 8)[min(rest, 2)]
    if MIN_RLE_WIDTH <= width <= MAX_RLE_WIDTH:
        return min(flat, 4 + 8 * -(-width // 127))
    return flat


def _parse_header(f, path: str) -> tuple[dict, tuple, bytes]:
    """The header's keys, the resolution (slow axis, count, fast axis, count) and the bytes read
    after the resolution line (the first pixel bytes)."""
    data = f.read(HEADER_BLOCK)
    if not data.startswith(b"#?"):
        raise RadianceError(f"{path!r} is not a Radiance .hdr file (no '#?' signature)")
    while (end := data.find(b"\n\n")) < 0 or data.find(b"\n", end + 2) < 0:
        block = f.read(HEADER_BLOCK)
        if not block:
            if end < 0:
                raise RadianceError(f"{path!r}: the header never ends (no blank line); the file is truncated")
            raise RadianceError(f"{path!r}: no resolution line; the file is truncated")
        if len(data) > MAX_HEADER_BYTES:
            raise RadianceError(f"{path!r}: the header runs past {MAX_HEADER_BYTES} bytes; the file is corrupt")
        data += block
    header = {}
    for line in data[:end].decode("latin-1").splitlines()[1:]:
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            header[key.strip()] = value.strip()
    fmt = header.get("FORMAT", "32-bit_rle_rgbe")
    if fmt != "32-bit_rle_rgbe":
        raise RadianceError(
            f"{path!r} is in format {fmt!r}; only RGB data (32-bit_rle_rgbe) is supported: "
            "convert XYZ files to RGB first"
        )
    line_end = data.find(b"\n", end + 2)
    tokens = data[end + 2 : line_end].decode("latin-1").split()
    if (
        len(tokens) != 4
        or tokens[0] not in ("-Y", "+Y", "-X", "+X")
        or tokens[2] not in ("-Y", "+Y", "-X", "+X")
        or tokens[0][1] == tokens[2][1]
        or not (tokens[1].isdigit() and tokens[3].isdigit())
    ):
        raise RadianceError(f"{path!r}: bad resolution line {' '.join(tokens)!r}")
    return header, (tokens[0], int(tokens[1]), tokens[2], int(tokens[3])), data[line_end + 1 :]


class _PixelData:
    """The pixel bytes of an open file, read forward on demand. It never reads further than the
    rest of the image must reach (``lower_bound``), so bytes after the last scanline stay unread."""

    def __init__(self, f, first: bytes, path: str, min_line: int):
        self.f, self.path, self.min_line = f, path, min_line
        self.buf, self.pos = first, 0
        self.rows_after = 0  # scanlines after the one being decoded

    def fill(self, pos: int, need: int, known: int = 0) -> tuple[bytes, int]:
        """Make ``need`` bytes available from ``pos``; returns the buffer and the new position.
        ``known``: bytes a valid file holds for sure from ``pos`` (default: ``need`` and the
        scanlines after this one), the limit of reading ahead."""
        have = len(self.buf) - pos
        if have >= need:
            return self.buf, pos
        known = max(known, need + self.rows_after * self.min_line)
        self.buf = self.buf[pos:] + self.f.read(max(need, min(READ_BLOCK, known)) - have)
        if len(self.buf) < need:
            raise RadianceError(f"{self.path!r}: pixel data ends early; the file is truncated")
        return self.buf, 0

    def scanline(self, pos: int, width: int, line: np.ndarray) -> int:
        """Decode one scanline of ``width`` pixels at ``pos`` into ``line`` [width, 4] uint8;
        returns the position after it."""
        buf, pos = self.fill(pos, 4)
        if MIN_RLE_WIDTH <= width <= MAX_RLE_WIDTH and buf[pos] == 2 and buf[pos + 1] == 2 and (
            buf[pos + 2] << 8 | buf[pos + 3]
        ) == width:
            return self._rle(pos + 4, width, line)
        # a whole flat scanline at once, when the file holds that many bytes for sure
        known = (self.rows_after + 1) * self.min_line
        buf, pos = self.fill(pos, min(4 * width, known), known)
        if len(buf) - pos >= 4 * width:
            px = np.frombuffer(buf, np.uint8, 4 * width, pos).reshape(width, 4)
            if not ((px[:, 0] == 1) & (px[:, 1] == 1) & (px[:, 2] == 1)).any():
                line[:] = px
                return pos + 4 * width
        return self._flat(pos, width, line)

    def _rle(self, pos: int, width: int, line: np.ndarray) -> int:
        """Component-wise run-length encoding: per component, packets of a count byte, then one
        byte repeated (count > 128: count - 128 times) or count literal bytes."""
        buf, path = self.buf, self.path
        for c in range(4):
            x = 0
            while x < width:
                if pos + 2 > len(buf):
                    buf, pos = self.fill(pos, 2)
                count = buf[pos]
                if count > 128:
                    count -= 128
                    if x + count > width:
                        raise RadianceError(f"{path!r}: corrupt run-length data")
                    line[x : x + count, c] = buf[pos + 1]
                    pos += 2
                else:
                    if count == 0 or x + count > width:
                        raise RadianceError(f"{path!r}: corrupt run-length data")
                    if pos + 1 + count > len(buf):
                        buf, pos = self.fill(pos, 1 + count)
                    line[x : x + count, c] = np.frombuffer(buf, np.uint8, count, pos + 1)
                    pos += 1 + count
                x += count
        return pos

    def _flat(self, pos: int, width: int, line: np.ndarray) -> int:
        """Flat pixels with the original format's ``(1, 1, 1, n)`` repeat markers (consecutive
        markers shift their count by 8 bits more each)."""
        buf, path = self.buf, self.path
        x, shift = 0, 0
        while x < width:
            if pos + 4 > len(buf):
                buf, pos = self.fill(pos, 4)
            px = buf[pos : pos + 4]
            pos += 4
            if px[0] == 1 and px[1] == 1 and px[2] == 1:
                if x == 0:
                    raise RadianceError(f"{path!r}: corrupt data (a repeat marker starts a scanline)")
                count = px[3] << shift
                if x + count > width:
                    raise RadianceError(f"{path!r}: corrupt run-length data")
                line[x : x + count] = line[x - 1]
                x += count
                shift += 8
            else:
                line[x] = np.frombuffer(px, np.uint8)
                x += 1
                shift = 0
        return pos


def _oriented(rgb: np.ndarray, slow_axis: str, fast_axis: str) -> np.ndarray:
    """A view of ``rgb`` [rows top to bottom, columns left to right, 3] indexed [scanline, pixel]
    in the file's scan order."""
    y_axis, x_axis = (slow_axis, fast_axis) if slow_axis[1] == "Y" else (fast_axis, slow_axis)
    view = rgb[::-1] if y_axis[0] == "+" else rgb
    view = view[:, ::-1] if x_axis[0] == "-" else view
    return view.transpose(1, 0, 2) if slow_axis[1] == "X" else view


def read_hdr(path: str) -> HDRImage:
    """Read a Radiance RGBE file into linear float32 RGB [H, W, 3] (top row first).

    Raises RadianceError (naming the file and what is wrong) for damaged files and for headers
    claiming more pixels than MAX_PIXELS or than the file's bytes can hold, before allocating the
    image; MemoryError (naming the size and the need) when a valid image does not fit in memory;
    FileAccessError for a FIFO, device or folder, before opening it."""
    check_readable(path)
    with open(path, "rb", buffering=0) as f:
        header, (slow_axis, n_slow, fast_axis, n_fast), first = _parse_header(f, path)
        width, height = (n_fast, n_slow) if slow_axis[1] == "Y" else (n_slow, n_fast)
        if n_slow * n_fast == 0 or n_slow * n_fast > MAX_PIXELS:
            raise RadianceError(f"{path!r} claims {width}x{height} pixels; refusing empty or huge images")
        min_line = min_scanline_bytes(n_fast)
        available = os.fstat(f.fileno()).st_size - (f.tell() - len(first))
        if n_slow * min_line > available:
            raise RadianceError(
                f"{path!r} claims {width}x{height} pixels ({format_bytes(12 * width * height)} decoded), "
                f"which takes at least {n_slow * min_line} bytes of pixel data ({n_slow} scanlines of "
                f"at least {min_line} bytes each), but the file holds only {available}; it is "
                "truncated or forged (a decompression bomb): refused before decoding"
            )
        try:
            rgb = np.empty((height, width, 3), np.float32)
            scans = _oriented(rgb, slow_axis, fast_axis)
            source = _PixelData(f, first, path, min_line)
            block = np.empty((max(1, OUTPUT_BLOCK // n_fast), n_fast, 4), np.uint8)
            pos = 0
            for start in range(0, n_slow, len(block)):
                rows = min(len(block), n_slow - start)
                for k in range(rows):
                    source.rows_after = n_slow - start - k - 1
                    pos = source.scanline(pos, n_fast, block[k])
                rgbe_to_float(block[:rows], out=scans[start : start + rows])
        except MemoryError as e:
            raise out_of_memory(path, width, height, 12 * width * height + 16 * OUTPUT_BLOCK, e) from e
    return HDRImage(rgb=rgb, header=header)


MIN_RUN = 4  # Radiance's MINRUN: shorter repeats are cheaper as literals
MAX_RUN, MAX_LITERAL = 127, 128
# the largest value RGBE holds: mantissa 255 at exponent byte 255, decoded (255 + 0.5) * 2**119
RGBE_MAX = float(np.ldexp(np.float64(255.5), 255 - 136))
# Rec.709 / sRGB primaries and D65 white (ITU-R BT.709 Table 1), as Radiance's PRIMARIES= line
# writes them (red, green, blue, white x y); without it a reader assumes Radiance's own defaults
REC709_PRIMARIES_LINE = "PRIMARIES= 0.640 0.330 0.300 0.600 0.150 0.060 0.3127 0.3290"


def float_to_rgbe(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] float linear RGB (>= 0, finite) -> [..., 4] uint8 RGBE: the exponent of the largest
    component, mantissas truncated (Radiance's ``setcolr``); values below 1e-32 become black,
    values above ``RGBE_MAX`` its largest code."""
    rgb = np.minimum(np.asarray(rgb, np.float64), RGBE_MAX)
    v = rgb.max(axis=-1)
    mantissa, exponent = np.frexp(v)
    out = np.zeros((*rgb.shape[:-1], 4), np.uint8)
    lit = v >= 1e-32
    scale = np.zeros_like(v)
    scale[lit] = mantissa[lit] * 256.0 / v[lit]
    out[..., :3] = np.clip(rgb * scale[..., None], 0, 255).astype(np.uint8)
    out[..., 3] = np.where(lit, exponent + 128, 0).astype(np.uint8)
    return out


def _rle_scanlines(rgbe: np.ndarray) -> bytes:
    """New-style run-length scanlines of [H, W, 4] RGBE (8 <= W <= 32767), for the whole image at
    once: every (scanline, component) is a sequence; runs of ``MIN_RUN`` or more equal bytes become
    run packets (at most 127 long), the stretches between them literal packets (at most 128)."""
    height, width = rgbe.shape[:2]
    data = np.ascontiguousarray(rgbe.transpose(0, 2, 1)).reshape(-1)  # [H, 4, W]: sequences of W
    n = data.size
    starts = np.ones(n, bool)  # where a run of equal bytes starts (every sequence starts one)
    starts[1:] = data[1:] != data[:-1]
    starts[::width] = True
    run_at = np.flatnonzero(starts)
    run_len = np.diff(np.append(run_at, n))
    long = run_len >= MIN_RUN
    # segments: each long run, and each maximal stretch of short runs inside one sequence
    seg_first = long.copy()
    seg_first[0] = True
    seg_first[1:] |= long[:-1] | (run_at[1:] % width == 0)
    seg_at = run_at[seg_first]
    seg_len = np.diff(np.append(seg_at, n))
    seg_long = long[seg_first]
    chunk = np.where(seg_long, MAX_RUN, MAX_LITERAL)
    packets_per_seg = -(-seg_len // chunk)
    # packets: start in the data, length, kind
    seg_of = np.repeat(np.arange(seg_at.size), packets_per_seg)
    k = np.arange(seg_of.size) - np.repeat(np.cumsum(packets_per_seg) - packets_per_seg, packets_per_seg)
    pk_at = seg_at[seg_of] + k * chunk[seg_of]
    pk_len = np.minimum(chunk[seg_of], seg_at[seg_of] + seg_len[seg_of] - pk_at)
    pk_long = seg_long[seg_of]
    pk_size = np.where(pk_long, 2, 1 + pk_len)
    # where each packet lands: after the packets before it and the 4-byte marker of every scanline
    # up to its own
    pk_row = pk_at // (4 * width)
    pk_out = np.cumsum(pk_size) - pk_size + 4 * (pk_row + 1)
    out = np.empty(int(pk_size.sum()) + 4 * height, np.uint8)
    row_first = np.searchsorted(pk_row, np.arange(height))  # the first packet of each scanline
    marker = pk_out[row_first] - 4
    out[marker[:, None] + np.arange(4)] = (2, 2, width >> 8, width & 0xFF)
    out[pk_out] = np.where(pk_long, 128 + pk_len, pk_len)
    out[pk_out[pk_long] + 1] = data[pk_at[pk_long]]
    lit_len = pk_len[~pk_long]
    offset = np.arange(int(lit_len.sum())) - np.repeat(np.cumsum(lit_len) - lit_len, lit_len)
    out[np.repeat(pk_out[~pk_long] + 1, lit_len) + offset] = data[np.repeat(pk_at[~pk_long], lit_len) + offset]
    return out.tobytes()


def encode_hdr(rgb: np.ndarray, header: tuple[str, ...] = ()) -> bytes:
    """Linear RGB [H, W, 3] (finite, >= 0: RGBE holds neither negatives nor NaN) -> the bytes of a
    Radiance file, rows top to bottom (``-Y H +X W``), ``header`` lines (``KEY=value``) after
    ``FORMAT=``. Run-length scanlines where the format allows them (8 <= W <= 32767)."""
    height, width = rgb.shape[:2]
    rgbe = float_to_rgbe(rgb)
    lines = ["#?RADIANCE", "FORMAT=32-bit_rle_rgbe", *header, "", f"-Y {height} +X {width}", ""]
    head = "\n".join(lines).encode("latin-1")
    if MIN_RLE_WIDTH <= width <= MAX_RLE_WIDTH:
        return head + _rle_scanlines(rgbe)
    return head + rgbe.tobytes()
