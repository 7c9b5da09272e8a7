"""Lens Blur (HDR) in the genuine ComfyUI: EXR in, the node, EXR out (float, read back), with a depth
map of another size from Load EXR (resized, and the log says so) or as a MASK from core's Image
To Mask; focus picked at a point; the errors a user meets by name."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from lediff_core.io.exr import read_exr
from support.comfy_harness import failure
from support.exr_files import write_input

H, W = 48, 64


def point_scene():
    img = np.full((H, W, 3), 0.1, np.float32)
    img[24, 40] = 1000.0
    return img


def depth_image(h=H // 2, w=W // 2):
    """A depth estimator's picture (near = bright): a near bar on the left, the rest far."""
    d = np.full((h, w, 3), 0.1, np.float32)
    d[:, : w // 4] = 0.9
    return d


def graph(host, depth_input="depth", **settings):
    write_input(host, "scene.exr", point_scene())
    write_input(host, "depth.exr", depth_image())
    inputs = {"image": ["1", 0], "depth_convention": "near = bright", "near": 1.0, "far": 100.0,
              "focus": "distance", "focus_distance": 1.2, "focus_x": 0.5, "focus_y": 0.5, "aperture": "largest blur",
              "f_stop": 2.8, "focal_length_mm": 50.0, "sensor_width_mm": 36.0, "largest_blur": 6.0,
              "shape": "polygon", "blades": 6, "rotation": 0.0, "cat_eye": 0.0, "tile": 64, "precision": "float32",
              **settings}
    g = {"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "scene.exr", "layer": ""}},
         "2": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "depth.exr", "layer": ""}},
         "3": {"class_type": "LEDiffLensBlur", "inputs": inputs},
         "9": {"class_type": "LEDiffSaveEXR", "inputs": {
             "images": ["3", 0], "filename_prefix": "out/x", "precision": "float", "compression": "none",
             "input_encoding": "linear", "envmap": "none"}}}
    if depth_input == "depth":
        inputs["depth"] = ["2", 0]
    elif depth_input == "depth_mask":
        g["4"] = {"class_type": "ImageToMask", "inputs": {"image": ["2", 0], "channel": "green"}}
        inputs["depth_mask"] = ["4", 0]
    elif depth_input == "both":
        g["4"] = {"class_type": "ImageToMask", "inputs": {"image": ["2", 0], "channel": "green"}}
        inputs["depth"], inputs["depth_mask"] = ["2", 0], ["4", 0]
    return g


def run(host, **kw):
    host.run(graph(host, **kw))
    folder = os.path.join(host.output_dir, "out")
    (name,) = os.listdir(folder)
    out = read_exr(os.path.join(folder, name)).rgb
    os.remove(os.path.join(folder, name))
    return out


def test_node_schema(host):
    schema = host.node_class("LEDiffLensBlur").GET_SCHEMA()
    assert (schema.display_name, schema.category) == ("Lens Blur (HDR)", "LEDiff/lens")
    assert all(i.tooltip for i in schema.inputs) and all(o.tooltip for o in schema.outputs)


def test_a_highlight_out_of_focus_spreads_with_its_energy_and_the_resize_is_logged(host, caplog):
    with caplog.at_level(logging.WARNING, logger="lediff"):
        out = run(host)
    light = out[..., 1].astype(np.float64) - 0.1
    assert light.sum() == pytest.approx(1000.0, rel=0.01)  # the highlight's energy, through EXR and back
    assert light.max() < 1000.0 / 50  # spread over a disc (the far plane: about 5 px across)
    assert out.max() > 1.0  # and still HDR: nothing clamped
    assert any("Lens Blur: resized the depth map from 32x24 to the picture's 64x48" in r.getMessage()
               for r in caplog.records)
    assert not any("stretched" in r.getMessage() for r in caplog.records)  # the same aspect: only resized
    # the same map as a MASK from core's Image To Mask gives the same picture; float64 the same too
    assert np.allclose(run(host, depth_input="depth_mask"), out, rtol=1e-5, atol=1e-6)
    assert np.allclose(run(host, precision="float64"), out, rtol=1e-4, atol=1e-3)


def test_focus_picked_at_the_highlight_keeps_it_a_point(host):
    out = run(host, focus="point", focus_x=40.5 / W, focus_y=24.5 / H)
    assert out[24, 40, 1] == pytest.approx(1000.0, rel=1e-5)
    # f-stop: a 200 mm f/4 on a full-frame sensor focused at 1.2 m blurs the point (at 9.2 m) over
    # a disc 50 mm * 0.2 m * 8 m / (9.2 m * 1.0 m) = 8.7 mm = 15 px across
    out = run(host, aperture="f-stop", f_stop=4.0, focal_length_mm=200.0)
    assert out[24, 40, 1] < 100.0 and (out[..., 1].astype(np.float64) - 0.1).sum() == pytest.approx(1000, rel=0.01)


def test_without_a_depth_map_the_picture_is_one_plane(host):
    out = run(host, depth_input=None)
    light = out[..., 1].astype(np.float64) - 0.1
    assert light.sum() == pytest.approx(1000.0, rel=0.01)
    assert (light > 1000 / (np.pi * 36) / 2).sum() == pytest.approx(np.pi * 36, rel=0.15)  # a 6 px radius disc


