"""scripts/evaluate.py end to end on the fixture models (the CI run): two small references cut from
real HDRIs, the shipped photo_to_hdr workflow (scaled down like test_workflows.py), the baselines,
all four metrics, and the report files. The scores of the fixture models mean nothing; the checks
are on the pipeline: the right files are scored, and the exact inverse of the camera beats a
wrong (sRGB) curve on every metric, as it must."""

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
from PIL import Image
from test_workflows import load_workflow, scale_down

from lediff_core.io.exr import read_exr, write_exr
from lediff_core.qa.camera import downscale
from lediff_core.qa.metrics import METRICS, compute_metric
from lediff_runner.workflow import input_types_from_host, to_api
from lediff_testing import HDRI_DIR, REPO

HIGHER_IS_BETTER = {"pu21_psnr": True, "pu21_ssim": True, "hdr_flip": False, "cvvdp": True}


@pytest.fixture(scope="module")
def evaluation(comfy, workflow_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    refs = root / "references"
    refs.mkdir()
    for name in ("city", "sunset"):  # 1024x512 -> 128x64 (box filter), then a 120x64 crop (not /8: cropped)
        hdr = downscale(np.maximum(read_exr(os.path.join(HDRI_DIR, f"{name}.exr")).rgb, 0), 8)[:, :124]
        write_exr(str(refs / f"{name}.exr"), np.ascontiguousarray(hdr), precision="float")
    prompt = scale_down(to_api(load_workflow("photo_to_hdr"), input_types_from_host(comfy.nodes.NODE_CLASS_MAPPINGS)))
    workflow = root / "photo_to_hdr_api.json"
    workflow.write_text(json.dumps(prompt))
    output = root / "eval"
    cmd = [sys.executable, os.path.join(REPO, "scripts", "evaluate.py"), "--references", str(refs),
           "--output", str(output), "--workflow", str(workflow), "--base-directory", str(workflow_models),
           "--seed", "3"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    return {"result": result, "output": output, "workflow": workflow, "refs": refs, "cmd": cmd}


def test_evaluation_writes_table_plot_and_provenance(evaluation):
    result, output = evaluation["result"], evaluation["output"]
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    with open(output / "results.csv") as f:
        rows = list(csv.DictReader(f))
    methods = {"lediff", "inverse_camera", "banterle2006", "srgb"}
    assert {(r["image"], r["method"], r["metric"]) for r in rows} == {
        (i, m, k) for i in ("city", "sunset") for m in methods for k in METRICS}
    assert len(rows) == 2 * 4 * len(METRICS) and all(np.isfinite(float(r["score"])) for r in rows)
    table = (output / "results.md").read_text()
    assert all(f"| {m} |" in table for m in methods)
    with Image.open(output / "results.png") as plot:
        assert plot.format == "PNG" and plot.width > 300
    run = json.loads((output / "run.json").read_text())
    assert run["seed"] == 3 and run["failed"] == {}
    canonical = json.dumps(json.loads(evaluation["workflow"].read_text()), sort_keys=True, separators=(",", ":"))
    assert run["workflow_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert run["versions"]["comfyui"] == "0.30.0" and run["versions"]["torch"].startswith("2.")
    for ref in run["references"]:
        data = (evaluation["refs"] / f"{ref['name']}.exr").read_bytes()
        assert ref["reference_sha256"] == hashlib.sha256(data).hexdigest()
        camera = ref["camera"]
        assert 0.05 <= camera["clip_share"] <= 0.15 and camera["n"] != 1.0
        # the photo the workflow received: 8-bit, cropped to a multiple of 8, clipped as recorded
        photo = np.asarray(Image.open(output / "ldr" / f"{ref['name']}.png"))
        assert photo.shape == (64, 120, 3) and photo.dtype == np.uint8
        assert camera["clip_share"] <= np.mean(photo.max(axis=-1) == 255) <= camera["clip_share"] + 0.05


def test_evaluation_scores_the_files_it_names(evaluation):
    output = evaluation["output"]
    with open(output / "results.csv") as f:
        rows = {(r["image"], r["method"], r["metric"]): float(r["score"]) for r in csv.DictReader(f)}
    for image in ("city", "sunset"):
        with OpenEXR.File(str(output / "reference" / f"{image}.exr")) as f:
            reference = f.channels()["RGB"].pixels
        manifest = json.loads((output / "lediff" / image / "batch_item.json").read_text())
        with OpenEXR.File(str(output / "lediff" / image / manifest["outputs"][0])) as f:
            lediff = f.channels()["RGB"].pixels.astype(np.float32)
        assert rows[(image, "lediff", "pu21_psnr")] == pytest.approx(
            compute_metric(lediff, reference, "pu21_psnr").score, rel=1e-6)
        for metric in METRICS:
            exact, wrong = rows[(image, "inverse_camera", metric)], rows[(image, "srgb", metric)]
            assert (exact > wrong) if HIGHER_IS_BETTER[metric] else (exact < wrong), (image, metric)


def test_a_finished_evaluation_is_never_overwritten(evaluation):
    output = evaluation["output"]
    before = (output / "results.csv").read_bytes()
    result = subprocess.run(evaluation["cmd"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode != 0 and "already holds a finished evaluation" in result.stderr
    assert (output / "results.csv").read_bytes() == before
