"""The split between the pure library and the ComfyUI adapters: importing every module of
lediff_core loads no ComfyUI module, even with ComfyUI importable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from comfy_harness import COMFY_ROOT
from lediff_testing import REPO

COMFY_MODULES = ("comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes", "execution",
                 "server", "model_management")

PROBE = """
import importlib, json, pkgutil, sys
import lediff_core
names = ["lediff_core"] + [m.name for m in pkgutil.walk_packages(lediff_core.__path__, "lediff_core.")]
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {modules!r})
print(json.dumps({{"imported": names, "comfy": loaded}}))
"""


def test_importing_lediff_core_loads_no_comfyui_module():
    # ComfyUI's root on the path too: a stray import would succeed silently, and is caught here
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, COMFY_ROOT])}
    proc = subprocess.run([sys.executable, "-c", PROBE.format(modules=COMFY_MODULES)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {"lediff_core.hdr_vae", "lediff_core.vae", "lediff_core.weights", "lediff_core.exr"}
    assert expected <= set(result["imported"])
    assert result["comfy"] == []
