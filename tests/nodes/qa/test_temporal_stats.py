"""HDR Stats on a batch of video frames in a genuine ComfyUI: the warping error of the frames along
the flow of the LDR frames (or of the HDR), overall and in the clipped pixels. Frames are the
synthetic pan across the city HDRI (exact motion): steady frames score near 0, and a known
flicker of k stops scores k^2 where it is applied."""

from __future__ import annotations

import os
import re

import numpy as np
import OpenEXR
import pytest
import torch
from PIL import Image

from lediff_core.qa.temporal import warping_error
from lediff_core.video.flow import flow_with_visibility, hdr_guide
from support.clips import synthetic_pan
from support.comfy_harness import GraphError

FRAMES = 4


def batch_graph(host, hdr, ldr=None, prefix="f"):
    """Load EXR per HDR frame (and Load Image per LDR frame), joined with core's ImageBatch, into HDR Stats."""
    g, hdr_out, ldr_out = {}, None, None
    for t in range(len(hdr)):
        name = f"{prefix}{t}.exr"
        with OpenEXR.File({}, {"RGB": np.ascontiguousarray(hdr[t], np.float32)}) as f:
            f.write(os.path.join(host.input_dir, name))
        g[f"h{t}"] = {"class_type": "LEDiffLoadEXR", "inputs": {"image": name, "layer": ""}}
        hdr_out = [f"h{t}", 0] if hdr_out is None else _join(g, f"hb{t}", hdr_out, [f"h{t}", 0])
        if ldr is not None:
            png = f"{prefix}{t}.png"
            Image.fromarray(np.round(ldr[t] * 255).astype(np.uint8)).save(os.path.join(host.input_dir, png))
            g[f"l{t}"] = {"class_type": "LoadImage", "inputs": {"image": png}}
            ldr_out = [f"l{t}", 0] if ldr_out is None else _join(g, f"lb{t}", ldr_out, [f"l{t}", 0])
    inputs = {"image": hdr_out, **({"ldr": ldr_out} if ldr is not None else {})}
    g["s"] = {"class_type": "LEDiffHDRStats", "inputs": inputs}
    for i in (1, 5, 6):
        g[f"p{i}"] = {"class_type": "PreviewAny", "inputs": {"source": ["s", i]}}
    return g


def _join(g, node_id, a, b):
    g[node_id] = {"class_type": "ImageBatch", "inputs": {"image1": a, "image2": b}}
    return [node_id, 0]


def results(out):
    return out["p1"]["text"][0], float(out["p5"]["text"][0]), float(out["p6"]["text"][0])


@pytest.fixture(scope="module")
def pan():
    return synthetic_pan(frames=FRAMES)


def test_steady_frames_score_near_zero_and_match_the_core(host, pan):
    hdr, ldr, _, clipped = pan
    summary, overall, in_clipped = results(host.run(batch_graph(host, hdr, ldr)))
    # the node's numbers are the core's on the same inputs: flow from the 8-bit LDR, region = its clipped pixels
    flow, valid = flow_with_visibility(torch.from_numpy(ldr))
    expected = warping_error(hdr, flow, valid=valid, region=torch.from_numpy(clipped))
    assert overall == pytest.approx(expected["overall"], rel=1e-4, abs=1e-6)
    assert in_clipped == pytest.approx(expected["region"], rel=1e-4, abs=1e-6)
    assert overall < 0.05 and in_clipped < 0.5  # a steady pan: only the flow's sub-pixel misses
    m = re.search(r"Temporal \(4 frames, flow from the LDR frames\): warping error (\d+\.\d{4}) stops\^2, "
                  r"(\d+\.\d{4}) stops\^2 in clipped pixels \((\d+) % of pixels visible", summary)
    assert m, summary
    assert float(m.group(1)) == pytest.approx(overall, abs=1e-4)
    assert int(m.group(3)) > 80


def test_flicker_in_the_clipped_pixels_scores_its_stops_squared(host, pan):
    hdr, ldr, _, clipped = pan
    steady = warping_error(hdr, *flow_with_visibility(torch.from_numpy(ldr)), region=torch.from_numpy(clipped))
    flicker = hdr.copy()
    gains = [1.0, 2.0, 1.0, 2.0]  # the recovered highlights pump by one stop from frame to frame
    for t, gain in enumerate(gains):
        flicker[t][clipped[t]] *= gain
    _, overall, in_clipped = results(host.run(batch_graph(host, flicker, ldr, prefix="k")))
    # (log2 2)^2 = 1 on the clipped pixels whose previous position was clipped too; the flow's
    # misses add a little on either side
    assert 0.95 < in_clipped - steady["region"] < 1.05
    share = clipped[1:].mean()
    assert overall < in_clipped * share * 1.5 + steady["overall"] and overall > steady["overall"]


def test_without_ldr_flow_comes_from_the_hdr(host, pan):
    hdr = pan[0]
    summary, overall, in_bright = results(host.run(batch_graph(host, hdr, None, prefix="n")))
    assert "flow from the HDR frames" in summary and "above SDR white pixels" in summary
    flow, valid = flow_with_visibility(hdr_guide(torch.from_numpy(hdr)))
    expected = warping_error(hdr, flow, valid=valid, region=torch.from_numpy((hdr > 1.0).any(-1)))
    assert overall == pytest.approx(expected["overall"], rel=1e-4, abs=1e-6)
    assert in_bright == pytest.approx(expected["region"], rel=1e-4, abs=1e-6)
    assert overall < 0.05


def test_single_image_reports_no_temporal_error(host, pan):
    summary, overall, in_clipped = results(host.run(batch_graph(host, pan[0][:1], pan[1][:1], prefix="o")))
    assert "Temporal" not in summary and overall == 0.0 and in_clipped == 0.0


def test_frames_too_small_for_the_flow(host):
    """Two 10x10 frames (OpenCV's DIS needs 12 px on the longer side): HDR Stats reports that the
    warping error was not measured instead of failing the statistics; Blend with LDR in video mode,
    which cannot do its job without the motion, refuses by name, size and minimum."""
    hdr = np.random.default_rng(0).random((2, 10, 10, 3), dtype=np.float32) * 4
    g = batch_graph(host, hdr, np.clip(hdr, 0, 1), prefix="t")
    summary, overall, in_clipped = results(host.run(g))
    assert summary.splitlines()[-1] == ("Temporal (2 frames): not measured, the frames are 10x10 pixels and the "
                                        "optical flow needs at least 8 on each side and 12 on the longer one")
    assert overall == 0.0 and in_clipped == 0.0
    g["b"] = {"class_type": "LEDiffBlendLDR", "inputs": {
        "ldr": ["lb1", 0], "hdr": ["hb1", 0], "preset": "released", "anchor": "none", "percentile": 50.0,
        "value": 0.18, "frames": "video"}}
    g["p"] = {"class_type": "PreviewAny", "inputs": {"source": ["b", 0]}}
    with pytest.raises(GraphError, match=r"frames = video: the ldr frames are 10x10 pixels, and optical flow "
                                         r"\(OpenCV's DIS\) needs frames of at least 8 pixels on each side"):
        host.run(g)
