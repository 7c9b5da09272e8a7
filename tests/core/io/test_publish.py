"""Publishing numbered files in the core (lediff_core.io.publish): a failure while publishing takes back
only this call's files, and an interrupt while writing publishes nothing."""

from __future__ import annotations

import os

import pytest

from lediff_core.io.publish import write_numbered_files


def test_a_failure_while_publishing_takes_back_only_this_calls_files(tmp_path):
    """Image 3's name is refused while publishing (a name the file system rejects): images 1-2,
    already published by this call, are removed, unless someone replaced one meanwhile."""
    folder = str(tmp_path)
    (tmp_path / "x_00002.exr").write_bytes(b"someone else's")  # taken: image 2 moves to 3
    calls = {"image 3 named": 0}

    def name_for(i, n):
        if i == 2:
            calls["image 3 named"] += 1
            if calls["image 3 named"] > 1:  # at publishing, not when its temporary file was made
                (tmp_path / "replaced").write_bytes(b"a newer file")
                os.replace(tmp_path / "replaced", tmp_path / "x_00003.exr")  # image 2's published name
                return "x" * 300 + ".exr"  # too long for the file system: ENAMETOOLONG
        return f"x_{n:05}.exr"

    def write(i, path):
        with open(path, "wb") as f:
            f.write(b"image %d" % i)
        return i

    with pytest.raises(OSError, match="too long"):
        write_numbered_files(folder, name_for, 1, 3, write)
    assert sorted(os.listdir(folder)) == ["x_00002.exr", "x_00003.exr"]
    assert (tmp_path / "x_00002.exr").read_bytes() == b"someone else's"
    assert (tmp_path / "x_00003.exr").read_bytes() == b"a newer file"  # not ours any more: kept


def test_an_interrupt_while_writing_publishes_nothing(tmp_path):
    def write(i, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        if i == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_numbered_files(str(tmp_path), lambda i, n: f"x_{n:05}.exr", 1, 3, write)
    assert os.listdir(tmp_path) == []
    saved = write_numbered_files(str(tmp_path), lambda i, n: f"x_{n:05}.exr", 1, 2, lambda i, p: i)
    assert saved == [("x_00001.exr", 1, 0), ("x_00002.exr", 2, 1)]
    assert sorted(os.listdir(tmp_path)) == ["x_00001.exr", "x_00002.exr"]

