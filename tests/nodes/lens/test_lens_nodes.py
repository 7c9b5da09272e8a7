"""Glare and Motion Blur in a genuine ComfyUI: EXR frames in, the node, Save EXR out, read back and
compared with the core on the same pixels (the node adds only its checks, device and progress);
light conserved; clear errors for bad settings and frames too small for optical flow; an interrupt
stops them (and Lens Blur) between steps; Glare's streaks are the diffraction of Lens Blur's bokeh."""

from __future__ import annotations

import os

import numpy as np
import OpenEXR
import pytest
import torch

from lediff_core.io.exr import read_exr
from lediff_core.lens.glare import Glare, apply_glare
from lediff_core.lens.motion import clip_flow, motion_blur
from support.clips import synthetic_pan
from support.comfy_harness import failure

GLARE = {"intensity": 0.2, "threshold": 1.0, "knee": 0.5, "radius": 24, "blades": 5, "rotation": 10.0,
         "streaks": 0.5, "spectral": True}
# Lens Blur without a depth map: the whole picture one plane blurred by largest_blur
LENS = {"depth_convention": "near = bright", "near": 1.0, "far": 100.0, "focus": "distance", "focus_distance": 2.0,
        "focus_x": 0.5, "focus_y": 0.5, "aperture": "largest blur", "f_stop": 2.8, "focal_length_mm": 50.0,
        "sensor_width_mm": 36.0, "largest_blur": 4.0, "shape": "circle", "blades": 6, "rotation": 0.0, "cat_eye": 0.0,
        "tile": 64, "precision": "float32"}


def exr_batch_graph(host, frames, node: dict) -> dict:
    """Load EXR per frame, joined by core's ImageBatch, into ``node`` (its ``image``/``frames`` input
    linked), then Save EXR (float) of its output."""
    g, out = {}, None
    for t, frame in enumerate(frames):
        name = f"f{t}.exr"
        with OpenEXR.File({}, {"RGB": np.ascontiguousarray(frame, np.float32)}) as f:
            f.write(os.path.join(host.input_dir, name))
        g[f"l{t}"] = {"class_type": "LEDiffLoadEXR", "inputs": {"image": name, "layer": ""}}
        if out is None:
            out = [f"l{t}", 0]
        else:
            g[f"b{t}"] = {"class_type": "ImageBatch", "inputs": {"image1": out, "image2": [f"l{t}", 0]}}
            out = [f"b{t}", 0]
    link = "frames" if node["class_type"] == "LEDiffMotionBlur" else "image"
    g["n"] = {"class_type": node["class_type"], "inputs": {**node["inputs"], link: out}}
    g["s"] = {"class_type": "LEDiffSaveEXR", "inputs": {
        "images": ["n", 0], "filename_prefix": "LEDiff/out", "precision": "float", "compression": "zip",
        "input_encoding": "linear", "envmap": "none"}}
    return g


def saved(host, count):
    folder = os.path.join(host.output_dir, "LEDiff")
    names = sorted(f for f in os.listdir(folder) if f.startswith("out_") and f.endswith(".exr"))
    assert len(names) == count, names
    return np.stack([read_exr(os.path.join(folder, n)).rgb for n in names])


def lamp_scene():
    img = np.full((40, 56, 3), 0.05, np.float32)
    img[18:21, 25:28] = (300.0, 200.0, 120.0)
    img[2, 50] = 40.0
    return img


def test_glare_node_matches_the_core_and_conserves_the_light(host):
    img = lamp_scene()
    host.run(exr_batch_graph(host, [img], {"class_type": "LEDiffGlare", "inputs": dict(GLARE)}))
    out = saved(host, 1)[0]
    expected = apply_glare(torch.from_numpy(img)[None], Glare(**{**GLARE, "radius": 24.0}))[0].numpy()
    assert np.allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert np.allclose(out.sum(axis=(0, 1), dtype=np.float64), img.sum(axis=(0, 1), dtype=np.float64), rtol=1e-5)
    assert out[19, 26, 0] > 100  # the lamp stays HDR


def test_motion_blur_node_blurs_a_clip_along_its_flow(host):
    hdr, _, _, _ = synthetic_pan(frames=3, size=(64, 48), step_px=3)
    host.run(exr_batch_graph(host, hdr, {"class_type": "LEDiffMotionBlur",
                                         "inputs": {"shutter_angle": 180.0, "samples": 0}}))
    out = saved(host, 3)
    frames = torch.from_numpy(hdr)
    expected = motion_blur(frames, *clip_flow(frames), 180.0, 0).numpy()
    assert np.allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out, hdr, rtol=1e-2)
    assert out.max() > 1.0  # the sun stays HDR


def test_motion_blur_with_a_closed_shutter_or_one_frame_gives_its_input(host):
    """docs: shutter_angle 0 is no blur, and one frame has no motion to measure: both unchanged,
    bit for bit through EXR (float), the sun's HDR included."""
    hdr, _, _, _ = synthetic_pan(frames=3, size=(64, 48), step_px=3)
    host.run(exr_batch_graph(host, hdr, {"class_type": "LEDiffMotionBlur",
                                         "inputs": {"shutter_angle": 0.0, "samples": 0}}))
    assert np.array_equal(saved(host, 3), hdr) and hdr.max() > 1.0
    for name in os.listdir(os.path.join(host.output_dir, "LEDiff")):
        os.remove(os.path.join(host.output_dir, "LEDiff", name))
    host.run(exr_batch_graph(host, hdr[:1], {"class_type": "LEDiffMotionBlur",
                                             "inputs": {"shutter_angle": 180.0, "samples": 0}}))
    assert np.array_equal(saved(host, 1), hdr[:1])


