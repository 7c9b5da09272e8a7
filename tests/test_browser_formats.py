"""The display formats in the real ComfyUI frontend, in headless Chromium: a graph saving every
format (and an EXR) is loaded and queued by the frontend; each output is then decoded by Chromium
at its full size (Ultra HDR JPEG and AVIF; what it does with JPEG XL is recorded in
formats_decoded.json: Debian's Chromium 156 decodes it, other browsers may not, hence the PNG
preview listed after it); the node previews load; and dropping the AVIF back onto
the frontend restores the graph through the frontend's own file handler. Screenshots are saved
under test-artifacts/browser/."""

from __future__ import annotations

import json
import os

import numpy as np
import OpenEXR
import pytest
from comfy_server import ComfyServer, frontend_page

from lediff_core.io.exr import read_exr
from lediff_testing import HDRI_DIR, REPO

ARTIFACTS = os.path.join(REPO, "test-artifacts", "browser")
FORMATS = {"11": "ultrahdr", "12": "avif_pq", "13": "avif_hlg", "14": "jxl_linear"}
W, H = 256, 128

DECODE_JS = """async (url) => {
  const img = new Image();
  img.src = url;
  try { await img.decode(); return [img.naturalWidth, img.naturalHeight]; }
  catch (e) { return String(e); }
}"""

DROP_JS = """async ([url, name, type]) => {
  const blob = await (await fetch(url)).blob();
  await app.handleFile(new File([blob], name, {type}));
  await new Promise((r) => setTimeout(r, 500));
  return app.graph._nodes.map((n) => [n.type, n.widgets?.find((w) => w.name === "format")?.value ?? null]);
}"""


def api_graph():
    g = {"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "city.exr", "layer": ""}},
         "10": {"class_type": "LEDiffSaveEXR",
                "inputs": {"images": ["1", 0], "filename_prefix": "LEDiff/browser", "precision": "half",
                           "compression": "zip", "input_encoding": "linear", "envmap": "none"}}}
    for node_id, fmt in FORMATS.items():
        g[node_id] = {"class_type": "LEDiffSaveHDRImage",
                      "inputs": {"images": ["1", 0], "filename_prefix": f"LEDiff/{fmt}", "format": fmt,
                                 "reference_white": 1.0, "quality": 90, "headroom_stops": 3.0,
                                 "mastering_peak": 1000.0}}
    return g


@pytest.fixture(scope="module")
def frontend(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser_formats")
    os.makedirs(base / "input")
    rgb = read_exr(os.path.join(HDRI_DIR, "city.exr")).rgb[::4, ::4].clip(0, None)
    rgb = np.ascontiguousarray(rgb / np.median(rgb) * 0.18, dtype=np.float32)
    with OpenEXR.File({}, {"RGB": rgb}) as f:
        f.write(str(base / "input" / "city.exr"))
    server = ComfyServer(base)
    os.makedirs(ARTIFACTS, exist_ok=True)
    try:
        with frontend_page(server) as (page, errors):
            yield {"page": page, "server": server, "base": base, "errors": errors}
    finally:
        server.stop()


def view_url(entry):
    return f"/view?filename={entry['filename']}&subfolder={entry['subfolder']}&type={entry['type']}"


def test_frontend_queues_shows_and_restores_the_display_formats(frontend):
    page, server, errors = frontend["page"], frontend["server"], frontend["errors"]
    page.evaluate("(g) => app.loadApiJson(g, 'formats')", api_graph())
    page.wait_for_timeout(500)
    errors.clear()
    entry = server.queue_in_page(page)
    assert entry["status"]["status_str"] == "success", entry["status"]
    outputs = entry["outputs"]

    decoded = {}
    for node_id, fmt in FORMATS.items():
        images = outputs[node_id]["images"]
        decoded[fmt] = page.evaluate(DECODE_JS, view_url(images[0]))
        if fmt == "jxl_linear":
            assert images[0]["filename"].endswith(".jxl")
            assert page.evaluate(DECODE_JS, view_url(images[1])) == [W, H]  # the PNG preview
        else:
            assert decoded[fmt] == [W, H], (fmt, decoded[fmt])
    with open(os.path.join(ARTIFACTS, "formats_decoded.json"), "w") as f:
        json.dump(decoded, f, indent=1)  # what Chromium did with each file, JPEG XL included

    # the previews on the canvas were loaded by the frontend itself
    # the canvas draws (and so loads the previews of) the nodes in view: zoom out to see them all
    page.evaluate("""() => { app.canvas.ds.scale = 0.35; app.canvas.ds.offset = [40, 40];
                            app.canvas.setDirty(true, true); }""")
    previews = """() => Object.fromEntries(app.graph._nodes.map((n) => [String(n.id),
        (n.imgs ?? []).map((i) => [i.complete, i.naturalWidth, i.src.split("filename=")[1]])]))"""
    page.wait_for_function(f"""() => ["11", "12", "13"].every((id) => {{
        const imgs = ({previews})()[id]; return imgs.length && imgs.every(([ok, w]) => ok && w > 0); }})""",
                           timeout=60000)
    loaded = page.evaluate(previews)
    with open(os.path.join(ARTIFACTS, "formats_previews.json"), "w") as f:
        json.dump(loaded, f, indent=1)
    for node_id, ext in (("11", ".jpg"), ("12", ".avif"), ("13", ".avif")):
        assert any(ext in src for _, _, src in loaded[node_id]), loaded
    page.keyboard.press("Escape")  # the template browser the frontend opens at start
    page.wait_for_timeout(300)
    page.screenshot(path=os.path.join(ARTIFACTS, "display_formats.png"))
    ours = [e for e in errors if any(k in e for k in (".avif", ".jpg", "LEDiff", "lediff"))]
    assert not ours, ours

    # dropping the AVIF restores the graph (the frontend reads its Exif item); a JPEG does not
    # (the frontend takes workflows from PNG, WebP, AVIF, audio and video files only)
    avif = outputs["12"]["images"][0]
    page.evaluate("() => app.graph.clear()")
    nodes = page.evaluate(DROP_JS, [view_url(avif), avif["filename"], "image/avif"])
    assert sorted(t for t, _ in nodes) == sorted(v["class_type"] for v in api_graph().values())
    assert sorted(f for t, f in nodes if t == "LEDiffSaveHDRImage") == sorted(FORMATS.values())
    jpg = outputs["11"]["images"][0]
    page.evaluate("() => app.graph.clear()")
    nodes = page.evaluate(DROP_JS, [view_url(jpg), jpg["filename"], "image/jpeg"])
    assert "LEDiffSaveHDRImage" not in [t for t, _ in nodes]
