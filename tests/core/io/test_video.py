"""HDR video in the core (lediff_core.io.video): the 10-bit planes the encoder gets against BT.2100 and
BT.2020 formulas written here, frame rates, the encoders' own minimum sizes, nothing published when the
disk fills mid-clip, and the SDR reader refusing an HDR master."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from support.clips import clip_frames
from support.color import (
    HA,
    HB,
    HC,
    HLG_WHITE_SCENE,
    pq_inverse_eotf,
)
from support.common import REPO, require_tool


def rgb_to_xyz(primaries, white=(0.3127, 0.3290)):
    """The RGB -> XYZ matrix of a space from its primaries' and white's chromaticities (SMPTE RP 177)."""
    xyz = np.array([[x / y, 1, (1 - x - y) / y] for x, y in primaries]).T
    wx, wy = white
    return xyz * np.linalg.solve(xyz, [wx / wy, 1, (1 - wx - wy) / wy])


# BT.709 and BT.2020 primaries (ITU-R BT.709-6, BT.2020-2), D65: the exact matrix BT.2087 rounds
REC709_TO_2020_EXACT = np.linalg.solve(rgb_to_xyz([(0.708, 0.292), (0.170, 0.797), (0.131, 0.046)]),
                                       rgb_to_xyz([(0.64, 0.33), (0.30, 0.60), (0.15, 0.06)]))


def hlg_oetf(scene):
    e = np.clip(scene, 0, 1)
    return np.where(e <= 1 / 12, np.sqrt(3 * e), HA * np.log(np.maximum(12 * e - HB, 1e-300)) + HC)


FULL_DISK = r"""
import os, resource, signal, sys
import numpy as np
from lediff_core.io.publish import write_numbered_file
from lediff_core.io.video import VideoSettings, write_video
folder, container = sys.argv[1], sys.argv[2]
frames = np.random.default_rng(0).random((40, 64, 128, 3), dtype=np.float32) * 4  # noise: big packets
settings = VideoSettings(container=container, quality=0)
whole = os.path.join(folder, "whole")
os.mkdir(whole)
write_numbered_file(whole, lambda n: f"v_{n:05}.{container}", 1, lambda p: write_video(p, frames, settings))
size = os.path.getsize(os.path.join(whole, f"v_00001.{container}"))
print("complete clip:", size)
full = os.path.join(folder, "full")
os.mkdir(full)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG (a full disk)
resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))
try:
    write_numbered_file(full, lambda n: f"v_{n:05}.{container}", 1, lambda p: write_video(p, frames, settings))
except OSError as e:
    print("failed:", e)
