"""HDR video masters: HDR10 (PQ) and HLG, through PyAV: 10-bit 4:2:0 HEVC (libx265) or AV1
(libsvtav1) for delivery; HEVC Main 4:4:4 10/12 (libx265) or ProRes 4444 / 4444 XQ (prores_ks, 10-bit
4:4:4, MOV only) as grading masters (``CODEC_SPECS``). 4:4:4 takes each pixel's chroma and any size;
ProRes carries the colour code points in its frame header but no HDR10 metadata (its header has no
field for it): the pack adds it to the MOV (below). What follows describes 4:2:0 10-bit; the 4:4:4 and
12-bit paths are the same steps at their depth and without the averaging.

The signal is the one of the AVIF PQ/HLG files (``display.avif.signal_range``): linear HDR in the
working space goes to BT.2020 through the pack's OCIO matrix, ``reference_white`` lands on BT.2408's
reference white (203 cd/m2 for PQ, HLG signal 0.75), PQ is clipped at ``mastering_peak`` and HLG at
its nominal peak, negative components at 0 (all counted), and each component becomes the exactly
rounded 10-bit code of the curve (``color.quantize.curve_codes``). Those R'G'B' codes are then
turned into Y'CbCr ourselves, so nothing in FFmpeg guesses a matrix or range:

- BT.2020 non-constant luminance (ITU-R BT.2020-2 Table 4: Kr = 0.2627, Kb = 0.0593), limited
  ("tv") range at 10 bits (BT.2100 Table 9: Y' = 64 + 876 E'y, Cb/Cr = 512 + 896 E'c, Round);
- 4:2:0 by averaging each 2x2 block (chroma sited at the block's centre, which HEVC files signal as
  chroma location 1; AV1 has no code for it and says "unknown");
- width and height must be even: an odd size is refused (no silent crop, no padding).

The conversion runs in torch on the device the caller names (the node: ComfyUI's), one frame at a
time (``FrameConverter``), and gives the same codes on every device: the matrix in float64 one IEEE
operation at a time (no BLAS, no fused multiply-add) rounded once to float32, the curve through
``curve_codes``' table (integer operations on the float32 bit patterns), Y'CbCr as exact fractions
of integers (Kr and Kb are exact decimals) rounded as BT.2100's Round says, halves up (one float64
matrix product whose rounding provably cannot move a result across an integer,
``ycbcr_from_codes``). The OpenCV float32 arithmetic it replaced gave the same values except where
float32 could not place a value on one side of a rounding step (5 of 92160 test values, one code
each; tests/core/io/test_video.py). On the CPU the conversion runs on one torch thread
(``one_torch_thread``), in bands of rows (``BAND_PIXELS``) whose buffers, reused from band to band
and frame to frame, stay in the caches between its dozen passes; on a GPU it takes the whole frame
at once.

Tagging: CICP 9/16/9 (PQ) or 9/18/9 (HLG), range limited, in the bitstream (HEVC VUI, AV1 sequence
header, ProRes frame header) and in the container (MP4 ``colr`` nclx, MOV ``colr`` nclc, Matroska
``Colour``). PQ files carry HDR10 static metadata in the bitstream where the codec has a place for
it (HEVC SEI, AV1 metadata OBUs): the mastering display (SMPTE ST 2086: BT.2020 primaries, D65,
``mastering_peak`` down to 0.0001 cd/m2, as the AVIF files) and the content light level
(CTA-861.3) MaxCLL / MaxFALL, computed from the frames *as encoded*: the brightest component's PQ
code of each pixel decoded back to cd/m2, MaxCLL the largest over the clip, MaxFALL the largest
frame average, both rounded up. That takes a first pass over the frames (the IMAGE batch is in
memory anyway); the encode is a second pass that converts and sends one frame at a time, so memory
does not grow with the clip. HLG files carry neither (HLG is relative to the display's peak).
FFmpeg's muxers write container copies (MP4/MOV ``mdcv`` / ``clli``, Matroska
``MasteringMetadata``) only from the stream's coded side data, and PyAV 18 lets a program put
nothing there but a display matrix (``VideoStream.set_display_matrix``; no way to set the encoder's
global side data, and ``Frame.side_data`` is read-only). HEVC/AV1 players and TVs read the
bitstream's; for ProRes PQ masters the pack appends ``mdcv`` and ``clli`` to the finished MOV's video
sample entry itself (``_add_hdr10_boxes``), which is why those files keep the movie box last.

Audio (ComfyUI's AUDIO dict, first item of its batch) is AAC in both containers, cut to the video's
length (as core's Save Video) and interleaved with the frames. ``read_sdr_frames`` goes the other
way for SDR clips (``python -m lediff_runner evaluate --clip FILE``). No ComfyUI imports.
"""

from __future__ import annotations

import math
import os
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch

from .. import LEDiffError
from ..color.ocio import WORKING_SPACE, linear_matrix
from ..color.quantize import device_table, table_codes
from ..color.transfer import pq_decode
from .access import check_readable
from .display import FormatError
from .display.avif import (
    BT2020_PRIMARIES,
    D65_WHITE,
    MASTERING_MIN_NITS,
    REC2020,
    TRANSFER_HLG,
    TRANSFER_PQ,
    signal_range,
)
from .display.metadata import clli_box, mdcv_box, moov_with_video_entry_boxes
from .scheduling import ordinary_scheduling


@dataclass(frozen=True)
class Codec:
    """One choice of Save HDR Video's ``codec``: the encoder, the planes it gets and what it takes."""

    encoder: str  # PyAV's (FFmpeg's) encoder
    pix_fmt: str  # the planes it is given (limited-range BT.2020 NCL Y'CbCr)
    bits: int  # of the R'G'B' codes and of the planes
    chroma: str  # "420" (each 2x2 block's mean) or "444"
    containers: tuple[str, ...]
    quality: tuple[int, int] | None  # the CRF range; None: the codec has no CRF (ProRes)
    min_size: int  # the smallest width and height the encoder opens with
    max_rate: Fraction  # the highest frame rate it opens with
    options: tuple[tuple[str, str], ...] = ()  # profile, preset
    # False: the encoder writes ST 2086 / CTA-861.3 into the bitstream (PQ only); True: the
    # bitstream has no place for them and the pack adds the MOV's ``mdcv`` / ``clli`` boxes
    hdr10_boxes: bool = False


