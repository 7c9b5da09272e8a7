"""The pack in a real ComfyUI server: start main.py --cpu, list the nodes, queue a graph, stop."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import OpenEXR
import pytest

from support.comfy_server import PACK_FOLDER, ComfyServer, get_json
from support.common import HDRI_DIR

OUR_NODES = ("LEDiffSaveEXR", "LEDiffEXRLayer", "LEDiffLoadEXR", "LEDiffToneMap", "LEDiffLoadHDRVAE",
             "LEDiffLoadDenoiser", "LEDiffHighlightBracket", "LEDiffShadowBracket", "LEDiffLatentExposureFusion",
             "LEDiffHDRDecode", "LEDiffBlendLDR", "LEDiffPanoramaWrap", "LEDiffIBLPreview", "LEDiffColorSpace",
             "LEDiffSaveHDRImage", "LEDiffExposureStrip", "LEDiffHDRStats", "LEDiffHDRMetrics")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ComfyServer(tmp_path_factory.mktemp("comfy_base"))
    yield {"url": srv.url, "base": srv.base, "log": srv.log_path, "pid": srv.proc.pid, "srv": srv}
    srv.stop()


def test_object_info_lists_our_nodes(server):
    info = get_json(server["url"] + "/object_info")
    for node_id in OUR_NODES:
        assert node_id in info, node_id
        assert info[node_id]["category"].startswith("LEDiff/")
        assert info[node_id]["python_module"].startswith("custom_nodes.")
    assert info["LEDiffSaveEXR"]["output_node"] is True
    assert "zip" in info["LEDiffSaveEXR"]["input"]["required"]["compression"][1]["options"]


def test_queued_graph_writes_an_exr(server):
    shutil.copy(os.path.join(HDRI_DIR, "studio.exr"), os.path.join(server["base"], "input"))
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
    entry = server["srv"].wait_for_history(queued["prompt_id"], timeout=120)
    assert entry["status"]["status_str"] == "success", entry["status"]
    saved = entry["outputs"]["4"]["images"][0]
    assert saved == {"filename": "server_00001.exr", "subfolder": "LEDiff", "type": "output"}
    path = Path(server["base"]) / "output" / "LEDiff" / "server_00001.exr"
    with OpenEXR.File(str(path)) as f:
        assert json.loads(f.header()["workflow"]) == workflow
        assert np.isfinite(f.channels()["RGB"].pixels).all()
    # the file can be fetched the way the frontend's viewer does
    with urllib.request.urlopen(
            f"{server['url']}/view?filename=server_00001.exr&subfolder=LEDiff&type=output") as r:
        assert r.read()[:4] == b"\x76\x2f\x31\x01"


def test_start_up_log_has_no_import_failure_or_traceback(server):
    # read after the other tests, so the log also covers executing our nodes
    text = Path(server["log"]).read_text()
    assert "IMPORT FAILED" not in text, text[-4000:]
    assert "Traceback" not in text, text[-4000:]
    assert PACK_FOLDER in text  # ComfyUI's import-times list names the pack
