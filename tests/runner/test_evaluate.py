"""`python -m lediff_runner evaluate` end to end on the fixture models (the CI run): two small references cut from
real HDRIs, the shipped photo_to_hdr workflow (scaled down like tests/e2e/test_workflows.py), the baselines,
all four metrics, and the report files. The scores of the fixture models mean nothing; the checks
are on the pipeline: the right files are scored, and the exact inverse of the camera beats a
wrong (sRGB) curve on every metric, as it must."""

from __future__ import annotations

import csv
import hashlib
import json
import math
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
from lediff_core.qa.metrics import METRICS, NO_REFERENCE, compute_metric
from lediff_runner.workflow import input_types_from_host, to_api
from support.common import HDRI_DIR, REPO, small_disk
from support.workflows import load_workflow, scale_down

HIGHER_IS_BETTER = {"pu21_psnr": True, "pu21_ssim": True, "hdr_flip": False, "cvvdp": True, "fvvdp": True}
REPORT_FILES = ["results.csv", "results.md", "results.png", "run.json", "summary.csv"]


def write_references(root):
    refs = root / "references"
    refs.mkdir()
    for name in ("city", "sunset"):  # 1024x512 -> 128x64 (box filter), then a 120x64 crop (not /8: cropped)
        hdr = downscale(np.maximum(read_exr(os.path.join(HDRI_DIR, f"{name}.exr")).rgb, 0), 8)[:, :124]
        write_exr(str(refs / f"{name}.exr"), np.ascontiguousarray(hdr), precision="float")
    return refs


def write_workflow(comfy, path, **inputs):
    """The shipped photo_to_hdr scaled down, with ``inputs`` (name: value) set on every node that has them."""
    prompt = scale_down(to_api(load_workflow("photo_to_hdr"), input_types_from_host(comfy.nodes.NODE_CLASS_MAPPINGS)))
    for node in prompt.values():
        node["inputs"].update({k: v for k, v in inputs.items() if k in node["inputs"]})
    path.write_text(json.dumps(prompt))
    return path


