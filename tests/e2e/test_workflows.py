"""The example workflows: listed for the template browser, written as the frontend writes them (no
``null`` where JSON.stringify drops the field), converted from UI to API format (by our converter
and by an independent one, comfy-test's, which must agree) and executed in a genuine ComfyUI with
stand-in models under the documented file names.

For CPU speed, sizes and step counts are scaled down after conversion (the graph is otherwise
exactly the shipped one): latents of 8 rows, 2 steps, and tiling at 64 pixels where tiling is on."""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
import shutil
import subprocess

import numpy as np
import OpenEXR
import pytest

from lediff_runner.workflow import input_types_from_host, input_types_from_object_info, to_api
from support.common import require_tool
from support.workflows import (
    CLIP_FRAMES,
    MIN_ZOOM,
    WORKFLOW_DIR,
    WORKFLOWS,
    graph_of,
    independent_api,
    load_specs,
    load_workflow,
    main_exr,
    node_boxes,
    null_fields,
    overlaps,
    scale_down,
    widgets_height,
    write_inputs,
)

# the only fields litegraph itself sets to null (an unconnected input's link, an unconnected
# output's links); every other absent field is undefined in the page, which JSON.stringify drops
GENUINE_NULLS = {"nodes[].inputs[].link", "nodes[].outputs[].links"}


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
        # hdr_through_sdr_node upscales the photo's 48 rows 2x inside a log signal
        assert np.isfinite(rgb).all() and rgb.shape[0] in ((96,) if name == "hdr_through_sdr_node" else (48, 64))
        assert json.loads(header["workflow"]) == workflow  # the workflow travels in the file
        if name == "hdr_panorama":
            assert str(header["envmap"]).endswith("LATLONG")
    if name == "hdr_panorama":
        # an HDRI is plain RGB, one part: what every DCC's API reads as an image (Blender's bpy reads
        # a multilayer EXR as render layers, 0x0 with no pixels until rendered)
        assert exr_channels(path) == {c: "16" for c in "RGB"} and not load_specs().EXR_LAYERS[name]
    if load_specs().EXR_LAYERS[name]:
        _check_layers(path, load_specs().EXR_LAYERS[name], rgb.shape[:2])
    if name == "video_to_hdr":
        _check_video(host.output_dir)
    if name == "hdr_depth_of_field":
        _check_depth_of_field(rgb, os.path.join(host.input_dir, "example.png"))
    if any(node_type == "LEDiffSaveHDRImage" for node_type, *_ in load_specs().SAVERS[name]):
        _check_ultrahdr(glob.glob(os.path.join(host.output_dir, "LEDiff", f"{name}_ultrahdr_*.jpg")), rgb.shape[:2])
    previews = [img for out in ui.values() for img in out.get("images", []) if img["type"] == "temp"]
    assert previews, "the workflow's previews produced no images"


def exr_channels(path) -> dict[str, str]:
    """{channel name: "16" or "32"} of an EXR's (single) part, as Debian's exrheader lists them."""
    with OpenEXR.File(path) as f:
        assert len(f.parts) == 1, "a multi-part EXR"
    text = subprocess.run([require_tool("exrheader"), path], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"^ {4}(\S+), (16|32)-bit floating-point", text, re.M))


def _check_layers(path, layers, size):
    """The EXR carries the workflow's layers: each bracket as linearised sRGB colour (a VAE Decode is
    0..1, so 0..1 here too) and the clip mask as a data layer, all half like the image; the channel
    names and types as Debian's exrheader lists them."""
    listed = exr_channels(path)
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


def _detail(rgb) -> np.ndarray:
    """Each row's mean absolute difference between neighbouring pixels (of the channels' mean)."""
    return np.abs(np.diff(rgb.mean(axis=-1), axis=1)).mean(axis=1)


