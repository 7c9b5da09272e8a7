"""What the runner publishes gets the permissions an ordinary open() / mkdir() gets under the process
umask (issue 24): a batch item, whatever modes a saver gave its files, and the evaluation's prepared
photos and references."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from support.common import HDRI_DIR
from support.permissions import assert_ordinary, published


def test_a_batch_item_gets_the_umasks_modes_whatever_a_saver_made(umask, tmp_path):
    # a saver of another pack that creates private files (tempfile does: 0600) inside the item
    from lediff_runner.batch import publish

    stage = tmp_path / ".stage"
    os.makedirs(stage / "sub")
    fd, private = tempfile.mkstemp(dir=stage / "sub")
    os.close(fd)
    os.chmod(stage / "sub", 0o700)
    publish(str(stage), str(tmp_path / "item"))
    assert assert_ordinary(tmp_path / "item") == 3
    with pytest.raises(FileExistsError, match="already exists"):
        os.mkdir(stage)
        publish(str(stage), str(tmp_path / "item"))


def test_evaluation_files_are_published_with_the_umasks_modes(umask, tmp_path):
    from lediff_runner.evaluate import prepare

    refs = tmp_path / "refs"
    refs.mkdir()
    shutil.copy(os.path.join(HDRI_DIR, "city.exr"), refs / "city.exr")
    out = tmp_path / "eval"
    out.mkdir()
    prepare(str(refs), str(out), seed=0, clip_share=None, jpeg=None, factor=8)
    assert sorted(os.listdir(out / "ldr")) == ["city.png"] and sorted(os.listdir(out / "reference")) == ["city.exr"]
    assert assert_ordinary(*published(out)) == 4

