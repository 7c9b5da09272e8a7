"""Exposure Strip, HDR Stats and HDR Metrics run inside the genuine ComfyUI host: real EXR files
through Load EXR, pictures read back from the PNGs the host wrote, numbers through core's Preview
as Text; expected values from closed forms written here with numpy (and pycvvdp's PU21)."""

from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from support.exr_files import read_hdri, write_input

Y_WEIGHTS = np.array([0.212656, 0.715158, 0.072186])  # HDR.md's Rec.709 luminance
# BT.709-6 item 3.2 as published (4 digits): the luminance PU21-PIQE encodes. PIQE thresholds blocks, so
# the 4th digit of a weight can move its score by about 1 (measured): the arrays must be the same
BT709_Y = np.array([0.2126, 0.7152, 0.0722])


def srgb(x):
    """IEC 61966-2-1 encoding, written out independently of the pack."""
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.maximum(x, 0), 1 / 2.4) - 0.055)


def preview_png(host, entry) -> np.ndarray:
    path = os.path.join(host.temp_dir, entry["subfolder"], entry["filename"])
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def load(node_id, name):
    return {node_id: {"class_type": "LEDiffLoadEXR", "inputs": {"image": name, "layer": ""}}}


def text(node_id, source):
    return {node_id: {"class_type": "PreviewAny", "inputs": {"source": source}}}


def test_nodes_are_registered_v3_with_tooltips(host):
    from comfy_api.latest import io

    names = {"LEDiffExposureStrip": "Exposure Strip", "LEDiffHDRStats": "HDR Stats",
             "LEDiffHDRMetrics": "HDR Metrics"}
    for node_id, display in names.items():
        cls = host.node_class(node_id)
        assert issubclass(cls, io.ComfyNode)
        schema = cls.GET_SCHEMA()
        assert schema.category == "LEDiff/qa" and schema.display_name == display
        assert all(i.tooltip for i in schema.inputs) and all(o.tooltip for o in schema.outputs), node_id
    metric = {i.id: i for i in host.node_class("LEDiffHDRMetrics").GET_SCHEMA().inputs}
    assert metric["metric"].options == ["pu21_psnr", "pu21_ssim", "hdr_flip", "cvvdp", "fvvdp", "pu21_piqe"]
    assert metric["scaling"].default == "align" and set(metric["scaling"].options) == {"align", "absolute", "crf"}
    assert metric["ldr"].optional
    strip = {i.id: i for i in host.node_class("LEDiffExposureStrip").GET_SCHEMA().inputs}
    assert (strip["ev_min"].default, strip["ev_max"].default, strip["ev_step"].default) == (-4, 4, 2)