"""


def reference_planes(frame, codec, transfer="pq", white=1.0, peak=1000.0):
    """The planes of one frame from the standards, in float64 numpy: the working space's matrix to
    BT.2020 (the pack's OCIO matrix, checked against BT.2087's derivation from the primaries) over
    reference white, rounded to float32; BT.2408's reference white (203 cd/m2, HLG 75 %), the
    ST 2084 inverse EOTF (clipped at ``peak``) or the BT.2100 HLG OETF (clipped at 1), the code
    Round(E' (2^n - 1)); BT.2020 NCL Y'CbCr at limited range, BT.2100 Table 9, from the codes (4:2:0:
    Cb and Cr from each 2x2 block's mean codes). Returns (planes before rounding, planes, codes before
    rounding) so a test can see how close a value came to a rounding step."""
    from lediff_core.color.ocio import WORKING_SPACE, linear_matrix
    from lediff_core.io.display.avif import REC2020
    from lediff_core.io.video import CODEC_SPECS

    matrix = linear_matrix(WORKING_SPACE, REC2020)
    assert np.abs(matrix - REC709_TO_2020_EXACT).max() < 5e-8
    spec = CODEC_SPECS[codec]
    code_max, step = 2 ** spec.bits - 1, 2 ** (spec.bits - 8)
    light = (frame.astype(np.float64) @ (matrix / white).T).astype(np.float32).astype(np.float64)
    if transfer == "pq":
        exact = pq_inverse_eotf(np.clip(light * 203, 0, peak)) * code_max
    else:
        exact = hlg_oetf(light * HLG_WHITE_SCENE) * code_max
    codes = np.floor(exact + 0.5)
    kr, kb = 0.2627, 0.0593
    e = codes / code_max
    h, w, _ = frame.shape
    if spec.chroma == "420":
        e_c = e.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    else:
        e_c = e
    want = (step * (16 + 219 * (e @ [kr, 1 - kr - kb, kb])),
            step * (128 + 224 * (e_c @ [-kr, -(1 - kr - kb), 1 - kb]) / (2 * (1 - kb))),
            step * (128 + 224 * (e_c @ [1 - kr, -(1 - kr - kb), -kb]) / (2 * (1 - kr))))
    return want, tuple(np.floor(p + 0.5) for p in want), exact


def hdr_frame(h, w, seed):
    """HDR values 2**-20..2**6 with a fifth of the components slightly negative, and a row of
    special pixels: black, -0, a subnormal, reference white, 10^6 (above every peak), all negative."""
    rng = np.random.default_rng(seed)
    frame = (np.exp2(rng.uniform(-20, 6, (h, w, 3))) * rng.choice([1, 1, 1, 1, -0.02], (h, w, 3))).astype(np.float32)
    frame[0, :7] = [[0, 0, 0], [-0.0, 0, 0], [1e-40, 0, 0], [1, 1, 1], [1e6, 1e6, 1e6], [3.5, 0.1, 0.2], [-1, -1, -1]]
    return frame


EXACT_CASES = [("hevc", "pq", 1.7, 1000.0), ("hevc", "hlg", 1.0, 1000.0), ("av1", "pq", 1.0, 400.0),
               ("hevc_444_10", "pq", 1.0, 4000.0), ("hevc_444_12", "pq", 1.0, 1000.0),
               ("hevc_444_12", "hlg", 0.5, 1000.0), ("prores_4444", "pq", 1.0, 10000.0)]


@pytest.mark.parametrize("codec,transfer,white,peak", EXACT_CASES)
def test_planes_are_the_bt2100_and_bt2020_formulas_rounded_exactly(codec, transfer, white, peak):
    """Every plane value the encoder gets equals the float64 formulas written here (``reference_planes``),
    for 4:2:0 and 4:4:4, 10 and 12 bits, PQ and HLG, reference white not 1, peaks from 400 to 10000
    cd/m2, negative, zero, subnormal and clipped values. None of these inputs comes within 1e-9 of a
    rounding step, so float64 decides each one and equality is exact, not within a tolerance."""
    from lediff_core.io.video import CODEC_SPECS, VideoSettings, ycbcr_frame

    h, w = 48, 64
    frame = hdr_frame(h, w, seed=3)
    settings = VideoSettings(codec=codec, transfer=transfer, reference_white=white, mastering_peak=peak,
                             container=CODEC_SPECS[codec].containers[-1])
    planes = ycbcr_frame(frame, settings)
    before, want, codes = reference_planes(frame, codec, transfer, white, peak)
    sub = 2 if CODEC_SPECS[codec].chroma == "420" else 1
    assert [p.shape for p in planes] == [(h, w), (h // sub, w // sub), (h // sub, w // sub)]
    assert all(p.dtype == np.uint16 for p in planes)
    for value in (codes, *before):
        assert np.abs(value - np.floor(value) - 0.5).min() > 1e-9  # no near-tie: float64 decides
    for name, got, exact in zip(("Y'", "Cb", "Cr"), planes, want, strict=True):
        assert np.array_equal(got, exact), (name, np.count_nonzero(got != exact))
    bits = CODEC_SPECS[codec].bits
    assert planes[0].min() >= 16 << (bits - 8) and planes[0].max() <= 235 << (bits - 8)  # limited range
    assert codes.max() > 0.9 * 2 ** bits or transfer == "pq" and peak < 10000  # codes at the codec's depth


def test_halves_round_up_as_bt2100_says():
    """BT.2100's Round is floor(x + 0.5). Y' from 10-bit codes can land exactly on a half: 876 (2627 R +
    6780 G + 593 B) / 10230000 is a half-integer when the bracket is an odd multiple of 426250 (e.g.
    R, G, B = 10, 45, 160: 426250); Y' is then rounded up (float32 arithmetic, as before, could go either
    way). Cb and Cr never land on a half (odd denominators)."""
    import torch

    from lediff_core.io.video import ycbcr_from_codes

    r, g, b = 10, 45, 160
    assert 2627 * r + 6780 * g + 593 * b == 426250
    exact = 64 + 876 * 426250 / 10230000  # 100.5
    assert exact == 100.5
    codes = torch.tensor([r, g, b], dtype=torch.int16).reshape(3, 1, 1).expand(3, 2, 2)
    y, cb, cr = ycbcr_from_codes(codes, 10, "444")
    assert (y == 101).all()
    assert (cb == 512 + round(896 * (160 - 426250 / 10000) / 1023 / (2 * 0.9407))).all()
    assert (cr == 512 + round(896 * (10 - 426250 / 10000) / 1023 / (2 * 0.7373))).all()


def test_todays_opencv_planes_differ_only_where_float32_could_not_tell(tmp_path):
    """tests/data/video_codes holds the planes and first-pass numbers that the OpenCV float32 conversion
    (before the torch one) gave for one frame under six settings (kept in the file). The torch
    conversion gives the same values except where float32 arithmetic could not place a value on one
    side of a rounding step: a code or plane value whose exact (float64) value lies within 1e-3 of a
    .5 step. Those differ by one code; here 5 values of 92160 (3 plane values at 12 bits, 2 at 10
    bits). The first pass's counts, MaxCLL and MaxFALL are the same."""
    from lediff_core.io.video import VideoSettings, analyse, ycbcr_frame

    saved = np.load(os.path.join(REPO, "tests", "data", "video_codes", "opencv_float32_planes.npz"))
    frame = saved["frame"]
    cases = {name: VideoSettings(**fields) for name, fields in json.loads(str(saved["settings"])).items()}
    assert len(cases) == 6
    differ = total = 0
    for name, settings in cases.items():
        planes = ycbcr_frame(frame, settings)
        before, _, codes = reference_planes(frame, settings.codec, settings.transfer, settings.reference_white,
                                            settings.mastering_peak)
        near = (np.abs(codes - np.floor(codes) - 0.5) < 1e-3).any(-1)
        if planes[1].shape != near.shape:  # 4:2:0: a block's chroma is as unsure as its codes
            near_c = near.reshape(near.shape[0] // 2, 2, near.shape[1] // 2, 2).any(axis=(1, 3))
        else:
            near_c = near
        for key, got, value, unsure in zip(("y", "cb", "cr"), planes, before, (near, near_c, near_c), strict=True):
            old = saved[f"{name}/{key}"].astype(np.int64)
            diff = got.astype(np.int64) - old
            unsure = unsure | (np.abs(value - np.floor(value) - 0.5) < 1e-3)
            assert not diff[~unsure].any(), (name, key)
            assert np.abs(diff).max() <= 1, (name, key)
            differ += np.count_nonzero(diff)
            total += diff.size
        report = analyse(frame[None], settings)
        numbers = [report.over, report.negative, report.max_cll or 0, report.max_fall or 0]
        assert numbers == list(saved[f"{name}/report"]), name
    assert (differ, total) == (5, 92160)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("codec,transfer,white,peak", EXACT_CASES)
def test_the_conversion_on_cuda_gives_the_cpu_planes(codec, transfer, white, peak):
    """On a GPU the planes and the first pass's numbers are the CPU's, bit for bit."""
    from lediff_core.io.video import CODEC_SPECS, VideoSettings, analyse, ycbcr_frame

    frames = np.stack([hdr_frame(72, 128, seed) for seed in (7, 8)])
    settings = VideoSettings(codec=codec, transfer=transfer, reference_white=white, mastering_peak=peak,
                             container=CODEC_SPECS[codec].containers[-1])
    for frame in frames:
        for cpu, gpu in zip(ycbcr_frame(frame, settings), ycbcr_frame(frame, settings, "cuda"), strict=True):
            assert np.array_equal(cpu, gpu)
    assert analyse(frames, settings) == analyse(frames, settings, "cuda")


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("codec", ["prores_4444", "hevc"])
def test_a_master_written_on_cuda_holds_the_cpu_masters_packets(tmp_path, codec):
    """write_video on a GPU (its converter thread one frame ahead of the encoder there) gives the
    encoder the CPU's planes in the same order: the files' video packets are byte for byte the same."""
    import av

    from lediff_core.io.video import CODEC_SPECS, VideoSettings, write_video

    frames = np.stack([hdr_frame(48, 64, seed) for seed in range(5)])
    settings = VideoSettings(codec=codec, container=CODEC_SPECS[codec].containers[-1])
    packets = {}
    for device in ("cpu", "cuda"):
        path = str(tmp_path / f"{device}.{settings.container}")
        write_video(path, frames, settings, device=device)
        with av.open(path) as container:
            packets[device] = [bytes(p) for p in container.demux(video=0) if p.size]
    assert len(packets["cpu"]) == 5 and packets["cpu"] == packets["cuda"]


def test_devices_without_float64_convert_on_the_cpu():
    """The conversion's exact arithmetic needs float64: CUDA GPUs and the CPU run it, anything else
    (Apple's MPS has no float64) hands the frames to the CPU."""
    import torch

    from lediff_core.io.video import conversion_device

    assert conversion_device("cuda:1") == torch.device("cuda:1")
    for name in ("cpu", "mps", "xpu", "privateuseone:0"):
        assert conversion_device(name) == torch.device("cpu")


def test_prores_pq_masters_carry_hdr10_in_the_movs_boxes(tmp_path):
    """A ProRes PQ master with sound (two tracks): the pack appends ``mdcv`` and ``clli`` to the video
    sample entry of the finished MOV (ProRes has no place for them in its bitstream). Debian's ffprobe
    reads them as the stream's mastering display (BT.2020, D65, the peak, 0.0001 cd/m2) and light
    levels (the first pass's MaxCLL/MaxFALL); the movie box stays after the media data, and Debian's
    ffmpeg decodes every frame and the sound without an error (no chunk offset moved)."""
    import struct

    import torch

    from lediff_core.io.video import VideoSettings, write_video

    path = str(tmp_path / "master.mov")
    audio = {"waveform": torch.sin(torch.arange(48000.0) / 10).repeat(1, 2, 1), "sample_rate": 48000}
    report = write_video(path, clip_frames(n=4), VideoSettings(codec="prores_4444xq", container="mov",
                                                              mastering_peak=2000.0), audio=audio)
    probe = subprocess.run([require_tool("ffprobe"), "-v", "error", "-of", "json", "-count_frames",
                            "-show_streams", path], capture_output=True, text=True, check=True)
    video, sound = json.loads(probe.stdout)["streams"]
    assert (video["codec_tag_string"], video["nb_read_frames"], sound["codec_name"]) == ("ap4x", "4", "aac")
    side = {d["side_data_type"]: d for d in video["side_data_list"]}
    mdm, cll = side["Mastering display metadata"], side["Content light level metadata"]
    assert [mdm[k] for k in ("red_x", "red_y", "green_x", "green_y", "blue_x", "blue_y", "white_point_x",
                             "white_point_y", "max_luminance", "min_luminance")] == [
        "35400/50000", "14600/50000", "8500/50000", "39850/50000", "6550/50000", "2300/50000", "15635/50000",
        "16450/50000", "20000000/10000", "1/10000"]
    assert (cll["max_content"], cll["max_average"]) == (report.max_cll, report.max_fall) and report.max_cll > 203
    data, top, pos = open(path, "rb").read(), [], 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        top.append(kind)
        pos += size
    assert top.index(b"mdat") < top.index(b"moov") == len(top) - 1
    decode = subprocess.run([require_tool("ffmpeg"), "-v", "error", "-xerror", "-i", path, "-f", "null", "-"],
                            capture_output=True, text=True)
    assert decode.returncode == 0 and decode.stderr == "", decode.stderr


def test_the_movie_box_patch_names_what_it_cannot_patch(tmp_path):
    """moov_with_video_entry_boxes grows the boxes around the first video sample entry; a movie
    without a video track (PyAV's own audio-only MOV) or bytes that are not a movie box are refused
    by name, not patched somewhere else."""
    import struct

    import av

    from lediff_core.io.display.metadata import MetadataError, moov_with_video_entry_boxes

    path = str(tmp_path / "sound.mov")
    with av.open(path, "w") as out:
        stream = out.add_stream("aac", rate=48000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    data, pos = open(path, "rb").read(), 0
    while data[pos + 4:pos + 8] != b"moov":
        pos += struct.unpack(">I", data[pos:pos + 4])[0]
    moov = data[pos:pos + struct.unpack(">I", data[pos:pos + 4])[0]]
    with pytest.raises(MetadataError, match="no video track in the movie"):
        moov_with_video_entry_boxes(moov, b"")
    with pytest.raises(MetadataError, match=r"not a movie \(moov\) box"):
        moov_with_video_entry_boxes(data[:pos], b"")  # ftyp, wide, mdat


def test_core_refuses_fps_at_or_below_zero():
    from lediff_core.io.video import VideoError, frame_rate

    for fps in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(VideoError, match="fps must be a positive"):
            frame_rate(fps)
    assert frame_rate(23.976) == frame_rate(24000 / 1001) == Fraction(24000, 1001)
    assert str(frame_rate(59.94)) == "60000/1001" and str(frame_rate(25)) == "25"


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_a_disk_that_fills_mid_clip_publishes_nothing(tmp_path, container):
    """The file may grow to half the size of the complete clip (RLIMIT_FSIZE in a subprocess)."""
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path), container], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.search(r"complete clip: \d+\nfailed: .*File too large", out.stdout), out.stdout + out.stderr
    assert os.listdir(tmp_path / "full") == []  # neither the video nor its temporary file


