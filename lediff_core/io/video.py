"""HDR video masters: HDR10 (PQ) and HLG as 10-bit HEVC (libx265) or AV1 (libsvtav1), through PyAV.

The signal is the one of the AVIF PQ/HLG files (``display.avif.signal_range``): linear HDR in the
working space goes to BT.2020 through the pack's OCIO path, ``reference_white`` lands on BT.2408's
reference white (203 cd/m2 for PQ, HLG signal 0.75), PQ is clipped at ``mastering_peak`` and HLG at
its nominal peak, negative components at 0 (all counted), and each component becomes the exactly
rounded 10-bit code of the curve (``color.quantize.curve_codes``). Those R'G'B' codes are then
turned into Y'CbCr ourselves, so nothing in FFmpeg guesses a matrix or range:

- BT.2020 non-constant luminance (ITU-R BT.2020-2 Table 4: Kr = 0.2627, Kb = 0.0593), limited
  ("tv") range at 10 bits (BT.2100 Table 9: Y' = 64 + 876 E'y, Cb/Cr = 512 + 896 E'c, rounded);
- 4:2:0 by averaging each 2x2 block (chroma sited at the block's centre, which HEVC files signal as
  chroma location 1; AV1 has no code for it and says "unknown");
- width and height must be even: an odd size is refused (no silent crop, no padding).

Tagging: CICP 9/16/9 (PQ) or 9/18/9 (HLG), range limited, in the bitstream (HEVC VUI, AV1 sequence
header) and in the container (MP4 ``colr`` nclx, Matroska ``Colour``). PQ files carry HDR10 static
metadata in the bitstream (HEVC SEI, AV1 metadata OBUs): the mastering display (SMPTE ST 2086:
BT.2020 primaries, D65, ``mastering_peak`` down to 0.0001 cd/m2, as the AVIF files) and the content
light level (CTA-861.3) MaxCLL / MaxFALL, computed from the frames *as encoded*: the brightest
component's 10-bit PQ code of each pixel decoded back to cd/m2, MaxCLL the largest over the clip,
MaxFALL the largest frame average, both rounded up. That takes a first pass over the frames (the
IMAGE batch is in memory anyway); the encode is a second pass that converts and sends one frame at
a time, so memory does not grow with the clip. HLG files carry neither (HLG is relative to the
display's peak). PyAV cannot attach stream-level side data, so the container has no ``mdcv`` /
``clli`` boxes (MP4) or ``MasteringMetadata`` (Matroska); players and TVs read the bitstream's.

Audio (ComfyUI's AUDIO dict, first item of its batch) is AAC in both containers, cut to the video's
length (as core's Save Video) and interleaved with the frames. ``read_sdr_frames`` goes the other
way for SDR clips (``python -m lediff_runner evaluate --clip FILE``). No ComfyUI imports.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch

from .. import LEDiffError
from ..color.ocio import WORKING_SPACE, linear_matrix
from ..color.quantize import curve_codes
from ..color.transfer import pq_decode
from .access import check_readable
from .display import FormatError
from .display.avif import (
    BITS,
    BT2020_PRIMARIES,
    D65_WHITE,
    MASTERING_MIN_NITS,
    REC2020,
    TRANSFER_HLG,
    TRANSFER_PQ,
    signal_range,
)
from .opencv import opencv

CODECS = {"hevc": "libx265", "av1": "libsvtav1"}
TRANSFERS = {"pq": TRANSFER_PQ, "hlg": TRANSFER_HLG}
CONTAINERS = {"mp4": "mp4", "mkv": "matroska"}
# CRF: lower is better. x265 takes 0..51, SVT-AV1 1..63. 18 is a high-quality master for both
# (x265's "visually lossless" region; for SVT-AV1 well above its default of 35).
QUALITY_RANGE = {"hevc": (0, 51), "av1": (1, 63)}
DEFAULT_QUALITY = 18
# encoder speed: x265's default preset; SVT-AV1 preset 6 (what core's Save WEBM uses)
PRESETS = {"hevc": "medium", "av1": "6"}
# The smallest width and height each encoder opens with (measured on PyAV's bundled builds: libx265
# refuses 14 px or less on either side, libsvtav1 says "Source Width/Height must be at least 4");
# smaller frames are refused by name before the encoder is asked (it would only say "Invalid argument").
MIN_SIZE = {"hevc": 16, "av1": 4}
# the highest frame rate each encoder opens with (libsvtav1: "The maximum allowed frame rate is 240
# fps"; libx265 took 1000, the node's maximum)
MAX_RATE = {"hevc": Fraction(1000), "av1": Fraction(240)}
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
CODE_MAX = (1 << BITS) - 1
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
    lo, hi = QUALITY_RANGE[s.codec]
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
    the minimum: at least one frame, at least ``MIN_SIZE[codec]`` pixels a side, even sizes."""
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
                      if m <= min(w, h) and m % 2 == 0))
    if h % 2 or w % 2:
        raise VideoError(
            f"4:2:0 video needs an even width and height, the frames are {w}x{h}; crop or pad them "
            "by one pixel first (e.g. with an image crop or pad node)")
    return n, h, w


