"""The evaluation's scoring with a scaling and regions (lediff_runner.evaluate.score, score_clip), fast:
real photos and baselines made by the evaluation's own steps from two small real HDRIs, no workflow
run (LEDiff counted as failed), the rows checked against the metrics called directly with masks and
factors computed here; and the command line offers exactly the metrics module's choices."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
import torch
from scipy.ndimage import maximum_filter

from lediff_core.io.exr import read_exr, write_exr
from lediff_core.qa import metrics as qm
from lediff_runner import evaluate as ev
from lediff_runner.cli import add_evaluate_arguments
from support.exr_files import read_hdri

BT709_Y = np.array([0.2126, 0.7152, 0.0722])


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    root = tmp_path_factory.mktemp("regions")
    refs = root / "references"
    refs.mkdir()
    for name in ("city", "sunset"):
        write_exr(str(refs / f"{name}.exr"), np.ascontiguousarray(read_hdri(name, 8)), precision="float")
    output = str(root / "eval")
    records = ev.prepare(str(refs), output, seed=2, clip_share=None, jpeg=None, factor=1)
    tests, _ = ev.baselines(output, records)
    return output, records, tests


def test_rows_are_each_metric_over_each_region(evaluation):
    output, records, tests = evaluation
    names = {r["name"] for r in records}
    failed = {}
    rows = ev.score(output, records, ["pu21_psnr", "pu21_piqe"], tests, failed, scaling="crf",
                    regions=("image", "highlights", "shadows"))
    assert not failed
    got = {(r["image"], r["method"], r["region"], r["metric"]): r["score"] for r in rows}
    methods = ev.baseline_methods(records)
    # a region a photo has no pixels of has no row; a no-reference metric scores the image only
    shadows = {r["name"] for r in records
               if (ev._load_png(os.path.join(output, "ldr", f"{r['name']}.png")).max(-1) <= 2).any()}
    keys = {(n, m, g, k) for n in names for m in methods
            for g, k in (("image", "pu21_psnr"), ("highlights", "pu21_psnr"), ("image", "pu21_piqe"))}
    keys |= {(n, m, "shadows", "pu21_psnr") for n in shadows for m in methods}
    assert set(got) == keys
    for r in records:
        photo = ev._load_png(os.path.join(output, "ldr", f"{r['name']}.png"))
        highlights = maximum_filter((photo.max(-1) >= 253).astype(np.uint8), size=5) > 0
        assert highlights.any()
        reference = read_exr(os.path.join(output, "reference", f"{r['name']}.exr")).rgb
        for method in methods:
            test = read_exr(os.path.join(output, "baselines", method, f"{r['name']}.exr")).rgb
            expected = qm.compute_metric(test, reference, "pu21_psnr", "crf", region=highlights).score
            assert got[(r["name"], method, "highlights", "pu21_psnr")] == pytest.approx(expected, rel=1e-9)
    # PU21-PIQE: one factor per method, from the mean 99.9th percentile of that method's images
    import pypiqe
    from pycvvdp.utils import PU

    method = methods[0]
    images = [read_exr(os.path.join(output, "baselines", method, f"{n}.exr")).rgb.astype(np.float64)
              for n in sorted(names)]
    k = 1000 / np.mean([np.percentile(i @ BT709_Y, 99.9) for i in images])
    for name, image in zip(sorted(names), images, strict=True):
        pu = PU(type="banding_glare").encode(torch.from_numpy(np.maximum(image, 0) @ BT709_Y * k)).numpy()
        y = np.clip(pu / 600, 0, 1).astype(np.float32)
        expected = pypiqe.piqe(np.repeat(y[..., None], 3, -1))[0]
        assert got[(name, method, "image", "pu21_piqe")] == pytest.approx(expected, abs=1e-3)


def test_a_clip_is_also_scored_as_one_video(tmp_path):
    import pycvvdp

    frames, _ = ev.load_clip(f"pan:{os.path.join(ev.REPO, 'tests', 'data', 'hdri', 'night.exr')}", 8, 4,
                             (64, 48), 2)
    output = str(tmp_path / "eval")
    records = ev.prepare("pan", output, 1, None, None, 8, frames=frames)
    tests, _ = ev.baselines(output, records)
    rows = ev.score_clip(output, records, tests, {}, metrics=["cvvdp"], scaling="absolute")
    video = {r["method"]: r["score"] for r in rows if r["metric"] == "cvvdp_video"}
    assert set(video) == set(ev.baseline_methods(records))
    assert not any(r["metric"] == "fvvdp_video" for r in rows)
    method = next(iter(video))
    clip = np.stack([read_exr(os.path.join(output, "baselines", method, f"{r['name']}.exr")).rgb for r in records])
    refs = np.stack([read_exr(os.path.join(output, "reference", f"{r['name']}.exr")).rgb for r in records])
    model = pycvvdp.cvvdp(display_name="standard_hdr_linear", quiet=True)
    jod, _ = model.predict(torch.from_numpy(np.maximum(clip, 0)), torch.from_numpy(np.maximum(refs, 0)),
                           dim_order="FHWC", frames_per_second=ev.CLIP_FPS)
    assert video[method] == pytest.approx(float(jod), abs=1e-4)


def test_command_line_offers_the_metrics_modules_choices():
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    options = {a.dest: a for a in parser._actions}
    assert tuple(options["scaling"].choices) == qm.SCALINGS
    assert tuple(options["regions"].choices) == qm.REGIONS
    args = parser.parse_args(["--references", "r", "--output", "o", "--scaling", "crf", "--regions", "image",
                              "highlights"])
    assert (args.scaling, args.regions) == ("crf", ["image", "highlights"])
