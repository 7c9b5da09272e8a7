"""Save EXR's output opened in the real ComfyUI frontend's HDR viewer, in headless Chromium.

A graph (Load EXR -> Save EXR) is loaded and queued by the frontend. The frontend picks its HDR
viewer by file name (.exr/.hdr) in the node image preview of its Vue node renderer, so the test
turns that renderer on (the user setting ``Comfy.VueNodes.Enabled``), clicks the EXR tile of the
Save EXR node as a user does, and checks that the viewer decodes the file (three.js's EXRLoader):
the resolution and min/max/mean it reports are those of the known input, and the WebGL canvas
shows the known colours (sRGB-encoded by the viewer's shader at exposure 0, and at -3 stops, where
the HDR patch is no longer clipped by the display). WebGL runs on Chromium's software renderer
(SwiftShader). Screenshots (the node; the viewer at exposure 0 and -3) go to test-artifacts/browser/."""

from __future__ import annotations

import io
import os
import urllib.request

import numpy as np
import OpenEXR
import pytest
import torch
from comfy_server import ComfyServer, frontend_page, get_json
from PIL import Image

from lediff_core.color import linear_to_srgb
from lediff_testing import REPO

ARTIFACTS = os.path.join(REPO, "test-artifacts", "browser")
W, H = 96, 48
# two flat patches, exactly representable in half and float: SDR on the left, HDR (> 1) on the right
LEFT, RIGHT = (0.25, 0.5, 1.0), (6.0, 3.0, 1.5)
# WebGL without a GPU: Chromium's software rasteriser, which it only enables when asked
WEBGL_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def api_graph():
    return {"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "patches.exr", "layer": ""}},
            "2": {"class_type": "LEDiffSaveEXR",
                  "inputs": {"images": ["1", 0], "filename_prefix": "LEDiff/viewer", "precision": "half",
                             "compression": "zip", "input_encoding": "linear", "envmap": "none"}}}


@pytest.fixture(scope="module")
def frontend(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser_hdr_viewer")
    os.makedirs(base / "input")
    rgb = np.empty((H, W, 3), np.float32)
    rgb[:, : W // 2] = LEFT
    rgb[:, W // 2:] = RIGHT
    with OpenEXR.File({}, {"RGB": rgb}) as f:
        f.write(str(base / "input" / "patches.exr"))
    server = ComfyServer(base)
    # the HDR viewer is reached from the Vue node renderer's image preview: turn it on, as a user
    # does in the settings, before the page loads; a returning user (no template browser at start,
    # which would cover the canvas)
    for key in ("Comfy.VueNodes.Enabled", "Comfy.TutorialCompleted"):
        req = urllib.request.Request(f"{server.url}/settings/{key}", data=b"true",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).close()
        assert get_json(server.url + "/settings")[key] is True
    os.makedirs(ARTIFACTS, exist_ok=True)

    def local_error(m):
        # console errors from this server's pages and files; the frontend's own calls to
        # api.comfy.org (release notes) fail on a closed network and are no concern of ours
        url = m.location.get("url")
        return f"{m.text} ({url})" if m.type == "error" and local(url, server.url) else None

    try:
        with frontend_page(server, WEBGL_ARGS, local_error) as (page, errors):
            yield {"page": page, "server": server, "errors": errors}
    finally:
        server.stop()


def local(url, origin):
    return not url or not url.startswith(("http:", "https:")) or url.startswith(origin)


def test_save_exr_output_opens_in_the_frontends_hdr_viewer(frontend):
    page, server, errors = frontend["page"], frontend["server"], frontend["errors"]
    assert page.evaluate("() => app.extensionManager.setting.get('Comfy.VueNodes.Enabled')") is True
    page.evaluate("(g) => app.loadApiJson(g, 'hdr_viewer')", api_graph())
    page.wait_for_timeout(500)
    errors.clear()
    entry = server.queue_in_page(page, timeout=120)
    assert entry["status"]["status_str"] == "success", entry["status"]
    exr = entry["outputs"]["2"]["images"][0]
    assert exr["filename"] == "viewer_00001.exr", exr

    # the Save EXR node's preview lists the EXR as an "HDR image" tile (no <img>: the browser cannot
    # decode EXR); clicking it opens the viewer, as a user does
    grid = page.locator('[data-node-id="2"] [data-testid="image-grid"]')
    grid.wait_for(state="visible", timeout=30000)
    tile = grid.locator("button").filter(has_not=page.locator("img"))
    assert tile.count() == 1, grid.inner_html()
    page.locator('[data-node-id="2"]').screenshot(path=os.path.join(ARTIFACTS, "hdr_viewer_node.png"))
    tile.click(timeout=10000)

    dialog = page.get_by_role("dialog")
    canvas = dialog.locator('[data-testid="hdr-viewer-canvas"] canvas')
    canvas.wait_for(state="visible", timeout=30000)
    sidebar = dialog.locator('[data-testid="hdr-viewer-sidebar"]')
    # statistics appear once EXRLoader has decoded the file (they are computed from its pixels)
    sidebar.get_by_text(f"{W} x {H}").wait_for(timeout=30000)
    assert exr["filename"] in dialog.inner_text()
    assert dialog.get_by_role("alert").count() == 0, dialog.inner_text()
    text = sidebar.inner_text()
    values = np.array([LEFT, RIGHT], np.float64)
    for expected in (values.min(), values.max(), values.mean()):
        assert f"{expected:.4f}" in text, (expected, text)
    box = canvas.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100, box

    page.wait_for_timeout(500)  # the viewer renders on the next animation frame
    page.screenshot(path=os.path.join(ARTIFACTS, "hdr_viewer.png"))
    check_patches(canvas, 0.0)
    # three stops down, the HDR patch is no longer clipped by the display: the file kept its values
    dialog.get_by_label("Exposure").fill("-3")
    sidebar.get_by_text("-3.0").wait_for(timeout=10000)
    page.wait_for_timeout(500)
    page.screenshot(path=os.path.join(ARTIFACTS, "hdr_viewer_minus3.png"))
    check_patches(canvas, -3.0)
    assert not errors, errors


def check_patches(canvas, stops):
    """The middle of each patch on the viewer's canvas has the colour the viewer's shader gives
    the known pixel values: linear * 2^stops, sRGB-encoded, clipped to the display's 0..1."""
    shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB"), np.float64)
    # the image is fitted to the canvas and centred
    ch, cw = shot.shape[:2]
    drawn_w = min(cw, ch * W / H)
    for patch, centre_x in ((LEFT, cw / 2 - drawn_w / 4), (RIGHT, cw / 2 + drawn_w / 4)):
        y, x = int(ch / 2), int(centre_x)
        got = shot[y - 3:y + 4, x - 3:x + 4].reshape(-1, 3).mean(0)
        linear = torch.tensor(patch, dtype=torch.float64) * 2.0 ** stops
        want = 255 * linear_to_srgb(linear).clamp(0, 1).numpy()
        assert np.abs(got - want).max() <= 3, (stops, patch, got, want)
