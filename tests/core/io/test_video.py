"""HDR video in the core (lediff_core.io.video): the 10-bit planes the encoder gets against BT.2100 and
BT.2020 formulas written here, frame rates, the encoders' own minimum sizes, nothing published when the
disk fills mid-clip, and the SDR reader refusing an HDR master."""

from __future__ import annotations

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
    REC709_TO_2020,
    pq_inverse_eotf,
)
from support.common import REPO


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


@pytest.mark.parametrize("transfer", ["pq", "hlg"])
def test_planes_are_bt2100_and_bt2020_formulas_rounded(transfer):
    """The yuv420p10le planes the encoder gets, against float64 formulas written here: BT.2087's
    matrix, the clipped PQ / HLG curve rounded to 10-bit codes, BT.2020 NCL Y'CbCr at limited range
    from the codes (chroma from each 2x2 block's mean codes), rounded. The frame spans 2**-20..2**4
    with negative components, and reference white is not 1. A value may land on the other side of
    a rounding step only where float32 arithmetic cannot tell (a code or a plane value within
    1e-3 of a .5 step); everything else is equal."""
    from lediff_core.io.video import VideoSettings, analyse, ycbcr_frame

    rng = np.random.default_rng(3)
    h, w, white = 48, 64, 1.7
    frame = (np.exp2(rng.uniform(-20, 4, (h, w, 3))) * rng.choice([1, 1, 1, -0.01], (h, w, 3))).astype(np.float32)
    settings = VideoSettings(transfer=transfer, reference_white=white, mastering_peak=1000.0)
    y_plane, got_cb, got_cr = ycbcr_frame(frame, settings)
    assert y_plane.shape == (h, w) and got_cb.shape == got_cr.shape == (h // 2, w // 2)
    assert y_plane.dtype == got_cb.dtype == np.uint16

    assert np.allclose(REC709_TO_2020_EXACT, REC709_TO_2020, atol=5e-5)
    rec2020 = frame.astype(np.float64) @ REC709_TO_2020_EXACT.T / white
    if transfer == "pq":
        exact = pq_inverse_eotf(np.clip(rec2020 * 203, 0, 1000)) * 1023
    else:
        exact = hlg_oetf(rec2020 * HLG_WHITE_SCENE) * 1023
    codes = np.rint(exact)
    ambiguous = np.abs(exact - np.floor(exact) - 0.5) < 1e-3
    kr, kb = 0.2627, 0.0593
    y = 64 + 876 * (codes @ [kr, 1 - kr - kb, kb]) / 1023
    mean = codes.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    cb = 512 + 896 * (mean @ [-kr, -(1 - kr - kb), 1 - kb]) / (2 * (1 - kb)) / 1023
    cr = 512 + 896 * (mean @ [1 - kr, -(1 - kr - kb), -kb]) / (2 * (1 - kr)) / 1023
    blocks = ambiguous.reshape(h // 2, 2, w // 2, 2, 3).any(axis=(1, 3, 4))
    for name, got, want, unsure in (("Y'", y_plane, y, ambiguous.any(-1)), ("Cb", got_cb, cb, blocks),
                                    ("Cr", got_cr, cr, blocks)):
        unsure = unsure | (np.abs(want - np.floor(want) - 0.5) < 1e-3)
        diff = got.astype(np.int64) - np.rint(want)
        assert not diff[~unsure].any(), (name, np.count_nonzero(diff[~unsure]))
        assert np.abs(diff).max() <= 1, name
        assert unsure.mean() < 0.05, name  # the exemption covers few values
    assert y_plane.min() >= 64 and y_plane.max() <= 940  # limited range

    report = analyse(frame[None], settings)
    brightest = rec2020.max(-1)
    assert report.negative == int((rec2020.min(-1) < 0).sum()) > 0
    assert report.over == int((brightest * (203 if transfer == "pq" else HLG_WHITE_SCENE)
                               > (1000 if transfer == "pq" else 1)).sum()) > 0


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
    refuse 2 pixels under it and open at it (the short-clip test encodes at it)."""
    import av

    from lediff_core.io.video import CODEC_SPECS, CODECS, MIN_SIZE, VideoError, check_frames

    for codec, least in MIN_SIZE.items():
        for side, opens in ((least, True), (least - 2, False))[:1 if least <= 2 else 2]:
            with av.open(str(tmp_path / f"{codec}{side}.mkv"), "w") as out:
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



def test_444_planes_are_bt2100_formulas_at_the_codecs_depth():
    """hevc_444_12's planes: the PQ curve rounded to 12-bit codes (not 10-bit codes shifted), then
    BT.2100 Table 9 at 12 bits (Y' = round((219 E'y + 16) 16), Cb/Cr = round((224 E'c + 128) 16)) from
    each pixel's own codes: no chroma averaging, and an odd size is fine. Same exemption as above for
    values float32 cannot place on one side of a .5 step."""
    from lediff_core.io.video import VideoSettings, check_frames, ycbcr_frame

    rng = np.random.default_rng(5)
    h, w = 17, 23
    frame = (np.exp2(rng.uniform(-14, 3, (h, w, 3)))).astype(np.float32)
    settings = VideoSettings(codec="hevc_444_12", container="mov")
    assert check_frames(frame[None], "hevc_444_12") == (1, h, w)
    planes = ycbcr_frame(frame, settings)
    assert [p.shape for p in planes] == [(h, w)] * 3 and all(p.dtype == np.uint16 for p in planes)
    exact = pq_inverse_eotf(np.clip(frame.astype(np.float64) @ REC709_TO_2020_EXACT.T * 203, 0, 1000)) * 4095
    codes = np.rint(exact)
    unsure_codes = (np.abs(exact - np.floor(exact) - 0.5) < 1e-3).any(-1)
    kr, kb = 0.2627, 0.0593
    e = codes / 4095
    want = (16 * (16 + 219 * (e @ [kr, 1 - kr - kb, kb])),
            16 * (128 + 224 * (e @ [-kr, -(1 - kr - kb), 1 - kb]) / (2 * (1 - kb))),
            16 * (128 + 224 * (e @ [1 - kr, -(1 - kr - kb), -kb]) / (2 * (1 - kr))))
    for name, got, exact_plane in zip(("Y'", "Cb", "Cr"), planes, want, strict=True):
        unsure = unsure_codes | (np.abs(exact_plane - np.floor(exact_plane) - 0.5) < 1e-3)
        diff = got.astype(np.int64) - np.rint(exact_plane)
        assert not diff[~unsure].any(), (name, np.count_nonzero(diff[~unsure]))
        assert unsure.mean() < 0.05, name
    assert planes[0].max() > 1023 * 2  # 12-bit codes, not 10-bit


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
