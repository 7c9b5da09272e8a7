"""The example workflows in the real ComfyUI frontend, in headless Chromium (Debian's, driven by
Playwright; no browser download): each file loads with no missing nodes, the frontend's own Export
of it has nulls exactly where the file has them, the frontend's own conversion to API format equals
ours and comfy-test's, it queues without validation errors, and its EXR appears. Each frontend
(ComfyUI's pinned one and the newest, see support/frontends.py) runs every workflow in its classic canvas,
the default of pip installs. Opened as the template browser opens it (fitted to the 1600x1000
window), a workflow shows at a zoom where titles and widgets are drawn; after the run, with every
preview shown, no two nodes overlap. Screenshots (after the run, in the template browser's view) are
saved under test-artifacts/browser/FRONTEND/."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import pytest

from lediff_runner.workflow import input_types_from_object_info, to_api
from support.frontends import ARTIFACTS, open_frontend, use_renderer
from support.workflows import (
    MIN_ZOOM,
    PREVIEW_HEIGHT,
    WORKFLOWS,
    graph_of,
    independent_api,
    load_workflow,
    main_exr,
    node_boxes,
    null_fields,
    overlaps,
    scale_down,
    shows_images,
    widgets_height,
    write_inputs,
)

# the same scaling as the in-process tests, applied to the loaded graph's widgets
SCALE_DOWN_JS = """() => {
  for (const node of app.graph._nodes) {
    const w = (name) => node.widgets?.find((x) => x.name === name);
    if (node.type === "EmptyLatentImage") {
      w("width").value = 64 * w("width").value / w("height").value;
      w("height").value = 64;
    }
    if (w("steps")) w("steps").value = 2;
    if (w("tile_size") && w("tile_size").value) w("tile_size").value = 64;
  }
}"""


def declared_inputs(object_info, class_type) -> set[str]:
    spec = object_info[class_type]["input"]
    return {name for group in ("required", "optional") for name in spec.get(group, {})}


@pytest.fixture(scope="module")
def ui(browser_server, frontend, workflow_models):
    """The frontend's page on the session's server, whose model folders now hold the stand-in
    models under the workflows' file names (hard links: the pack refuses model paths that lead
    out of its model folder), and its input folder the example photo and clip."""
    base = Path(browser_server.base)
    shutil.copytree(workflow_models / "models", base / "models", copy_function=os.link, dirs_exist_ok=True)
    write_inputs(base / "input")
    artifacts = os.path.join(ARTIFACTS, frontend.id)
    os.makedirs(artifacts, exist_ok=True)
    with open_frontend(browser_server, frontend) as (page, _):
        use_renderer(page, "classic")
        yield {"page": page, "server": browser_server, "base": base, "artifacts": artifacts}


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_loads_converts_queues_and_writes_an_exr(ui, name):
    page, server, base = ui["page"], ui["server"], ui["base"]
    workflow = load_workflow(name)
    # opened as the template browser opens it: fitted to the window, whatever the saved view
    page.evaluate("async (wf) => await app.loadGraphData(wf, true, true, null, {openSource: 'template'})", workflow)
    page.wait_for_function("(n) => app.graph._nodes.length === n", arg=len(workflow["nodes"]))
    page.wait_for_timeout(500)  # the fit may wait for a frame
    zoom = page.evaluate("() => app.canvas.ds.scale")
    assert zoom >= MIN_ZOOM, f"{name} opens at zoom {zoom:.2f}: LiteGraph hides titles and widgets"
    missing = page.evaluate(
        "() => app.graph._nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type)")
    assert missing == []

    # the frontend's Export of the loaded file (JSON.stringify in the page) has the same null fields
    exported = json.loads(page.evaluate("async () => JSON.stringify((await app.graphToPrompt()).workflow)"))
    assert null_fields(exported) == null_fields(workflow)

    # the frontend's own UI -> API conversion is exactly ours, and comfy-test's
    theirs = page.evaluate("async () => (await app.graphToPrompt()).output")
    object_info = server.get("/object_info")
    ours = to_api(workflow, input_types_from_object_info(object_info))
    # the frontend also sends its Load Video's preview widget, an input no node declares and the
    # server ignores; everything the server reads must agree
    extra = {(nid, k) for nid, node in theirs.items() for k in node["inputs"]
             if k not in declared_inputs(object_info, node["class_type"])}
    assert {k for _, k in extra} <= {"video-preview"}, extra
    for nid, k in extra:
        del theirs[nid]["inputs"][k]
    assert graph_of(theirs) == graph_of(ours) == graph_of(independent_api(workflow, object_info))
    assert scale_down(json.loads(json.dumps(theirs))) != theirs  # the scaling below really changes something

    # the layout rule of tests/e2e/test_workflows.py is the frontend's: an image node's height before its images
    # (Load Image's and Load Video's show already, in a preview widget: the frontend's 220-px preview
    # is within the 512 px kept)
    object_info = server.get("/object_info")
    measured = page.evaluate("""() => Object.fromEntries(app.graph._nodes.map(
        (n) => [n.id, [n.computeSize()[1], !!n.widgets?.some((w) => w.name.includes("preview"))]]))""")
    for node in workflow["nodes"]:
        if shows_images(node, object_info):
            height, has_images = measured[str(node["id"])]
            assert height <= widgets_height(node) + PREVIEW_HEIGHT, (name, node["type"])
            assert has_images or height == widgets_height(node), (name, node["type"], height)

    page.evaluate(SCALE_DOWN_JS)
    entry = server.queue_in_page(page)
    assert entry["status"]["status_str"] == "success", entry["status"]
    exr = Path(main_exr(base / "output", name))
    assert exr.is_file() and exr.stat().st_size > 1000

    # every preview arrived (the classic canvas keeps a node's images in imgs; a video master is a
    # <video>), then every node as the frontend sizes it: no two overlap, none grew beyond the test's model
    shown = [int(k) for k, out in entry["outputs"].items() if out.get("images") and not out.get("animated")]
    page.wait_for_function("""(ids) => ids.every((id) => {
        const imgs = app.graph.getNodeById(id).imgs ?? [];
        return imgs.length && imgs.every((i) => i.complete);
    })""", arg=shown, timeout=60000)
    page.evaluate("() => app.canvas.draw(true, true)")
    page.wait_for_timeout(500)
    sizes = page.evaluate("""() => Object.fromEntries(app.graph._nodes.map((n) => {
        const [x, y, w, h] = n.boundingRect;
        return [n.id, [x, y, x + w, y + h]];
    }))""")
    grown = {str(k): v for k, v in node_boxes(workflow, object_info).items()}
    for a, b in itertools.combinations(sizes, 2):
        assert not overlaps(sizes[a], sizes[b]), (name, a, b, sizes[a], sizes[b])
    for node_id, box in sizes.items():
        assert box[3] - box[1] <= grown[node_id][3] - grown[node_id][1] + 1, (name, node_id, box, grown[node_id])
    page.screenshot(path=os.path.join(ui["artifacts"], f"{name}.png"))
    shutil.copy(exr, os.path.join(ui["artifacts"], f"{name}.exr"))
