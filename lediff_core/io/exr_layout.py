"""The OpenEXR file layout, read without decoding: headers, offset tables and each chunk's stored size.

Two jobs need what the bindings do not expose. Bounding a decode by what the file really holds:
every chunk's stored size, times the most its compression can expand, must cover the pixels it
claims, so one tiny chunk claiming a huge tile is refused even when the others are big. And
reading one part of a multi-part file alone: ``SinglePartView`` presents that part as the
single-part file it would be (its header, its offset table, its chunks without their part
numbers), for OpenEXR's scanline/tile reader, which opens only a file's first part.

Layout facts from OpenEXR's "OpenEXR File Layout" document (magic 20000630, version field flags
0x200 single tiled part, 0x400 long names, 0x800 deep data, 0x1000 multi-part; attributes as
name, type, size, value; an empty name ends a header, an empty header ends a multi-part list;
then one offset table per part, then chunks: part number when multi-part, then y and data size
for scanlines, or tile x, y, level x, y and data size for tiles).
"""

from __future__ import annotations

import bisect
import os
import struct
from dataclasses import dataclass, field

from .. import LEDiffError

MAGIC = 20000630
TILED, LONG_NAMES, DEEP, MULTI_PART = 0x200, 0x400, 0x800, 0x1000
PIXEL_BYTES = {0: 4, 1: 2, 2: 4}  # UINT, HALF, FLOAT
PIXEL_TYPES = {0: "uint", 1: "half", 2: "float"}
COMPRESSION_NAMES = ("NO_COMPRESSION", "RLE_COMPRESSION", "ZIPS_COMPRESSION", "ZIP_COMPRESSION",
                     "PIZ_COMPRESSION", "PXR24_COMPRESSION", "B44_COMPRESSION", "B44A_COMPRESSION",
                     "DWAA_COMPRESSION", "DWAB_COMPRESSION", "HTJ2K256_COMPRESSION",
                     "HTJ2K32_COMPRESSION", "LJ2K_COMPRESSION", "ZSTD_COMPRESSION")
# Scan lines per chunk of each compression (by number above; the JPEG 2000 and ZSTD ones as
# OpenEXR 3.5 writes them, read back from its chunkCount); MAX_LINES, the most, for others.
LINES = (1, 1, 1, 16, 32, 16, 32, 32, 32, 256, 256, 32, 256, 1)
MAX_LINES = 256


class LayoutError(LEDiffError, ValueError):
    """The file's layout (headers, offset tables, chunk prefixes) is inconsistent; the message says
    what, for the caller to wrap with the file's name."""


@dataclass(frozen=True)
class Channel:
    name: str
    type: int  # 0 uint, 1 half, 2 float
    x_sampling: int
    y_sampling: int


@dataclass(frozen=True)
class Chunk:
    """One stored chunk: its place, its stored size, and the decoded bytes it claims."""

    index: int
    offset: int
    prefix: int  # bytes before its data (part number, coordinates, size)
    stored: int
    claimed: int
    what: str


@dataclass
class Part:
    """One part's header facts and where its bytes are."""

    header_span: tuple[int, int]  # byte range of its attributes (with the terminating 0)
    channels: list[Channel]
    compression: int
    window: tuple[int, int, int, int]  # data window x0, y0, x1, y1
    tiles: tuple[int, int, int, int] | None  # x size, y size, level mode, rounding mode
    deep: bool
    chunk_count: int | None  # the chunkCount attribute (multi-part files)
    offsets: list[int] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)  # filled by read_chunks

    @property
    def compression_name(self) -> str:
        c = self.compression
        return COMPRESSION_NAMES[c] if c < len(COMPRESSION_NAMES) else f"compression {c}"

    @property
    def lines(self) -> int:
        return lines_per_chunk(self.compression_name)


def lines_per_chunk(compression: str) -> int:
    """Scan lines per chunk of ``compression`` (e.g. ZIP_COMPRESSION); MAX_LINES when unknown,
    which makes a chunk count computed from it a lower bound."""
    return LINES[COMPRESSION_NAMES.index(compression)] if compression in COMPRESSION_NAMES else MAX_LINES


class _Reader:
    """Bounded sequential reads: nothing beyond the file's end is ever requested."""

    def __init__(self, fd: int, size: int, at: int = 0):
        self.fd, self.size, self.at = fd, size, at

    def bytes(self, n: int) -> bytes:
        if n < 0 or self.at + n > self.size:
            raise LayoutError(f"a header field at byte {self.at} runs past the file's end")
        data = os.pread(self.fd, n, self.at)
        if len(data) != n:
            raise LayoutError(f"short read at byte {self.at}")
        self.at += n
        return data

    def name(self, limit: int) -> str:
        chunk = os.pread(self.fd, limit + 1, self.at)
        end = chunk.find(b"\0")
        if end < 0:
            raise LayoutError(f"an attribute name at byte {self.at} is unterminated or too long")
        self.at += end + 1
        return chunk[:end].decode("utf-8", "replace")


