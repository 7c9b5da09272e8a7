"""Shared fixtures. Core tests need only torch/numpy/OpenEXR; host tests run a genuine ComfyUI
in-process (see comfy_harness.py), built by scripts/setup.sh."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def comfy():
    """A genuine ComfyUI loaded in-process with this pack (session-wide: import costs ~10 s)."""
    from comfy_harness import ComfyHost

    host = ComfyHost.start()
    yield host
    host.close()


@pytest.fixture
def host(comfy, tmp_path):
    """The in-process ComfyUI with fresh input/output/temp folders for one test."""
    comfy.use_folders(tmp_path)
    return comfy
