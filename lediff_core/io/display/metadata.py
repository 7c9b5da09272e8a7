"""Workflow metadata inside display files: an Exif (TIFF) block, and the containers' places for it.

The block follows ComfyUI's convention for WebP/AVIF (core's ``ImageSaveHelper``, and what the
frontend's AVIF reader parses): ASCII tag 0x0110 (Model) holds ``prompt:<json>``, and each further
entry of the workflow info (``workflow``, ...) takes tags 0x010F (Make), 0x010E, ... as
``<key>:<json>``.

Placement, per container (the encoders have no metadata parameter, so the finished file is edited;
no pixel data is touched):
- JPEG: an APP1 ``Exif`` segment right after SOI. That is before the MPF segment, whose offsets are
  relative to itself, so the gain map stays found. APP1 holds at most 65533 bytes.
- JPEG XL: an ``Exif`` box in the ISO BMFF container (ISO/IEC 18181-2), after ``ftyp``.
- AVIF (HEIF, ISO/IEC 23008-12): an ``Exif`` item (``infe`` in ``iinf``, extent in ``iloc``,
  ``cdsc`` reference to the primary image in ``iref``), its payload in a new ``mdat`` at the end.
  Item properties the encoder cannot write (content light level ``clli``, mastering display
  ``mdcv``) go the same way: appended to ``ipco`` and associated with the primary image in
  ``ipma``.
"""

from __future__ import annotations

import json
import struct

from ... import LEDiffError

APP1_MAX = 65535 - 2  # a JPEG segment's length field counts itself
PROMPT_TAG = 0x0110
FIRST_INFO_TAG = 0x010F


def comfy_exif(prompt: dict | None, extra_pnginfo: dict | None) -> bytes | None:
    """A TIFF (Exif) block with ComfyUI's prompt/workflow tags, or None when there is nothing."""
    from PIL import Image

    exif = Image.Exif()
    if prompt is not None:
        exif[PROMPT_TAG] = "prompt:" + json.dumps(prompt)
    for i, (key, value) in enumerate((extra_pnginfo or {}).items()):
        exif[FIRST_INFO_TAG - i] = f"{key}:{json.dumps(value)}"
    if not len(exif):
        return None
    data = exif.tobytes()
    return data[6:] if data.startswith(b"Exif\x00\x00") else data


def exif_text(tiff: bytes) -> dict[int, str]:
    """The ASCII entries of an Exif (TIFF) block by tag, in tag order: what ``comfy_exif`` wrote
    (``<key>:<json>``), for the formats that carry the workflow elsewhere too (TIFF tags, PNG text)."""
    from PIL import Image

    entries = Image.Exif()
    entries.load(tiff if tiff.startswith(b"Exif") else b"Exif\x00\x00" + tiff)
    return {tag: value for tag, value in sorted(entries.items()) if isinstance(value, str)}


class MetadataError(LEDiffError, ValueError):
    pass


# ---------------------------------------------------------------- JPEG


def jpeg_with_exif(jpeg: bytes, tiff: bytes) -> bytes:
    if jpeg[:2] != b"\xff\xd8":
        raise MetadataError("not a JPEG (no SOI marker)")
    payload = b"Exif\x00\x00" + tiff
    if len(payload) > APP1_MAX:
        raise MetadataError(f"the workflow's Exif block ({len(payload)} bytes) exceeds a JPEG APP1 "
                            f"segment ({APP1_MAX} bytes)")
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


# ---------------------------------------------------------------- ISO BMFF


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int, int]]:
    """(type, start, header size, size) of the boxes in data[start:end]."""
    out, i = [], start
    while i < end:
        if end - i < 8:
            raise MetadataError("truncated ISO BMFF box header")
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[i + 8:i + 16])[0], 16
        elif size == 0:
            size = end - i
        if size < header or i + size > end:
            raise MetadataError(f"bad size of ISO BMFF box {kind!r}")
        out.append((kind, i, header, size))
        i += size
    return out


def jxl_with_exif(jxl: bytes, tiff: bytes) -> bytes:
    boxes = _boxes(jxl, 0, len(jxl)) if jxl[4:8] == b"JXL " else None
    if not boxes or boxes[1][0] != b"ftyp":
        raise MetadataError("not a JPEG XL container (encode with usecontainer=True)")
    _, start, _, size = boxes[1]
    cut = start + size
    return jxl[:cut] + _box(b"Exif", struct.pack(">I", 0) + tiff) + jxl[cut:]