def test_exposure_strip_panels_are_camera_views_with_labels_and_ldr_outline(host):
    ref = read_hdri("courtyard")[:, :512]  # 512x512: panels of 128 are exact 4x4 block means
    write_input(host, "hdr.exr", ref)
    # the LDR a camera made at EV 0: clipped where any channel exceeds 1
    ldr8 = (np.clip(srgb(np.clip(ref, 0, 1)), 0, 1) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(ldr8).save(os.path.join(host.input_dir, "ldr.png"))
    g = {**load("1", "hdr.exr"),
         "2": {"class_type": "LoadImage", "inputs": {"image": "ldr.png"}},
         "3": {"class_type": "LEDiffExposureStrip",
               "inputs": {"image": ["1", 0], "ev_min": -4.0, "ev_max": 4.0, "ev_step": 2.0, "panel_width": 128}},
         "4": {"class_type": "LEDiffExposureStrip",
               "inputs": {"image": ["1", 0], "ev_min": 0.0, "ev_max": 0.0, "ev_step": 2.0, "panel_width": 128,
                          "ldr": ["2", 0], "clip_threshold": 0.99}}}
    out = host.run(g)
    sheet = preview_png(host, out["3"]["images"][0])
    label_h = sheet.shape[0] - 128
    assert sheet.shape[1] == 5 * 128 + 4 * 4 and label_h >= 18
    blocks = ref.reshape(128, 4, 128, 4, 3).mean(axis=(1, 3))
    for k, ev in enumerate([-4, -2, 0, 2, 4]):
        x0 = k * (128 + 4)
        panel = sheet[label_h:, x0:x0 + 128]
        np.testing.assert_allclose(panel, srgb(np.clip(blocks * 2.0**ev, 0, 1)), atol=1.5 / 255)
        band = sheet[:label_h, x0:x0 + 128]
        assert (band > 0.9).all(axis=-1).sum() > 20, f"no label text on panel {ev:+d} EV"
    # brighter panels are brighter (a camera view at more exposure)
    means = [sheet[label_h:, k * 132:k * 132 + 128].mean() for k in range(5)]
    assert means == sorted(means) and means[0] < means[-1]

    # with the LDR: magenta exactly on the inside edge of the clipped regions, nowhere else
    one = preview_png(host, out["4"]["images"][0])[label_h:]
    magenta = (one[..., 0] > 0.99) & (one[..., 1] < 0.01) & (one[..., 2] > 0.99)
    clipped = (ldr8 >= 0.99 * 255).any(-1).reshape(128, 4, 128, 4).any(axis=(1, 3))
    assert magenta.any() and clipped.any()
    assert not (magenta & ~clipped).any()  # only on clipped panel pixels
    assert (clipped & ~magenta).any()  # the inside of big regions is not painted


def test_hdr_stats_numbers_summary_and_plot(host):
    ref = read_hdri("sunset")
    write_input(host, "hdr.exr", ref)
    ldr8 = (np.clip(srgb(np.clip(ref * 4, 0, 1)), 0, 1) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(ldr8).save(os.path.join(host.input_dir, "ldr.png"))
    g = {**load("1", "hdr.exr"),
         "2": {"class_type": "LoadImage", "inputs": {"image": "ldr.png"}},
         "3": {"class_type": "LEDiffHDRStats", "inputs": {"image": ["1", 0], "ldr": ["2", 0]}},
         **text("4", ["3", 2]), **text("5", ["3", 3]), **text("6", ["3", 4]), **text("7", ["3", 1])}
    out = host.run(g)
    y = ref @ Y_WEIGHTS
    pos = y[y > 0]
    p1, p99 = np.percentile(pos, [1, 99])
    assert float(out["4"]["text"][0]) == pytest.approx(np.log2(p99 / p1), abs=0.01)
    assert float(out["5"]["text"][0]) == pytest.approx(np.log2(pos.max() / pos.min()), abs=0.01)
    assert float(out["6"]["text"][0]) == pytest.approx(100 * (ref > 1).any(-1).mean(), abs=1e-6)
    summary = out["7"]["text"][0]
    assert out["3"]["text"][0] == summary
    m = re.fullmatch(r"LDR: (\d+\.\d) stops, (\d+\.\d) % clipped \u2192 HDR: (\d+\.\d) stops, (\d+\.\d) % above "
                     r"SDR white \(peak/floor \d+\.\d stops\)", summary)
    assert m, summary
    assert float(m.group(2)) == pytest.approx(100 * (ldr8 >= 0.99 * 255).any(-1).mean(), abs=0.051)
    assert float(m.group(3)) == pytest.approx(np.log2(p99 / p1), abs=0.051)
    assert float(m.group(1)) < float(m.group(3))  # the LDR lost range
    plot = preview_png(host, out["3"]["images"][0])
    assert plot.shape == (384, 768, 3)
    orange = (np.abs(plot - np.array([255, 170, 40]) / 255).max(-1) < 0.02)
    blue = (np.abs(plot - np.array([80, 160, 255]) / 255).max(-1) < 0.02)
    assert orange.sum() > 200 and blue.sum() > 200


def test_hdr_metrics_node_scores_real_exrs(host):
    from pycvvdp.utils import PU

    ref = read_hdri("forest")[::2, ::2] * 100
    rng = np.random.default_rng(5)
    test = (ref * (1 + 0.1 * rng.standard_normal(ref.shape))).clip(0).astype(np.float32)
    write_input(host, "ref.exr", ref)
    write_input(host, "test.exr", test)
    g = {**load("1", "test.exr"), **load("2", "ref.exr"),
         "3": {"class_type": "LEDiffHDRMetrics",
               "inputs": {"test": ["1", 0], "reference": ["2", 0], "metric": "pu21_psnr", "scaling": "absolute"}},
         **text("4", ["3", 0]),
         "5": {"class_type": "PreviewImage", "inputs": {"images": ["3", 1]}}}
    out = host.run(g)
    pu = PU(type="banding_glare")
    d = pu.encode(torch.from_numpy(test.astype(np.float64))) - pu.encode(torch.from_numpy(ref.astype(np.float64)))
    expected = 20 * np.log10(256 / np.sqrt(float((d**2).mean())))
    assert float(out["4"]["text"][0]) == pytest.approx(expected, abs=1e-6)
    assert out["3"]["text"][0].startswith("pu21_psnr = ") and "absolute" in out["3"]["text"][0]
    assert preview_png(host, out["5"]["images"][0]).shape[:2] == ref.shape[:2]

    # align: the same test at an arbitrary exposure scores the same as the aligned one does
    write_input(host, "test_dim.exr", test / 13)
    g["1"]["inputs"]["image"] = "test_dim.exr"
    g["3"]["inputs"].update(metric="pu21_ssim", scaling="align")
    dim = float(host.run(g)["4"]["text"][0])
    g["1"]["inputs"]["image"] = "test.exr"
    assert dim == pytest.approx(float(host.run(g)["4"]["text"][0]), abs=1e-4)
    assert 0.5 < dim < 1


def test_missing_metric_library_is_a_clear_error(host, monkeypatch):
    from support.comfy_harness import GraphError

    write_input(host, "a.exr", read_hdri("night")[::8, ::8])
    monkeypatch.setitem(sys.modules, "pycvvdp", None)  # as if cvvdp were not installed
    g = {**load("1", "a.exr"),
         "3": {"class_type": "LEDiffHDRMetrics",
               "inputs": {"test": ["1", 0], "reference": ["1", 0], "metric": "cvvdp", "scaling": "align"}}}
    with pytest.raises(GraphError) as err:
        host.run(g)
    assert "pip install --no-deps -r requirements-metrics.txt" in str(err.value.report)




def test_hdr_metrics_node_scores_highlights_and_shadows_of_the_photo(host):
    """The photo through core's Load Image: the scores over its clipped and crushed pixels come out
    beside the whole image's (expected: PU21 MSE over a 5x5-grown mask written here); crf forgives a
    tone curve; pu21_piqe scores a batch with one factor from the batch's mean 99.9th percentile."""
    import pypiqe
    from pycvvdp.utils import PU
    from scipy.ndimage import maximum_filter

    from lediff_core.qa.camera import Camera, capture

    ref = read_hdri("sunset")[::4, ::4] * 100
    photo = capture(ref, Camera(exposure=1 / np.quantile(ref.max(-1), 0.9), n=0.9, a=0.6, clip_share=0.1))
    Image.fromarray(photo).save(os.path.join(host.input_dir, "photo.png"))
    hi = maximum_filter((photo.max(-1) >= 253).astype(np.uint8), size=5) > 0
    lo = maximum_filter((photo.max(-1) <= 2).astype(np.uint8), size=5) > 0
    rng = np.random.default_rng(8)
    test = (ref * (1 + 0.05 * rng.standard_normal(ref.shape))).clip(0).astype(np.float32)
    write_input(host, "ref.exr", ref)
    write_input(host, "test.exr", test)
    g = {**load("1", "test.exr"), **load("2", "ref.exr"),
         "6": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
         "3": {"class_type": "LEDiffHDRMetrics",
               "inputs": {"test": ["1", 0], "reference": ["2", 0], "metric": "pu21_psnr", "scaling": "absolute",
                          "ldr": ["6", 0]}},
         **text("4", ["3", 0]), **text("7", ["3", 3]), **text("8", ["3", 4])}
    out = host.run(g)
    pu = PU(type="banding_glare")
    d2 = ((pu.encode(torch.from_numpy(test.astype(np.float64))) - pu.encode(torch.from_numpy(ref.astype(np.float64))))
          .numpy() ** 2).mean(-1)
    assert hi.any() and lo.any()
    for node, mask in (("4", np.ones_like(hi)), ("7", hi), ("8", lo)):
        assert float(out[node]["text"][0]) == pytest.approx(20 * np.log10(256 / np.sqrt(d2[mask].mean())), abs=1e-6)
    shown = out["3"]["text"][0]
    assert "[highlights]" in shown and "[shadows]" in shown

    # a tone curve on the test: crf scores it far better than align
    curved = (1000 * (test / 1000) ** 0.7).astype(np.float32)
    write_input(host, "curved.exr", curved)
    g["1"]["inputs"]["image"] = "curved.exr"
    g["3"]["inputs"].update(scaling="align")
    aligned = float(host.run(g)["4"]["text"][0])
    g["3"]["inputs"].update(scaling="crf")
    corrected = host.run(g)
    assert float(corrected["4"]["text"][0]) > aligned + 5
    assert "crf: PQ luminance" in corrected["3"]["text"][0]

    # pu21_piqe of a batch of two: one factor for both; no region scores
    g = {**load("1", "test.exr"), **load("2", "ref.exr"),
         "5": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
         "3": {"class_type": "LEDiffHDRMetrics",
               "inputs": {"test": ["5", 0], "reference": ["2", 0], "metric": "pu21_piqe", "scaling": "align"}},
         **text("4", ["3", 0]), **text("7", ["3", 3])}
    out = host.run(g)
    k = 1000 / np.mean([np.percentile(i @ BT709_Y, 99.9) for i in (test, ref)])
    expected = []
    for image in (test, ref):
        y = np.clip(pu.encode(torch.from_numpy(image.astype(np.float64) @ BT709_Y * k)).numpy() / 600, 0, 1)
        expected.append(pypiqe.piqe(np.repeat(y[..., None], 3, -1).astype(np.float32))[0])
    assert float(out["4"]["text"][0]) == pytest.approx(np.mean(expected), abs=1e-3)
    assert out["7"]["text"][0] == "nan"
