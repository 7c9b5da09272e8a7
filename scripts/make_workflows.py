"""Build workflows/*.json and their .jpg thumbnails in the real ComfyUI frontend.

    PYTHONPATH=.:tests .dev/venv/bin/python scripts/make_workflows.py [NAME ...]

Starts the development host's server with this pack, opens its frontend in Debian's Chromium
(Playwright, no browser download), builds each spec of scripts/workflow_specs.py node by node with
the frontend's own API, and saves what the frontend's Export writes: the workflow of
``app.graphToPrompt()`` stringified by the page's own ``JSON.stringify(workflow, null, 2)``. The text
is written as the page made it: handing the object to Python instead would turn every ``undefined``
field into ``null`` (hundreds of them, which third-party readers reject), where JSON.stringify drops
them. Each node is measured in the frontend and placed by the spec's layout (stage groups, previews
reserved; see workflow_specs.py), and the saved view is the frontend's own fit of the graph into a
1600x1000 window. A screenshot of the graph is the thumbnail. Existing files are replaced (these are sources we
maintain).
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from workflow_specs import NODE_WIDTH, NOTE_SIZE, PREVIEW_HEIGHT, WORKFLOWS  # noqa: E402

from support.comfy_server import CHROMIUM, CHROMIUM_ARGS, ComfyServer  # noqa: E402

BUILD_JS = """
async (spec) => {
  const graph = app.graph;
  graph.clear();
  const made = {};
  for (const [id, type, widgets, title] of spec.nodes) {
    const node = LiteGraph.createNode(type);
    if (!node) throw new Error(`no node type ${type}`);
    graph.add(node);
    if (title) node.title = title;
    for (const [name, value] of Object.entries(widgets)) {
      const widget = type === "Note" ? node.widgets[0] : node.widgets?.find((w) => w.name === name);
      if (!widget) throw new Error(`${type} has no widget ${name}`);
      widget.value = value;
    }
    // as small as the frontend allows, and a node that shows images (an output node, Load Image,
    // Load Video) as tall as its widgets plus the preview: previews that arrive cover nothing
    const [w, h] = node.computeSize();
    const shows = node.constructor.nodeData?.output_node || spec.showsMedia.includes(type);
    node.size = type === "Note" ? [...spec.noteSize] : [Math.max(spec.width, w), h + (shows ? spec.preview : 0)];
    made[id] = node;
  }
  for (const [src, out, dst, inp] of spec.links) {
    const s = made[src], d = made[dst];
    // an output by name, or by type (core loaders name their outputs after the type)
    let o = s.findOutputSlot(out);
    if (o < 0) o = s.outputs.findIndex((slot) => slot.type === out);
    const i = d.findInputSlot(inp);
    if (o < 0 || i < 0) throw new Error(`bad link ${src}.${out} -> ${dst}.${inp}`);
    s.connect(o, d, i);
  }
  // stacks left to right, each a list of rows top to bottom, each a list of groups left to right,
  // each group's columns left to right, each column's nodes top to bottom (title bars included)
  const g = spec.gaps, T = LiteGraph.NODE_TITLE_HEIGHT;
  let x = 0;
  for (const stack of spec.layout) {
    let y = 0, stackWidth = 0;
    for (const row of stack) {
      let gx = x, rowHeight = 0;
      for (const [title, columns] of row) {
        const widths = columns.map((c) => Math.max(...c.map((id) => made[id].size[0])));
        const heights = columns.map((c) => c.reduce((sum, id) => sum + T + made[id].size[1], 0)
                                           + g.node * (c.length - 1));
        const width = widths.reduce((a, b) => a + b) + g.column * (columns.length - 1) + 2 * g.pad;
        const height = g.head + Math.max(...heights) + g.pad;
        let cx = gx + g.pad;
        columns.forEach((column, i) => {
          let cy = y + g.head;
          for (const id of column) {
            made[id].pos = [cx, cy + T];
            cy += T + made[id].size[1] + g.node;
          }
          cx += widths[i] + g.column;
        });
        const group = new LGraphGroup(title);
        group.pos = [gx, y];
        group.size = [width, height];
        graph.add(group);
        gx += width + g.group;
        rowHeight = Math.max(rowHeight, height);
      }
      stackWidth = Math.max(stackWidth, gx - g.group - x);
      y += rowHeight + g.group;
    }
    x += stackWidth + g.group;
  }
  // the saved view: the frontend's fit (0.75 of the scale that fills the window) in spec.window
  const x1 = Math.max(...graph._groups.map((gr) => gr.pos[0] + gr.size[0]));
  const y1 = Math.max(...graph._groups.map((gr) => gr.pos[1] + gr.size[1]));
  const [vw, vh] = spec.window, scale = 0.75 * Math.min(vw / x1, vh / y1);
  app.canvas.ds.scale = scale;
  app.canvas.ds.offset = [(vw / scale - x1) / 2, (vh / scale - y1) / 2];
  graph.setDirtyCanvas(true, true);
  // the frontend's Export: graphToPrompt's workflow, JSON.stringify(workflow, null, 2)
  return JSON.stringify((await app.graphToPrompt()).workflow, null, 2);
}
"""

# what BUILD_JS needs besides the graph: node sizes, gaps between nodes (room for the node source
# badge the frontend draws above a title), columns and groups (a group's head leaves its title clear
# of the first node's title bar), and the window the saved view fits
SHOWS_MEDIA = ("LoadImage", "LoadVideo")  # input nodes that show their image or clip
GAPS = {"node": 20, "column": 15, "pad": 10, "head": 40, "group": 20}
WINDOW = (1600, 1000)


# the part of the page that shows the canvas (left of it: the sidebar; above: the tab bar and menu)
VIEW = {"x": 70, "y": 100, "width": 2900, "height": 1580}


def fit_view(page) -> dict:
    """Scale and scroll the canvas so that every group fits in VIEW; returns the graph's screen box."""
    return page.evaluate("""(view) => {
        const groups = app.graph._groups;  // they hold every node
        const x0 = Math.min(...groups.map(g => g.pos[0])), y0 = Math.min(...groups.map(g => g.pos[1]));
        const x1 = Math.max(...groups.map(g => g.pos[0] + g.size[0]));
        const y1 = Math.max(...groups.map(g => g.pos[1] + g.size[1]));
        const ds = app.canvas.ds, ratio = window.devicePixelRatio || 1;
        ds.scale = Math.min((view.width - 40) / (x1 - x0), (view.height - 40) / (y1 - y0));
        ds.offset = [(view.x + 20) / ds.scale - x0, (view.y + 20) / ds.scale - y0];
        app.canvas.setDirty(true, true);
        return {x: view.x, y: view.y, width: Math.ceil((x1 - x0) * ds.scale) + 40,
                height: Math.ceil((y1 - y0) * ds.scale) + 40};
    }""", VIEW)


