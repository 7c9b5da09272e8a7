"""The example workflows in the real ComfyUI frontend, in headless Chromium (Debian's, driven by
Playwright; no browser download): each file loads with no missing nodes, the frontend's own Export
of it has nulls exactly where the file has them, the frontend's own conversion to API format equals
ours and comfy-test's, it queues without validation errors, and its EXR appears. Each frontend
(ComfyUI's pinned one and the newest, see frontends.py) runs every workflow in its classic canvas,
the default of pip installs. Screenshots are saved under test-artifacts/browser/FRONTEND/."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from frontends import open_frontend, use_renderer
from test_workflows import (
    WORKFLOWS,
    graph_of,
    independent_api,
    load_workflow,
    main_exr,
    null_fields,
    scale_down,
    write_inputs,
)

from lediff_runner.workflow import input_types_from_object_info, to_api
from lediff_testing import REPO

ARTIFACTS = os.path.join(REPO, "test-artifacts", "browser")
pytest_plugins = ["browser_fixtures"]

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
    page.evaluate("async (wf) => await app.loadGraphData(wf)", workflow)
    page.wait_for_function("(n) => app.graph._nodes.length === n", arg=len(workflow["nodes"]))
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

    page.evaluate(SCALE_DOWN_JS)
    entry = server.queue_in_page(page)
    assert entry["status"]["status_str"] == "success", entry["status"]
    exr = Path(main_exr(base / "output", name))
    assert exr.is_file() and exr.stat().st_size > 1000
    page.screenshot(path=os.path.join(ui["artifacts"], f"{name}.png"))
    shutil.copy(exr, os.path.join(ui["artifacts"], f"{name}.exr"))
