"""Save EXR's output in the real ComfyUI frontend's HDR viewer, in headless Chromium, in each
frontend (ComfyUI's pinned one and the newest; see support/frontends.py).

A graph (Load EXR -> Save EXR) is loaded and queued by the frontend. Save EXR lists the EXR and,
after it, a small tone-mapped PNG preview (a temp file). What each frontend shows:

- Nodes 2.0 (the Vue node renderer, the user setting ``Comfy.VueNodes.Enabled``), both versions:
  the node's image grid shows the EXR as an "HDR image" tile (the frontend picks its HDR viewer by
  file name, .exr/.hdr) beside the PNG preview's thumbnail; clicking the tile opens the viewer.
  Load EXR's preview of its input file is an "Open in HDR Viewer" button;
- the classic canvas, both versions: the node draws the PNG preview only; it has no HDR viewer;
- 1.58: the job queue's "View" on the job opens the viewer (and the assets panel, the job's
  asset selected); the assets panel lists the EXR as an "other" asset (a placeholder icon, no
  thumbnail) whose "See more outputs" holds the EXR and the PNG preview, and its "Inspect asset"
  opens the viewer. (1.47 has both panels but opens no HDR viewer from them.)

Wherever it opens, the test checks that the viewer decodes the file (three.js's EXRLoader): the
resolution and min/max/mean/std dev it reports are those of the known input, and the WebGL canvas
shows the known colours (sRGB-encoded by the viewer's shader at exposure 0, and at -3 stops, where
the HDR patch is no longer clipped by the display). WebGL runs on Chromium's software renderer
(SwiftShader). Screenshots go to test-artifacts/browser/FRONTEND/."""

from __future__ import annotations

import io
import os
import re
import time

import numpy as np
import OpenEXR
import pytest
import torch
from PIL import Image
from playwright.sync_api import expect

from lediff_core.color import linear_to_srgb
from support.frontends import ARTIFACTS, FRONTENDS, load_api_graph, open_frontend, wait_for_previews

W, H = 96, 48
# two flat patches, exactly representable in half and float: SDR on the left, HDR (> 1) on the right
LEFT, RIGHT = (0.25, 0.5, 1.0), (6.0, 3.0, 1.5)
# WebGL without a GPU: Chromium's software rasteriser, which it only enables when asked
WEBGL_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
# the frontends whose job queue and assets panel open an EXR in the HDR viewer
PANEL_FRONTENDS = [f for f in FRONTENDS if f.hdr_viewer_from_panels]


def api_graph(prefix):
    return {"1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "patches.exr", "layer": ""}},
            "2": {"class_type": "LEDiffSaveEXR",
                  "inputs": {"images": ["1", 0], "filename_prefix": f"LEDiff/{prefix}", "precision": "half",
                             "compression": "zip", "input_encoding": "linear", "envmap": "none"}}}


