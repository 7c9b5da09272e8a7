"""install.py (what ComfyUI-Manager runs after requirements.txt) adds OpenCV only where this Python
has none of its four distributions, for real: the development venv, a fresh venv, and a fresh venv
that already carries opencv-contrib-python-headless (a real wheel from PyPI, installed with
--target), where exactly one distribution must provide cv2 afterwards."""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.common import REPO

INSTALL = os.path.join(REPO, "install.py")
# The smallest contrib wheel that loads with numpy 2 (4.10 is the first built against it): 56 MB
CONTRIB = "opencv-contrib-python-headless"
CONTRIB_VERSION = "4.10.0.84"
CONTRIB_SHA256 = "89c16eb5f888aee7bf664106e12c423705d29d1b094876b66aa4e33d4e8ec905"
CACHE = Path(REPO) / ".dev" / "cache" / "opencv-test"

PROBE = """
import importlib.metadata, json, cv2
print(json.dumps({"cv2": cv2.__file__, "version": cv2.__version__, "dis": hasattr(cv2, "DISOpticalFlow_create"),
                  "providers": sorted(importlib.metadata.packages_distributions().get("cv2", []))}))
"""


def run(python, *args, env=None):
    proc = subprocess.run([python, *args], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def contrib_wheel() -> str:
    """The pinned wheel, downloaded once into .dev/cache (reruns need no network)."""
    pattern = str(CACHE / f"opencv_contrib_python_headless-{CONTRIB_VERSION}-*.whl")
    if not glob.glob(pattern):
        CACHE.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                   "--only-binary", ":all:", f"{CONTRIB}=={CONTRIB_VERSION}", "-d", str(CACHE)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not glob.glob(pattern):
            pytest.fail(f"could not download {CONTRIB}=={CONTRIB_VERSION} from PyPI (this test needs the package "
                        f"registry once; later runs use {CACHE}):\n{proc.stderr[-2000:]}")
    wheel = glob.glob(pattern)[0]
    digest = hashlib.sha256(Path(wheel).read_bytes()).hexdigest()
    if digest != CONTRIB_SHA256:
        os.remove(wheel)
        pytest.fail(f"{wheel} has sha256 {digest}, not the pinned {CONTRIB_SHA256}: removed, run again")
    return wheel


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """A new venv with no packages (no pip either: install.py must decide without it)."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=300)
    python = str(root / "venv" / "bin" / "python")
    assert json.loads(run(python, "-c", "import json, importlib.metadata as m; "
                          "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))")) == []
    return python


@pytest.fixture(scope="module")
def contrib_dir(tmp_path_factory):
    target = tmp_path_factory.mktemp("contrib")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--no-compile", "--no-index", "--target", str(target), contrib_wheel()], check=True, timeout=600)
    return str(target)


@pytest.fixture(scope="module")
def numpy_dir(tmp_path_factory):
    """numpy alone (cv2 needs it), linked from the development venv without its other packages."""
    import numpy

    site = Path(numpy.__file__).parent.parent
    out = tmp_path_factory.mktemp("numpy_only")
    names = ["numpy", "numpy.libs", f"numpy-{numpy.__version__}.dist-info"]
    for name in names:
        if (site / name).exists():
            os.symlink(site / name, out / name)
    return str(out)


def test_development_venv_keeps_its_opencv():
    version = importlib.metadata.version("opencv-python-headless")
    out = run(sys.executable, INSTALL)  # a real run: it must decide to install nothing
    assert f"using the installed opencv-python-headless {version}; installing nothing" in out
    assert "WARNING" not in out
    assert run(sys.executable, INSTALL, "--dry-run") == out


def test_fresh_venv_would_install_the_headless_distribution(fresh_venv):
    out = run(fresh_venv, INSTALL, "--dry-run")
    assert "none installed; would install opencv-python-headless" in out
    assert f"{fresh_venv} -m pip install opencv-python-headless" in out


def test_existing_contrib_distribution_is_used_and_nothing_is_added(fresh_venv, contrib_dir, numpy_dir):
    env = {"PYTHONPATH": os.pathsep.join([contrib_dir, numpy_dir])}
    # a real run: had it decided to install, pip (absent from this venv) would have failed it
    out = run(fresh_venv, INSTALL, env=env)
    assert f"using the installed {CONTRIB} {CONTRIB_VERSION}; installing nothing" in out
    assert "WARNING" not in out
    probe = json.loads(run(fresh_venv, "-c", PROBE, env=env).strip().splitlines()[-1])
    assert probe["providers"] == [CONTRIB]  # exactly one distribution provides cv2
    assert probe["cv2"].startswith(contrib_dir) and probe["version"] == "4.10.0" and probe["dis"]


def test_two_distributions_side_by_side_are_reported(contrib_dir):
    # the state install.py never creates: the development venv's headless plus a contrib first on the path
    out = run(sys.executable, INSTALL, "--dry-run", env={"PYTHONPATH": contrib_dir})
    assert CONTRIB in out and "opencv-python-headless" in out and "installing nothing" in out
    assert "WARNING: more than one OpenCV distribution" in out
