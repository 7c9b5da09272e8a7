"""`python -m lediff_runner evaluate --clip` end to end on the fixture models: a pan across the city HDRI (3 frames
of 64x48), one camera for the shot, the shipped photo_to_hdr workflow per frame (scaled down as in
tests/e2e/test_workflows.py), per-frame metrics and the warping error of every method. The fixture models'
scores mean nothing; the checks are on the pipeline and on values recomputed from the files it
names: the references' own warping error is the flow's floor (near 0 for an exact pan). A real SDR
video (Big Buck Bunny, clips.REAL_CLIP) as --clip: its frames, as Debian's ffmpeg decodes
them, are the photos, and only the warping errors are scored."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import OpenEXR
import pytest
import torch
from PIL import Image

from lediff_core.io.exr import read_exr
from lediff_core.qa.clips import equirect_pan
from lediff_core.qa.temporal import warping_error
from lediff_core.video.flow import flow_with_visibility
from lediff_runner.evaluate import lediff_result
from lediff_runner.workflow import input_types_from_host, to_api
from support.clips import REAL_CLIP, REAL_CLIP_START, REAL_CLIP_STRIDE
from support.common import HDRI_DIR, REPO
from support.workflows import load_workflow, scale_down

PAN = os.path.join(HDRI_DIR, "city.exr")
FRAMES = [f"frame_{i:04d}" for i in range(3)]
METHODS = {"lediff", "inverse_camera", "banterle2006", "srgb"}


def run_evaluation(comfy, workflow_models, root, *args):
    prompt = scale_down(to_api(load_workflow("photo_to_hdr"), input_types_from_host(comfy.nodes.NODE_CLASS_MAPPINGS)))
    workflow = root / "photo_to_hdr_api.json"
    workflow.write_text(json.dumps(prompt))
    output = root / "eval"
    cmd = [sys.executable, "-m", "lediff_runner", "evaluate", *args, "--output", str(output),
           "--workflow", str(workflow), "--base-directory", str(workflow_models)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    with open(output / "report" / "results.csv") as f:
        rows = {(r["image"], r["method"], r["metric"]): float(r["score"]) for r in csv.DictReader(f)}
    return {"output": output, "rows": rows, "run": json.loads((output / "report" / "run.json").read_text())}


@pytest.fixture(scope="module")
def clip_evaluation(comfy, workflow_models, tmp_path_factory):
    return run_evaluation(comfy, workflow_models, tmp_path_factory.mktemp("evaluate_clip"), "--clip", f"pan:{PAN}",
                          "--clip-frames", "3", "--clip-size", "64x48", "--seed", "5", "--metrics", "pu21_psnr")


def test_every_frame_is_scored_and_the_clip_gets_its_warping_error(clip_evaluation):
    rows, run = clip_evaluation["rows"], clip_evaluation["run"]
    per_frame = {k for k in rows if k[0] != "clip"}
    assert per_frame == {(f, m, "pu21_psnr") for f in FRAMES for m in METHODS}
    clip = {k for k in rows if k[0] == "clip"}
    assert clip == {("clip", m, k) for m in METHODS | {"reference"} for k in ("warping_error", "warping_error_clipped")}
    assert all(np.isfinite(v) for v in rows.values())
    # one camera for the whole shot, drawn by the seed; the clip's source is recorded
    cameras = [r["camera"] for r in run["references"]]
    assert all(c == cameras[0] for c in cameras) and 0.05 <= cameras[0]["clip_share"] <= 0.15
    assert run["clip"] == {"source": "pan", "panorama": PAN, "frames": 3, "size": [64, 48], "step_px": 2,
                           "factor": 4}
    table = (clip_evaluation["output"] / "report" / "results.md").read_text()
    assert "a clip of 3 frames" in table and "warping_error (lower is better)" in table
    with Image.open(clip_evaluation["output"] / "report" / "results.png") as plot:
        assert plot.format == "PNG"


def test_clip_frames_are_the_pan_and_the_scores_are_those_of_the_files(clip_evaluation):
    output, rows = clip_evaluation["output"], clip_evaluation["rows"]
    expected, _ = equirect_pan(read_exr(PAN).rgb, 3, (64, 48), 2, 4)
    refs = []
    for i, name in enumerate(FRAMES):
        with OpenEXR.File(str(output / "reference" / f"{name}.exr")) as f:
            refs.append(np.asarray(f.channels()["RGB"].pixels, np.float32))
        np.testing.assert_array_equal(refs[-1], expected[i])
    ldr = np.stack([np.asarray(Image.open(output / "ldr" / f"{n}.png").convert("RGB")) for n in FRAMES]) / 255.0
    flow, valid = flow_with_visibility(torch.from_numpy(ldr.astype(np.float32)))
    region = torch.from_numpy((ldr >= 0.99).any(-1))
    assert region[1:].any()  # the sun and sky clip
    ref = warping_error(np.stack(refs), flow, valid=valid, region=region)
    assert rows[("clip", "reference", "warping_error")] == pytest.approx(ref["overall"], rel=1e-6, abs=1e-12)
    assert rows[("clip", "reference", "warping_error_clipped")] == pytest.approx(ref["region"], rel=1e-6, abs=1e-12)
    assert ref["overall"] < 1e-3  # an exact pan: what is left is the flow's error
    srgb = np.stack([read_exr(str(output / "baselines" / "srgb" / f"{n}.exr")).rgb for n in FRAMES])
    got = warping_error(srgb, flow, valid=valid, region=region)
    assert rows[("clip", "srgb", "warping_error")] == pytest.approx(got["overall"], rel=1e-6, abs=1e-12)


def test_clip_errors_name_the_problem(tmp_path):
    def evaluate(*args):
        cmd = [sys.executable, "-m", "lediff_runner", "evaluate", "--output", str(tmp_path / "o"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)

    missing = evaluate("--clip", "pan:/nonexistent.exr")
    assert missing.returncode != 0 and "no such file (pan:FILE pans across an equirect HDRI)" in missing.stderr
    both = evaluate("--clip", "x", "--references", "y")
    assert both.returncode != 0 and "not allowed with argument" in both.stderr
    size = evaluate("--clip", "x", "--clip-size", "60x48")
    assert size.returncode != 0 and "multiples of 8" in size.stderr
    camera = evaluate("--clip", REAL_CLIP, "--clip-frames", "2", "--jpeg", "90")
    assert camera.returncode != 0 and "is a video" in camera.stderr and "--jpeg cannot apply" in camera.stderr
    short = evaluate("--clip", REAL_CLIP, "--clip-start", "130", "--clip-frames", "5")
    assert short.returncode != 0 and "has 2 frames from frame 130 every 1, not 5" in short.stderr
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    bad = evaluate("--clip", str(not_video))
    assert bad.returncode != 0 and "not a readable video" in bad.stderr


VIDEO_FACTOR = 20  # 1280x720 -> 64x36, cut to 64x32


def test_an_sdr_video_is_the_photos_and_gets_only_the_warping_error(comfy, workflow_models, tmp_path):
    run = run_evaluation(comfy, workflow_models, tmp_path, "--clip", REAL_CLIP, "--clip-frames", "3",
                         "--clip-start", str(REAL_CLIP_START), "--clip-stride", str(REAL_CLIP_STRIDE),
                         "--downscale", str(VIDEO_FACTOR))
    output, rows = run["output"], run["rows"]
    # the photos: frames 30, 32, 34 as Debian's ffmpeg decodes them, box-averaged 20x20 in code
    # values (rounded half to even) and centre-cut from 36 to 32 rows
    picked = "+".join(f"eq(n\\,{REAL_CLIP_START + k * REAL_CLIP_STRIDE})" for k in range(3))
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", REAL_CLIP, "-vf", f"select={picked}", "-fps_mode",
                          "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True, timeout=120).stdout
    decoded = np.frombuffer(raw, np.uint8).reshape(3, 720, 1280, 3).astype(np.float64)
    boxed = np.round(decoded.reshape(3, 36, VIDEO_FACTOR, 64, VIDEO_FACTOR, 3).mean(axis=(2, 4)))[:, 2:34]
    ldr = np.stack([np.asarray(Image.open(output / "ldr" / f"{n}.png").convert("RGB")) for n in FRAMES])
    np.testing.assert_array_equal(ldr, boxed.astype(np.uint8))
    # no reference, no simulated camera: no per-frame scores, no inverse camera, no reference row
    methods = {"lediff", "banterle2006", "srgb"}
    assert set(rows) == {("clip", m, k) for m in methods for k in ("warping_error", "warping_error_clipped")}
    assert not (output / "reference").exists() or not os.listdir(output / "reference")
    sha256 = hashlib.sha256(open(REAL_CLIP, "rb").read()).hexdigest()
    assert run["run"]["clip"] == {"source": "video", "file": REAL_CLIP, "file_sha256": sha256, "fps": 25.0,
                                  "start": REAL_CLIP_START, "stride": REAL_CLIP_STRIDE, "frames": 3,
                                  "size": [64, 32], "factor": VIDEO_FACTOR}
    assert all(r["camera"] is None and r["reference"] is None for r in run["run"]["references"])
    # the scores are those of the files, along the flow of the photos
    photos = torch.from_numpy(ldr.astype(np.float32) / 255)
    flow, valid = flow_with_visibility(photos)
    region = torch.from_numpy((ldr / 255.0 >= 0.99).any(-1))
    assert region[1:].any()  # the sky clips
    for method in methods:
        paths = [lediff_result(str(output), n) if method == "lediff" else output / "baselines" / method / f"{n}.exr"
                 for n in FRAMES]
        got = warping_error(np.stack([read_exr(str(p)).rgb for p in paths]), flow, valid=valid, region=region)
        assert rows[("clip", method, "warping_error")] == pytest.approx(got["overall"], rel=1e-6, abs=1e-12)
        assert rows[("clip", method, "warping_error_clipped")] == pytest.approx(got["region"], rel=1e-6, abs=1e-12)
    table = (output / "report" / "results.md").read_text()
    assert "a clip of 3 frames" in table and "no HDR reference" in table and "Per image" not in table
