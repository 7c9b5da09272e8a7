"""`python -m lediff_runner evaluate` end to end on the fixture models (the CI run): two small references cut from
real HDRIs, the shipped photo_to_hdr workflow (scaled down like tests/e2e/test_workflows.py), the baselines,
all four metrics, and the report files. The scores of the fixture models mean nothing; the checks
are on the pipeline: the right files are scored, and the exact inverse of the camera beats a
wrong (sRGB) curve on every metric, as it must."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from lediff_core.io.exr import read_exr, write_exr
from lediff_core.qa.camera import downscale
from lediff_core.qa.metrics import HIGHER_IS_BETTER, METRICS, NO_REFERENCE, compute_metric
from lediff_runner.workflow import input_types_from_host, to_api
from support.common import HDRI_DIR, REPO, small_disk
from support.workflows import load_workflow, scale_down


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
    cmd = [sys.executable, "-m", "lediff_runner", "evaluate", "--references", str(refs),
           "--output", str(output), "--workflow", str(workflow), "--base-directory", str(workflow_models),
           "--seed", "3"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    return {"result": result, "output": output, "workflow": workflow, "refs": refs, "cmd": cmd}


def test_evaluation_writes_table_plot_and_provenance(evaluation):
    result, output = evaluation["result"], evaluation["output"]
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    # the report is one folder of exactly its four files; no staging folder or temporary file is left
    assert sorted(os.listdir(output)) == ["baselines", "ldr", "lediff", "reference", "report"]
    assert sorted(os.listdir(output / "report")) == ["results.csv", "results.md", "results.png", "run.json"]
    with open(output / "report" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    methods = {"lediff", "inverse_camera", "banterle2006", "srgb"}
    assert {(r["image"], r["method"], r["metric"]) for r in rows} == {
        (i, m, k) for i in ("city", "sunset") for m in methods for k in METRICS}
    assert len(rows) == 2 * 4 * len(METRICS) and all(np.isfinite(float(r["score"])) for r in rows)
    table = (output / "report" / "results.md").read_text()
    assert all(f"| {m} |" in table for m in methods)
    with Image.open(output / "report" / "results.png") as plot:
        assert plot.format == "PNG" and plot.width > 300
    run = json.loads((output / "report" / "run.json").read_text())
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
    with open(output / "report" / "results.csv") as f:
        rows = {(r["image"], r["method"], r["metric"]): float(r["score"]) for r in csv.DictReader(f)}
    for image in ("city", "sunset"):
        with OpenEXR.File(str(output / "reference" / f"{image}.exr")) as f:
            reference = f.channels()["RGB"].pixels
        manifest = json.loads((output / "lediff" / image / "batch_item.json").read_text())
        with OpenEXR.File(str(output / "lediff" / image / manifest["outputs"][0])) as f:
            lediff = f.channels()["RGB"].pixels.astype(np.float32)
        assert rows[(image, "lediff", "pu21_psnr")] == pytest.approx(
            compute_metric(lediff, reference, "pu21_psnr").score, rel=1e-6)
        for metric in (m for m in METRICS if m not in NO_REFERENCE):  # PIQE judges each result alone
            exact, wrong = rows[(image, "inverse_camera", metric)], rows[(image, "srgb", metric)]
            assert (exact > wrong) if HIGHER_IS_BETTER[metric] else (exact < wrong), (image, metric)


def test_a_finished_evaluation_is_never_overwritten(evaluation):
    output = evaluation["output"]
    before = (output / "report" / "results.csv").read_bytes()
    result = subprocess.run(evaluation["cmd"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode != 0 and "already holds a finished evaluation" in result.stderr
    assert (output / "report" / "results.csv").read_bytes() == before


def test_a_disk_full_at_the_figure_publishes_no_report_and_a_rerun_writes_it_whole(evaluation, tmp_path):
    """The accident: the disk fills up while the report is written, after the table and before the
    figure and run.json. No report appears (results without run.json would say nothing of how they
    were made), the error names the file and the fix, and the same command, once there is room,
    reuses everything and publishes the whole report."""
    finished = evaluation["output"]
    with small_disk(str(tmp_path / "disk"), 64 * 1024) as disk:
        output = os.path.join(disk, "eval")
        shutil.copytree(finished, output, ignore=shutil.ignore_patterns("report"))  # an evaluation up to its report
        st = os.statvfs(disk)
        used_kb = (st.f_blocks - st.f_bfree) * st.f_frsize // 1024
        # room for two pages: results.csv and results.md (one page each here), not the figure
        subprocess.run(["mount", "-o", f"remount,size={used_kb + 8}k", disk], check=True)
        cmd = [output if arg == str(finished) else arg for arg in evaluation["cmd"]]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
        assert result.returncode != 0
        assert "could not write report/results.png" in result.stderr, result.stderr[-3000:]
        assert "No space left on device" in result.stderr and "nothing of the report was published" in result.stderr
        assert "run the same command again" in result.stderr
        assert sorted(os.listdir(output)) == ["baselines", "ldr", "lediff", "reference"]  # no report, no staging

        subprocess.run(["mount", "-o", f"remount,size={64 * 1024}k", disk], check=True)  # space freed
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        report = os.path.join(output, "report")
        assert sorted(os.listdir(report)) == ["results.csv", "results.md", "results.png", "run.json"]
        with open(os.path.join(report, "results.csv")) as f, open(finished / "report" / "results.csv") as g:
            assert ([(r["image"], r["method"], r["metric"], r["score"]) for r in csv.DictReader(f)]
                    == [(r["image"], r["method"], r["metric"], r["score"]) for r in csv.DictReader(g)])
        assert json.loads(open(os.path.join(report, "run.json")).read())["seed"] == 3


def test_refused_references_leave_no_output_folder(tmp_path):
    """No reference to evaluate: refused before any folder is created (no empty --output left)."""
    refs = tmp_path / "references"
    refs.mkdir()
    (refs / "notes.txt").write_text("not a reference")
    output = tmp_path / "eval"
    result = subprocess.run([sys.executable, "-m", "lediff_runner", "evaluate", "--references",
                             str(refs), "--output", str(output)], capture_output=True, text=True, timeout=300,
                            cwd=REPO)
    assert result.returncode != 0 and "no .exr/.hdr/.pic files" in result.stderr, result.stderr[-2000:]
    assert not output.exists()
