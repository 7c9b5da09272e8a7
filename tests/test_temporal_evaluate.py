"""scripts/evaluate.py --clip end to end on the fixture models: a pan across the city HDRI (3 frames
of 64x48), one camera for the shot, the shipped photo_to_hdr workflow per frame (scaled down as in
test_workflows.py), per-frame metrics and the warping error of every method. The fixture models'
scores mean nothing; the checks are on the pipeline and on values recomputed from the files it
names: the references' own warping error is the flow's floor (near 0 for an exact pan)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import OpenEXR
import pytest
import torch
from PIL import Image
from test_workflows import load_workflow, scale_down

from lediff_core.io.exr import read_exr
from lediff_core.qa.clips import equirect_pan
from lediff_core.qa.temporal import warping_error
from lediff_core.video.flow import flow_with_visibility
from lediff_runner.workflow import input_types_from_host, to_api
from lediff_testing import HDRI_DIR, REPO

PAN = os.path.join(HDRI_DIR, "city.exr")
FRAMES = [f"frame_{i:04d}" for i in range(3)]
METHODS = {"lediff", "inverse_camera", "banterle2006", "srgb"}


@pytest.fixture(scope="module")
def clip_evaluation(comfy, workflow_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate_clip")
    prompt = scale_down(to_api(load_workflow("photo_to_hdr"), input_types_from_host(comfy.nodes.NODE_CLASS_MAPPINGS)))
    workflow = root / "photo_to_hdr_api.json"
    workflow.write_text(json.dumps(prompt))
    output = root / "eval"
    cmd = [sys.executable, os.path.join(REPO, "scripts", "evaluate.py"), "--clip", f"pan:{PAN}",
           "--clip-frames", "3", "--clip-size", "64x48", "--output", str(output), "--workflow", str(workflow),
           "--base-directory", str(workflow_models), "--seed", "5", "--metrics", "pu21_psnr"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    with open(output / "results.csv") as f:
        rows = {(r["image"], r["method"], r["metric"]): float(r["score"]) for r in csv.DictReader(f)}
    return {"output": output, "rows": rows, "run": json.loads((output / "run.json").read_text())}


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
    table = (clip_evaluation["output"] / "results.md").read_text()
    assert "a clip of 3 frames" in table and "warping_error (lower is better)" in table
    with Image.open(clip_evaluation["output"] / "results.png") as plot:
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
    cmd = [sys.executable, os.path.join(REPO, "scripts", "evaluate.py"), "--output", str(tmp_path / "o")]
    missing = subprocess.run([*cmd, "--clip", "pan:/nonexistent.exr"], capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "no such file (pan:FILE pans across an equirect HDRI)" in missing.stderr
    both = subprocess.run([*cmd, "--clip", "x", "--references", "y"], capture_output=True, text=True, timeout=300)
    assert both.returncode != 0 and "not allowed with argument" in both.stderr
    size = subprocess.run([*cmd, "--clip", "x", "--clip-size", "60x48"], capture_output=True, text=True, timeout=300)
    assert size.returncode != 0 and "multiples of 8" in size.stderr
