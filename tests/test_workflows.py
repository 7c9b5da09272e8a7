"""The example workflows: listed for the template browser, written as the frontend writes them (no
``null`` where JSON.stringify drops the field), converted from UI to API format (by our converter
and by an independent one, comfy-test's, which must agree) and executed in a genuine ComfyUI with
stand-in models under the documented file names.

For CPU speed, sizes and step counts are scaled down after conversion (the graph is otherwise
exactly the shipped one): latents of 8 rows, 2 steps, and tiling at 64 pixels where tiling is on."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess

import numpy as np
import OpenEXR
import pytest
from lediff_graphs import write_photo

from lediff_runner.workflow import input_types_from_host, input_types_from_object_info, to_api
from lediff_testing import REPO, require_tool
from video_testing import synthetic_pan, write_clip

WORKFLOWS = ("text_to_hdr", "photo_to_hdr", "shadow_recovery", "hdr_panorama", "any_model_to_hdr", "video_to_hdr",
             "sdxl_text_to_hdr")
# the workflows that need SDXL LEDiff models (models/lediff/LEDiff_SDXL_*); the others need SD1.5 ones
SDXL_WORKFLOWS = ("sdxl_text_to_hdr",)
WORKFLOW_DIR = os.path.join(REPO, "workflows")
CLIP_FRAMES = 4


def write_inputs(input_dir):
    """What the workflows load from the input folder: the example photo, and a clip (a pan across
    a real HDRI, with a tone) under the name video_to_hdr's Load Video picks."""
    write_photo(type("Host", (), {"input_dir": str(input_dir)}), "example.png", size=(64, 48))
    write_clip(os.path.join(input_dir, _specs().CLIP), synthetic_pan(frames=CLIP_FRAMES)[1])


def main_exr(output_dir, name):
    """The EXR a workflow writes first: its Save EXR's file, or the first frame of its sequence."""
    if name == "video_to_hdr":
        return os.path.join(output_dir, "LEDiff", "video_to_hdr", "shot_00001", "shot.1001.exr")
    return os.path.join(output_dir, "LEDiff", f"{name}_00001.exr")


def load_workflow(name):
    with open(os.path.join(WORKFLOW_DIR, f"{name}.json")) as f:
        return json.load(f)


# the only fields litegraph itself sets to null (an unconnected input's link, an unconnected
# output's links); every other absent field is undefined in the page, which JSON.stringify drops
GENUINE_NULLS = {"nodes[].inputs[].link", "nodes[].outputs[].links"}


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


def test_every_workflow_has_a_thumbnail_and_is_ui_format():
    for name in WORKFLOWS:
        workflow = load_workflow(name)
        assert {"nodes", "links", "version"} <= set(workflow), name
        assert os.path.isfile(os.path.join(WORKFLOW_DIR, f"{name}.jpg"))
        notes = [n for n in workflow["nodes"] if n["type"] == "Note"]
        assert notes and "models/lediff/" in notes[0]["widgets_values"][0]
    assert sorted(f for f in os.listdir(WORKFLOW_DIR) if f.endswith(".json")) == sorted(f"{n}.json" for n in WORKFLOWS)


def test_null_fields_helper():
    assert null_fields({"a": None, "b": [{"c": None}, {"c": 1}], "d": {"e": 0}}) == {"a", "b[].c"}


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_has_no_null_that_the_frontend_would_drop(name):
    # JSON.stringify drops undefined fields; a graph handed to Python turns them into null
    # ("definitions": null, "floatingLinks": null, slot labels...), which other readers reject
    assert null_fields(load_workflow(name)) <= GENUINE_NULLS


@pytest.fixture
def prepared(host, workflow_models):
    import folder_paths

    folder_paths.add_model_folder_path("checkpoints", str(workflow_models / "models" / "checkpoints"), is_default=True)
    folder_paths.add_model_folder_path("lediff", str(workflow_models / "models" / "lediff"), is_default=True)
    write_inputs(host.input_dir)
    return host


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_runs_and_writes_its_exr(prepared, name):
    host = prepared
    workflow = load_workflow(name)
    prompt = scale_down(to_api(workflow, input_types_from_host(host.nodes.NODE_CLASS_MAPPINGS)))
    ui = host.run(prompt, {"workflow": workflow})
    path = main_exr(host.output_dir, name)
    with OpenEXR.File(path) as f:
        rgb = f.channels()["RGB"].pixels
        header = f.header()
        assert np.isfinite(rgb).all() and rgb.shape[0] in (48, 64)
        assert json.loads(header["workflow"]) == workflow  # the workflow travels in the file
        if name == "hdr_panorama":
            assert str(header["envmap"]).endswith("LATLONG")
    if _specs().EXR_LAYERS[name]:
        _check_layers(path, _specs().EXR_LAYERS[name], rgb.shape[:2])
    if name == "video_to_hdr":
        _check_video(host.output_dir)
    if any(node_type == "LEDiffSaveHDRImage" for node_type, *_ in _specs().SAVERS[name]):
        _check_ultrahdr(glob.glob(os.path.join(host.output_dir, "LEDiff", f"{name}_ultrahdr_*.jpg")), rgb.shape[:2])
    previews = [img for out in ui.values() for img in out.get("images", []) if img["type"] == "temp"]
    assert previews, "the workflow's previews produced no images"