def line_directions(picture, centre, radii, lines):
    """The ``lines`` directions (degrees 0..180 in 0.5° steps, from +x towards +y: y points down)
    along which the light of ``picture`` around ``centre`` lies: the picture sampled (bilinearly) at
    every 0.5° on the circles of ``radii`` (a line and its opposite together), the strongest
    directions at least 20° apart."""
    theta = np.radians(np.arange(0.0, 360.0, 0.5))
    profile = np.zeros(len(theta))
    for r in range(*radii):
        y, x = centre[0] + r * np.sin(theta), centre[1] + r * np.cos(theta)
        y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
        fy, fx = y - y0, x - x0
        profile += ((1 - fy) * (1 - fx) * picture[y0, x0] + (1 - fy) * fx * picture[y0, x0 + 1]
                    + fy * (1 - fx) * picture[y0 + 1, x0] + fy * fx * picture[y0 + 1, x0 + 1])
    profile = profile[:360] + profile[360:]
    found = []
    for step in np.argsort(profile)[::-1]:
        if all(min(abs(step / 2 - f), 180 - abs(step / 2 - f)) >= 20 for f in found):
            found.append(step / 2)
        if len(found) == lines:
            return sorted(found)


def test_glare_streaks_are_the_diffraction_of_lens_blurs_bokeh_at_the_same_rotation(host):
    """One lens: the same blades and rotation on Lens Blur (its bokeh is the aperture's shape) and
    Glare give streaks where Fraunhofer diffraction of that aperture puts them, |FFT(aperture)|²
    (numpy's FFT of Lens Blur's bokeh of a point: light spreads along the edges' normals). Six
    blades at 10°: three lines (a hexagon's opposite edges are parallel); the old Glare, whose
    corner 0 pointed right, not up, was 30° off."""
    point = np.zeros((129, 129, 3), np.float32)
    point[64, 64] = 1000.0
    lens = {**LENS, "largest_blur": 20.0, "shape": "polygon", "blades": 6, "rotation": 10.0, "precision": "float64"}
    host.run(exr_batch_graph(host, [point], {"class_type": "LEDiffLensBlur", "inputs": lens}))
    bokeh = saved(host, 1)[0][..., 1].astype(np.float64)
    hexagon = 3 * np.sqrt(3) / 2 * 20.0**2  # the area of a hexagon with its corners 20 px out
    assert bokeh.sum() == pytest.approx(1000.0, rel=1e-4) and bokeh.max() < 1.5 * 1000 / hexagon  # spread over it
    diffraction = np.abs(np.fft.fftshift(np.fft.fft2(bokeh, s=(512, 512)))) ** 2
    expected = line_directions(diffraction, (256, 256), (24, 200), 3)
    assert expected == pytest.approx([10, 70, 130], abs=2)  # the hexagon's edge normals, mod 180°
    for name in os.listdir(os.path.join(host.output_dir, "LEDiff")):
        os.remove(os.path.join(host.output_dir, "LEDiff", name))
    glare = {**GLARE, "intensity": 1.0, "knee": 0.0, "radius": 32, "blades": 6, "rotation": 10.0, "streaks": 1.0,
             "spectral": False}
    host.run(exr_batch_graph(host, [point], {"class_type": "LEDiffGlare", "inputs": glare}))
    streaks = saved(host, 1)[0][..., 1].astype(np.float64)
    found = line_directions(streaks, (64, 64), (4, 28), 3)
    assert all(min(abs(a - b), 180 - abs(a - b)) <= 2 for a, b in zip(found, expected, strict=True)), \
        (found, expected)


def test_bad_settings_and_frames_too_small_for_flow_are_named(host):
    img = lamp_scene()
    report = failure(host, exr_batch_graph(host, [img], {"class_type": "LEDiffGlare",
                                                         "inputs": {**GLARE, "blades": 2}}))
    assert "blades is 2" in report["exception_message"] and "3.." in report["exception_message"]
    tiny = np.ones((2, 6, 6, 3), np.float32)
    report = failure(host, exr_batch_graph(host, tiny, {"class_type": "LEDiffMotionBlur",
                                                        "inputs": {"shutter_angle": 180.0, "samples": 0}}))
    assert "optical flow" in report["exception_message"] and "6x6" in report["exception_message"]


@pytest.mark.parametrize("node_id, args", [("LEDiffGlare", tuple(GLARE.values())), ("LEDiffMotionBlur", (180.0, 0)),
                                            ("LEDiffLensBlur", tuple(LENS.values()))])
def test_an_interrupt_stops_the_nodes(host, node_id, args):
    import comfy.model_management as mm

    frames = torch.from_numpy(synthetic_pan(frames=2, size=(32, 24))[0])
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            host.node_class(node_id).execute(frames, *args)
    finally:
        mm.interrupt_current_processing(False)