@pytest.mark.parametrize("settings, message", [
    ({"depth_input": "both"}, "both depth and depth_mask are connected; connect one of them"),
    ({"depth_convention": "distance", "aperture": "f-stop", "focal_length_mm": 200.0},
     "the depth map's distance reaches 0.1, not beyond the focal length (0.2 m)"),
    ({"largest_blur": 100.0}, "the largest blur radius is 88.0 pixels, larger than the picture (64x48)"),
    ({"depth_input": None, "focus": "point"}, "focus = point focuses on the depth map's value at (focus_x, focus_y), "
     "and no depth map is connected: connect one to depth (an IMAGE) or depth_mask (a MASK), or set focus = distance"),
])
def test_errors_name_the_problem_and_the_fix(host, settings, message):
    report = failure(host, graph(host, **settings))
    assert message in report["exception_message"], report["exception_message"]


def test_frames_each_get_their_depth_map(host):
    """A batch of two frames (core's Image Batch) with two depth maps: the first keeps the point far
    and blurred, the second puts its plane at the focus distance (near = bright: 1/1.2 m = 1/100 +
    v (1 - 1/100), v = 0.8316), where it stays a point."""
    g = graph(host)
    focused = np.full((H // 2, W // 2, 3), (1 / 1.2 - 0.01) / 0.99, np.float32)
    write_input(host, "focused.exr", focused)
    g["5"] = {"class_type": "LEDiffLoadEXR", "inputs": {"image": "focused.exr", "layer": ""}}
    g["6"] = {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["1", 0]}}
    g["7"] = {"class_type": "ImageBatch", "inputs": {"image1": ["2", 0], "image2": ["5", 0]}}
    g["3"]["inputs"].update(image=["6", 0], depth=["7", 0])
    host.run(g)
    folder = os.path.join(host.output_dir, "out")
    first, second = (read_exr(os.path.join(folder, n)).rgb for n in sorted(os.listdir(folder)))
    assert first[24, 40, 1] < 100.0
    assert second[24, 40, 1] == pytest.approx(1000.0, rel=1e-3)
    g["6"]["inputs"]["image2"] = ["1", 0]
    g["3"]["inputs"]["image"] = ["1", 0]  # one frame, two depth maps
    report = failure(host, g)
    assert "depth has 2 frames and image 1; give one depth map for all frames or one per frame" in \
        report["exception_message"]


def test_a_depth_map_of_another_aspect_is_stretched_with_a_warning(host, caplog):
    """A square map for the 4:3 picture (a crop, or another picture's map) is stretched to fit, and
    the log says so beside the resize: the blur would land in the wrong places."""
    g = graph(host)
    write_input(host, "depth.exr", depth_image(32, 32))
    with caplog.at_level(logging.WARNING, logger="lediff"):
        host.run(g)
    messages = [r.getMessage() for r in caplog.records]
    assert any("resized the depth map from 32x32 to the picture's 64x48" in m for m in messages)
    assert any("the depth map (32x32, aspect 1) is stretched to the picture (64x48, aspect 1.33): is it this "
               "picture's map?" in m for m in messages), messages


def test_load_images_mask_as_the_depth_map_is_named_in_the_log(host, caplog):
    """Core Load Image's MASK output of a picture without alpha (what a user may wire to depth_mask)
    is a 64x64 zero mask: a flat map, the whole picture one plane; the log names the likely mistake."""
    from PIL import Image

    g = graph(host, depth_input=None)
    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(os.path.join(host.input_dir, "depth.png"))
    g["5"] = {"class_type": "LoadImage", "inputs": {"image": "depth.png"}}
    g["3"]["inputs"]["depth_mask"] = ["5", 1]
    with caplog.at_level(logging.WARNING, logger="lediff"):
        host.run(g)
    messages = [r.getMessage() for r in caplog.records]
    assert any("resized the depth map from 64x64" in m for m in messages), messages
    assert any("the depth map is flat (every value 0): the whole picture is one plane. If it is Load Image's MASK "
               "output, that is the picture's alpha" in m for m in messages), messages


@pytest.mark.parametrize("near, far, focal_length_mm", [(1.0, 100.0, 50.0), (0.3, 5000.0, 200.0)])
def test_largest_blur_on_near_bright_is_linear_in_the_maps_value(host, near, far, focal_length_mm):
    """docs/lens.md: with near = bright and aperture = largest blur, near, far and the lens change
    nothing: the radius is largest_blur (v_focus - v) / max(v_focus, 1 - v_focus) (the thin lens's
    radius is linear in inverse distance, which the map is). Focused at a flat patch of 0.3: the
    map's 1 gets -16 px, its 0 6.86 px (the node's blur_radius output)."""
    import torch

    v = torch.linspace(0, 1, 64).repeat(48, 1)
    v[20:29, 28:37] = 0.3
    settings = {**{k: v_ for k, v_ in graph(host)["3"]["inputs"].items() if not isinstance(v_, list)},
                "near": near, "far": far, "focal_length_mm": focal_length_mm, "focus": "point",
                "largest_blur": 16.0, "shape": "circle"}
    _, radius = host.node_class("LEDiffLensBlur").execute(torch.from_numpy(point_scene())[None],
                                                          depth_mask=v[None], **settings).result
    expected = 16.0 * (0.3 - v) / 0.7
    assert torch.allclose(radius[0], expected, atol=1e-4)
    assert (float(radius.min()), float(radius.max())) == pytest.approx((-16.0, 6.857), abs=1e-3)
