"""The repository root is also the ComfyUI package (its __init__.py imports ComfyUI's API), so
pytest must collect it as a plain directory rather than import it as a package."""

from pathlib import Path

import pytest

ROOT = Path(__file__).parent


def pytest_collect_directory(path, parent):
    if path == ROOT:
        return pytest.Dir.from_parent(parent, path=path)
    return None