def min_size_note(codec: str) -> str:
    """Who needs ``MIN_SIZE[codec]``, and the codecs that take less: `` for hevc (libx265; av1 takes 4x4)``."""
    smaller = [f"{c} takes {MIN_SIZE[c]}x{MIN_SIZE[c]}" for c in MIN_SIZE if MIN_SIZE[c] < MIN_SIZE[codec]]
    return f" for {codec} ({'; '.join([CODECS[codec], *smaller])})"


def _frame(frames, i: int) -> np.ndarray:
    """Frame ``i`` as a C-contiguous float32 numpy array (a view where it already is one)."""
    f = frames[i]
    if isinstance(f, torch.Tensor):
        f = f.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(f, dtype=np.float32)


@lru_cache(maxsize=1)
def _pq_code_nits() -> np.ndarray:
    """cd/m2 of every 10-bit PQ code (float64)."""
    return pq_decode(torch.arange(CODE_MAX + 1, dtype=torch.float64) / CODE_MAX).numpy()


def _round_up(nits: float) -> int:
    return math.ceil(nits * (1 - 1e-12))  # a code that decodes to 1000.0000000001 is 1000


@lru_cache(maxsize=8)
def _to_rec2020_matrix(reference_white: float) -> np.ndarray:
    """Working space -> BT.2020 linear light with reference white at 1.0, one 3x3 float32 matrix."""
    return (linear_matrix(WORKING_SPACE, REC2020) / reference_white).astype(np.float32)


def _rec2020(rgb: np.ndarray, settings: VideoSettings) -> np.ndarray:
    """[H, W, 3] working-space linear RGB -> BT.2020 linear light, reference white 1.0. OpenCV's
    ``transform`` (one thread, SIMD): numpy's matmul of an [N, 3] array goes through BLAS threads
    that spin against the encoder's."""
    return opencv("Save HDR Video").transform(rgb, _to_rec2020_matrix(settings.reference_white))