@pytest.fixture(scope="module")
def evaluation(comfy, workflow_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    refs = write_references(root)
    workflow = write_workflow(comfy, root / "photo_to_hdr_api.json")
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
    assert sorted(os.listdir(output / "report")) == REPORT_FILES
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
    assert run["protocol"]["cameras"]["seed"] == 3 and run["failed"] == {}
    # a --workflow FILE without NAME= is the method "lediff", as before there were several
    canonical = json.dumps(json.loads(evaluation["workflow"].read_text()), sort_keys=True, separators=(",", ":"))
    assert run["methods"]["lediff"]["workflow_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert run["methods"]["lediff"]["status"] == "ok" and run["methods"]["srgb"]["kind"] == "baseline"
    versions = run["protocol"]["versions"]
    assert versions["comfyui"] == "0.30.0" and versions["torch"].startswith("2.")
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
        # room for three pages: results.csv, summary.csv and results.md (one page each here), not the figure
        subprocess.run(["mount", "-o", f"remount,size={used_kb + 12}k", disk], check=True)
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
        assert sorted(os.listdir(report)) == REPORT_FILES
        with open(os.path.join(report, "results.csv")) as f, open(finished / "report" / "results.csv") as g:
            assert ([(r["image"], r["method"], r["metric"], r["score"]) for r in csv.DictReader(f)]
                    == [(r["image"], r["method"], r["metric"], r["score"]) for r in csv.DictReader(g)])
        assert json.loads(open(os.path.join(report, "run.json")).read())["protocol"]["cameras"]["seed"] == 3


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


def test_a_metric_without_its_library_is_refused_before_anything_runs(tmp_path):
    """The optional metric libraries missing (pycvvdp made unimportable, as when requirements-metrics.txt
    was never installed): the default metrics are refused with the pip command and the --metrics that
    would run, before any folder is made or any workflow runs, not after every workflow ran."""
    output = tmp_path / "eval"
    main = ("import sys; sys.modules['pycvvdp'] = None; from lediff_runner.cli import main; "
            "sys.argv[0] = 'lediff_runner'; sys.exit(main())")
    result = subprocess.run([sys.executable, "-c", main, "evaluate", "--references", str(HDRI_DIR), "--output",
                             str(output)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "metrics cvvdp need libraries that are not installed" in result.stderr, result.stderr[-2000:]
    assert "pip install --no-deps -r requirements-metrics.txt" in result.stderr
    assert "--metrics pu21_psnr pu21_ssim hdr_flip fvvdp pu21_piqe" in result.stderr
    assert not output.exists()


def test_a_workflow_whose_loader_takes_no_photo_is_a_failed_method(tmp_path):
    """A workflow with LEDiff Load EXR instead of Load Image: the batch leaves the PNG photos out (not its
    files), so no photo has a result; the method is reported failed, naming the fix, and the others are
    scored (it once ended the evaluation with a traceback and no report)."""
    refs = write_references(tmp_path)
    save = {"class_type": "LEDiffSaveEXR", "inputs": {"images": ["1", 0], "filename_prefix": "LEDiff/s",
            "precision": "float", "compression": "zip", "input_encoding": "sRGB", "envmap": "none"}}
    photo = tmp_path / "photo.json"
    photo.write_text(json.dumps({"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}, "2": save}))
    exr = tmp_path / "exr.json"
    exr.write_text(json.dumps({"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "x.exr", "layer": ""}},
                               "2": save}))
    output = tmp_path / "eval"
    result = subprocess.run([sys.executable, "-m", "lediff_runner", "evaluate", "--references", str(refs), "--output",
                             str(output), "--metrics", "pu21_psnr", "--workflow", f"photo={photo}", "--workflow",
                             f"exr={exr}"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "FAILED exr on city: the workflow did not take the photo: its loader does not read PNG" in result.stderr
    with open(output / "report" / "summary.csv") as f:
        summary = {r["method"]: r for r in csv.DictReader(f)}
    assert summary["exr"]["status"] == "failed" and "Load Image" in summary["exr"]["reason"]
    assert summary["photo"]["status"] == "ok" and summary["photo"]["images"] == "2"


@pytest.fixture(scope="module")
def methods_evaluation(comfy, workflow_models, tmp_path_factory):
    """Four methods in one run: the workflow with two settings (2 and 1 sampling steps), one whose
    denoiser is not installed (fails on every photo, in ComfyUI's validation) and one without a Load
    Image node (cannot start)."""
    root = tmp_path_factory.mktemp("evaluate_methods")
    refs = write_references(root)
    workflows = {"steps2": write_workflow(comfy, root / "steps2.json"),
                 "steps1": write_workflow(comfy, root / "steps1.json", steps=1),
                 "missing": write_workflow(comfy, root / "missing.json", model_name="LEDiff_not_installed"),
                 "noloader": root / "noloader.json"}
    workflows["noloader"].write_text(json.dumps({"1": {"class_type": "EmptyImage", "inputs": {
        "width": 64, "height": 64, "batch_size": 1, "color": 0}}}))
    output = root / "eval"
    cmd = [sys.executable, "-m", "lediff_runner", "evaluate", "--references", str(refs), "--output", str(output),
           *(arg for name, path in workflows.items() for arg in ("--workflow", f"{name}={path}")),
           "--base-directory", str(workflow_models), "--seed", "4", "--metrics", "pu21_psnr", "hdr_flip"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    with open(output / "report" / "summary.csv") as f:
        summary = {(r["method"], r["region"], r["metric"]): r for r in csv.DictReader(f)}
    with open(output / "report" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    return {"result": result, "output": output, "workflows": workflows, "cmd": cmd, "summary": summary,
            "rows": rows, "run": json.loads((output / "report" / "run.json").read_text())}


def test_every_method_sees_the_same_photos_and_a_failed_one_is_reported(methods_evaluation):
    result, output, run = methods_evaluation["result"], methods_evaluation["output"], methods_evaluation["run"]
    # the failed methods make the exit status 1; the others ran and are in the report
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    assert "FAILED missing on city" in result.stderr and "FAILED noloader on sunset" in result.stderr
    assert sorted(os.listdir(output)) == ["baselines", "ldr", "missing", "noloader", "reference", "report",
                                          "steps1", "steps2"]
    assert list(run["methods"]) == ["steps2", "steps1", "missing", "noloader", "inverse_camera", "banterle2006",
                                    "srgb"]
    # the same photos: every method's batch item read the one photo of ldr/ (sha256)
    for image in ("city", "sunset"):
        photo = hashlib.sha256((output / "ldr" / f"{image}.png").read_bytes()).hexdigest()
        for method in ("steps2", "steps1"):
            manifest = json.loads((output / method / image / "batch_item.json").read_text())
            assert manifest["input_sha256"] == photo
            assert manifest["workflow_sha256"] == run["methods"][method]["workflow_sha256"]
    scored = {(r["image"], r["method"], r["metric"]) for r in methods_evaluation["rows"]}
    assert scored == {(i, m, k) for i in ("city", "sunset") for m in ("steps2", "steps1", "inverse_camera",
                                                                       "banterle2006", "srgb")
                      for k in ("pu21_psnr", "hdr_flip")}
    # two settings of one workflow: two different results
    rows = {(r["image"], r["method"], r["metric"]): float(r["score"]) for r in methods_evaluation["rows"]}
    assert rows[("city", "steps2", "pu21_psnr")] != rows[("city", "steps1", "pu21_psnr")]
    # the failed methods' rows say failed and why
    missing, noloader = run["methods"]["missing"], run["methods"]["noloader"]
    assert missing["status"] == noloader["status"] == "failed" and set(missing["failed"]) == {"city", "sunset"}
    # ComfyUI's own words for the failing node, without the rest of its report
    assert missing["reason"].startswith("GraphError: graph failed validation: node ")
    for node in ("6 (LEDiffLoadHDRVAE)", "7 (LEDiffLoadDenoiser)"):
        assert f"node {node}: Value not in list: model_name: 'LEDiff_not_installed' not in" in missing["reason"]
    assert "input_config" not in missing["reason"]
    assert "the workflow could not run" in noloader["reason"] and "image-loading nodes" in noloader["reason"]
    summary = methods_evaluation["summary"]
    for key in (("missing", "image", "pu21_psnr"), ("noloader", "image", "hdr_flip")):
        assert summary[key]["status"] == "failed" and summary[key]["mean"] == "" and summary[key]["images"] == "0"
    table = (output / "report" / "results.md").read_text()
    assert "| missing | failed: " in table and "| noloader | failed: the workflow could not run" in table
    assert run["failed"].keys() == {"missing", "noloader"}


def test_the_table_holds_the_mean_its_interval_and_seconds_per_megapixel(methods_evaluation):
    output, summary, run = methods_evaluation["output"], methods_evaluation["summary"], methods_evaluation["run"]
    rows = {(r["image"], r["method"], r["metric"]): float(r["score"]) for r in methods_evaluation["rows"]}
    t = math.tan(math.pi * 0.475)  # t(0.975, 1), the closed form of one degree of freedom
    for method in ("steps2", "steps1", "inverse_camera", "srgb"):
        for metric in ("pu21_psnr", "hdr_flip"):
            a, b = rows[("city", method, metric)], rows[("sunset", method, metric)]
            got = summary[(method, "image", metric)]
            assert got["status"] == "ok" and got["images"] == "2"
            assert float(got["mean"]) == pytest.approx((a + b) / 2, rel=1e-9)
            # two images: s = |a - b| / sqrt(2), so the half-width t s / sqrt(2) is t |a - b| / 2
            assert float(got["ci95_high"]) - float(got["mean"]) == pytest.approx(t * abs(a - b) / 2, rel=1e-9)
    for method in ("steps2", "steps1"):
        per_mp = [json.loads((output / method / i / "batch_item.json").read_text())["seconds"] / (120 * 64 / 1e6)
                  for i in ("city", "sunset")]
        assert run["methods"][method]["seconds_per_megapixel"] == pytest.approx(np.median(per_mp), rel=1e-9)
        assert float(summary[(method, "image", "pu21_psnr")]["seconds_per_megapixel"]) == pytest.approx(
            np.median(per_mp), rel=1e-9)
    assert 0 < run["methods"]["srgb"]["seconds_per_megapixel"] < run["methods"]["steps2"]["seconds_per_megapixel"]
    table = (output / "report" / "results.md").read_text()
    line = next(x for x in table.splitlines() if x.startswith("| steps2 |"))
    mean, half = (float(summary[("steps2", "image", "pu21_psnr")][k]) for k in ("mean", "ci95_high"))
    assert f"| {mean:.4f} ± {half - mean:.4f} |" in line
    with Image.open(output / "report" / "results.png") as plot:
        assert plot.format == "PNG" and plot.height > 200
    # the protocol card: enough to reproduce the table
    card = run["protocol"]
    assert card["scaling"]["name"] == "align" and card["display"]["pu21_variant"] == "banding_glare"
    assert list(card["regions"]) == ["image"] and card["cameras"]["seed"] == 4
    assert [m["name"] for m in card["metrics"]] == ["pu21_psnr", "hdr_flip"]
    assert "## Protocol" in table and "peak_cd_m2 1000.0" in table and "comfyui `0.30.0`" in table


def test_a_method_name_reused_for_another_workflow_is_refused_before_anything_runs(methods_evaluation, tmp_path):
    """Resuming an interrupted evaluation with another FILE under a NAME whose photos are done would
    mix two workflows in one row: refused, naming the fix, before anything is created or run."""
    output = tmp_path / "eval"
    shutil.copytree(methods_evaluation["output"], output, ignore=shutil.ignore_patterns("report"))
    workflows = methods_evaluation["workflows"]
    before = sorted(os.listdir(output))
    cmd = [str(output) if arg == str(methods_evaluation["output"]) else arg for arg in methods_evaluation["cmd"]]
    cmd[cmd.index(f"steps2={workflows['steps2']}")] = f"steps2={workflows['steps1']}"
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode != 0 and "was made by another workflow" in result.stderr, result.stderr[-2000:]
    assert "give this method another name" in result.stderr and sorted(os.listdir(output)) == before