def _uint(data: bytes, pos: int, size: int) -> int:
    return int.from_bytes(data[pos:pos + size], "big") if size else 0


def _parse_iloc(body: bytes) -> tuple[int, tuple[int, int, int, int], list[dict]]:
    version = body[0]
    if version > 2:
        raise MetadataError(f"iloc version {version} is not supported")
    offset_size, length_size = body[4] >> 4, body[4] & 15
    base_size, index_size = body[5] >> 4, (body[5] & 15) if version in (1, 2) else 0
    pos = 6
    idw = 4 if version == 2 else 2
    count = _uint(body, pos, idw)
    pos += idw
    items = []
    for _ in range(count):
        item = {"id": _uint(body, pos, idw)}
        pos += idw
        item["method"] = (_uint(body, pos, 2) & 15) if version in (1, 2) else 0
        pos += 2 if version in (1, 2) else 0
        item["ref"] = _uint(body, pos, 2)
        item["base"] = _uint(body, pos + 2, base_size)
        pos += 2 + base_size
        n = _uint(body, pos, 2)
        pos += 2
        item["extents"] = []
        for _ in range(n):
            index = _uint(body, pos, index_size)
            pos += index_size
            offset = _uint(body, pos, offset_size)
            length = _uint(body, pos + offset_size, length_size)
            pos += offset_size + length_size
            item["extents"].append((index, offset, length))
        items.append(item)
    return version, (offset_size, length_size, base_size, index_size), items


def _build_iloc(version: int, sizes: tuple[int, int, int, int], items: list[dict]) -> bytes:
    offset_size, length_size, base_size, index_size = sizes
    idw = 4 if version == 2 else 2
    out = bytearray([version, 0, 0, 0, offset_size << 4 | length_size, base_size << 4 | index_size])
    out += len(items).to_bytes(idw, "big")
    for item in items:
        out += item["id"].to_bytes(idw, "big")
        if version in (1, 2):
            out += item["method"].to_bytes(2, "big")
        out += item["ref"].to_bytes(2, "big") + item["base"].to_bytes(base_size, "big")
        out += len(item["extents"]).to_bytes(2, "big")
        for index, offset, length in item["extents"]:
            out += index.to_bytes(index_size, "big") + offset.to_bytes(offset_size, "big")
            out += length.to_bytes(length_size, "big")
    return _box(b"iloc", bytes(out))