# The smallest sizes were measured on PyAV's bundled builds: libx265 refuses 14 px or less on either
# side (4:2:0 and 4:4:4 alike), libsvtav1 says "Source Width/Height must be at least 4", prores_ks
# opens (and encodes) 1x1; smaller frames are refused by name before the encoder is asked (it would
# only say "Invalid argument"). The highest rates: libsvtav1 "The maximum allowed frame rate is 240
# fps"; libx265 took 1000, the node's maximum, and so does prores_ks (ProRes has no rate limit).
# CRF: lower is better. x265 takes 0..51, SVT-AV1 1..63; presets: x265's default, SVT-AV1 preset 6
# (what core's Save WEBM uses). ProRes is a fixed-quality intra codec: each profile is one data rate
# (Apple ProRes White Paper: 4444 about 12 bits/pixel at 1080p, 4444 XQ about 18), no CRF.
_X265 = dict(encoder="libx265", containers=("mp4", "mkv", "mov"), quality=(0, 51), min_size=16,
             max_rate=Fraction(1000))
_PRORES = dict(encoder="prores_ks", pix_fmt="yuv444p10le", bits=10, chroma="444", containers=("mov",),
               quality=None, min_size=1, max_rate=Fraction(1000), hdr10_boxes=True)
CODEC_SPECS = {
    "hevc": Codec(**_X265, pix_fmt="yuv420p10le", bits=10, chroma="420",
                  options=(("profile", "main10"), ("preset", "medium"))),
    # 16x16: SVT-AV1 4.1.0 (PyAV 18.1.1's wheels) corrupts its heap and aborts the process on frames
    # of 8x8 and less when it carries HDR metadata (mastering display, content light level); it opens
    # from 4x4, which 4.0's build (PyAV 18.1.0) also encoded
    "av1": Codec("libsvtav1", "yuv420p10le", 10, "420", ("mp4", "mkv"), (1, 63), 16, Fraction(240),
                 options=(("preset", "6"),)),
    "hevc_444_10": Codec(**_X265, pix_fmt="yuv444p10le", bits=10, chroma="444",
                         options=(("profile", "main444-10"), ("preset", "medium"))),
    "hevc_444_12": Codec(**_X265, pix_fmt="yuv444p12le", bits=12, chroma="444",
                         options=(("profile", "main444-12"), ("preset", "medium"))),
    # prores_ks's profiles: 4 = "4444", 5 = "4444xq" (FFmpeg libavcodec/proresenc_kostya.c)
    "prores_4444": Codec(**_PRORES, options=(("profile", "4444"),)),
    "prores_4444xq": Codec(**_PRORES, options=(("profile", "4444xq"),)),
}
CODECS = {name: c.encoder for name, c in CODEC_SPECS.items()}
TRANSFERS = {"pq": TRANSFER_PQ, "hlg": TRANSFER_HLG}
# MOV is QuickTime: its ``colr`` box is the older ``nclc`` (primaries, transfer, matrix; no range)
CONTAINERS = {"mp4": "mp4", "mkv": "matroska", "mov": "mov"}
QUALITY_RANGE = {name: c.quality for name, c in CODEC_SPECS.items() if c.quality is not None}
# 18 is a high-quality master for x265 and SVT-AV1 (x265's "visually lossless" region; for SVT-AV1
# well above its default of 35)
DEFAULT_QUALITY = 18
MIN_SIZE = {name: c.min_size for name, c in CODEC_SPECS.items()}
MAX_RATE = {name: c.max_rate for name, c in CODEC_SPECS.items()}
# x265 gives its first packets the decode time stamp pts - (pts of frame D - pts of frame 0), with D
# its B-frame delay (2 with preset medium's B-pyramid), and computes that difference only when frame
# D arrives: a clip of D frames or fewer gets whatever the uninitialised member held (seen: -130198,
# -549876073101465 frames), which the MP4 muxer refuses at the flush ("Not yet implemented in FFmpeg,
# patches welcome") or writes as a composition offset of hours. Without B-frames x265's DTS is the
# PTS, so such clips are encoded without them (x265 source/encoder/encoder.cpp: m_bframeDelay,
# m_bframeDelayTime).
X265_BFRAME_DELAY = 2
AUDIO_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}

# ITU-R BT.2020-2 Table 4 (non-constant luminance)
KR, KB = 0.2627, 0.0593
KG = 1.0 - KR - KB
# H.273 code points the files carry, and FFmpeg's names for them (what ffprobe prints)
PRIMARIES_BT2020, MATRIX_BT2020_NCL, RANGE_LIMITED = 9, 9, 1


class VideoError(LEDiffError, ValueError):
    """Input an HDR video master cannot be made from; the message names the fix."""


@dataclass(frozen=True)
class VideoSettings:
    fps: float = 24.0
    codec: str = "hevc"
    transfer: str = "pq"
    container: str = "mp4"
    quality: int = DEFAULT_QUALITY
    reference_white: float = 1.0  # the linear value of diffuse white (BT.2408 reference white)
    mastering_peak: float = 1000.0  # PQ: the mastering display's peak, cd/m2; brighter is clipped


@dataclass
class ClipReport:
    """What the first pass found, for the log and the HDR10 metadata."""

    frames: int
    width: int
    height: int
    over: int = 0  # pixels (over all frames) with a component above the peak: clipped
    negative: int = 0  # pixels with a negative BT.2020 component: clipped to 0
    peak: str = ""  # the peak, in words
    max_cll: int | None = None  # PQ only, cd/m2
    max_fall: int | None = None
    rate: Fraction = field(default_factory=lambda: Fraction(24))


def frame_rate(fps: float) -> Fraction:
    """The stream's rate: NTSC rates (23.976, 29.97, 59.94, ...) as k*1000/1001, others to 1/1000."""
    if not (math.isfinite(fps) and fps > 0):
        raise VideoError(f"fps must be a positive number of frames per second, got {fps}")
    k = round(fps * 1.001)
    if k > 0 and abs(fps - k * 1000 / 1001) < 5e-4 and abs(fps - k) > 5e-4:
        return Fraction(k * 1000, 1001)
    return Fraction(round(fps * 1000), 1000)