REAL_TIME = r"""
import contextlib, hashlib, json, os, sys, threading
import av, numpy as np
from lediff_core.io import video
from support.common import real_time_threads

def capabilities():
    with open(f"/proc/self/task/{threading.get_native_id()}/status") as f:
        return [line for line in f if line.startswith("Cap")]

def encode(name):  # in a thread of its own, as ComfyUI's executor; counts real-time threads meanwhile
    out, seen = {}, []
    frames = np.random.default_rng(0).random((6, 64, 64, 3), dtype=np.float32) * 4
    path = os.path.join(sys.argv[1], name + ".mkv")
    def run():
        out["before"] = os.sched_getscheduler(0), capabilities()
        video.write_video(path, frames, video.VideoSettings(codec="av1", container="mkv"),
                          on_frame=lambda i: seen.append(len(real_time_threads())))
        out["after"] = os.sched_getscheduler(0), capabilities()
    t = threading.Thread(target=run)
    t.start()
    t.join()
    with av.open(path) as c:
        out["packets"] = hashlib.sha256(b"".join(bytes(p) for p in c.demux(video=0))).hexdigest()
    return {**out, "during": max(seen)}

ours = encode("ours")
video.ordinary_scheduling = contextlib.nullcontext  # the control: PyAV's libsvtav1 as is
bare = encode("bare")
print(json.dumps({"ours": ours, "bare": bare, "privileged": os.geteuid() == 0}))
"""


