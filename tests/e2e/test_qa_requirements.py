"""The metric libraries install into an existing ComfyUI without touching its torch stack: neither
requirements file names torch/torchvision/torchaudio, and pip's resolver, asked on this host with
scripts/check_requirements.py (offline: everything is installed by set-up), would change nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from support.common import REPO

COMFY = os.path.join(REPO, ".dev", "ComfyUI")


def names(path):
    out = []
    for line in open(os.path.join(REPO, path), encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower())
    return out


def test_requirements_never_name_the_torch_stack():
    for path in ("requirements.txt", "requirements-metrics.txt", "requirements-train.txt"):
        assert not {"torch", "torchvision", "torchaudio"} & set(names(path)), path
    assert "flip-evaluator" in names("requirements.txt")
    for optional in ("cvvdp", "pyfvvdp", "pypiqe"):
        assert optional in names("requirements-metrics.txt") and optional not in names("requirements.txt")
    # pypiqe's own metadata asks for opencv-python: beside install.py's opencv-python-headless it breaks cv2
    assert not {n for n in names("requirements-metrics.txt") if n.startswith("opencv")}
    # the PyPI package "ffmpeg" would shadow ffmpeg-python's module of the same name
    assert "ffmpeg" not in names("requirements-metrics.txt")


def test_resolver_leaves_the_host_alone():
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "check_requirements.py"), "--comfyui", COMFY, "--no-index"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "requirements.txt : would install nothing" in out.stdout
    assert "requirements-metrics.txt --no-deps: would install nothing" in out.stdout
    assert "requirements-train.txt : would install nothing" in out.stdout


def test_host_pins_are_protected():
    import check_requirements

    pins = check_requirements.host_pins(COMFY)
    assert {"torch", "torchvision", "torchaudio", "numpy", "comfyui-frontend-package"} <= pins
    assert "scipy" not in pins  # ComfyUI does not pin it: the pack may share it