def _workers(pixels: int) -> int:
    """Threads of the first pass, which runs before the encoder starts: the CPUs this process may
    use, at most 4, and one per million pixels of the clip (a thread costs more than it saves on a
    few small frames)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus, pixels >> 20))


def _frame_stats(rgb: np.ndarray, settings: VideoSettings) -> tuple[int, int, float, float] | None:
    """One frame of the first pass: (pixels above the peak, pixels with a negative BT.2020
    component, MaxCLL and frame-average light of the PQ codes in cd/m2, 0 for HLG), or None when
    the frame holds NaN or Inf."""
    if not np.isfinite(rgb).all():
        return None
    cv2 = opencv("Save HDR Video")
    m = signal_range(TRANSFERS[settings.transfer], settings.mastering_peak)
    r, g, b = cv2.split(_rec2020(rgb, settings))
    brightest = cv2.max(cv2.max(r, g), b)
    over = int(np.count_nonzero(brightest > m.limit / m.scale))
    negative = int(np.count_nonzero(cv2.min(cv2.min(r, g), b) < 0))
    if settings.transfer != "pq":
        return over, negative, 0.0, 0.0
    # the brightest component's code is the largest code of the pixel (the curve is monotone)
    codes = curve_codes(brightest, m.decode, BITS, m.scale, m.limit).reshape(-1)
    nits = _pq_code_nits()
    average = float(np.bincount(codes, minlength=CODE_MAX + 1) @ nits) / codes.size
    return over, negative, float(nits[codes.max()]), average


def analyse(frames, settings: VideoSettings) -> ClipReport:
    """The first pass: refuse NaN/Inf (counting them over the clip), count the pixels the signal
    clips, and for PQ measure MaxCLL/MaxFALL from the 10-bit codes the frames will be encoded with.
    Frames are measured on ``_workers`` threads, each taking a run of frames; each frame's numbers
    are its own, so the report does not depend on the number of threads."""
    check_settings(settings)
    n, h, w = check_frames(frames, settings.codec)
    report = ClipReport(n, w, h, peak=signal_range(TRANSFERS[settings.transfer], settings.mastering_peak).peak,
                        rate=frame_rate(settings.fps))
    workers = _workers(n * h * w)
    runs = [range(k * n // workers, (k + 1) * n // workers) for k in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        stats = [s for run in pool.map(lambda run: [_frame_stats(_frame(frames, i), settings) for i in run], runs)
                 for s in run]
    bad_frames = [i for i, s in enumerate(stats) if s is None]
    if bad_frames:
        bad_pixels = sum(int((~np.isfinite(_frame(frames, i))).any(axis=-1).sum()) for i in bad_frames)
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


def rgb_codes(rgb: np.ndarray, settings: VideoSettings) -> np.ndarray:
    """Working-space linear RGB [H, W, 3] -> the 10-bit BT.2100 R'G'B' codes (uint16, 0..1023)."""
    m = signal_range(TRANSFERS[settings.transfer], settings.mastering_peak)
    return curve_codes(_rec2020(np.ascontiguousarray(rgb, dtype=np.float32), settings), m.decode, BITS,
                       m.scale, m.limit)


