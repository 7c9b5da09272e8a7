"""What the core publishes gets the permissions an ordinary open() / mkdir() gets under the process umask
(issue 24), read without changing it: the single-file converter's files, for umasks 022 and 027
(support/permissions.py: the reference is a plain file and folder made beside them)."""

from __future__ import annotations

import os

from lediff_core.model.convert import convert
from support.permissions import assert_ordinary, process_umask
from support.tiny_models import write_official_folder


def test_the_umask_is_read_without_changing_it(umask):
    from lediff_core.io.publish import process_umask as read_umask

    assert read_umask() == umask
    assert os.umask(umask) == umask  # unchanged by reading it


def test_the_converter_publishes_with_the_umasks_modes(umask, tmp_path):
    with process_umask(0o077):  # the input's own modes do not carry over
        official = write_official_folder(str(tmp_path), "LEDiff_highlight")
    out = tmp_path / "converted"
    out.mkdir()
    written = convert(official, str(out))
    assert len(written) == 2
    assert assert_ordinary(*written) == 2

