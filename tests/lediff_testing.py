"""Helpers shared by the tests (a plain module: pytest's conftest is not importable by name)."""

from __future__ import annotations

import os
import shutil

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "data")
HDRI_DIR = os.path.join(DATA, "hdri")
HDRIS = sorted(f for f in os.listdir(HDRI_DIR) if f.endswith(".exr"))


def require_tool(name: str) -> str:
    """Path of a command-line tool the tests rely on; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: run scripts/setup.sh (installs Debian's openexr tools)")
    return path
