"""The batch runner and special files (issue 25): a FIFO among the inputs is refused by name, the
operator's own links are followed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from lediff_core.io.exr import read_exr
from lediff_core.io.exr import write_exr as write_float_exr
from support.common import REPO
from support.graphs import load_exr_graph


# ------------------------------------------------------------------------ batch runner, recipe
def test_the_batch_runner_refuses_a_fifo_by_name_and_follows_its_own_links(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rgb = np.random.default_rng(1).uniform(0, 500, (4, 6, 3)).astype(np.float32)
    write_float_exr(str(inputs / "good.exr"), rgb, precision="float")
    (tmp_path / "dataset").mkdir()
    write_float_exr(str(tmp_path / "dataset" / "kept.exr"), rgb * 2, precision="float")
    os.symlink(tmp_path / "dataset" / "kept.exr", inputs / "linked.exr")  # the operator's own link
    os.mkfifo(inputs / "pipe.exr")
    (workflow := tmp_path / "copy.json").write_text(json.dumps(load_exr_graph("placeholder.exr")))
    output = tmp_path / "out"
    cmd = [sys.executable, "-m", "lediff_runner", "batch", "--workflow", str(workflow),
           "--inputs", str(inputs), "--output", str(output), "--base-directory", str(tmp_path / "base")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    assert "batch: 2 done, 0 already complete, 1 failed" in result.stdout, result.stdout
    assert "FAILED pipe.exr: FileAccessError: 'pipe.exr' is a FIFO (named pipe)" in result.stdout, result.stdout
    assert sorted(os.listdir(output)) == ["good", "linked"]
    np.testing.assert_array_equal(read_exr(str(output / "good" / "copy_00001.exr")).rgb, rgb)
    np.testing.assert_array_equal(read_exr(str(output / "linked" / "copy_00001.exr")).rgb, rgb * 2)