def avif_with_metadata(avif: bytes, tiff: bytes | None = None, properties: tuple[bytes, ...] = ()) -> bytes:
    """Add to a single-image AVIF whose item data follow the ``meta`` box an Exif item (``tiff``)
    and/or item ``properties`` (complete boxes such as ``clli``/``mdcv``, appended to ``ipco`` and
    associated, as non-essential, with the primary image in ``ipma``)."""
    top = _boxes(avif, 0, len(avif))
    metas = [b for b in top if b[0] == b"meta"]
    if not top or top[0][0] != b"ftyp" or len(metas) != 1:
        raise MetadataError("not an AVIF file with one meta box")
    _, mstart, mheader, msize = metas[0]
    children = _boxes(avif, mstart + mheader + 4, mstart + msize)
    found = {kind: avif[s + h:s + size] for kind, s, h, size in children}
    for kind in (b"pitm", b"iloc", b"iinf") + ((b"iprp",) if properties else ()):
        if kind not in found:
            raise MetadataError(f"AVIF meta box has no {kind.decode()} box")
    if b"idat" in found:
        raise MetadataError("AVIF items stored in idat are not supported")
    pitm = found[b"pitm"]
    primary = _uint(pitm, 4, 4 if pitm[0] else 2)
    version, sizes, items = _parse_iloc(found[b"iloc"])
    meta_end = mstart + msize
    for item in items:
        if item["method"] != 0 or item["ref"] != 0:
            raise MetadataError("AVIF item data outside the file are not supported")
        for _, offset, _ in item["extents"]:
            if item["base"] + offset < meta_end:
                raise MetadataError("AVIF item data before the meta box are not supported")
    replaced = {}
    if properties:
        replaced[b"iprp"] = _iprp_with(found[b"iprp"], primary, properties)
    payload = b""
    if tiff is not None:
        new_id = max(i["id"] for i in items) + 1
        if new_id >= (1 << 16) and version != 2:
            raise MetadataError("too many AVIF items")
        iinf = found[b"iinf"]
        cw = 4 if iinf[0] else 2
        infe = _box(b"infe", bytes([2, 0, 0, 0]) + new_id.to_bytes(2, "big") + b"\x00\x00" + b"Exif" + b"\x00")
        replaced[b"iinf"] = _box(b"iinf", iinf[:4] + (_uint(iinf, 4, cw) + 1).to_bytes(cw, "big")
                                 + iinf[4 + cw:] + infe)
        cdsc = _box(b"cdsc", new_id.to_bytes(2, "big") + b"\x00\x01" + primary.to_bytes(2, "big"))
        if b"iref" in found and found[b"iref"][0] != 0:
            raise MetadataError("iref version 1 is not supported")
        replaced[b"iref"] = _box(b"iref", found.get(b"iref", b"\x00\x00\x00\x00") + cdsc)
        payload = struct.pack(">I", 0) + tiff

    def meta_with(delta: int) -> bytes:
        shifted = [_shift(item, delta) for item in items]
        if payload:
            shifted.append({"id": new_id, "method": 0, "ref": 0, "base": 0,
                            "extents": [(0, len(avif) + delta + 8, len(payload))]})
        rebuilt = []
        for kind, s, _, size in children:
            rebuilt.append(replaced.get(kind) or (
                _build_iloc(version, sizes, shifted) if kind == b"iloc" else avif[s:s + size]))
            if kind == b"iinf" and b"iref" in replaced and b"iref" not in found:
                rebuilt.append(replaced[b"iref"])
        return _box(b"meta", avif[mstart + mheader:mstart + mheader + 4] + b"".join(rebuilt))

    # the meta box's size does not depend on the offsets' values (fixed-width fields)
    delta = len(meta_with(0)) - msize
    if len(avif) + delta + 8 >= 1 << (8 * sizes[0]):
        raise MetadataError("AVIF too large for its iloc offset size")
    tail = _box(b"mdat", payload) if payload else b""
    return avif[:mstart] + meta_with(delta) + avif[meta_end:] + tail


def clli_box(max_cll: int, max_fall: int) -> bytes:
    """ContentLightLevelBox (ISO/IEC 23000-22, the fields of CTA-861.3): MaxCLL and MaxFALL in
    cd/m2."""
    return _box(b"clli", struct.pack(">HH", max_cll, max_fall))


def st2086_fields(primaries: tuple[tuple[float, float], ...], white: tuple[float, float],
                  max_nits: float, min_nits: float) -> bytes:
    """The mastering display's SMPTE ST 2086 fields as HEVC's SEI, ISOBMFF's ``mdcv`` and PNG's
    ``mDCV`` carry them: the (x, y) of the three ``primaries`` in the order given, then ``white``, in
    units of 0.00002 (uint16); the largest and smallest luminance in units of 0.0001 cd/m2 (uint32)."""
    xy = [round(v / 0.00002) for p in (*primaries, white) for v in p]
    return struct.pack(">8H2I", *xy, round(max_nits * 10000), round(min_nits * 10000))


def mdcv_box(primaries: tuple[tuple[float, float], ...], white: tuple[float, float],
             max_nits: float, min_nits: float) -> bytes:
    """MasteringDisplayColourVolumeBox (ISO/IEC 23000-22, the fields of SMPTE ST 2086):
    ``primaries`` as (x, y) of red, green, blue, written in the order green, blue, red like the
    HEVC SEI message."""
    r, g, b = primaries
    return _box(b"mdcv", st2086_fields((g, b, r), white, max_nits, min_nits))