def _channels(value: bytes) -> list[Channel]:
    out, at = [], 0
    while at < len(value) and value[at] != 0:
        end = value.index(b"\0", at)
        name = value[at:end].decode("utf-8", "replace")
        if end + 17 > len(value):
            raise LayoutError("the channel list is cut short")
        kind, _, xs, ys = struct.unpack_from("<iB3xii", value, end + 1)
        out.append(Channel(name, kind, xs, ys))
        at = end + 17
    return out


def _header(r: _Reader, limit: int) -> Part | None:
    start = r.at
    attrs = {}
    while True:
        name = r.name(limit)
        if not name:
            break
        kind = r.name(limit)
        (size,) = struct.unpack("<i", r.bytes(4))
        value = r.bytes(size)
        attrs[name] = (kind, value)
    if r.at == start + 1:
        return None  # the empty header that ends a multi-part list
    try:
        channels = _channels(attrs["channels"][1])
        compression = attrs["compression"][1][0]
        window = struct.unpack("<4i", attrs["dataWindow"][1])
        tiles = None
        if "tiles" in attrs:
            xs, ys, mode = struct.unpack("<IIB", attrs["tiles"][1][:9])
            tiles = (xs, ys, mode & 0x0F, mode >> 4)
        count = struct.unpack("<i", attrs["chunkCount"][1])[0] if "chunkCount" in attrs else None
    except (KeyError, IndexError, ValueError, struct.error) as e:
        raise LayoutError(f"a header lacks valid channels, compression, dataWindow, tiles or "
                          f"chunkCount ({e})") from e
    kind = attrs.get("type", ("", b""))[1].rstrip(b"\0").decode("ascii", "replace")
    return Part((start, r.at), channels, compression, window, tiles, "deep" in kind, count)


def _level_size(size: int, level: int, rounding: int) -> int:
    step = 1 << level
    n = size // step
    if rounding == 1 and n * step < size:
        n += 1
    return max(n, 1)


def _level_count(size: int, rounding: int) -> int:
    n = 0
    while _level_size(size, n, rounding) > 1:
        n += 1
    return n + 1


def levels(part: Part) -> list[tuple[int, int, int, int]]:
    """(level x, level y, width, height) of every level a tiled part stores, in offset-table order."""
    x0, y0, x1, y1 = part.window
    w, h = x1 - x0 + 1, y1 - y0 + 1
    _, _, mode, rounding = part.tiles
    if mode == 0:
        return [(0, 0, w, h)]
    if mode == 1:
        n = _level_count(max(w, h), rounding)
        return [(i, i, _level_size(w, i, rounding), _level_size(h, i, rounding)) for i in range(n)]
    nx, ny = _level_count(w, rounding), _level_count(h, rounding)
    return [(lx, ly, _level_size(w, lx, rounding), _level_size(h, ly, rounding))
            for ly in range(ny) for lx in range(nx)]