def stand_ins(base):
    """Empty files under the documented names, so the frontend shows no missing models."""
    from PIL import Image
    from workflow_specs import (
        CHECKPOINT,
        CLIP,
        DEPTH,
        HIGHLIGHT,
        PHOTO,
        SDXL_CHECKPOINT,
        SDXL_HIGHLIGHT,
        SDXL_SHADOW,
        SHADOW,
    )

    from support.clips import synthetic_pan, write_clip
    from support.graphs import write_depth_map

    os.makedirs(os.path.join(base, "models", "checkpoints"), exist_ok=True)
    for name in (CHECKPOINT, SDXL_CHECKPOINT):
        open(os.path.join(base, "models", "checkpoints", name), "wb").close()
    for name in (HIGHLIGHT, SHADOW, SDXL_HIGHLIGHT, SDXL_SHADOW):
        os.makedirs(os.path.join(base, "models", "lediff", name, "unet"), exist_ok=True)
    os.makedirs(os.path.join(base, "input"), exist_ok=True)
    # a returning user: no template browser opening over the graph, no minimap in the thumbnails
    os.makedirs(os.path.join(base, "user", "default"), exist_ok=True)
    with open(os.path.join(base, "user", "default", "comfy.settings.json"), "w") as f:
        json.dump({"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}, f)
    Image.new("RGB", (64, 64), (120, 140, 160)).save(os.path.join(base, "input", PHOTO))
    write_clip(os.path.join(base, "input", CLIP), synthetic_pan(frames=4)[1])
    write_depth_map(os.path.join(base, "input"), DEPTH, size=(64, 64))


def open_frontend(browser, url):
    page = browser.new_page(viewport={"width": 3000, "height": 1700})
    page.goto(url, wait_until="networkidle", timeout=120000)
    page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=120000)
    page.wait_for_timeout(1000)
    close_dialogs(page)
    return page


def close_dialogs(page):
    """Close whatever dialog is open (the template browser, a missing-models notice): thumbnails
    must show the graph."""
    for _ in range(10):
        if not page.locator(".p-dialog").count():
            return
        page.keyboard.press("Escape")
        page.wait_for_timeout(500)
    raise RuntimeError("a dialog stays open over the graph")


def main(names):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    out_dir = os.path.join(ROOT, "workflows")
    base = tempfile.mkdtemp(prefix="lediff_workflows_")
    stand_ins(base)
    server = ComfyServer(base)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for name in names or WORKFLOWS:
                # a fresh page per workflow: the frontend keeps widget values by node id and widget
                # name across graph.clear(), so a node could inherit a value from the previous graph
                page = open_frontend(browser, server.url)
                nodes, links, layout = WORKFLOWS[name]()
                text = page.evaluate(BUILD_JS, {"nodes": nodes, "links": links, "layout": layout, "width": NODE_WIDTH,
                                                "noteSize": NOTE_SIZE, "preview": PREVIEW_HEIGHT,
                                                "showsMedia": SHOWS_MEDIA, "gaps": GAPS, "window": WINDOW})
                workflow = json.loads(text)
                path = os.path.join(out_dir, f"{name}.json")
                with open(path + ".tmp", "w") as f:
                    f.write(text + "\n")
                os.replace(path + ".tmp", path)
                close_dialogs(page)
                box = fit_view(page)
                page.wait_for_timeout(800)
                # the frontend's error panel ("N errors found") must not be in the thumbnail
                errors = page.evaluate("() => document.body.innerText.match(/\\d+ errors? found.*/)?.[0]")
                if errors:
                    raise RuntimeError(f"{name}: the frontend reports {errors!r}")
                png = page.screenshot(clip=box)
                image = Image.open(io.BytesIO(png)).convert("RGB")
                image.thumbnail((960, 600))
                image.save(os.path.join(out_dir, f"{name}.jpg"), quality=85)
                page.close()
                print(name, len(workflow["nodes"]), "nodes")
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