def _check_depth_of_field(rgb, photo_path):
    """hdr_depth_of_field's focus follows the depth map: the test's map is a ramp from far (top row,
    0) to near (bottom row, 1), Lens Blur focuses on its value at the centre (0.51) and blurs by at
    most 16 px at the ends, so by the thin lens (radius linear in inverse depth, which the map is)
    rows 20..27 are within 2.5 px of sharp and rows 30..41 blurred by 4.4 to 12 px. Measured
    against the photo's own detail in those rows (its top rows are sky, with none to lose), the
    blurred rows keep far less of it than the rows in focus."""
    from PIL import Image

    with Image.open(photo_path) as im:
        srgb = np.asarray(im.convert("RGB"), dtype=np.float64) / 255
    photo = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    kept = _detail(rgb.astype(np.float64)) / np.maximum(_detail(photo), 1e-6)
    in_focus, blurred = kept[20:28].mean(), kept[30:42].mean()
    assert blurred < 0.5 * in_focus, (in_focus, blurred)


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
    from support.comfy_server import ComfyServer

    base = tmp_path_factory.mktemp("server_base")
    server = ComfyServer(base)
    yield server
    server.stop()
    shutil.rmtree(base / "output", ignore_errors=True)


def test_template_browser_lists_the_workflows(server):
    from support.comfy_server import PACK_FOLDER

    # under the folder name a README install gives the pack (the README says so: test_docs)
    listed = server.get("/workflow_templates")
    assert sorted(listed[PACK_FOLDER]) == sorted(WORKFLOWS)


def _default(spec):
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    if "default" in options:
        return options["default"]
    return kind[0] if isinstance(kind, list) else options.get("options", [None])[0]


def test_widget_values_are_the_specs_or_the_defaults(server):
    # the generator builds each graph in the frontend; a widget it did not set must keep the node's
    # default (the frontend once carried values over from the previous graph by node id)
    object_info, specs = server.get("/object_info"), load_specs()
    for name in WORKFLOWS:
        workflow = load_workflow(name)
        spec_nodes, _, _ = specs.WORKFLOWS[name]()
        assert [n["type"] for n in sorted(workflow["nodes"], key=lambda n: n["id"])] == [n[1] for n in spec_nodes]
        prompt = to_api(workflow, input_types_from_object_info(object_info))
        for node_id, (_, node_type, widgets, _) in enumerate(spec_nodes, start=1):
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


# Opened from the template browser, the frontend ignores the saved view and fits the graph to the
# window: zoom = 0.75 x the scale at which the graph's box fills the canvas (fitToBounds, where a
# side under 300 counts as 300). LiteGraph hides titles and widgets below about 0.6.
WINDOW = (1600, 1000)
STAGES = ("Input", "Brackets", "HDR", "Outputs")


def contains(outer, inner) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def fit_zoom(boxes, window=WINDOW) -> float:
    """The frontend's fitToBounds zoom for the box around ``boxes`` in ``window``."""
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    return 0.75 * min(window[0] / max(x1 - x0, 300), window[1] / max(y1 - y0, 300))


