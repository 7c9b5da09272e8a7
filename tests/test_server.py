"""The pack in a real ComfyUI server: start main.py --cpu, list the nodes, queue a graph, stop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import OpenEXR
import pytest

from comfy_harness import COMFY_ROOT, REPO
from lediff_testing import HDRI_DIR

OUR_NODES = ("LEDiffSaveEXR", "LEDiffLoadEXR", "LEDiffToneMap")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, data=None, timeout=10):
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    for d in ("custom_nodes", "models", "input", "output", "temp", "user"):
        (base / d).mkdir()
    os.symlink(REPO, base / "custom_nodes" / "lediff_hdr")
    port = free_port()
    log_path = base / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
         "--disable-auto-launch", "--base-directory", str(base), "--database-url", "sqlite:///:memory:"],
        cwd=COMFY_ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            pytest.fail(f"ComfyUI exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            get_json(url + "/system_stats", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"ComfyUI did not start in 180 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
    yield {"url": url, "base": base, "log": log_path, "pid": proc.pid}
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


def test_object_info_lists_our_nodes(server):
    info = get_json(server["url"] + "/object_info")
    for node_id in OUR_NODES:
        assert node_id in info, node_id
        assert info[node_id]["category"].startswith("LEDiff/")
        assert info[node_id]["python_module"].startswith("custom_nodes.")
    assert info["LEDiffSaveEXR"]["output_node"] is True
    assert "zip" in info["LEDiffSaveEXR"]["input"]["required"]["compression"][1]["options"]


def test_queued_graph_writes_an_exr(server):
    shutil.copy(os.path.join(HDRI_DIR, "studio.exr"), server["base"] / "input")
    prompt = {
        "1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "studio.exr", "layer": ""}},
        "2": {"class_type": "LEDiffToneMap", "inputs": {"image": ["1", 0], "operator": "aces",
                                                       "exposure": 0.0, "white": 4.0,
                                                       "auto_exposure": True}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
        "4": {"class_type": "LEDiffSaveEXR", "inputs": {
            "images": ["1", 0], "filename_prefix": "LEDiff/server", "precision": "half",
            "compression": "dwab", "input_encoding": "linear", "envmap": "latlong"}},
    }
    workflow = {"nodes": [], "links": [], "version": 0.4}
    queued = get_json(server["url"] + "/prompt",
                      {"prompt": prompt, "extra_data": {"extra_pnginfo": {"workflow": workflow}}})
    prompt_id = queued["prompt_id"]
    deadline = time.monotonic() + 120
    while True:
        history = get_json(f"{server['url']}/history/{prompt_id}")
        if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
            break
        assert time.monotonic() < deadline, "the prompt did not finish in 120 s"
        time.sleep(0.5)
    entry = history[prompt_id]
    assert entry["status"]["status_str"] == "success", entry["status"]
    saved = entry["outputs"]["4"]["images"][0]
    assert saved == {"filename": "server_00001.exr", "subfolder": "LEDiff", "type": "output"}
    path = server["base"] / "output" / "LEDiff" / "server_00001.exr"
    with OpenEXR.File(str(path)) as f:
        assert json.loads(f.header()["workflow"]) == workflow
        assert np.isfinite(f.channels()["RGB"].pixels).all()
    # the file can be fetched the way the frontend's viewer does
    with urllib.request.urlopen(
            f"{server['url']}/view?filename=server_00001.exr&subfolder=LEDiff&type=output") as r:
        assert r.read()[:4] == b"\x76\x2f\x31\x01"


def test_start_up_log_has_no_import_failure_or_traceback(server):
    # read after the other tests, so the log also covers executing our nodes
    text = server["log"].read_text()
    assert "IMPORT FAILED" not in text, text[-4000:]
    assert "Traceback" not in text, text[-4000:]
    assert "lediff_hdr" in text  # ComfyUI's import-times list names the pack