def yuv420_from_codes(codes: np.ndarray) -> np.ndarray:
    """10-bit R'G'B' codes [H, W, 3] -> limited-range BT.2020 NCL Y'CbCr 4:2:0 in PyAV's
    ``yuv420p10le`` ndarray layout: [H * 3/2, W] uint16, the Y plane, then Cb, then Cr.

    Each plane is one weighted sum of the channels with the offset folded in, through OpenCV's
    ``transform`` (one thread, rounded to nearest): Y' from each pixel's codes, Cb and Cr from
    each 2x2 block's mean codes (``resize`` with ``INTER_AREA`` halving is exactly that mean)."""
    cv2 = opencv("Save HDR Video")
    h, w, _ = codes.shape
    out = np.empty((h * 3 // 2, w), np.uint16)
    y = cv2.transform(codes, _Y_MATRIX, dst=out[:h])
    if not np.shares_memory(y, out):  # OpenCV allocated its own output instead of filling ours
        out[:h] = y
    mean = cv2.resize(codes.astype(np.float32), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    flat = out.reshape(-1)
    n, m = h * w, h * w // 4
    for start, matrix in ((n, _CB_MATRIX), (n + m, _CR_MATRIX)):
        plane = cv2.transform(mean, matrix)
        np.copyto(flat[start:start + m].reshape(h // 2, w // 2), np.rint(plane, out=plane), casting="unsafe")
    return out


# each plane's weights per code of R', G', B' and its offset: 876 (Y') and 896 (Cb, Cr) code steps
# per unit signal, the signal being codes / CODE_MAX
_Y_MATRIX = np.array([[KR, KG, KB, 0]], np.float64) * 876 / CODE_MAX + [[0, 0, 0, 64]]
_CB_MATRIX = np.array([[-KR, -KG, 1 - KB, 0]]) / (2 * (1 - KB)) * 896 / CODE_MAX + [[0, 0, 0, 512]]
_CR_MATRIX = np.array([[1 - KR, -KG, -KB, 0]]) / (2 * (1 - KR)) * 896 / CODE_MAX + [[0, 0, 0, 512]]
_Y_MATRIX, _CB_MATRIX, _CR_MATRIX = (a.astype(np.float32) for a in (_Y_MATRIX, _CB_MATRIX, _CR_MATRIX))


def yuv420_frame(rgb: np.ndarray, settings: VideoSettings) -> np.ndarray:
    """Working-space linear RGB [H, W, 3] -> the ``yuv420p10le`` planes the encoder gets."""
    return yuv420_from_codes(rgb_codes(rgb, settings))


def _x265_xy(xy) -> str:
    return f"({round(xy[0] / 0.00002)},{round(xy[1] / 0.00002)})"


def encoder_options(settings: VideoSettings, report: ClipReport) -> dict[str, str]:
    """The codec options (PyAV ``stream.options``) of a master: CRF, preset, colour signalling
    and, for PQ, the HDR10 static metadata."""
    pq = settings.transfer == "pq"
    (rx, ry), (gx, gy), (bx, by) = BT2020_PRIMARIES
    options = {"crf": str(settings.quality), "preset": PRESETS[settings.codec]}
    if settings.codec == "hevc":
        params = ["colorprim=bt2020", f"transfer={'smpte2084' if pq else 'arib-std-b67'}",
                  "colormatrix=bt2020nc", "range=limited", "chromaloc=1", "log-level=error"]
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
    elif pq:
        wx, wy = D65_WHITE
        options["svtav1-params"] = ":".join([
            f"mastering-display=G({gx},{gy})B({bx},{by})R({rx},{ry})WP({wx},{wy})"
            f"L({settings.mastering_peak:g},{MASTERING_MIN_NITS:g})",
            f"content-light={report.max_cll},{report.max_fall}"])
    return options


def add_video_stream(container, settings: VideoSettings, report: ClipReport):
    """The master's video stream on an open PyAV output ``container`` (shared with the benchmark's
    plain PyAV baseline, so both encode with the same options)."""
    stream = container.add_stream(CODECS[settings.codec], rate=report.rate)
    stream.width, stream.height = report.width, report.height
    stream.pix_fmt = "yuv420p10le"
    cc = stream.codec_context
    cc.color_primaries = PRIMARIES_BT2020
    cc.color_trc = TRANSFERS[settings.transfer]
    cc.colorspace = MATRIX_BT2020_NCL
    cc.color_range = RANGE_LIMITED
    if settings.codec == "hevc" and settings.container == "mp4":
        cc.codec_tag = "hvc1"  # parameter sets in the sample entry: what Apple's players require
    stream.options = encoder_options(settings, report)
    return stream


def video_frame(planes: np.ndarray, settings: VideoSettings, index: int, rate: Fraction):
    """A PyAV frame of ``yuv420p10le`` planes, tagged like the stream."""
    import av

    frame = av.VideoFrame.from_ndarray(planes, format="yuv420p10le")
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
                on_frame: Callable[[int], None] | None = None) -> ClipReport:
    """Encode ``frames`` ([N, H, W, 3] linear HDR in the working space, torch or numpy, indexable
    by frame) to ``path``, a new file. ``report`` is ``analyse``'s (computed here when None);
    ``metadata`` goes into the container's tags (strings); ``on_frame(i)`` is called after each
    frame (progress, interrupts: an exception there stops the encode). Returns the report."""
    import av

    if report is None:
        report = analyse(frames, settings)
    with av.open(path, mode="w", format=CONTAINERS[settings.container],
                 options={"movflags": "use_metadata_tags+faststart"} if settings.container == "mp4" else {}) as out:
        for key, value in (metadata or {}).items():
            out.metadata[key] = value
        stream = add_video_stream(out, settings, report)
        packets = _VideoPackets(out, settings, report)
        sound = _Audio(out, audio, report.frames, report.rate) if audio is not None else None
        # one frame converted at a time, while the encoder's own threads work on the frames before
        # it; a converter thread one frame ahead was slower on a 2-CPU host, where the encoder
        # already keeps both busy (docs/benchmarks.md)
        for i in range(report.frames):
            planes = yuv420_frame(_frame(frames, i), settings)
            packets.mux(stream.encode(video_frame(planes, settings, i, report.rate)))
            if sound is not None:
                sound.send_until(i + 1)
            if on_frame is not None:
                on_frame(i)
        packets.mux(stream.encode(None))
        if sound is not None:
            sound.finish()
    return report


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
