"""The evaluation's report without ComfyUI: the 95 % interval against closed forms of Student's t, the
table and summary generic over (method, region, metric) (a region other than the whole image slots
in as its own columns and rows), a failed method's rows, the protocol card, and how ``--workflow
[NAME=]FILE`` names methods. The end-to-end runs are in test_evaluate.py."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from lediff_runner.evaluate import METHOD, parse_methods, protocol
from lediff_runner.report import columns, mean_interval, median_seconds_per_megapixel, summarize, write_report


def test_the_interval_is_students_t_on_the_mean():
    # closed forms of the t quantile (independent of scipy): one degree of freedom is the Cauchy
    # distribution, t = tan(pi (p - 1/2)); two: t = (2p - 1) / sqrt(2 p (1 - p)); p = 0.975
    a, b = 3.0, 5.0
    mean, low, high = mean_interval([a, b])
    half = math.tan(math.pi * 0.475) * np.std([a, b], ddof=1) / math.sqrt(2)
    assert mean == 4.0 and (low, high) == pytest.approx((4.0 - half, 4.0 + half), rel=1e-12)
    assert half == pytest.approx(12.7062047, rel=1e-7)  # s = sqrt(2), n = 2: the textbook t(0.975, 1)
    values = [1.0, 2.0, 6.0]
    mean, low, high = mean_interval(values)
    t2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)
    assert t2 == pytest.approx(4.3026527, rel=1e-7)  # the textbook t(0.975, 2)
    half = t2 * np.std(values, ddof=1) / math.sqrt(3)
    assert mean == 3.0 and (low, high) == pytest.approx((3.0 - half, 3.0 + half), rel=1e-12)
    # many images: the textbook t(0.975, 9) = 2.262157
    values = np.arange(10.0) ** 1.5
    mean, low, high = mean_interval(values)
    assert (high - low) / 2 == pytest.approx(2.2621572 * values.std(ddof=1) / math.sqrt(10), rel=1e-6)
    assert mean_interval([7.5]) == (7.5, None, None)  # one image: a mean, no interval


def test_seconds_per_megapixel_is_the_median_over_photos():
    sizes = {"a": [1000, 1000], "b": [2000, 500], "c": [500, 500]}
    # the first photo also loaded the models: the median leaves it out
    assert median_seconds_per_megapixel({"a": 60.0, "b": 2.0, "c": 0.5}, sizes) == 2.0
    assert median_seconds_per_megapixel({}, sizes) is None


def card(metrics=("pu21_psnr", "hdr_flip")):
    args = argparse.Namespace(clip_share=None, seed=7, jpeg=None, downscale=2, comfyui=None)
    return protocol(args, list(metrics), "align", ["image", "highlights"], None)


def provenance(methods):
    return {"protocol": card(), "methods": methods, "clip": None, "failed": {}}


def test_regions_and_failures_are_rows_of_the_one_table(tmp_path):
    records = [{"name": "city", "size": [64, 32]}, {"name": "sunset", "size": [64, 32]}]
    rows = []
    for method, base in (("steps50", 30.0), ("srgb", 20.0)):
        for i, image in enumerate(("city", "sunset")):
            rows += [{"image": image, "method": method, "metric": "pu21_psnr", "score": base + i, "seconds": 0.1},
                     {"image": image, "method": method, "region": "highlight", "metric": "pu21_psnr",
                      "score": base - 10 + 2 * i, "seconds": 0.1},
                     {"image": image, "method": method, "region": "image", "metric": "hdr_flip",
                      "score": 0.1 * (i + 1), "seconds": 0.1}]
    methods = {
        "steps50": {"kind": "workflow", "status": "ok", "reason": "", "failed": {}, "seconds_per_megapixel": 12.5,
                    "workflow": "/w/a.json", "workflow_sha256": "ab" * 32},
        "broken": {"kind": "workflow", "status": "failed", "failed": {"city": "GraphError: no | model", "sunset": "x"},
                   "reason": "GraphError: no | model (and 1 more)", "seconds_per_megapixel": None,
                   "workflow": "/w/b.json", "workflow_sha256": "cd" * 32},
        "srgb": {"kind": "baseline", "status": "ok", "reason": "", "failed": {}, "seconds_per_megapixel": 0.01},
    }
    assert columns(rows, ["pu21_psnr", "hdr_flip"]) == [("image", "pu21_psnr"), ("image", "hdr_flip"),
                                                         ("highlight", "pu21_psnr")]
    summary = {(s["method"], s["region"], s["metric"]): s for s in summarize(rows, provenance(methods))}
    assert len(summary) == 3 * 3  # every method, failed or not, per (region, metric)
    s = summary[("steps50", "highlight", "pu21_psnr")]
    assert s["images"] == 2 and s["mean"] == 21.0 and s["seconds_per_megapixel"] == 12.5
    assert (s["ci95_high"] - s["ci95_low"]) / 2 == pytest.approx(math.tan(math.pi * 0.475))  # s = sqrt(2), n = 2
    failed = summary[("broken", "image", "pu21_psnr")]
    assert failed["status"] == "failed" and failed["mean"] is None and failed["reason"].startswith("GraphError")

    text = write_report(str(tmp_path), rows, records, provenance(methods))
    report = tmp_path / "report"
    assert sorted(os.listdir(report)) == ["results.csv", "results.md", "results.png", "run.json", "summary.csv"]
    table = text.splitlines()
    header = next(line for line in table if line.startswith("| method |"))
    assert header.count("|") == 4 + 3 + 1 and "pu21_psnr, highlight (higher is better)" in header
    assert "hdr_flip (lower is better)" in header
    assert next(line for line in table if line.startswith("| steps50 |")).startswith(
        "| steps50 | workflow | 2 | 12.5 | 30.5000 ± ")
    broken = next(line for line in table if line.startswith("| broken |"))
    assert "failed: GraphError: no \\| model (and 1 more)" in broken and broken.endswith("| – | – | – |")
    assert "| city | steps50 | highlight | 20.0000 | – |" in table  # per image, per region
    assert "- `broken` failed on city: GraphError: no \\| model" in text and "- `broken` failed on sunset: x" in text
    assert "**display**" in text and "banding_glare" in text and "peak_cd_m2 1000.0" in text
    with open(report / "results.csv") as f:
        got = list(csv.DictReader(f))
    assert {r["region"] for r in got} == {"image", "highlight"}  # a row without a region is the whole image
    with open(report / "summary.csv") as f:
        got = {(r["method"], r["region"], r["metric"]): r for r in csv.DictReader(f)}
    assert got[("broken", "highlight", "pu21_psnr")]["status"] == "failed" and got[("broken", "highlight",
                                                                                     "pu21_psnr")]["mean"] == ""
    assert float(got[("srgb", "image", "hdr_flip")]["mean"]) == pytest.approx(0.15)
    assert json.loads((report / "run.json").read_text())["protocol"]["cameras"]["seed"] == 7
    with Image.open(report / "results.png") as plot:
        assert plot.format == "PNG" and plot.width > 600


def test_a_region_cell_scored_on_fewer_images_says_how_many(tmp_path):
    # three photos, only one of them with crushed pixels: the row says 3 images, the shadows cell 1
    records = [{"name": n, "size": [64, 32]} for n in ("a", "b", "c")]
    rows = [{"image": n, "method": "srgb", "region": "image", "metric": "pu21_psnr", "score": 20.0 + i, "seconds": 0.1}
            for i, n in enumerate(("a", "b", "c"))]
    rows.append({"image": "b", "method": "srgb", "region": "shadows", "metric": "pu21_psnr", "score": 40.0,
                 "seconds": 0.1})
    methods = {"srgb": {"kind": "baseline", "status": "ok", "reason": "", "failed": {}, "seconds_per_megapixel": 0.01}}
    text = write_report(str(tmp_path), rows, records, provenance(methods))
    line = next(x for x in text.splitlines() if x.startswith("| srgb |"))
    assert line.startswith("| srgb | baseline | 3 | 0.01 | 21.0000 ± ") and line.endswith("| 40.0000 (n=1) |")
    # a clip's one warping error is one score by definition: not marked
    prov = provenance(methods)
    prov["protocol"]["metrics"].append({"name": "warping_error", "higher_is_better": False, "unit": "stops²",
                                        "clip": True})
    rows.append({"image": "clip", "method": "srgb", "metric": "warping_error", "score": 0.5, "seconds": 0.1})
    (tmp_path / "clip").mkdir()
    text = write_report(str(tmp_path / "clip"), rows, records, prov)
    line = next(x for x in text.splitlines() if x.startswith("| srgb |"))
    assert "| 0.5000 |" in line and "0.5000 (n=1)" not in line


def test_the_protocol_card_says_how_to_reproduce_the_table():
    from lediff_core.qa import metrics as qa

    got = card()
    assert got["scaling"] == {"name": "align", "defined_in": "lediff_core/qa/metrics.py (compute_metric)",
                              "reference_percentile_at_peak": qa.ALIGN_PERCENTILE}
    assert got["display"]["peak_cd_m2"] == qa.DISPLAY_PEAK_NITS and got["display"]["pu21_variant"] == "banding_glare"
    assert list(got["regions"]) == ["image", "highlights"] and got["cameras"]["seed"] == 7
    assert got["cameras"]["downscale"] == 2
    assert [m["name"] for m in got["metrics"]] == ["pu21_psnr", "hdr_flip"]
    assert got["metrics"][1] == {"name": "hdr_flip", "higher_is_better": False, "unit": ""}
    assert {"torch", "numpy", "scipy", "comfyui", "lediff_hdr"} <= set(got["versions"])


def test_workflow_names(tmp_path):
    api = json.dumps({"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}})
    (tmp_path / "a.json").write_text(api)
    (tmp_path / "b=c.json").write_text(api)  # a file whose name holds "=" is a FILE, not NAME=FILE
    a, bc = str(tmp_path / "a.json"), str(tmp_path / "b=c.json")
    assert [m.name for m in parse_methods([a])] == [METHOD]
    assert [(m.name, m.workflow) for m in parse_methods([f"steps20={a}", bc])] == [("steps20", a), (METHOD, bc)]
    assert parse_methods(None)[0].workflow.endswith(os.path.join("workflows", "photo_to_hdr.json"))
    with pytest.raises(SystemExit, match="two workflows are named 'lediff'.*name each one"):
        parse_methods([a, bc])
    with pytest.raises(SystemExit, match="'srgb' is taken"):
        parse_methods([f"srgb={a}"])
    with pytest.raises(SystemExit, match="'Report' is taken"):
        parse_methods([f"Report={a}"])
    with pytest.raises(SystemExit, match="No such file or directory: .*missing.json"):
        parse_methods([f"x={tmp_path / 'missing.json'}"])