def test_av1_leaves_no_thread_real_time(tmp_path):
    """SVT-AV1 makes the thread that opens an encoder SCHED_FIFO 99 wherever it may (root with
    CAP_SYS_NICE, as here and in CI), for good, and its worker threads inherit it: the control
    (write_video with PyAV's libsvtav1 as is) shows that; write_video's av1 leaves the calling
    thread, its capabilities and every thread during the encode ordinary
    (lediff_core/io/scheduling.py), and its packets are the control's. In a subprocess, so that
    a failure cannot leave this test process real-time."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.path.join(REPO, "tests")])}
    out = subprocess.run([sys.executable, "-c", REAL_TIME, str(tmp_path)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    ours, bare = result["ours"], result["bare"]
    assert ours["before"][0] == os.SCHED_OTHER
    assert ours["during"] == 0, f"{ours['during']} threads ran real-time during the encode"
    assert ours["after"] == ours["before"], "the calling thread's policy or capabilities changed"
    assert ours["packets"] == bare["packets"]
    from lediff_core.io.scheduling import CAP_SYS_NICE

    effective = int(next(line for line in ours["before"][1] if line.startswith("CapEff")).split()[1], 16)
    nice = effective >> CAP_SYS_NICE & 1
    if result["privileged"] and nice:  # where the encoder may raise priorities, the control shows it does
        assert bare["after"][0] == os.SCHED_FIFO and bare["during"] > 1, bare


def test_reading_an_sdr_clip_refuses_an_hdr_master(tmp_path):
    """read_sdr_frames (the evaluation's video reader) takes SDR clips only: a master this module
    wrote is PQ-tagged and refused by name; an SDR clip written by PyAV's libx264 is read back."""
    from lediff_core.io.video import VideoError, VideoSettings, read_sdr_frames, write_video
    from support.clips import write_clip

    master = str(tmp_path / "master.mp4")
    write_video(master, clip_frames(n=2), VideoSettings())
    with pytest.raises(VideoError, match=r"is an HDR video \(PQ \(SMPTE ST 2084\)\)"):
        read_sdr_frames(master)
    ramp = np.broadcast_to(np.linspace(0.2, 0.8, 4, dtype=np.float32)[:, None, None, None], (4, 16, 16, 3))
    sdr = write_clip(str(tmp_path / "sdr.mp4"), np.ascontiguousarray(ramp), fps=25, tone_hz=None)
    frames, rate = read_sdr_frames(sdr, start=1, stride=2)
    assert frames.shape == (2, 16, 16, 3) and frames.dtype == np.uint8 and rate == 25
    # grey frames 1 and 3 of the ramp (0.4, 0.8) come back within the codec's loss
    assert np.abs(frames.reshape(2, -1).mean(1) - np.array([0.4, 0.8]) * 255).max() < 3


def test_the_minimum_sizes_are_the_encoders_own(tmp_path):
    """The minimum is not stricter than the encoders: PyAV's libx265 and libsvtav1, asked directly,
    refuse 2 pixels under it and open at it (the short-clip test encodes at it). The one exception,
    av1: libsvtav1 opens from 4x4 (SVT-AV1 4.0, PyAV 18.1.0) or less (4.1.0, PyAV 18.1.1), but 4.1.0
    aborts the process on HDR frames of 8x8 and less, so the pack asks for 16x16: there only the
    opening at the pack's minimum is the encoder's."""
    import av

    from lediff_core.io.scheduling import ordinary_scheduling
    from lediff_core.io.video import CODEC_SPECS, CODECS, MIN_SIZE, VideoError, check_frames

    assert MIN_SIZE["av1"] == 16
    for codec, least in MIN_SIZE.items():
        for side, opens in ((least, True), (least - 2, False))[:1 if least <= 2 or codec == "av1" else 2]:
            with ordinary_scheduling(), av.open(str(tmp_path / f"{codec}{side}.mkv"), "w") as out:
                stream = out.add_stream(CODECS[codec], rate=24)
                stream.width, stream.height, stream.pix_fmt = 64, side, CODEC_SPECS[codec].pix_fmt
                if opens:
                    stream.codec_context.open()
                else:
                    with pytest.raises(av.FFmpegError):
                        stream.codec_context.open()
        if least > 2:
            with pytest.raises(VideoError, match=rf"{least}x{least}"):
                check_frames(np.zeros((1, least - 2, 64, 3), np.float32), codec)
    with pytest.raises(VideoError, match=r"no frames \(16x16, 0 frames\)"):
        check_frames(np.zeros((0, 16, 16, 3), np.float32), "av1")
    with pytest.raises(VideoError, match=r"the frames are 0x0"):
        check_frames(np.zeros((1, 0, 0, 3), np.float32), "av1")



@pytest.mark.parametrize("codec,container,match", [
    ("prores_4444", "mp4", r"prores_4444 is written in mov, not mp4: choose container mov"),
    ("av1", "mov", r"av1 is written in mp4 or mkv, not mov: .*for mov a codec among \['hevc', "),
])
def test_a_codec_outside_its_containers_is_refused_before_writing(tmp_path, codec, container, match):
    from lediff_core.io.video import VideoError, VideoSettings, write_video

    path = tmp_path / f"v.{container}"
    with pytest.raises(VideoError, match=match):
        write_video(str(path), clip_frames(n=1), VideoSettings(codec=codec, container=container))
    assert not path.exists()


def test_odd_sizes_are_refused_for_420_only():
    from lediff_core.io.video import VideoError, check_frames

    odd = np.zeros((1, 17, 23, 3), np.float32)
    with pytest.raises(VideoError, match=r"4:2:0 video \(hevc\) needs an even width and height, the frames are "
                                         r"23x17; .*or choose a 4:4:4 codec \(hevc_444_10, hevc_444_12, prores"):
        check_frames(odd, "hevc")
    for codec in ("hevc_444_10", "hevc_444_12", "prores_4444", "prores_4444xq"):
        assert check_frames(odd, codec) == (1, 17, 23)