def check_settings(s: VideoSettings) -> None:
    if s.codec not in CODECS:
        raise VideoError(f"unknown codec {s.codec!r}; choose one of {list(CODECS)}")
    if s.transfer not in TRANSFERS:
        raise VideoError(f"unknown transfer {s.transfer!r}; choose one of {list(TRANSFERS)}")
    if s.container not in CONTAINERS:
        raise VideoError(f"unknown container {s.container!r}; choose one of {list(CONTAINERS)}")
    spec = CODEC_SPECS[s.codec]
    if s.container not in spec.containers:
        takers = [name for name, c in CODEC_SPECS.items() if s.container in c.containers]
        raise VideoError(f"{s.codec} is written in {' or '.join(spec.containers)}, not {s.container}: choose "
                         f"container {spec.containers[0]}, or for {s.container} a codec among {takers}")
    if spec.quality is not None:
        lo, hi = spec.quality
        if not lo <= s.quality <= hi:
            raise VideoError(f"quality (CRF) for {s.codec} must be in {lo}..{hi}, got {s.quality}")
    rate = frame_rate(s.fps)
    if rate > MAX_RATE[s.codec]:
        raise VideoError(
            f"{s.codec} ({CODECS[s.codec]}) encodes at most {MAX_RATE[s.codec]} frames per second, fps is "
            f"{s.fps:g}; lower it" + "".join(f", or choose {other}, which takes up to {top}" for other, top
                                            in MAX_RATE.items() if top >= rate and other != s.codec))
    if not (math.isfinite(s.reference_white) and s.reference_white > 0):
        raise VideoError(f"reference_white must be a positive number, got {s.reference_white}")
    try:
        signal_range(TRANSFERS[s.transfer], s.mastering_peak)
    except FormatError as e:
        raise VideoError(str(e)) from None


def check_frames(frames, codec: str = "hevc") -> tuple[int, int, int]:
    """(frames, height, width) of a batch ``codec`` can encode, else a VideoError naming the size and
    the minimum: at least one frame, at least ``MIN_SIZE[codec]`` pixels a side, even sizes for 4:2:0."""
    shape = tuple(frames.shape)
    if len(shape) != 4 or shape[3] != 3:
        raise VideoError(f"expected RGB frames of shape [frames, H, W, 3], got {list(shape)}")
    n, h, w, _ = shape
    if n < 1:
        raise VideoError(f"the batch holds no frames ({w}x{h}, 0 frames): a video needs at least 1; check "
                         "the node that made the batch")
    least = MIN_SIZE[codec]
    if w < least or h < least:
        raise VideoError(
            f"the frames are {w}x{h}, and {codec} ({CODECS[codec]}) encodes frames of at least "
            f"{least}x{least} pixels; scale or pad them up first (e.g. an upscale or pad node)"
            + "".join(f", or choose {other}, which takes them from {m}x{m}" for other, m in MIN_SIZE.items()
                      if m <= min(w, h)))
    if CODEC_SPECS[codec].chroma == "420" and (h % 2 or w % 2):
        takers = [name for name, c in CODEC_SPECS.items() if c.chroma == "444" and c.min_size <= min(w, h)]
        raise VideoError(
            f"4:2:0 video ({codec}) needs an even width and height, the frames are {w}x{h}; crop or pad "
            f"them by one pixel first (e.g. with an image crop or pad node), or choose a 4:4:4 codec "
            f"({', '.join(takers)}), which takes any size")
    return n, h, w


def min_size_note(codec: str) -> str:
    """Who needs ``MIN_SIZE[codec]``, and the codecs that take less: `` for hevc (libx265; prores_4444 takes 1x1)``."""
    smaller = [f"{c} takes {MIN_SIZE[c]}x{MIN_SIZE[c]}" for c in MIN_SIZE if MIN_SIZE[c] < MIN_SIZE[codec]]
    return f" for {codec} ({'; '.join([CODECS[codec], *smaller])})"


def _frame(frames, i: int, device: torch.device | str) -> torch.Tensor:
    """Frame ``i`` as a float32 [H, W, 3] tensor on ``device``."""
    f = frames[i]
    if not isinstance(f, torch.Tensor):
        f = torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32))
    return f.to(device=device, dtype=torch.float32)


@lru_cache(maxsize=2)
def _pq_code_nits(bits: int, device: torch.device) -> torch.Tensor:
    """cd/m2 of every ``bits``-bit PQ code (float64), on ``device``."""
    code_max = (1 << bits) - 1
    return pq_decode(torch.arange(code_max + 1, dtype=torch.float64) / code_max).to(device)


def _round_up(nits: float) -> int:
    return math.ceil(nits * (1 - 1e-12))  # a code that decodes to 1000.0000000001 is 1000


@lru_cache(maxsize=8)
def _to_rec2020_rows(reference_white: float) -> tuple[tuple[float, float, float], ...]:
    """Working space -> BT.2020 linear light with reference white at 1.0: the 3x3 matrix's rows."""
    m = linear_matrix(WORKING_SPACE, REC2020) / reference_white
    return tuple(tuple(float(v) for v in row) for row in m)


@lru_cache(maxsize=8)
def _rec2020_matrix(reference_white: float, device: torch.device) -> torch.Tensor:
    """``_to_rec2020_rows`` as a float64 [3, 3, 1, 1] tensor on ``device``: [out, in] weights."""
    rows = torch.tensor(_to_rec2020_rows(reference_white), dtype=torch.float64)
    return rows[:, :, None, None].to(device)


class _Scratch:
    """Buffers reused from band to band and frame to frame: each name is one flat tensor, grown
    when a larger view is asked for (each of the conversion's operations writes into one)."""

    def __init__(self, device: torch.device):
        self.device, self.buffers = device, {}

    def __call__(self, name: str, dtype: torch.dtype, *shape: int) -> torch.Tensor:
        size = math.prod(shape)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < size:
            buffer = self.buffers[name] = torch.empty(size, dtype=dtype, device=self.device)
        return buffer[:size].view(shape)