def test_layout_helpers():
    node = {"type": "PreviewImage", "pos": [10, 100], "size": [140, 26], "inputs": [{"name": "images"}]}
    assert widgets_height(node) == 26  # the frontend's PreviewImage before a run
    assert node_boxes({"nodes": [{**node, "id": 1}]}, {"PreviewImage": {"output_node": True}})[1] == (
        10, 70, 150, 100 + 26 + 512)
    assert overlaps((0, 0, 10, 10), (9, 9, 20, 20)) and not overlaps((0, 0, 10, 10), (10, 0, 20, 10))
    # photo_to_hdr before this layout: 3070 x 794 at 1600 x 1000 opened at 0.39 (measured in the frontend)
    assert round(fit_zoom([(40, 40, 3110, 834)]), 2) == 0.39


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_is_readable_when_opened_and_after_a_run(server, name):
    object_info = server.get("/object_info")
    workflow = load_workflow(name)
    boxes = node_boxes(workflow, object_info)
    for a, b in itertools.combinations(boxes, 2):
        assert not overlaps(boxes[a], boxes[b]), (name, a, b)
    groups = {g["title"]: (g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2],
                           g["bounding"][1] + g["bounding"][3]) for g in workflow["groups"]}
    assert len(groups) == len(workflow["groups"])
    # the groups name the stages, hold every node (each in one group) and do not overlap
    for stage in STAGES:
        assert any(title.startswith(stage) for title in groups), (name, stage, list(groups))
    for node_id, box in boxes.items():
        assert [t for t, g in groups.items() if overlaps(g, box)] == [t for t, g in groups.items() if contains(g, box)]
        assert len([t for t, g in groups.items() if contains(g, box)]) == 1, (name, node_id)
    for a, b in itertools.combinations(groups.values(), 2):
        assert not overlaps(a, b), name
    # readable however it is opened: the saved view and the template browser's fit to the window
    everything = [*boxes.values(), *groups.values()]
    assert fit_zoom(everything) >= MIN_ZOOM, (name, fit_zoom(everything))
    ds = workflow["extra"]["ds"]
    assert ds["scale"] >= MIN_ZOOM
    for x0, y0, x1, y1 in everything:  # the saved view shows the whole graph in the window
        assert (x0 + ds["offset"][0]) * ds["scale"] >= 0 and (x1 + ds["offset"][0]) * ds["scale"] <= WINDOW[0]
        assert (y0 + ds["offset"][1]) * ds["scale"] >= 0 and (y1 + ds["offset"][1]) * ds["scale"] <= WINDOW[1]


def sources(workflow) -> dict[tuple[int, str], dict]:
    """{(node id, input name): the node its link comes from}."""
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {link[0]: link for link in workflow["links"]}
    return {(n["id"], i["name"]): nodes[links[i["link"]][1]]
            for n in workflow["nodes"] for i in n.get("inputs", []) if i.get("link") is not None}


@pytest.mark.parametrize("name", WORKFLOWS)
def test_brackets_are_decoded_tiled(name):
    # the bracket layers' decodes once ran core VAE Decode: a big photo ran them out of memory, and
    # the error stopped the run before Save EXR. Tiled, their memory does not grow with the image.
    workflow = load_workflow(name)
    nodes = {n["id"]: n for n in workflow["nodes"]}
    feeding = sources(workflow)
    layer_images = [feeding[(n["id"], "image")]["type"] for n in nodes.values()
                    if n["type"] == "LEDiffEXRLayer" and (n["id"], "image") in feeding]
    assert set(layer_images) <= {"VAEDecodeTiled"} and len(layer_images) == sum(
        layer.startswith("bracket_") for layer in load_specs().EXR_LAYERS[name])
    # core VAE Decode only where a workflow makes its LDR image (any_model_to_hdr's model), not of brackets
    for node in nodes.values():
        if node["type"] == "VAEDecode":
            assert feeding[(node["id"], "samples")]["type"] == "KSampler", name


def test_photo_to_hdr_writes_its_exr_when_a_preview_cannot_be_made(prepared, tmp_path, caplog):
    # ComfyUI 0.30.0 runs the output nodes in no fixed order (validate_prompt collects them in a set
    # of node ids, whose order changes with Python's hash seed), and an error anywhere stops the
    # prompt. photo_to_hdr has no preview node of its own: its savers show what they wrote, after
    # writing it, and a preview that cannot be written is a warning naming the saved file, not a
    # failure. Here the temp folder, where previews go, cannot be written.
    host = prepared
    blocked = tmp_path / "temp_is_a_file"
    blocked.write_text("")
    host.set_folders(temp_dir=str(blocked))
    workflow = load_workflow("photo_to_hdr")
    ui = host.run(scale_down(to_api(workflow, input_types_from_host(host.nodes.NODE_CLASS_MAPPINGS))),
                  {"workflow": workflow})
    assert not [img for out in ui.values() for img in out.get("images", []) if img["type"] == "temp"]
    assert "Save EXR: saved LEDiff/photo_to_hdr_00001.exr, but its preview could not be written" in caplog.text
    with OpenEXR.File(main_exr(host.output_dir, "photo_to_hdr")) as f:
        assert np.isfinite(f.channels()["RGB"].pixels).all()