def _check_layers(path, layers, size):
    """The EXR carries the workflow's layers: each bracket as linearised sRGB colour (a VAE Decode is
    0..1, so 0..1 here too) and the clip mask as a data layer, all half like the image; the channel
    names and types as Debian's exrheader lists them."""
    text = subprocess.run([require_tool("exrheader"), path], capture_output=True, text=True, check=True).stdout
    listed = dict(re.findall(r"^ {4}(\S+), (16|32)-bit floating-point", text, re.M))
    expected = {c: "16" for c in "RGB"}
    for layer in layers:
        expected.update({f"{layer}.Y": "16"} if layer == "clip_mask" else {f"{layer}.{c}": "16" for c in "RGB"})
    assert listed == expected
    with OpenEXR.File(path, separate_channels=True) as f:
        channels = {k: v.pixels.astype(np.float32) for k, v in f.channels().items()}
        data = list(f.header().get("lediff:dataLayers", []))
    for layer in layers:
        planes = [channels[f"{layer}.Y"]] if layer == "clip_mask" else [channels[f"{layer}.{c}"] for c in "RGB"]
        for plane in planes:
            assert plane.shape == tuple(size) and np.isfinite(plane).all()
            assert plane.min() >= 0 and plane.max() <= 1, layer
    assert data == [layer for layer in layers if layer == "clip_mask"]
    brackets = [layer for layer in layers if layer.startswith("bracket_")]
    assert len(brackets) in (3, 5)
    # each bracket is its own decode, not the same image five times
    assert len({channels[f"{b}.G"].tobytes() for b in brackets}) == len(brackets)


def _check_video(output_dir):
    """video_to_hdr's sequence has every frame of the clip, and its master is HEVC PQ with the
    clip's sound, as Debian's ffprobe reads it."""
    folder = os.path.dirname(main_exr(output_dir, "video_to_hdr"))
    assert sorted(os.listdir(folder)) == [f"shot.{1001 + i}.exr" for i in range(CLIP_FRAMES)]
    [master] = glob.glob(os.path.join(output_dir, "LEDiff", "video_to_hdr_*.mp4"))
    probe = json.loads(subprocess.run([require_tool("ffprobe"), "-v", "error", "-count_frames", "-show_streams",
                                       "-of", "json", master], capture_output=True, text=True, check=True).stdout)
    video, audio = (next(st for st in probe["streams"] if st["codec_type"] == kind) for kind in ("video", "audio"))
    assert (video["codec_name"], video["color_transfer"], int(video["nb_read_frames"])) == ("hevc", "smpte2084",
                                                                                          CLIP_FRAMES)
    assert video["r_frame_rate"] == "24/1" and audio["codec_name"] == "aac"


def _check_ultrahdr(files, size):
    """The Ultra HDR JPEG next to the EXR: a JPEG PIL opens at the EXR's size (the SDR base), and a
    gain map libultrahdr decodes to finite HDR of the same size."""
    import imagecodecs
    from PIL import Image

    assert len(files) == 1, files
    with Image.open(files[0]) as im:
        assert im.format in ("JPEG", "MPO") and im.size == (size[1], size[0])
    with open(files[0], "rb") as f:
        hdr = imagecodecs.ultrahdr_decode(f.read())
    assert hdr.shape[:2] == tuple(size) and np.isfinite(hdr).all()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from comfy_server import ComfyServer

    base = tmp_path_factory.mktemp("server_base")
    server = ComfyServer(base)
    yield server
    server.stop()
    shutil.rmtree(base / "output", ignore_errors=True)


def test_template_browser_lists_the_workflows(server):
    from comfy_server import PACK_FOLDER

    # under the folder name a README install gives the pack (the README says so: test_docs)
    listed = server.get("/workflow_templates")
    assert sorted(listed[PACK_FOLDER]) == sorted(WORKFLOWS)


def _specs():
    """scripts/workflow_specs.py, imported from its file (the specs the workflows are built from)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("workflow_specs", os.path.join(REPO, "scripts", "workflow_specs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _default(spec):
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    if "default" in options:
        return options["default"]
    return kind[0] if isinstance(kind, list) else options.get("options", [None])[0]


def test_widget_values_are_the_specs_or_the_defaults(server):
    # the generator builds each graph in the frontend; a widget it did not set must keep the node's
    # default (the frontend once carried values over from the previous graph by node id)
    object_info, specs = server.get("/object_info"), _specs()
    for name in WORKFLOWS:
        workflow = load_workflow(name)
        spec_nodes, _ = specs.WORKFLOWS[name]()
        assert [n["type"] for n in sorted(workflow["nodes"], key=lambda n: n["id"])] == [n[1] for n in spec_nodes]
        prompt = to_api(workflow, input_types_from_object_info(object_info))
        for node_id, (_, node_type, _, widgets, _) in enumerate(spec_nodes, start=1):
            if node_type == "Note":
                continue
            types = object_info[node_type]["input"]
            for input_name, spec in [*types.get("required", {}).items(), *types.get("optional", {}).items()]:
                value = prompt[str(node_id)]["inputs"].get(input_name)
                if value is None or isinstance(value, list):  # linked
                    continue
                expected = widgets[input_name] if input_name in widgets else _default(spec)
                assert value == expected, (name, node_type, input_name)


def test_an_independent_converter_reads_every_workflow_as_we_do(server):
    object_info = server.get("/object_info")
    for name in WORKFLOWS:
        workflow = load_workflow(name)
        ours = graph_of(to_api(workflow, input_types_from_object_info(object_info)))
        assert graph_of(independent_api(workflow, object_info)) == ours, name
        assert len(ours) == sum(n["type"] != "Note" for n in workflow["nodes"]), name  # every node but the note