def _rec2020_into(rgb: torch.Tensor, matrix: torch.Tensor, scratch: _Scratch) -> torch.Tensor:
    """``rec2020`` of [B, W, 3] float32 rows, into ``scratch``'s "linear" [3, B, W] (returned)."""
    rows, width, _ = rgb.shape
    x = scratch("x", torch.float64, 3, rows, width)
    x.copy_(rgb.permute(2, 0, 1))  # planes in float64 (exact)
    # the three output planes at once, one input plane at a time: (m0 R + m1 G) + m2 B, each
    # product and sum rounded once in float64 (separate operations: nothing to fuse), then to float32
    total = scratch("total", torch.float64, 3, rows, width)
    term = scratch("term", torch.float64, 3, rows, width)
    torch.mul(x[0], matrix[:, 0], out=total)
    total.add_(torch.mul(x[1], matrix[:, 1], out=term))
    total.add_(torch.mul(x[2], matrix[:, 2], out=term))
    return scratch("linear", torch.float32, 3, rows, width).copy_(total)


def rec2020(rgb: torch.Tensor, settings: VideoSettings) -> torch.Tensor:
    """[H, W, 3] working-space linear RGB (float32, any device) -> the BT.2020 linear light planes
    [3, H, W], reference white 1.0, float32. Each is ``(m0 R + m1 G) + m2 B`` in float64, one IEEE
    operation at a time (no BLAS, no fused multiply-add: a kernel computing ``a + m b`` may fuse it),
    rounded once to float32: the same bits on every device, within float64's rounding of the
    exactly rounded matrix product."""
    return _rec2020_into(rgb, _rec2020_matrix(settings.reference_white, rgb.device), _Scratch(rgb.device))


def conversion_device(device: torch.device | str) -> torch.device:
    """Where the conversion runs: ``device`` if it is a CUDA (or ROCm) GPU or the CPU, else the CPU.
    The exact arithmetic needs float64, which Apple's MPS does not have at all and other backends
    (DirectML, Intel XPU on GPUs without FP64) have partly or by emulation; those frames are
    converted on the CPU instead, with the same codes."""
    device = torch.device(device)
    return device if device.type == "cuda" else torch.device("cpu")


