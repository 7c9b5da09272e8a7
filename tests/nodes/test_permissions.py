"""What the savers publish in a genuine ComfyUI gets the permissions an ordinary open() / mkdir() gets
under the process umask (issue 24: files and folders nobody else could open): Save EXR, Save HDR Image,
Save EXR Sequence, Save HDR Video, their previews, and a batch item of the runner's embedded host. The
other publishers: test_permissions.py in tests/core/io (the converter), tests/runner and tests/train.

The expected mode is not written here: a file made with plain open() and a folder made with plain
os.mkdir() in the same folder, under the same umask, are the reference (support/permissions.py).
Umasks 022 and 027 tell the umask's mode from the 0600 / 0700 that tempfile and safetensors 0.8 create.
And a published EXR is read back by another user (nobody, without root's groups) in a process of its own.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

import numpy as np
import OpenEXR
import pytest
import torch

from support.common import HDRI_DIR, require_tool
from support.exr_files import write_input
from support.permissions import assert_ordinary, process_umask, published


def savers_graph(host, prefix="LEDiff/perm") -> dict:
    """Two 48x64 HDR frames (an ImageBatch) into each of the pack's four savers."""
    rng = np.random.default_rng(0)
    g, names = {}, [write_input(host, f"f{i}.exr", np.exp2(rng.uniform(-4, 3, (48, 64, 3)))) for i in range(2)]
    for i, name in enumerate(names):
        g[f"l{i}"] = {"class_type": "LEDiffLoadEXR", "inputs": {"image": name, "layer": ""}}
    g["batch"] = {"class_type": "ImageBatch", "inputs": {"image1": ["l0", 0], "image2": ["l1", 0]}}
    images = ["batch", 0]
    g["exr"] = {"class_type": "LEDiffSaveEXR", "inputs": {
        "images": images, "filename_prefix": prefix, "precision": "half", "compression": "zip",
        "input_encoding": "linear", "envmap": "none"}}
    g["display"] = {"class_type": "LEDiffSaveHDRImage", "inputs": {
        "images": images, "filename_prefix": prefix, "format": "ultrahdr", "reference_white": 1.0,
        "quality": 90, "headroom_stops": 3.0, "mastering_peak": 1000.0}}
    g["sequence"] = {"class_type": "LEDiffSaveEXRSequence", "inputs": {
        "images": images, "filename_prefix": prefix, "fps": 24.0, "start_frame": 1001, "precision": "half",
        "compression": "zip"}}
    g["video"] = {"class_type": "LEDiffSaveHDRVideo", "inputs": {
        "images": images, "filename_prefix": prefix, "fps": 24.0, "codec": "av1", "transfer": "pq",
        "container": "mkv", "quality": 30, "reference_white": 1.0, "mastering_peak": 1000.0}}
    return g


def test_savers_publish_with_the_umasks_modes(host, umask):
    ui = host.run(savers_graph(host))
    out = os.path.join(host.output_dir, "LEDiff")
    names = sorted(os.listdir(out))
    # one of each: two EXRs, two Ultra HDR JPEGs, a sequence folder, a video
    assert [n.rsplit(".", 1)[-1] if "." in n else "folder" for n in names].count("exr") == 2, names
    assert sum(n.endswith(".jpg") for n in names) == 2 and sum(n.endswith(".mkv") for n in names) == 1, names
    sequences = [n for n in names if os.path.isdir(os.path.join(out, n))]
    assert len(sequences) == 1 and len(os.listdir(os.path.join(out, sequences[0]))) == 2, names
    assert not [n for n in names if n.startswith(".")], names  # nothing temporary left
    assert assert_ordinary(*published(host.output_dir)) == 1 + len(names) + 2
    # the previews the savers list (PNG in ComfyUI's temp folder)
    previews = [os.path.join(host.temp_dir, p["subfolder"], p["filename"])
                for node in ui.values() for p in node.get("images", []) if p.get("type") == "temp"]
    assert previews
    assert_ordinary(*previews)


def tile_as_nobody(path, copy) -> subprocess.CompletedProcess:
    """Debian's exrmaketiled, running as the user nobody (without root's supplementary groups),
    reads every pixel of ``path`` and writes a tiled ``copy``."""
    nobody = pwd.getpwnam("nobody")
    return subprocess.run([require_tool("exrmaketiled"), path, copy], user=nobody.pw_uid, group=nobody.pw_gid,
                          extra_groups=[], cwd="/", capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_a_published_exr_opens_as_another_user(host):
    # folders every user can enter (pytest's own temporary folders are 0700); nobody writes to scratch/
    shared = tempfile.mkdtemp(prefix="lediff_perm_")
    try:
        os.chmod(shared, 0o755)
        scratch = os.path.join(shared, "scratch")
        os.mkdir(scratch)
        os.chmod(scratch, 0o777)
        host.set_folders(output_dir=shared)
        rng = np.random.default_rng(1)
        rgb = np.exp2(rng.uniform(-4, 3, (16, 24, 3))).astype(np.float32)
        prompt = {"l": {"class_type": "LEDiffLoadEXR", "inputs": {"image": write_input(host, "in.exr", rgb),
                                                                  "layer": ""}},
                  "s": {"class_type": "LEDiffSaveEXR", "inputs": {
                      "images": ["l", 0], "filename_prefix": "LEDiff/shared", "precision": "float",
                      "compression": "zip", "input_encoding": "linear", "envmap": "none"}}}
        with process_umask(0o022):
            host.run(prompt)
        copy = os.path.join(scratch, "tiled.exr")
        tiled = tile_as_nobody(os.path.join(shared, "LEDiff", "shared_00001.exr"), copy)
        assert tiled.returncode == 0, tiled.stderr
        assert os.stat(copy).st_uid == pwd.getpwnam("nobody").pw_uid
        with OpenEXR.File(copy, separate_channels=True) as f:
            ch = f.channels()
            assert np.array_equal(np.stack([ch[c].pixels for c in "RGB"], -1), rgb)  # float: exact
        # the check can fail: under umask 077 the file is the owner's alone, and nobody cannot open it
        with process_umask(0o077):
            host.run(prompt)
        private = os.path.join(shared, "LEDiff", "shared_00002.exr")
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
        tiled = tile_as_nobody(private, os.path.join(scratch, "private.exr"))
        assert tiled.returncode != 0 and "ermission" in tiled.stderr + tiled.stdout, tiled
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_batch_item_is_published_with_the_umasks_modes(host, umask, tmp_path):
    from lediff_runner.batch import BatchConfig, Item, ItemRunner

    inputs, output = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    output.mkdir()
    shutil.copy(os.path.join(HDRI_DIR, "city.exr"), inputs / "city.exr")
    workflow = tmp_path / "workflow.json"
    workflow.write_text(json.dumps({
        "l": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "city.exr", "layer": ""}},
        "s": {"class_type": "LEDiffSaveEXR", "inputs": {
            "images": ["l", 0], "filename_prefix": "LEDiff/item", "precision": "half", "compression": "zip",
            "input_encoding": "linear", "envmap": "none"}}}))
    threads = torch.get_num_threads()
    runner = ItemRunner(BatchConfig(str(workflow), str(inputs), str(output), cpu=True))
    try:
        runner.run(Item("city", str(inputs / "city.exr")), "token")
    finally:
        runner.close()
        torch.set_num_threads(threads)
        host.use_folders(tmp_path)  # the runner pointed ComfyUI's folders at its own
    item = output / "city"
    assert sorted(os.listdir(item)) == ["LEDiff", "batch_item.json"]
    assert assert_ordinary(item) == 4