@pytest.fixture(scope="module")
def ui(browser_server, frontend):
    rgb = np.empty((H, W, 3), np.float32)
    rgb[:, : W // 2] = LEFT
    rgb[:, W // 2:] = RIGHT
    with OpenEXR.File({}, {"RGB": rgb}) as f:
        f.write(os.path.join(browser_server.base, "input", "patches.exr"))
    artifacts = os.path.join(ARTIFACTS, frontend.id)
    os.makedirs(artifacts, exist_ok=True)

    def local_error(m):
        # console errors from this server's pages and files; the frontend's own calls to
        # api.comfy.org (release notes) fail on a closed network and are no concern of ours
        url = m.location.get("url")
        return f"{m.text} ({url})" if m.type == "error" and local(url, browser_server.url) else None

    with open_frontend(browser_server, frontend, WEBGL_ARGS, local_error) as (page, errors):
        yield {"page": page, "server": browser_server, "errors": errors, "artifacts": artifacts}


def local(url, origin):
    return not url or not url.startswith(("http:", "https:")) or url.startswith(origin)


def run_save_exr(ui, prefix, renderer) -> dict:
    """Load the graph in ``renderer``, queue it from the frontend; the EXR's output entry."""
    page, server = ui["page"], ui["server"]
    load_api_graph(page, api_graph(prefix), prefix, renderer)
    ui["errors"].clear()
    entry = server.queue_in_page(page, timeout=120)
    assert entry["status"]["status_str"] == "success", entry["status"]
    exr, preview = entry["outputs"]["2"]["images"]
    assert exr == {"filename": f"{prefix}_00001.exr", "subfolder": "LEDiff", "type": "output"}, exr
    assert preview["type"] == "temp" and preview["filename"].endswith(".png"), preview
    return entry["outputs"]["2"]["images"]


def test_node_preview_opens_the_hdr_viewer(ui):
    """Nodes 2.0: the Save EXR node's "HDR image" tile opens the viewer, which decodes the EXR."""
    page = ui["page"]
    exr, preview = run_save_exr(ui, "viewer_node", "nodes2")
    [(_, width, _, _)] = wait_for_previews(page, "nodes2", {"2": [preview["filename"]]})["2"]
    assert width > 0
    node = page.locator('[data-node-id="2"]')
    # one tile per listed file: the EXR as an "HDR image" placeholder (no <img>: the browser cannot
    # decode EXR), the PNG preview as a thumbnail
    tiles = node.get_by_role("button", name=re.compile(r"^View image \d+ of 2$"))
    hdr_tile = tiles.filter(has_text="HDR image")
    hdr_tile.wait_for(state="visible", timeout=30000)
    assert hdr_tile.count() == 1 and hdr_tile.get_by_role("img").count() == 0, node.inner_html()
    thumbnail = tiles.get_by_role("img", name=re.compile(r"^Gallery thumbnail \d+$"))
    assert thumbnail.count() == 1, node.inner_html()
    node.screenshot(path=os.path.join(ui["artifacts"], "hdr_viewer_node.png"))
    hdr_tile.click(timeout=10000)
    check_hdr_viewer(ui, exr["filename"], "hdr_viewer")


def test_load_exr_input_preview_opens_the_hdr_viewer(ui):
    """Nodes 2.0: Load EXR's own preview of its input file (the upload widget's image preview) is
    an "Open in HDR Viewer" button; the viewer decodes the input EXR."""
    page = ui["page"]
    load_api_graph(page, api_graph("viewer_input"), "viewer_input", "nodes2")
    ui["errors"].clear()
    preview = page.locator('[data-node-id="1"]').get_by_role("region", name=re.compile(r"^Image preview"))
    preview.get_by_role("button", name=re.compile(r"Open in HDR Viewer$")).click(timeout=30000)
    check_hdr_viewer(ui, "patches.exr", "hdr_viewer_input")


def test_classic_canvas_draws_the_tone_mapped_preview(ui):
    """The classic canvas draws the PNG preview that Save EXR lists after the EXR (the EXR itself
    is not drawn: no browser decodes it), at its own size; there is no HDR viewer there."""
    page, server = ui["page"], ui["server"]
    _, preview = run_save_exr(ui, "viewer_classic", "classic")
    shown = wait_for_previews(page, "classic", {"2": [preview["filename"]]})["2"]
    with Image.open(os.path.join(server.base, "temp", preview["filename"])) as png:
        size = png.size
    assert shown == [[True, *size, preview["filename"]]]
    assert page.get_by_role("button", name=re.compile("HDR image")).count() == 0
    assert not ui["errors"], ui["errors"]


@pytest.mark.parametrize("layout", ["floating", "docked"])
@pytest.mark.parametrize("frontend", PANEL_FRONTENDS, ids=[f.id for f in PANEL_FRONTENDS], indirect=True)
def test_job_queue_opens_the_hdr_viewer(ui, layout):
    """1.58: the finished job's "View" in the job queue opens the EXR (the job's preview output:
    its last output-type file) in the viewer; in both layouts of the setting "Docked job
    history/queue panel" (``Comfy.Queue.QPOV2``, off by default): the floating job queue, which
    also opens the assets panel with the job's asset selected, and the "Job History" sidebar."""
    page = ui["page"]
    page.evaluate("async (on) => await app.extensionManager.setting.set('Comfy.Queue.QPOV2', on)", layout == "docked")
    exr, _ = run_save_exr(ui, f"viewer_{layout}", "classic")
    sidebar = page.get_by_role("complementary", name="Sidebar")
    if layout == "floating":
        page.get_by_role("button", name="Expand job queue").click()
        jobs = page.get_by_role("region", name="Jobs")
    else:
        page.get_by_role("navigation").get_by_role("button", name=re.compile(r"^Job History\b")).click()
        jobs = sidebar.get_by_role("region", name="Jobs")
    jobs.get_by_title(exr["filename"], exact=True).hover()  # a job's actions appear on hover
    jobs.get_by_role("button", name="View", exact=True).click(timeout=10000)
    check_hdr_viewer(ui, exr["filename"], f"hdr_viewer_{layout}")
    if layout == "floating":
        sidebar.get_by_role("button", name=f"{exr['filename']} - other asset", pressed=True).wait_for(timeout=10000)
        page.get_by_role("button", name="Expand job queue").click()  # collapse the job queue again
        jobs.wait_for(state="hidden", timeout=10000)
    close_sidebar(page)
    page.evaluate("async () => await app.extensionManager.setting.set('Comfy.Queue.QPOV2', false)")


@pytest.mark.parametrize("frontend", PANEL_FRONTENDS, ids=[f.id for f in PANEL_FRONTENDS], indirect=True)
def test_assets_panel_lists_the_exr_and_opens_the_hdr_viewer(ui):
    """1.58: the assets panel lists the job as its EXR, an "other" asset (not an image: no
    thumbnail), labelled EXR, with two outputs (the EXR and the PNG preview, which is an image
    asset with its thumbnail); "Inspect asset" in its context menu opens the EXR in the viewer."""
    page = ui["page"]
    exr, preview = run_save_exr(ui, "viewer_assets", "classic")
    stem = exr["filename"].removesuffix(".exr")
    sidebar = page.get_by_role("complementary", name="Sidebar")
    if not sidebar.is_visible():
        page.get_by_role("navigation").get_by_role("button", name=re.compile(r"^Assets\b")).click()
    generated = sidebar.get_by_role("tabpanel", name="Generated")
    selector = page.get_by_role("button", name=f"{exr['filename']} - other asset", exact=True)
    generated.locator(selector).wait_for(timeout=30000)
    card = generated.locator("[data-asset-id]").filter(has=selector)
    assert card.count() == 1, generated.inner_html()
    # a placeholder icon, no thumbnail (the card may first try an <img> of the EXR, which the browser
    # cannot decode, and then fall back to the icon: wait for that)
    expect(card.get_by_role("img")).to_have_count(0, timeout=10000)
    assert card.get_by_text("EXR", exact=True).is_visible()
    assert card.get_by_role("button", name="See more outputs").inner_text().strip() == "2"
    page.screenshot(path=os.path.join(ui["artifacts"], "hdr_assets_panel.png"))

    card.get_by_text(stem, exact=True).click(button="right")
    page.get_by_role("menu").get_by_role("menuitem", name="Inspect asset").click()
    check_hdr_viewer(ui, exr["filename"], "hdr_viewer_assets")

    # the job's outputs: the EXR, and the PNG preview with its thumbnail
    card.get_by_role("button", name="See more outputs").click()
    sidebar.get_by_role("button", name=f"{exr['filename']} - other asset", exact=True).wait_for(timeout=10000)
    sidebar.get_by_role("button", name=f"{preview['filename']} - image asset", exact=True).wait_for()
    thumbnail = sidebar.get_by_role("img", name=preview["filename"], exact=True)
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle())
    sidebar.get_by_role("button", name="Back to all assets").click()
    close_sidebar(page)
    assert not ui["errors"], ui["errors"]


def close_sidebar(page):
    sidebar = page.get_by_role("complementary", name="Sidebar")
    sidebar.get_by_role("button", name="Close sidebar").click()
    sidebar.wait_for(state="hidden", timeout=10000)


def check_hdr_viewer(ui, filename, shot):
    """The HDR viewer dialog for ``filename`` decodes it: statistics and canvas colours; then it
    is closed again."""
    page = ui["page"]
    dialog = page.get_by_role("dialog", name=filename)
    canvas = dialog.locator("canvas")
    canvas.wait_for(state="visible", timeout=30000)
    # the statistics appear once EXRLoader has decoded the file (they are computed from its pixels)
    dialog.get_by_text("Resolution", exact=True).wait_for(timeout=30000)
    assert dialog.get_by_role("alert").count() == 0, dialog.inner_text()
    stats = viewer_statistics(dialog.inner_text())
    values = np.repeat(np.array([LEFT, RIGHT], np.float64), W * H // 2, axis=0)
    assert stats["resolution"] == (W, H), stats
    for name, expected in (("min", values.min()), ("max", values.max()), ("mean", values.mean()),
                           ("std dev", values.std())):
        assert stats[name] == pytest.approx(expected, abs=1e-4), (name, stats)
    box = canvas.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100, box

    wait_for_patches(canvas, 0.0)
    page.screenshot(path=os.path.join(ui["artifacts"], f"{shot}.png"))
    # three stops down, the HDR patch is no longer clipped by the display: the file kept its values
    dialog.get_by_label("Exposure").fill("-3")
    dialog.get_by_text("Exposure: -3.0").wait_for(timeout=10000)
    wait_for_patches(canvas, -3.0)
    page.screenshot(path=os.path.join(ui["artifacts"], f"{shot}_minus3.png"))
    dialog.get_by_role("button", name="Close", exact=True).click()
    dialog.wait_for(state="hidden", timeout=10000)
    assert not ui["errors"], ui["errors"]


def viewer_statistics(text: str) -> dict:
    """The numbers of the viewer's statistics panel ("Resolution 96 x 48", "Min 0.2500", ...)."""
    found = {"resolution": tuple(int(x) for x in re.search(r"Resolution\s+(\d+) x (\d+)", text).groups())}
    for name in ("Min", "Max", "Mean", "Std dev"):
        match = re.search(rf"^{name}\s+(-?\d+(?:\.\d+)?)\s*$", text, re.MULTILINE)
        assert match, (name, text)
        found[name.lower()] = float(match.group(1))
    return found


def wait_for_patches(canvas, stops, timeout=15):
    """Waits until the viewer has drawn the frame for ``stops`` (it renders on an animation frame):
    the middle of each patch on its canvas has the colour the viewer's shader gives the known pixel
    values, linear * 2^stops, sRGB-encoded, clipped to the display's 0..1."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check_patches(canvas, stops)
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def check_patches(canvas, stops):
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