def _iprp_with(iprp: bytes, item: int, properties: tuple[bytes, ...]) -> bytes:
    """``iprp`` with ``properties`` appended to its ``ipco`` and associated with ``item``."""
    boxes = _boxes(iprp, 0, len(iprp))
    kinds = [b[0] for b in boxes]
    if kinds.count(b"ipco") != 1 or kinds.count(b"ipma") != 1:
        raise MetadataError("AVIF iprp box without exactly one ipco and one ipma")
    _, s, h, size = boxes[kinds.index(b"ipco")]
    first = len(_boxes(iprp, s + h, s + size)) + 1  # property indices are 1-based
    out = []
    for kind, s, h, size in boxes:
        body = iprp[s + h:s + size]
        if kind == b"ipco":
            out.append(_box(b"ipco", body + b"".join(properties)))
        elif kind == b"ipma":
            out.append(_box(b"ipma", _ipma_with(body, item, range(first, first + len(properties)))))
        else:
            out.append(iprp[s:s + size])
    return _box(b"iprp", b"".join(out))


def _ipma_with(body: bytes, item: int, indices: range) -> bytes:
    version, wide = body[0], body[3] & 1  # item ids of 4 bytes from version 1; 15-bit indices
    idw, aw = (4 if version else 2), (2 if wide else 1)
    if indices.stop - 1 >= (1 << (8 * aw - 1)):
        raise MetadataError("too many AVIF item properties for this ipma box")
    count, pos, out, done = _uint(body, 4, 4), 8, bytearray(body[:8]), False
    for _ in range(count):
        entry_id, n = _uint(body, pos, idw), body[pos + idw]
        entry = bytearray(body[pos:pos + idw + 1 + n * aw])
        pos += len(entry)
        if entry_id == item:
            if n + len(indices) > 255:
                raise MetadataError("too many properties on the AVIF primary image")
            entry[idw] = n + len(indices)
            entry += b"".join(i.to_bytes(aw, "big") for i in indices)
            done = True
        out += entry
    if not done:
        raise MetadataError("the AVIF primary image has no ipma entry")
    return bytes(out + body[pos:])


def _shift(item: dict, delta: int) -> dict:
    """An iloc item with its data moved ``delta`` bytes later in the file."""
    if item["base"]:
        return dict(item, base=item["base"] + delta)
    return dict(item, extents=[(x, o + delta, n) for x, o, n in item["extents"]])


def moov_with_video_entry_boxes(moov: bytes, extra: bytes) -> bytes:
    """``moov`` (a whole QuickTime/MP4 movie box) with ``extra`` (complete boxes, e.g. ``mdcv`` and
    ``clli``) appended to its first video track's sample entry, after the entry's own child boxes,
    and the sizes of the entry and of every box around it grown to match. Chunk offsets are left
    as they are: the caller keeps the movie box after the media data (no "faststart")."""
    def child(start: int, header: int, size: int, kind: bytes, skip: int = 0):
        for found in _boxes(moov, start + header + skip, start + size):
            if found[0] == kind:
                return found
        raise MetadataError(f"no {kind.decode()} box in {moov[start + 4:start + 8].decode()}")

    top = _boxes(moov, 0, len(moov))
    if len(top) != 1 or top[0][0] != b"moov":
        raise MetadataError("not a movie (moov) box")
    movie = top[0]
    for trak in _boxes(moov, movie[1] + movie[2], movie[3]):
        if trak[0] != b"trak":
            continue
        mdia = child(*trak[1:], b"mdia")
        hdlr = child(*mdia[1:], b"hdlr")
        if moov[hdlr[1] + hdlr[2] + 8:hdlr[1] + hdlr[2] + 12] != b"vide":  # after version/flags, pre_defined
            continue
        minf = child(*mdia[1:], b"minf")
        stbl = child(*minf[1:], b"stbl")
        stsd = child(*stbl[1:], b"stsd")
        entry = _boxes(moov, stsd[1] + stsd[2] + 8, stsd[1] + stsd[3])[0]  # after version/flags, count
        grown = (movie, trak, mdia, minf, stbl, stsd, entry)
        if any(header != 8 or size + len(extra) >= 1 << 32 for _, _, header, size in grown):
            raise MetadataError("a 64-bit box size around the video sample entry")
        end = entry[1] + entry[3]
        out = bytearray(moov[:end] + extra + moov[end:])
        for _, start, _, size in grown:
            struct.pack_into(">I", out, start, size + len(extra))
        return bytes(out)
    raise MetadataError("no video track in the movie")