@contextmanager
def one_torch_thread(device: torch.device | str):
    """On the CPU, torch's operations run single-threaded inside (restored after): each one is a pass
    over memory, and with OpenMP threads on a 2-CPU host that is also running x265 (or other
    work) they waited on each other: a 720p frame took 0.6-2.5 s on 2 threads against 0.09 s on 1.
    The first pass spreads frames over threads of its own instead (``_workers``)."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _workers(pixels: int, device: torch.device | str) -> int:
    """Threads of the first pass, which runs before the encoder starts: one on a GPU (it works
    through the frames on its own); on the CPU, the CPUs this process may use, at most 4, and one
    per million pixels of the clip (a thread costs more than it saves on a few small frames)."""
    if torch.device(device).type != "cpu":
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus, pixels >> 20))


def analyse(frames, settings: VideoSettings, device: torch.device | str = "cpu",
            on_frame: Callable[[int], None] | None = None) -> ClipReport:
    """The first pass: refuse NaN/Inf (counting them over the clip), count the pixels the signal
    clips, and for PQ measure MaxCLL/MaxFALL from the codes the frames will be encoded with, on
    ``device`` (``on_frame(i)`` before frame ``i``: interrupts). Each frame's numbers are its own, so
    the report does not depend on the number of threads."""
    check_settings(settings)
    n, h, w = check_frames(frames, settings.codec)
    device = conversion_device(device)
    report = ClipReport(n, w, h, peak=signal_range(TRANSFERS[settings.transfer], settings.mastering_peak).peak,
                        rate=frame_rate(settings.fps))
    local = threading.local()  # a converter (its buffers) per thread

    def measure(i):
        if on_frame is not None:
            on_frame(i)
        if not hasattr(local, "converter"):
            local.converter = FrameConverter(settings, device)
        return local.converter.stats(_frame(frames, i, device))

    with one_torch_thread(device), ThreadPoolExecutor(_workers(n * h * w, device)) as pool:
        stats = list(pool.map(measure, range(n)))
    bad_frames = [i for i, s in enumerate(stats) if s is None]
    if bad_frames:
        bad_pixels = sum(int((~torch.isfinite(_frame(frames, i, "cpu"))).any(-1).sum()) for i in bad_frames)
        first = ", ".join(str(i) for i in bad_frames[:5]) + (", ..." if len(bad_frames) > 5 else "")
        raise VideoError(
            f"{len(bad_frames)} of {n} frame(s) (frame {first}, counting from 0) contain "
            f"{bad_pixels} pixel(s) with NaN or Inf; a video cannot hold them. Fix the node that "
            "produced them (e.g. a division by zero) or replace them before saving.")
    report.over = sum(s[0] for s in stats)
    report.negative = sum(s[1] for s in stats)
    if settings.transfer == "pq":
        report.max_cll = _round_up(max(s[2] for s in stats))
        report.max_fall = _round_up(max(s[3] for s in stats))
    return report


# BT.2020's luma weights as exact fractions of 10000, and 10000 (1 - Kb), 10000 (1 - Kr)
_KR, _KG, _KB = 2627, 6780, 593
_CB_SCALE, _CR_SCALE = 10000 - _KB, 10000 - _KR


@lru_cache(maxsize=4)
def _ycbcr_numerators(bits: int, count: int) -> tuple[tuple[int, ...], ...]:
    """Integer weights of [R', G', B' (codes, summed over ``count`` pixels), 1] and the
    denominator of each plane: Y' = floor(num / den) + offset, exactly BT.2100's
    Round((219 E'y + 16) 2^(n-8)) and Round((224 E'c + 128) 2^(n-8)) (``ycbcr_from_codes``)."""
    code_max, step = (1 << bits) - 1, 1 << (bits - 8)
    # 219 step E'y = 219 step (Kr R + Kg G + Kb B) / (10000 code_max); Round(x) = floor((2 p + q) / 2q)
    y_den = 10000 * code_max
    y = tuple(2 * 219 * step * k for k in (_KR, _KG, _KB)) + (y_den,)
    # 224 step E'c = 224 step (10000 X - luma) / (2 (10000 - 10000 K) code_max), over ``count`` pixels
    cb_den, cr_den = _CB_SCALE * code_max * count, _CR_SCALE * code_max * count
    cb = tuple(2 * 112 * step * (10000 * (c == 2) - k) for c, k in enumerate((_KR, _KG, _KB))) + (cb_den,)
    cr = tuple(2 * 112 * step * (10000 * (c == 0) - k) for c, k in enumerate((_KR, _KG, _KB))) + (cr_den,)
    return y, cb, cr, (2 * y_den, 2 * cb_den, 2 * cr_den), (16 * step, 128 * step, 128 * step)


@lru_cache(maxsize=8)
def _ycbcr_weights(bits: int, chroma: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Float64 weights of [R', G', B', 1] for the planes computed at full resolution ([1, 4], Y', for
    "420"; [3, 4], Y' Cb Cr, for "444") and for the 2x2 blocks' sums ([2, 4], Cb Cr; None for
    "444"): plane value = floor(weights . [codes, 1]) (``ycbcr_from_codes``)."""
    y, cb, cr, dens, offsets = _ycbcr_numerators(bits, 4 if chroma == "420" else 1)
    # floor(num / den) + offset = floor((num + 1/2) / den + offset): the same integer, now a half
    # step of 1/den away from the nearest one (``ycbcr_from_codes``)
    weights = torch.tensor([[w / den for w in numerator[:3]] + [(numerator[3] + 0.5) / den + offset]
                            for numerator, den, offset in zip((y, cb, cr), dens, offsets, strict=True)],
                           dtype=torch.float64).to(device)
    return (weights[:1], weights[1:]) if chroma == "420" else (weights, None)


def _ycbcr_into(codes: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor | None], full: torch.Tensor,
                blocks: torch.Tensor, scratch: _Scratch) -> None:
    """``ycbcr_from_codes`` of int32 code planes [3, B, W] into int16 ``full`` ([1, B W] Y' for 4:2:0,
    [3, B W] for 4:4:4) and ``blocks`` ([2, B W / 4] Cb Cr; 4:2:0 only)."""
    _, rows, width = codes.shape
    full_weights, block_weights = weights
    source = scratch("codes", torch.float64, 4, rows, width)
    source[3].fill_(1)
    source[:3].copy_(codes)
    planes = scratch("planes", torch.float64, full_weights.shape[0], rows * width)
    # values > 0 (at least the offset): the conversion to int16 truncates, which is floor here
    full.copy_(torch.mm(full_weights, source.view(4, -1), out=planes))
    if block_weights is None:
        return
    pairs = scratch("pairs", torch.int32, 3, rows // 2, width)  # rows of each block, then its columns
    torch.add(codes[:, 0::2], codes[:, 1::2], out=pairs)
    sums = scratch("sums", torch.int32, 3, rows // 2, width // 2)
    torch.add(pairs[:, :, 0::2], pairs[:, :, 1::2], out=sums)
    source = scratch("block codes", torch.float64, 4, rows // 2, width // 2)
    source[3].fill_(1)
    source[:3].copy_(sums)
    planes = scratch("block planes", torch.float64, 2, sums[0].numel())
    blocks.copy_(torch.mm(block_weights, source.view(4, -1), out=planes))


def ycbcr_from_codes(codes: torch.Tensor, bits: int, chroma: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``bits``-bit R'G'B' code planes [3, H, W] -> the limited-range BT.2020 NCL Y'CbCr planes (Y'
    [H, W], Cb and Cr [H/2, W/2] for ``chroma`` "420", [H, W] for "444"), int16, same device.

    BT.2100 Table 9 with E' = code / (2^n - 1): D = Round((219 E'y + 16) 2^(n-8)) and
    Round((224 E'c + 128) 2^(n-8)), E'y = Kr E'r + Kg E'g + Kb E'b, E'cb = (E'b - E'y) / (2 (1 - Kb)),
    E'cr = (E'r - E'y) / (2 (1 - Kr)) (BT.2020-2 Table 4 for Kr, Kb). Kr and Kb are exact decimals,
    so each plane value is a fraction of integers p / q, and Round(p / q) = floor((2p + q) / 2q) =
    floor(N / d): Y' can land on a half (rounded up, as Round says), Cb and Cr cannot (odd q). With
    the offset o, floor(N / d) + o = floor((N + 1/2) / d + o), and (N + 1/2) / d + o lies at least
    1/(2d) from every integer (> 1.6e-9: d < 3.1e8 at 12 bits with 4:2:0's sums of four codes). It is
    computed as one product of float64 weights (w / d, (c + 1/2) / d + o, each correctly rounded)
    with [R', G', B', 1] (``torch.mm``, any order, fused or not): every term and partial sum is below
    2^14 in size, so the result is within 1e-11 of the exact value, and floor cannot go wrong; the
    values are positive, so the int16 conversion's truncation is that floor. 4:2:0 takes each 2x2
    block's mean codes (sums over 4, exact integers)."""
    _, h, w = codes.shape
    sub = 2 if chroma == "420" else 1
    out = torch.empty(h * w + 2 * (h // sub) * (w // sub), dtype=torch.int16, device=codes.device)
    full, blocks = out[:h * w].view(1, -1), out[h * w:].view(2, -1)
    if chroma == "444":
        full, blocks = out.view(3, -1), None
    _ycbcr_into(codes.to(torch.int32), _ycbcr_weights(bits, chroma, codes.device), full, blocks,
                _Scratch(codes.device))
    return _planes(out, h, w, sub)


def _planes(out: torch.Tensor, h: int, w: int, sub: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Y' [H, W], Cb and Cr [H/sub, W/sub]: views of the flat ``out``."""
    n, nc = h * w, (h // sub) * (w // sub)
    return out[:n].view(h, w), out[n:n + nc].view(h // sub, w // sub), out[n + nc:].view(h // sub, w // sub)


# pixels a band of rows holds on the CPU: each step is a pass over the band, whose buffers then
# stay in the caches (L2/L3) for the next step; fewer, larger bands cost more memory traffic,
# more, smaller ones more per-operation overhead (measured: docs/benchmarks.md)
BAND_PIXELS = 32768


class FrameConverter:
    """Working-space linear RGB [H, W, 3] -> the Y', Cb, Cr planes of ``settings``' codec, on
    ``device``: ``rec2020``, the curve's codes (``color.quantize.table_codes``) and
    ``ycbcr_from_codes``, band of rows by band of rows on the CPU (``BAND_PIXELS``), the whole
    frame at once on a GPU; the same operations, so the same codes, either way. Its buffers are
    reused from frame to frame: one converter per thread."""

    def __init__(self, settings: VideoSettings, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        spec = CODEC_SPECS[settings.codec]
        m = signal_range(TRANSFERS[settings.transfer], settings.mastering_peak)
        self.matrix = _rec2020_matrix(settings.reference_white, self.device)
        self.table = device_table(m.decode, spec.bits, m.scale, m.limit, self.device)
        self.sub = 2 if spec.chroma == "420" else 1
        self.weights = _ycbcr_weights(spec.bits, spec.chroma, self.device)
        self.scratch = _Scratch(self.device)
        self.bits, self.pq, self.over_limit = spec.bits, settings.transfer == "pq", m.limit / m.scale

    def _rows(self, h: int, w: int) -> int:
        rows = h if self.device.type != "cpu" else max(1, BAND_PIXELS // w)
        return max(self.sub, rows - rows % self.sub)

    def stats(self, rgb: torch.Tensor) -> tuple[int, int, float, float] | None:
        """One frame of the first pass (``analyse``), float32 ``rgb`` on the device: (pixels above
        the peak, pixels with a negative BT.2020 component, MaxCLL and frame-average light of the
        PQ codes (at the codec's bit depth) in cd/m2, 0 for HLG), or None when the frame holds NaN
        or Inf. Band by band, as the conversion."""
        if not bool(torch.isfinite(rgb).all()):
            return None
        h, w, _ = rgb.shape
        rows = self._rows(h, w)
        over = torch.zeros((), dtype=torch.int64, device=self.device)
        negative = torch.zeros_like(over)
        counts = torch.zeros(1 << self.bits, dtype=torch.int64, device=self.device)
        for top in range(0, h, rows):
            linear = _rec2020_into(rgb[top:top + rows], self.matrix, self.scratch)
            extreme = self.scratch("extreme", torch.float32, *linear.shape[1:])
            negative += (torch.amin(linear, 0, out=extreme) < 0).sum()
            brightest = torch.amax(linear, 0, out=extreme)
            over += (brightest > self.over_limit).sum()  # compared in float32, as the tensor
            if self.pq:
                # the brightest component's code is the largest code of the pixel (the curve is monotone)
                codes = table_codes(brightest, self.table, self.scratch("codes32", torch.int32, *brightest.shape),
                                    self.scratch("buckets", torch.int64, brightest.numel()))
                counts += torch.bincount(codes.view(-1), minlength=counts.numel())
        if not self.pq:
            return int(over), int(negative), 0.0, 0.0
        nits = _pq_code_nits(self.bits, self.device)
        brightest_code = int(torch.nonzero(counts).max())
        return int(over), int(negative), float(nits[brightest_code]), float(counts.to(torch.float64) @ nits) / (h * w)

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        """The planes of float32 ``rgb`` on the device, one after another in one flat int16 tensor
        on the device (``_planes`` gives their views)."""
        h, w, _ = rgb.shape
        sub = self.sub
        n, nc = h * w, (h // sub) * (w // sub)
        out = torch.empty(n + 2 * nc, dtype=torch.int16, device=self.device)
        rows = self._rows(h, w)
        for top in range(0, h, rows):
            band = rgb[top:top + rows]
            k = band.shape[0] * w
            linear = _rec2020_into(band, self.matrix, self.scratch)
            codes = table_codes(linear, self.table, self.scratch("codes32", torch.int32, *linear.shape),
                                self.scratch("buckets", torch.int64, linear.numel()))
            if sub == 1:
                full, blocks = out.view(3, n)[:, top * w:top * w + k], None
            else:
                full = out[:n].view(1, n)[:, top * w:top * w + k]
                blocks = out[n:].view(2, nc)[:, top * w // 4:(top * w + k) // 4]
            _ycbcr_into(codes, self.weights, full, blocks, self.scratch)
        return out


def ycbcr_frame(rgb, settings: VideoSettings, device: torch.device | str = "cpu",
                converter: FrameConverter | None = None) -> tuple[np.ndarray, ...]:
    """Working-space linear RGB [H, W, 3] (numpy or torch) -> the Y', Cb, Cr planes the encoder gets
    (its ``pix_fmt``), converted on ``device`` (by ``converter``, made for ``settings`` and
    ``device``, when given) and returned as uint16 numpy arrays."""
    if not isinstance(rgb, torch.Tensor):
        rgb = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32))
    converter = converter or FrameConverter(settings, device)
    rgb = rgb.to(device=converter.device, dtype=torch.float32).contiguous()
    # one copy back to the CPU for the three planes
    host = converter(rgb).cpu()
    return tuple(p.numpy().view(np.uint16) for p in _planes(host, rgb.shape[0], rgb.shape[1], converter.sub))


def _x265_xy(xy) -> str:
    return f"({round(xy[0] / 0.00002)},{round(xy[1] / 0.00002)})"


def encoder_options(settings: VideoSettings, report: ClipReport) -> dict[str, str]:
    """The codec options (PyAV ``stream.options``) of a master: profile, CRF, preset, colour
    signalling and, for PQ, the HDR10 static metadata where the bitstream carries it (HEVC SEI, AV1
    metadata OBUs; a ProRes frame header has the colour code points only: prores_ks writes the
    stream's primaries, transfer and matrix there)."""
    pq = settings.transfer == "pq"
    (rx, ry), (gx, gy), (bx, by) = BT2020_PRIMARIES
    spec = CODEC_SPECS[settings.codec]
    options = dict(spec.options)
    if spec.quality is not None:
        options["crf"] = str(settings.quality)
    if spec.encoder == "libx265":
        params = ["colorprim=bt2020", f"transfer={'smpte2084' if pq else 'arib-std-b67'}",
                  "colormatrix=bt2020nc", "range=limited", "log-level=error"]
        if spec.chroma == "420":
            params.append("chromaloc=1")
        if pq:
            # ST 2086 in x265's units: chromaticity 0.00002, luminance 0.0001 cd/m2
            params += ["hdr10=1",
                       "master-display=G" + _x265_xy((gx, gy)) + "B" + _x265_xy((bx, by))
                       + "R" + _x265_xy((rx, ry)) + "WP" + _x265_xy(D65_WHITE)
                       + f"L({round(settings.mastering_peak * 10000)},{round(MASTERING_MIN_NITS * 10000)})",
                       f"max-cll={report.max_cll},{report.max_fall}"]
        if report.frames <= X265_BFRAME_DELAY:
            params.append("bframes=0")
        options["x265-params"] = ":".join(params)
    elif spec.encoder == "libsvtav1" and pq:
        wx, wy = D65_WHITE
        options["svtav1-params"] = ":".join([
            f"mastering-display=G({gx},{gy})B({bx},{by})R({rx},{ry})WP({wx},{wy})"
            f"L({settings.mastering_peak:g},{MASTERING_MIN_NITS:g})",
            f"content-light={report.max_cll},{report.max_fall}"])
    return options


def add_video_stream(container, settings: VideoSettings, report: ClipReport):
    """The master's video stream on an open PyAV output ``container`` (shared with the benchmark's
    plain PyAV baseline, so both encode with the same options)."""
    spec = CODEC_SPECS[settings.codec]
    stream = container.add_stream(spec.encoder, rate=report.rate)
    stream.width, stream.height = report.width, report.height
    stream.pix_fmt = spec.pix_fmt
    cc = stream.codec_context
    cc.color_primaries = PRIMARIES_BT2020
    cc.color_trc = TRANSFERS[settings.transfer]
    cc.colorspace = MATRIX_BT2020_NCL
    cc.color_range = RANGE_LIMITED
    if spec.encoder == "libx265" and settings.container in ("mp4", "mov"):
        cc.codec_tag = "hvc1"  # parameter sets in the sample entry: what Apple's players require
    stream.options = encoder_options(settings, report)
    return stream


def video_frame(planes: tuple[np.ndarray, ...], settings: VideoSettings, index: int, rate: Fraction):
    """A PyAV frame of ``ycbcr_frame``'s planes in the codec's ``pix_fmt``, tagged like the stream.
    The planes are copied row by row into the frame's buffers (whose rows may be padded): PyAV's
    ``from_ndarray`` knows no 4:4:4 10/12-bit layout."""
    import av

    height, width = planes[0].shape
    frame = av.VideoFrame(width, height, CODEC_SPECS[settings.codec].pix_fmt)
    for target, plane in zip(frame.planes, planes, strict=True):
        rows = np.frombuffer(memoryview(target), np.uint16).reshape(-1, target.line_size // 2)
        rows[:plane.shape[0], :plane.shape[1]] = plane
    frame.color_primaries = PRIMARIES_BT2020
    frame.color_trc = TRANSFERS[settings.transfer]
    frame.colorspace = MATRIX_BT2020_NCL
    frame.color_range = RANGE_LIMITED
    frame.pts = index
    frame.time_base = 1 / rate
    return frame


class _Audio:
    """AAC from ComfyUI's AUDIO dict, sent in step with the frames (cut to the video's length)."""

    def __init__(self, container, audio: dict, frames: int, rate: Fraction):
        waveform = audio["waveform"]
        if waveform.ndim != 3 or waveform.shape[0] < 1:
            raise VideoError(f"audio waveform must be [batch, channels, samples], got {list(waveform.shape)}")
        channels = int(waveform.shape[1])
        if channels not in AUDIO_LAYOUTS:
            raise VideoError(f"audio has {channels} channels; mono, stereo or 5.1 can be muxed. Mix "
                             "it down to stereo first.")
        self.sample_rate = int(audio["sample_rate"])
        if self.sample_rate <= 0:
            raise VideoError(f"audio sample_rate must be positive, got {self.sample_rate}")
        self.samples = waveform[0].detach().to("cpu", torch.float32)
        self.layout = AUDIO_LAYOUTS[channels]
        self.rate = rate
        self.end = min(self.samples.shape[1], math.ceil(self.sample_rate / rate * frames))
        self.sent = 0
        self.container = container
        self.stream = container.add_stream("aac", rate=self.sample_rate, layout=self.layout)

    def send_until(self, frames_done: int) -> None:
        """Encode the samples up to the end of frame ``frames_done`` (or all with a huge value)."""
        import av

        stop = min(self.end, math.ceil(self.sample_rate / self.rate * frames_done))
        if stop <= self.sent:
            return
        chunk = np.ascontiguousarray(self.samples[:, self.sent:stop].numpy())
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
        frame.sample_rate = self.sample_rate
        frame.pts = self.sent
        frame.time_base = Fraction(1, self.sample_rate)
        self.container.mux(self.stream.encode(frame))
        self.sent = stop

    def finish(self) -> None:
        self.send_until(1 << 62)
        self.container.mux(self.stream.encode(None))


class _VideoPackets:
    """Muxes the video encoder's packets after checking their time stamps, so that an encoder that
    gets them wrong (as x265 did for clips shorter than its B-frame delay) is reported as what it
    is, with nothing published, instead of as a muxer error at the flush or a file whose decode
    times lie hours before the first frame."""

    def __init__(self, container, settings: VideoSettings, report: ClipReport):
        self.container, self.settings, self.report = container, settings, report
        self.count, self.last_dts = 0, None

    def mux(self, packets) -> None:
        for packet in packets:
            self._check(packet)
        self.container.mux(packets)

    def _check(self, packet) -> None:
        # in frames: the frames' pts are 0..n-1, and a decoder can only hold so many back, so a
        # valid decode time lies between -n and the packet's pts, and grows from packet to packet
        n = self.report.frames
        unit = packet.time_base * self.report.rate if packet.time_base else None
        pts = None if packet.pts is None or unit is None else packet.pts * unit
        dts = None if packet.dts is None or unit is None else packet.dts * unit
        self.count += 1
        if (pts is None or dts is None or not (-n <= dts <= pts < n)
                or (self.last_dts is not None and dts <= self.last_dts)):
            raise VideoError(
                f"the {self.settings.codec} encoder ({CODECS[self.settings.codec]}) gave packet "
                f"{self.count} of a {n}-frame clip the decode time {dts} and presentation time {pts} "
                f"(in frames, after {self.last_dts}), which no file can hold; nothing was saved. This "
                "is an encoder bug: choose the other codec for this clip, and please report it")
        self.last_dts = dts


def write_video(path: str, frames, settings: VideoSettings, audio: dict | None = None,
                metadata: dict[str, str] | None = None, report: ClipReport | None = None,
                on_frame: Callable[[int], None] | None = None,
                device: torch.device | str = "cpu") -> ClipReport:
    """Encode ``frames`` ([N, H, W, 3] linear HDR in the working space, torch or numpy, indexable
    by frame) to ``path``, a new file, converting each frame on ``device``. ``report`` is
    ``analyse``'s (computed here when None); ``metadata`` goes into the container's tags (strings);
    ``on_frame(i)`` is called after each frame (progress, interrupts: an exception there stops the
    encode). Returns the report."""
    import av

    device = conversion_device(device)
    if report is None:
        report = analyse(frames, settings, device)
    boxes = settings.transfer == "pq" and CODEC_SPECS[settings.codec].hdr10_boxes
    # the movie box goes in front of the media ("faststart") for players, except where the pack
    # adds boxes to it afterwards: it must then stay last, so that no chunk offset moves
    flags = "use_metadata_tags" + ("" if boxes else "+faststart")
    with one_torch_thread(device), av.open(path, mode="w", format=CONTAINERS[settings.container],
                 options={"movflags": flags} if settings.container in ("mp4", "mov") else {}) as out:
        for key, value in (metadata or {}).items():
            out.metadata[key] = value
        stream = add_video_stream(out, settings, report)

        def encode(frame):  # libsvtav1 would make this thread and its own real-time (scheduling.py)
            with ordinary_scheduling():
                return stream.encode(frame)

        packets = _VideoPackets(out, settings, report)
        sound = _Audio(out, audio, report.frames, report.rate) if audio is not None else None
        # one frame converted at a time, on a converter thread: on a GPU it converts frame i + 1
        # while the encoder takes frame i (the thread mostly waits for the device, which costs
        # the encoder no CPU); on the CPU it starts only after the encode call (the two would
        # share the same cores: one frame ahead was 5-15 % slower on the 2-CPU development host,
        # docs/benchmarks.md), so it runs serially there
        ahead = torch.device(device).type != "cpu"
        convert = FrameConverter(settings, device)  # its buffers serve every frame
        with ThreadPoolExecutor(1) as converter:
            pending = converter.submit(ycbcr_frame, frames[0], settings, device, convert)
            for i in range(report.frames):
                planes = pending.result()
                more = i + 1 < report.frames
                if more and ahead:
                    pending = converter.submit(ycbcr_frame, frames[i + 1], settings, device, convert)
                packets.mux(encode(video_frame(planes, settings, i, report.rate)))
                if sound is not None:
                    sound.send_until(i + 1)
                if on_frame is not None:
                    on_frame(i)
                if more and not ahead:
                    pending = converter.submit(ycbcr_frame, frames[i + 1], settings, device, convert)
        packets.mux(encode(None))
        if sound is not None:
            sound.finish()
    if boxes:
        _add_hdr10_boxes(path, settings, report)
    return report


def _add_hdr10_boxes(path: str, settings: VideoSettings, report: ClipReport) -> None:
    """Append the HDR10 static metadata to the video sample entry of the finished MOV at ``path``
    (still its temporary name): ``mdcv`` (SMPTE ST 2086, as the HEVC SEI and the AVIF files) and
    ``clli`` (MaxCLL, MaxFALL), the QuickTime boxes FFmpeg's MOV muxer would write from stream side
    data that PyAV cannot give it. The movie box is the file's last box, so it is rewritten in place
    and the media data does not move."""
    extra = (mdcv_box(BT2020_PRIMARIES, D65_WHITE, settings.mastering_peak, MASTERING_MIN_NITS)
             + clli_box(min(report.max_cll, 65535), min(report.max_fall, 65535)))
    with open(path, "r+b") as f:
        end, pos, top = f.seek(0, os.SEEK_END), 0, []
        while pos < end:
            f.seek(pos)
            size, kind = struct.unpack(">I4s", f.read(8))
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0]
            elif size == 0:
                size = end - pos
            top.append((kind, pos, size))
            pos += size
        kind, start, size = top[-1]
        if kind != b"moov" or b"mdat" not in [k for k, _, _ in top]:
            raise VideoError(f"{path}: the movie box is not after the media data; cannot add HDR10 boxes")
        f.seek(start)
        moov = moov_with_video_entry_boxes(f.read(size), extra)
        f.seek(start)
        f.write(moov)


HDR_TRANSFERS = {16: "PQ (SMPTE ST 2084)", 18: "HLG (ARIB STD-B67)"}  # H.273 transfer codes


def read_sdr_frames(path: str, start: int = 0, count: int | None = None,
                    stride: int = 1) -> tuple[np.ndarray, Fraction]:
    """Frames ``start``, ``start + stride``, ... (``count`` of them, or to the end) of an SDR video
    file's first video stream, as 8-bit RGB [T, H, W, 3] uint8 (FFmpeg's conversion, what ComfyUI's
    Load Video decodes through PyAV too), and the stream's frame rate. Only the kept frames are
    held. An HDR (PQ/HLG) stream, a file without video, or fewer frames than ``count`` is refused."""
    import av

    if start < 0 or stride < 1 or (count is not None and count < 1):
        raise VideoError(f"start must be >= 0, stride >= 1 and count >= 1, got {start}, {stride}, {count}")
    check_readable(path)  # a FIFO or device is refused by name before PyAV opens it
    out = []
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoError(f"{path} has no video stream")
            stream = container.streams.video[0]
            rate = Fraction(stream.average_rate or stream.guessed_rate or 0)
            for i, frame in enumerate(container.decode(stream)):
                if frame.color_trc in HDR_TRANSFERS:
                    raise VideoError(f"{path} is an HDR video ({HDR_TRANSFERS[frame.color_trc]}); this reads "
                                     "SDR clips (8-bit photos of a scene), load HDR frames as EXR instead")
                if i >= start and (i - start) % stride == 0:
                    out.append(frame.to_ndarray(format="rgb24"))
                    if len(out) == count:
                        break
    except av.FFmpegError as e:
        raise VideoError(f"{path}: not a readable video ({e})") from None
    if not out or (count is not None and len(out) < count):
        raise VideoError(f"{path} has {len(out)} frames from frame {start} every {stride}"
                         + (f", not {count}" if count else "") + ": use a smaller start or count")
    return np.stack(out), rate
