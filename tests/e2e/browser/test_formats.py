"""The display formats in the real ComfyUI frontend, in headless Chromium, in each frontend
(ComfyUI's pinned one and the newest; see support/frontends.py): a graph saving every format (and an EXR)
is loaded and queued by the frontend; each output is then decoded by Chromium at its full size
(Ultra HDR JPEG, AVIF, 16-bit PQ and HLG PNG; what it does with JPEG XL is recorded in
formats_decoded.json: Debian's Chromium 156 decodes it, other browsers may not, hence the PNG
preview listed after it); dropping the AVIF or the PQ PNG back onto the frontend restores the graph
through the frontend's own file handler; and the node previews load, in the classic canvas and in
Nodes 2.0 (the Vue node renderer), which shows them as its image grid or gallery. Screenshots are
saved under test-artifacts/browser/FRONTEND/. (How Chromium renders the PNGs' HDR tags:
test_hdr_png.py.)"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import OpenEXR
import pytest

from lediff_core.io.exr import read_exr
from support.comfy_server import wait_for_app
from support.common import HDRI_DIR
from support.frontends import ARTIFACTS, RENDERERS, load_api_graph, open_frontend, wait_for_previews

FORMATS = {"11": "ultrahdr", "12": "avif_pq", "13": "avif_hlg", "14": "jxl_linear", "15": "png_pq", "16": "png_hlg"}
SHOWN_AS_SAVED = ("11", "12", "13", "15", "16")  # the files themselves are the previews
W, H = 256, 128

DECODE_JS = """async (url) => {
  const img = new Image();
  img.src = url;
  try { await img.decode(); return [img.naturalWidth, img.naturalHeight]; }
  catch (e) { return String(e); }
}"""

DROP_JS = """async ([url, name, type]) => {
  const blob = await (await fetch(url)).blob();
  await app.handleFile(new File([blob], name, {type}));  // resolves once the file is handled
  return app.graph._nodes.map((n) => [n.type, n.widgets?.find((w) => w.name === "format")?.value ?? null]);
}"""


def api_graph(tag):
    """Every saver; ``tag`` goes into the file names (each test writes its own files)."""
    g = {"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "city.exr", "layer": ""}},
         "10": {"class_type": "LEDiffSaveEXR",
                "inputs": {"images": ["1", 0], "filename_prefix": f"LEDiff/browser_{tag}", "precision": "half",
                           "compression": "zip", "input_encoding": "linear", "envmap": "none"}}}
    for node_id, fmt in FORMATS.items():
        g[node_id] = {"class_type": "LEDiffSaveHDRImage",
                      "inputs": {"images": ["1", 0], "filename_prefix": f"LEDiff/{fmt}_{tag}", "format": fmt,
                                 "reference_white": 1.0, "quality": 90, "headroom_stops": 3.0,
                                 "mastering_peak": 1000.0}}
    return g


@pytest.fixture(scope="module")
def ui(browser_server, frontend):
    base = browser_server.base
    rgb = read_exr(os.path.join(HDRI_DIR, "city.exr")).rgb[::4, ::4].clip(0, None)
    rgb = np.ascontiguousarray(rgb / np.median(rgb) * 0.18, dtype=np.float32)
    with OpenEXR.File({}, {"RGB": rgb}) as f:
        f.write(os.path.join(base, "input", "city.exr"))
    artifacts = os.path.join(ARTIFACTS, frontend.id)
    os.makedirs(artifacts, exist_ok=True)

    def console_error(m):  # with the resource's address: a failed load's text does not name it
        return f"{m.text} ({m.location.get('url')})" if m.type == "error" else None

    with open_frontend(browser_server, frontend, console_errors=console_error) as (page, errors):
        yield {"page": page, "server": browser_server, "errors": errors, "artifacts": artifacts}


def view_url(entry):
    return f"/view?filename={entry['filename']}&subfolder={entry['subfolder']}&type={entry['type']}"


def ours(errors):
    """The errors about the files of our savers (in the output folder LEDiff/, or their names)."""
    return [e for e in errors if any(k in e for k in (".avif", ".jpg", ".jxl", "LEDiff", "lediff"))]


def queue_formats(ui, tag, renderer) -> dict:
    load_api_graph(ui["page"], api_graph(tag), f"formats_{tag}", renderer)
    ui["errors"].clear()
    entry = ui["server"].queue_in_page(ui["page"])
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry["outputs"]


def test_frontend_queues_decodes_and_restores_the_display_formats(ui):
    page, errors = ui["page"], ui["errors"]
    outputs = queue_formats(ui, "decoded", "classic")

    decoded = {}
    for node_id, fmt in FORMATS.items():
        images = outputs[node_id]["images"]
        decoded[fmt] = page.evaluate(DECODE_JS, view_url(images[0]))
        if fmt == "jxl_linear":
            assert images[0]["filename"].endswith(".jxl")
            assert page.evaluate(DECODE_JS, view_url(images[1])) == [W, H]  # the PNG preview
        else:
            assert decoded[fmt] == [W, H], (fmt, decoded[fmt])
    with open(os.path.join(ui["artifacts"], "formats_decoded.json"), "w") as f:
        json.dump(decoded, f, indent=1)  # what Chromium did with each file, JPEG XL included
    assert not ours(errors), ours(errors)

    # dropping the AVIF or the PQ PNG restores the graph (the frontend reads the AVIF's Exif item and
    # the PNG's tEXt chunks); a JPEG does not
    # (the frontend takes workflows from PNG, WebP, AVIF, audio and video files only): it becomes
    # a Load Image node of the uploaded file, like any image without a workflow
    avif = outputs["12"]["images"][0]
    page.evaluate("() => app.graph.clear()")
    nodes = page.evaluate(DROP_JS, [view_url(avif), avif["filename"], "image/avif"])
    assert sorted(t for t, _ in nodes) == sorted(v["class_type"] for v in api_graph("decoded").values())
    assert sorted(f for t, f in nodes if t == "LEDiffSaveHDRImage") == sorted(FORMATS.values())
    png = outputs["15"]["images"][0]
    page.evaluate("() => app.graph.clear()")
    nodes = page.evaluate(DROP_JS, [view_url(png), png["filename"], "image/png"])
    assert sorted(f for t, f in nodes if t == "LEDiffSaveHDRImage") == sorted(FORMATS.values()), nodes
    jpg = outputs["11"]["images"][0]
    page.evaluate("() => app.graph.clear()")
    nodes = page.evaluate(DROP_JS, [view_url(jpg), jpg["filename"], "image/jpeg"])
    assert nodes == [["LoadImage", None]], nodes
    # its upload is done once the node shows the file; unfinished, it would land in the node of
    # the same id of the next graph loaded (1.47 does that)
    page.wait_for_function("""(name) => app.graph._nodes.some((n) => n.type === "LoadImage"
        && n.widgets?.[0]?.value === name && n.imgs?.[0]?.complete && n.imgs[0].naturalWidth > 0)""",
                           arg=jpg["filename"], timeout=30000)
    # that wait is not always enough: in a clean CI run, 1.47 still wrote the file name into node 1
    # of the next test's graph. The next test starts from a fresh page, nothing of this drop pending
    page.reload(wait_until="networkidle", timeout=120000)
    wait_for_app(page)


@pytest.mark.parametrize("renderer", RENDERERS)
def test_node_previews_show_the_display_formats(ui, renderer):
    """The frontend itself loads each saver's preview in ``renderer``: the Ultra HDR JPEG, the
    AVIFs, and for JPEG XL the file and its PNG preview. The classic canvas loads the JPEG XL
    itself (Chromium decodes it); Nodes 2.0 asks the server for a WebP thumbnail of every image of
    a multi-image grid (``/view?preview=webp;75``), which ComfyUI 0.30.0 makes with Pillow, which
    reads no JPEG XL: that tile stays broken (a 500) and the PNG preview beside it is what shows."""
    page, errors = ui["page"], ui["errors"]
    outputs = queue_formats(ui, renderer, renderer)
    # the previews load once their nodes are drawn: fit them all into view, as the toolbar does
    page.get_by_role("button", name=re.compile(r"^Fit View")).click()
    files = {node_id: [i["filename"] for i in outputs[node_id]["images"]] for node_id in FORMATS}
    loaded = wait_for_previews(page, renderer, files)
    with open(os.path.join(ui["artifacts"], f"formats_previews_{renderer}.json"), "w") as f:
        json.dump(loaded, f, indent=1)
    for node_id in SHOWN_AS_SAVED:  # Ultra HDR JPEG, AVIFs, PNGs: the files themselves
        [(_, width, height, _)] = loaded[node_id]
        assert width > 0 and height > 0, loaded
    (_, jxl_width, _, jxl), (_, png_width, png_height, _) = loaded["14"]
    assert (png_width, png_height) == (W, H), loaded  # the PNG preview after the JPEG XL
    page.screenshot(path=os.path.join(ui["artifacts"], f"display_formats_{renderer}.png"))
    if renderer == "classic":
        assert jxl_width == W, loaded
        assert not ours(errors), ours(errors)
    else:
        assert jxl_width == 0, loaded
        # each time a grid asks for a JPEG XL's thumbnail: this one's, and, arriving after the
        # errors were cleared, the previous test's (the node of the same id shows its old outputs
        # until the new ones arrive; seen in a clean CI run)
        failed = ours(errors)
        thumbnail = re.compile(r"status of 500 .*[?&]filename=jxl_linear_\w+\.jxl&.*preview=webp")
        assert [e for e in failed if f"filename={jxl}&" in e], failed
        assert all(thumbnail.search(e) for e in failed), failed
