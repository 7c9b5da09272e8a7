"""`python -m lediff_runner batch --pair ID=FOLDER`: a second input per item, paired by name with each
input (a depth map per photo for the shipped hdr_depth_of_field workflow). Each run is the real
command in its own process, with the fixture models (tests/conftest.py)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from lediff_runner.batch import BatchConfig, Pair, plan_batch, sha256_file
from lediff_runner.workflow import input_types_from_host, to_api
from support.common import REPO
from support.workflows import load_workflow, scale_down

DOF_EXR = os.path.join("LEDiff", "hdr_depth_of_field_00001.exr")
PHOTO_NODE, DEPTH_NODE = "3", "4"  # the shipped workflow's Load Image nodes: "Your photo", "Your depth map"
W, H = 64, 48


def run(cmd, timeout=900, env=None):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def batch(workflow, inputs, output, *extra, base=None):
    return [sys.executable, "-m", "lediff_runner", "batch", "--workflow", str(workflow), "--inputs", str(inputs),
            "--output", str(output), *(["--base-directory", str(base)] if base else []), *extra]


def pixels(path):
    with OpenEXR.File(str(path)) as f:
        return f.channels()["RGB"].pixels


def save_png(path, rgb):
    Image.fromarray(np.asarray(rgb, np.uint8)).save(path)


def checkerboard():
    """A photo with detail everywhere and nothing clipped: 4-px squares of sRGB 60 and 180."""
    y, x = np.mgrid[:H, :W]
    grey = np.where((x // 4 + y // 4) % 2, 180, 60)
    return np.repeat(grey[..., None], 3, axis=-1)


def depth_map(far_columns=None):
    """Near = bright: 1 everywhere (the focus, at the picture's centre) but ``far_columns`` at 0."""
    depth = np.full((H, W), 255)
    if far_columns is not None:
        depth[:, far_columns] = 0
    return np.repeat(depth[..., None], 3, axis=-1)


def detail(rgb, columns):
    """Mean absolute difference between horizontal neighbours in ``columns``: what a blur removes."""
    luminance = rgb[:, columns].mean(axis=-1)
    return float(np.abs(np.diff(luminance, axis=1)).mean())


def intact(rgb, columns):
    """Whether the checkerboard is sharp in ``columns``: its bright squares' pixels all brighter than
    its dark squares' (any blur across their edges mixes them)."""
    photo, luminance = checkerboard()[:, columns, 0], rgb[:, columns].mean(axis=-1)
    return bool(luminance[photo == 180].min() > luminance[photo == 60].max())


SIDES = {"left": slice(0, 16), "right": slice(W - 16, W)}
# the depth map of each photo: one in focus everywhere, one with its right third far (blurred), one
# with its left third far
DEPTHS = {"sharp": None, "right_far": slice(2 * W // 3, W), "left_far": slice(0, W // 3)}


@pytest.fixture(scope="module")
def dof(comfy, workflow_models, tmp_path_factory):
    """The shipped hdr_depth_of_field (API format, scaled down as in tests/e2e/test_workflows.py) over
    three copies of one photo, each with its own depth map in depths/."""
    root = tmp_path_factory.mktemp("pairs")
    prompt = scale_down(to_api(load_workflow("hdr_depth_of_field"),
                               input_types_from_host(comfy.nodes.NODE_CLASS_MAPPINGS)))
    assert [prompt[n]["class_type"] for n in (PHOTO_NODE, DEPTH_NODE)] == ["LoadImage", "LoadImage"]
    workflow = root / "hdr_depth_of_field_api.json"
    workflow.write_text(json.dumps(prompt))
    (photos := root / "photos").mkdir()
    (depths := root / "depths").mkdir()
    for name, far in DEPTHS.items():
        save_png(photos / f"{name}.png", checkerboard())
        save_png(depths / f"{name}.png", depth_map(far))
    return {"root": root, "workflow": workflow, "photos": photos, "depths": depths, "base": workflow_models}


def test_each_photo_gets_its_own_depth_map(dof):
    """The same photo with three depth maps: the blur lands where each photo's own map is far, and
    the map in focus everywhere leaves the detail of the photo (no blur). ``--pair 4=depths/`` alone:
    the photo goes to the only Load Image left."""
    output = dof["root"] / "out"
    result = run(batch(dof["workflow"], dof["photos"], output, "--pair", f"{DEPTH_NODE}={dof['depths']}",
                       base=dof["base"]))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "batch: 3 done, 0 already complete, 0 failed" in result.stdout
    assert sorted(os.listdir(output)) == sorted(DEPTHS)  # the outputs are named as without --pair
    rgb = {}
    for name in DEPTHS:
        files = sorted(os.path.relpath(p, output / name)
                       for p in glob.glob(f"{output}/{name}/**", recursive=True) if os.path.isfile(p))
        assert "batch_item.json" in files and DOF_EXR in files, files
        manifest = json.loads((output / name / "batch_item.json").read_text())
        depth = str(dof["depths"] / f"{name}.png")
        assert manifest["input"] == f"{name}.png"
        assert manifest["paired_inputs"] == {DEPTH_NODE: {"input": depth, "input_sha256": sha256_file(depth)}}
        rgb[name] = pixels(output / name / DOF_EXR)
        assert rgb[name].shape == (H, W, 3) and np.isfinite(rgb[name]).all()
    sharp = {side: detail(rgb["sharp"], columns) for side, columns in SIDES.items()}
    # in focus everywhere: the checkerboard survives pixel for pixel (every bright square's pixel
    # brighter than every dark square's)
    assert intact(rgb["sharp"], slice(0, W))
    for name, (blurred, kept) in {"right_far": ("right", "left"), "left_far": ("left", "right")}.items():
        measured = {side: detail(rgb[name], columns) for side, columns in SIDES.items()}
        assert measured[blurred] < 0.1 * sharp[blurred], (name, measured, sharp)  # measured: 2 %
        assert measured[kept] > 0.95 * sharp[kept], (name, measured, sharp)
        assert intact(rgb[name], SIDES[kept]) and not intact(rgb[name], SIDES[blurred]), name


def test_missing_or_ambiguous_partners_refuse_the_whole_batch(dof, tmp_path):
    """All or nothing: every input without exactly one partner is named, before ComfyUI starts and
    before anything is created."""
    (depths := tmp_path / "depths").mkdir()
    save_png(depths / "sharp.png", depth_map())
    save_png(depths / "left_far.png", depth_map())
    save_png(depths / "left_far.jpg", depth_map())  # two partners for one photo
    (depths / "right_far.txt").write_text("not an image Load Image reads")
    output = tmp_path / "out"
    result = run(batch(dof["workflow"], dof["photos"], output, "--pair", f"{DEPTH_NODE}={depths}"), timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "batch refused: --pair: 1 missing, 1 ambiguous partner file(s) for the 3 input(s); nothing was run" \
        in result.stderr
    assert f"right_far.png: no {depths}/right_far.* (.png .jpg" in result.stderr
    assert f"left_far.png: {depths}/left_far.jpg and {depths}/left_far.png for node 4: keep one" in result.stderr
    assert "sharp.png" not in result.stderr and "ComfyUI" not in result.stderr
    assert not output.exists()


@pytest.mark.parametrize("extra, message", [
    (("--pair", "99={depths}"), "--pair 99=...: no such node in the workflow; pair one of its loaders: "
                                "3 (LoadImage), 4 (LoadImage)"),
    (("--pair", "14={depths}"), "--pair 14=...: node 14 is a LEDiffLensBlur, not a loader"),
    (("--pair", "4={depths}", "--pair", "4={depths}"), "--pair 4=... is given twice: give each loader one folder"),
    (("--input-node", "4", "--pair", "4={depths}"), "node 4 is --input-node, which receives the batch's inputs"),
    (("--pair", "3={depths}", "--pair", "4={depths}"), "the workflow has no image-loading nodes (LEDiffLoadEXR or "
                                                       "LoadImage or LoadVideo) not named by --pair"),
    (("--pair", "4={photos}"), "is --inputs itself, where every image is an input of its own"),
    (("--pair", "4={depths}/missing"), "missing: no such folder"),
])
def test_bad_pair_options_are_refused_by_name(dof, tmp_path, extra, message):
    values = {"depths": dof["depths"], "photos": dof["photos"]}
    output = tmp_path / "out"
    result = run(batch(dof["workflow"], dof["photos"], output, *(a.format(**values) for a in extra)), timeout=120)
    assert result.returncode == 1 and message in result.stderr, result.stderr[-2000:]
    assert not output.exists()


def test_pattern_names_partners_after_the_input(tmp_path):
    """``ID=FOLDER/{stem}_depth``: city.png pairs with FOLDER/city_depth.* (any extension its loader
    reads, in any case); files that match no input are ignored; a workflow's node ids from the file
    alone (UI format)."""
    (photos := tmp_path / "photos").mkdir()
    (depths := tmp_path / "depths").mkdir()
    for name in ("city.png", "forest.JPG"):
        (photos / name).write_bytes(b"")
    for name in ("city_depth.PNG", "forest_depth.tif", "forest.png", "unused_depth.png"):
        (depths / name).write_bytes(b"")
    config = BatchConfig(workflow=os.path.join(REPO, "workflows", "hdr_depth_of_field.json"), inputs=str(photos),
                         output=str(tmp_path / "out"), pairs=(Pair.parse(f"4={depths}/{{stem}}_depth"),))
    items = plan_batch(config)
    assert [(i.key, os.path.basename(i.path), i.partners) for i in items] == [
        ("city", "city.png", (("4", str(depths / "city_depth.PNG")),)),
        ("forest", "forest.JPG", (("4", str(depths / "forest_depth.tif")),))]
    for bad in ("4", "=depths", "4={stem}/x", "4=d/{stem}_{stem}", "4=d/{name}_{stem}"):
        with pytest.raises(ValueError, match="ID=FOLDER"):
            Pair.parse(bad)


def test_partners_fixed_loaders_and_ray(comfy, tmp_path):
    """Three Load Images, each saved as a float EXR (its pixels exactly the PNG's /255): the photo,
    its partner from a sibling folder, and a fixed file that keeps being read from the photos' folder
    (extra/fixed.png) although the item's input folder is now their common parent. The same on a
    local Ray cluster (one worker), bit for bit."""
    (photos := tmp_path / "photos").mkdir()
    (masks := tmp_path / "masks").mkdir()
    (photos / "extra").mkdir()
    (tmp_path / "extra").mkdir()
    rng = np.random.default_rng(0)
    images = {}
    # extra/fixed.png beside photos/: what the fixed loader would read from the item's input folder
    for path in ("photos/a.png", "photos/b.png", "masks/a_mask.png", "masks/b_mask.png", "photos/extra/fixed.png",
                 "extra/fixed.png"):
        images[path] = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
        save_png(tmp_path / path, images[path])
    save = {"filename_prefix": "", "precision": "float", "compression": "zip", "input_encoding": "linear",
            "envmap": "none"}
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
             "2": {"class_type": "LoadImage", "inputs": {"image": "y.png"}},
             "3": {"class_type": "LoadImage", "inputs": {"image": "extra/fixed.png"}}}
    # the fixed image batched with the photo: a saver fed by the fixed loader alone would be cached
    # after the first item (its inputs never change) and save nothing for the others
    graph["4"] = {"class_type": "ImageBatch", "inputs": {"image1": ["3", 0], "image2": ["1", 0]}}
    for node, prefix in (("1", "photo"), ("2", "mask"), ("4", "fixed")):
        graph[f"save{node}"] = {"class_type": "LEDiffSaveEXR",
                                "inputs": {**save, "images": [node, 0], "filename_prefix": prefix}}
    (workflow := tmp_path / "three.json").write_text(json.dumps(graph))
    pair = ("--input-node", "1", "--pair", f"2={masks}/{{stem}}_mask")
    local = run(batch(workflow, photos, tmp_path / "local", *pair))
    assert local.returncode == 0, local.stdout + local.stderr[-3000:]
    for name in ("a", "b"):
        item = tmp_path / "local" / name
        for prefix, source in (("photo", f"photos/{name}.png"), ("mask", f"masks/{name}_mask.png"),
                               ("fixed", "photos/extra/fixed.png")):
            np.testing.assert_array_equal(pixels(item / f"{prefix}_00001.exr"), images[source] / np.float32(255))
        np.testing.assert_array_equal(pixels(item / "fixed_00002.exr"), images[f"photos/{name}.png"] / np.float32(255))
        manifest = json.loads((item / "batch_item.json").read_text())
        assert manifest["paired_inputs"]["2"]["input"] == str(masks / f"{name}_mask.png")
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    try:
        on_ray = run(batch(workflow, photos, tmp_path / "ray", *pair, "--ray", "--workers", "1"),
                     env={**os.environ, "RAY_TMPDIR": ray_tmp})
    finally:
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert on_ray.returncode == 0, on_ray.stdout + on_ray.stderr[-3000:]
    assert "batch: 2 done, 0 already complete, 0 failed" in on_ray.stdout
    for name in ("a", "b"):
        for prefix in ("photo", "mask", "fixed"):
            np.testing.assert_array_equal(pixels(tmp_path / "ray" / name / f"{prefix}_00001.exr"),
                                          pixels(tmp_path / "local" / name / f"{prefix}_00001.exr"))
        manifest = json.loads((tmp_path / "ray" / name / "batch_item.json").read_text())
        assert manifest["paired_inputs"]["2"]["input"] == str(masks / f"{name}_mask.png")
