"""The example workflows: listed for the template browser, converted from UI to API format and
executed in a genuine ComfyUI with stand-in models under the documented file names.

For CPU speed, sizes and step counts are scaled down after conversion (the graph is otherwise
exactly the shipped one): latents of 8 rows, 2 steps, and tiling at 64 pixels where tiling is on."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import OpenEXR
import pytest
from lediff_graphs import write_photo

from lediff_runner.workflow import input_types_from_host, to_api
from lediff_testing import REPO

WORKFLOWS = ("text_to_hdr", "photo_to_hdr", "shadow_recovery", "hdr_panorama")
WORKFLOW_DIR = os.path.join(REPO, "workflows")


def load_workflow(name):
    with open(os.path.join(WORKFLOW_DIR, f"{name}.json")) as f:
        return json.load(f)


def scale_down(prompt: dict) -> dict:
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "EmptyLatentImage":
            inputs["width"], inputs["height"] = 64 * inputs["width"] // inputs["height"], 64
        if "steps" in inputs:
            inputs["steps"] = 2
        if inputs.get("tile_size"):
            inputs["tile_size"] = 64
    return prompt


def test_every_workflow_has_a_thumbnail_and_is_ui_format():
    for name in WORKFLOWS:
        workflow = load_workflow(name)
        assert {"nodes", "links", "version"} <= set(workflow), name
        assert os.path.isfile(os.path.join(WORKFLOW_DIR, f"{name}.jpg"))
        notes = [n for n in workflow["nodes"] if n["type"] == "Note"]
        assert notes and "models/lediff/" in notes[0]["widgets_values"][0]
    assert sorted(f for f in os.listdir(WORKFLOW_DIR) if f.endswith(".json")) == sorted(f"{n}.json" for n in WORKFLOWS)


@pytest.fixture
def prepared(host, workflow_models):
    import folder_paths

    folder_paths.add_model_folder_path("checkpoints", str(workflow_models / "models" / "checkpoints"), is_default=True)
    folder_paths.add_model_folder_path("lediff", str(workflow_models / "models" / "lediff"), is_default=True)
    write_photo(host, "example.png", size=(64, 48))
    return host


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_runs_and_writes_its_exr(prepared, name):
    host = prepared
    workflow = load_workflow(name)
    prompt = scale_down(to_api(workflow, input_types_from_host(host.nodes.NODE_CLASS_MAPPINGS)))
    ui = host.run(prompt, {"workflow": workflow})
    path = os.path.join(host.output_dir, "LEDiff", f"{name}_00001.exr")
    with OpenEXR.File(path) as f:
        rgb = f.channels()["RGB"].pixels
        header = f.header()
        assert np.isfinite(rgb).all() and rgb.shape[0] in (48, 64)
        assert json.loads(header["workflow"]) == workflow  # the workflow travels in the file
        if name == "hdr_panorama":
            assert str(header["envmap"]).endswith("LATLONG")
    previews = [img for out in ui.values() for img in out.get("images", []) if img["type"] == "temp"]
    assert previews, "the workflow's previews produced no images"


def test_template_browser_lists_the_workflows(tmp_path):
    from comfy_server import ComfyServer

    server = ComfyServer(tmp_path / "base")
    try:
        listed = server.get("/workflow_templates")
        assert sorted(listed["lediff_hdr"]) == sorted(WORKFLOWS)
        shutil.rmtree(tmp_path / "base" / "output", ignore_errors=True)
    finally:
        server.stop()
