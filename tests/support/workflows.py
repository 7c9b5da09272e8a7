"""The example workflows as the tests use them: their names, loading, the inputs they read, scaling
them down for the CPU, running them with only the given models, and the geometry of their saved view
(the e2e workflow and browser tests, the runner and training tests share these)."""

from __future__ import annotations

import json
import os

import numpy as np
import OpenEXR

from lediff_runner.workflow import input_types_from_host, to_api
from support.clips import synthetic_pan, write_clip
from support.common import REPO
from support.graphs import write_depth_map, write_photo

WORKFLOWS = ("text_to_hdr", "photo_to_hdr", "shadow_recovery", "hdr_panorama", "any_model_to_hdr", "video_to_hdr",
             "sdxl_text_to_hdr", "hdr_through_sdr_node", "hdr_depth_of_field")
# the workflows that need SDXL LEDiff models (models/lediff/LEDiff_SDXL_*); the others need SD1.5 ones
SDXL_WORKFLOWS = ("sdxl_text_to_hdr",)
WORKFLOW_DIR = os.path.join(REPO, "workflows")


CLIP_FRAMES = 4


def write_inputs(input_dir):
    """What the workflows load from the input folder: the example photo, the depth map
    hdr_depth_of_field's second Load Image picks (a ground plane, near = bright, at the photo's
    size), and a clip (a pan across a real HDRI, with a tone) under the name video_to_hdr's Load
    Video picks."""
    write_photo(type("Host", (), {"input_dir": str(input_dir)}), "example.png", size=(64, 48))
    write_depth_map(str(input_dir), load_specs().DEPTH, size=(64, 48))
    write_clip(os.path.join(input_dir, load_specs().CLIP), synthetic_pan(frames=CLIP_FRAMES)[1])


def main_exr(output_dir, name):
    """The EXR a workflow writes first: its Save EXR's file, or the first frame of its sequence."""
    if name == "video_to_hdr":
        return os.path.join(output_dir, "LEDiff", "video_to_hdr", "shot_00001", "shot.1001.exr")
    return os.path.join(output_dir, "LEDiff", f"{name}_00001.exr")


def load_workflow(name):
    with open(os.path.join(WORKFLOW_DIR, f"{name}.json")) as f:
        return json.load(f)


def null_fields(value, path="") -> set[str]:
    """The paths (list indices as []) that hold null."""
    if value is None:
        return {path}
    if isinstance(value, dict):
        return set().union(*(null_fields(v, f"{path}.{k}" if path else k) for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*(null_fields(v, f"{path}[]") for v in value))
    return set()


def independent_api(workflow: dict, object_info: dict) -> dict:
    """comfy-test's UI -> API conversion (an independent implementation reading /object_info)."""
    from comfy_test.comfyui.workflow import litegraph_to_prompt

    return litegraph_to_prompt(json.loads(json.dumps(workflow)), object_info)


def graph_of(prompt: dict) -> dict:
    return {k: (v["class_type"], v["inputs"]) for k, v in prompt.items()}


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


def run_with_only_these_models(host, monkeypatch, lediff: str, checkpoints: str, names) -> None:
    """Run the workflows ``names`` with ``lediff`` and ``checkpoints`` as ComfyUI's only folders of
    those kinds (so no fixture model of the same name can stand in for the one under test); each
    must write a finite, non-blank EXR."""
    import folder_paths

    for kind, path in (("lediff", lediff), ("checkpoints", checkpoints)):
        monkeypatch.setitem(folder_paths.folder_names_and_paths, kind,
                            ([path], folder_paths.folder_names_and_paths[kind][1]))
    write_inputs(host.input_dir)
    for name in names:
        workflow = load_workflow(name)
        host.run(scale_down(to_api(workflow, input_types_from_host(host.nodes.NODE_CLASS_MAPPINGS))),
                 {"workflow": workflow})
        with OpenEXR.File(main_exr(host.output_dir, name)) as f:
            rgb = f.channels()["RGB"].pixels
        assert np.isfinite(rgb).all() and rgb.std() > 0, name


def load_specs():
    """scripts/workflow_specs.py, imported from its file (the specs the workflows are built from)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("workflow_specs", os.path.join(REPO, "scripts", "workflow_specs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The saved layout as the frontend draws it. A node's box is its title bar (LiteGraph's
# NODE_TITLE_HEIGHT, above pos) and its body (size). A node that shows images grows after a run (or
# once its file loads): an output node (PreviewImage, SaveImage, the pack's savers, which list what
# they wrote), Load Image and Load Video. The pinned frontend (1.47) adds an image-preview widget at
# least 220 px tall below the widgets; we require room for a 512-px image, the widgets' height plus
# 512. The widgets' height follows LiteGraph's rule in the pinned frontend (6 px, 20 per slot row,
# 24 per single-line widget and 8 below them; the image nodes have no multi-line widget);
# tests/e2e/browser/test_workflows.py checks the rule against the frontend's own computeSize, and the sizes after
# a real run.
TITLE_HEIGHT = 30
PREVIEW_HEIGHT = 512


SHOWS_MEDIA = {"LoadImage", "LoadVideo"}
MIN_ZOOM = 0.6


def widgets_height(node) -> float:
    """The body height of ``node`` (UI format) without images, by LiteGraph's layout rule."""
    slots = [i for i in node.get("inputs", []) if "widget" not in i]  # a linked widget's socket sits on it
    rows = max(len(slots), len(node.get("outputs", [])))
    widgets = len(node.get("widgets_values", []))
    return 6 + 20 * rows + (24 * widgets + 8 if widgets else 0)


def shows_images(node, object_info) -> bool:
    return node["type"] in SHOWS_MEDIA or bool(object_info.get(node["type"], {}).get("output_node"))


def node_boxes(workflow, object_info) -> dict[int, tuple[float, float, float, float]]:
    """{node id: (x0, y0, x1, y1)}, title bar included, every image node grown to show a 512-px image."""
    boxes = {}
    for node in workflow["nodes"]:
        (x, y), (w, h) = node["pos"], node["size"]
        if shows_images(node, object_info):
            h = max(h, widgets_height(node) + PREVIEW_HEIGHT)
        boxes[node["id"]] = (x, y - TITLE_HEIGHT, x + w, y + h)
    return boxes


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