def chunk_count(part: Part) -> int:
    """The chunks a part's offset table lists (every level of a tiled part)."""
    x0, y0, x1, y1 = part.window
    if part.tiles is None:
        return -(-(y1 - y0 + 1) // part.lines)
    tx, ty = max(1, part.tiles[0]), max(1, part.tiles[1])
    return sum(-(-w // tx) * -(-h // ty) for _, _, w, h in levels(part))


def read_layout(path: str, max_chunks: int) -> tuple[int, list[Part]]:
    """The version flags and every part of ``path`` with its offset table. ``max_chunks`` bounds
    the offset tables read (the caller has checked the file's size can hold that many chunks).
    Raises LayoutError for an inconsistent layout."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        r = _Reader(fd, size)
        magic, version = struct.unpack("<ii", r.bytes(8))
        if magic != MAGIC:
            raise LayoutError("the magic number is not OpenEXR's")
        limit = 255 if version & LONG_NAMES else 31
        parts = []
        while True:
            part = _header(r, limit)
            if part is None:
                break
            parts.append(part)
            if not version & MULTI_PART:
                break
        if not parts:
            raise LayoutError("the file has no header")
        for part in parts:
            n = chunk_count(part)
            if part.chunk_count is not None and part.chunk_count != n and not part.deep:
                raise LayoutError(f"a part's chunkCount is {part.chunk_count} but its header "
                                  f"describes {n} chunks")
            n = part.chunk_count if part.deep and part.chunk_count is not None else n
            if n > max_chunks:
                raise LayoutError(f"a part describes {n} chunks, more than the file can hold")
            part.offsets = list(struct.unpack(f"<{n}Q", r.bytes(8 * n)))
        return version, parts
    finally:
        os.close(fd)


def _pixel_bytes(part: Part, y0: int, y1: int, x_count: int) -> int:
    """Decoded bytes of rows y0..y1 (absolute) of ``x_count`` pixels, every channel."""
    x0 = part.window[0]

    def count(a, b, step):  # multiples of step in [a, b]
        step = max(1, step)
        return max(0, b // step - (a + step - 1) // step + 1)

    return sum(count(x0, x0 + x_count - 1, c.x_sampling) * count(y0, y1, c.y_sampling)
               * PIXEL_BYTES.get(c.type, 4) for c in part.channels)


def read_chunks(path: str, multi_part: bool, index: int, part: Part) -> list[Chunk]:
    """Every chunk of a flat (not deep) part, read from the prefixes the offset table points at,
    also kept in ``part.chunks``.
    Raises LayoutError for an offset outside the file, a prefix that names another part or
    coordinates outside the part, or a stored size past the file's end."""
    x0, y0, x1, y1 = part.window
    width = x1 - x0 + 1
    head = (4 if multi_part else 0) + (20 if part.tiles else 8)
    level_list = levels(part) if part.tiles else []
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        for i, offset in enumerate(part.offsets):
            if offset <= 0 or offset + head > size:
                raise LayoutError(f"chunk {i}'s offset {offset} is outside the file ({size} bytes)")
            data = os.pread(fd, head, offset)
            fields = struct.unpack(f"<{head // 4}i", data)
            if multi_part:
                if fields[0] != index:
                    raise LayoutError(f"chunk {i} at byte {offset} belongs to part {fields[0]}")
                fields = fields[1:]
            stored = fields[-1]
            if stored < 0 or offset + head + stored > size:
                raise LayoutError(f"chunk {i} at byte {offset} claims {stored} stored bytes, past "
                                  f"the file's end ({size} bytes)")
            if part.tiles is None:
                y = fields[0]
                if y < y0 or y > y1 or (y - y0) % part.lines:
                    raise LayoutError(f"chunk {i} at byte {offset} starts at line {y}, not a chunk "
                                      f"of the data window's lines {y0}..{y1}")
                last = min(y + part.lines - 1, y1)
                claimed, what = _pixel_bytes(part, y, last, width), f"lines {y}..{last}"
            else:
                tx, ty, lx, ly = fields[:4]
                level = next((lv for lv in level_list if lv[:2] == (lx, ly)), None)
                xs, ys = max(1, part.tiles[0]), max(1, part.tiles[1])
                if level is None or not (0 <= tx * xs < level[2] and 0 <= ty * ys < level[3]):
                    raise LayoutError(f"chunk {i} at byte {offset} names tile ({tx}, {ty}) of level "
                                      f"({lx}, {ly}), which the part does not have")
                w = min(xs, level[2] - tx * xs)
                h = min(ys, level[3] - ty * ys)
                claimed = w * h * sum(PIXEL_BYTES.get(c.type, 4) for c in part.channels)
                what = f"tile ({tx}, {ty}) of level ({lx}, {ly}), {w}x{h} pixels"
            out.append(Chunk(i, offset, head, stored, claimed, what))
    finally:
        os.close(fd)
    part.chunks = out
    return out


class SinglePartView:
    """A read-only file object presenting part ``index`` of a multi-part file as a single-part
    file: the magic and version (no multi-part flag), the part's header, its offset table
    rewritten to the new places, then its chunks without their part numbers. Reads go to the
    real file (os.pread); nothing is copied but the header and the table."""

    def __init__(self, path: str, version: int, part: Part):
        """``part`` with its chunks read (``read_chunks``)."""
        self._fd = os.open(path, os.O_RDONLY)
        start, end = part.header_span
        flags = (version & LONG_NAMES) | (TILED if part.tiles else 0)
        head = struct.pack("<ii", MAGIC, (version & 0xFF) | flags) + os.pread(self._fd, end - start, start)
        at = len(head) + 8 * len(part.chunks)
        self._pieces = []  # (virtual start, length, real start)
        table = []
        for c in part.chunks:
            length = c.prefix - 4 + c.stored
            table.append(at)
            self._pieces.append((at, length, c.offset + 4))
            at += length
        self._head = head + struct.pack(f"<{len(table)}Q", *table)
        self._starts = [p[0] for p in self._pieces]
        self._size, self._pos = at, 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = {0: 0, 1: self._pos, 2: self._size}[whence] + pos
        return self._pos

    def read(self, n: int = -1) -> bytes:
        n = self._size - self._pos if n is None or n < 0 else min(n, max(0, self._size - self._pos))
        out = []
        while n > 0:
            pos = self._pos
            if pos < len(self._head):
                piece = self._head[pos : pos + n]
            else:
                k = bisect.bisect_right(self._starts, pos) - 1
                vstart, length, real = self._pieces[k]
                if pos >= vstart + length:  # a gap cannot happen: pieces are contiguous
                    break
                piece = os.pread(self._fd, min(n, vstart + length - pos), real + pos - vstart)
                if not piece:
                    break
            out.append(piece)
            self._pos += len(piece)
            n -= len(piece)
        return b"".join(out)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
