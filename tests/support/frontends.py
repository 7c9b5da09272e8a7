"""The ComfyUI frontends the browser tests run against, and what differs between them.

- ComfyUI's pinned ``comfyui-frontend-package`` (installed in the host's venv, served by default);
- every requirement in ``tests/support/frontends.txt`` (the newest on PyPI), installed by scripts/setup.sh
  into ``.dev/frontends/VERSION`` and served with ``--front-end-root``.

Where the versions render something differently, the difference is one small helper here, keyed
by version; everything else the tests select the same way in every version (roles, accessible
names, labels, alt text).
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from importlib.metadata import version as installed_version

import pytest

from support.comfy_server import ComfyServer, console_error, frontend_page
from support.common import REPO

FRONTENDS_FILE = os.path.join(REPO, "tests", "support", "frontends.txt")
FRONTENDS_DIR = os.path.join(REPO, ".dev", "frontends")
ARTIFACTS = os.path.join(REPO, "test-artifacts", "browser")  # screenshots and traces, a folder per frontend
PACKAGE = "comfyui-frontend-package"
# the user setting behind "Modern Node Design (Nodes 2.0)": the Vue node renderer
VUE_NODES = "Comfy.VueNodes.Enabled"
RENDERERS = ("classic", "nodes2")


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version))


@dataclass(frozen=True)
class Frontend:
    version: str
    root: str | None  # the static/ folder to serve; None: the host's pinned package

    @property
    def id(self) -> str:
        # the pinned frontend is named by its minor version (its patch level follows ComfyUI's pin)
        shown = ".".join(self.version.split(".")[:2]) if self.root is None else self.version
        return f"frontend-{shown}"

    @property
    def server_args(self) -> tuple[str, ...]:
        return () if self.root is None else ("--front-end-root", self.root)

    def at_least(self, version: str) -> bool:
        return _numbers(self.version) >= _numbers(version)

    def require_installed(self):
        """Fails (never skips) when this frontend's files are missing: the set-up is broken."""
        if self.root is not None and not os.path.isfile(os.path.join(self.root, "index.html")):
            pytest.fail(f"{PACKAGE} {self.version} is not installed in {self.root}: run scripts/setup.sh")

    # --- what differs between versions -------------------------------------------------------------

    @property
    def hdr_viewer_from_panels(self) -> bool:
        """The job queue's "View" and the assets panel's "Inspect asset" open an EXR in the HDR
        viewer (1.58). 1.47 has both panels, but its queue "View" opens the image lightbox, where
        the EXR fails to load, and its assets menu offers no "Inspect asset" for an EXR."""
        return self.at_least("1.58")


def _extra_versions() -> list[str]:
    with open(FRONTENDS_FILE) as f:
        lines = [line.split("#")[0].strip() for line in f]
    return [re.match(rf"{PACKAGE}==(\S+)", line).group(1) for line in lines if line]


PINNED = Frontend(installed_version(PACKAGE), None)
FRONTENDS = [PINNED] + [
    Frontend(v, os.path.join(FRONTENDS_DIR, v, "comfyui_frontend_package", "static")) for v in _extra_versions()]
FRONTEND_IDS = [f.id for f in FRONTENDS]


def use_renderer(page, renderer: str):
    """Switch the node renderer in a loaded page as the user setting does (it applies at once)."""
    assert renderer in RENDERERS, renderer
    page.evaluate("async ([key, on]) => await app.extensionManager.setting.set(key, on)",
                  [VUE_NODES, renderer == "nodes2"])


def load_api_graph(page, graph: dict, name: str, renderer: str):
    """Load an API-format graph in ``renderer`` and wait until every node is on the page: as a
    Vue component (Nodes 2.0) or in the classic canvas' graph, with no Vue nodes."""
    use_renderer(page, renderer)
    page.evaluate("([g, name]) => app.loadApiJson(g, name)", [graph, name])
    ids = sorted(graph)
    if renderer == "nodes2":
        for node_id in ids:
            page.locator(f'[data-node-id="{node_id}"]').wait_for(state="visible", timeout=30000)
    else:
        page.wait_for_function("""(ids) => ids.every((id) => app.graph.getNodeById(id))
                                  && !document.querySelector('[data-node-id]')""", arg=ids, timeout=30000)


def node_previews(renderer: str) -> str:
    """A page function of a node id: the images its preview shows in ``renderer``, each as
    ``[finished (loaded or failed), naturalWidth, naturalHeight, file name]``. The classic canvas
    keeps them in the node's ``imgs``; Nodes 2.0 shows them as <img> in the node's image grid (alt
    "Gallery thumbnail N") or gallery (alt "View image N of M")."""
    assert renderer in RENDERERS, renderer
    if renderer == "classic":
        images = "(app.graph.getNodeById(id).imgs ?? [])"
    else:
        images = """[...document.querySelectorAll(`[data-node-id="${id}"] img`)]
                        .filter((i) => /^(Gallery thumbnail|View image) \\d/.test(i.alt))"""
    return f"""(id) => {images}.map((i) => [i.complete, i.naturalWidth, i.naturalHeight,
                                         new URL(i.src, location.href).searchParams.get("filename")])"""


def wait_for_previews(page, renderer: str, files: dict[str, list[str]], timeout=60000) -> dict:
    """Waits until each node (id: the file names it should show, in order) shows exactly these
    files in its preview in ``renderer``, each finished loading (or failing), and returns them
    (see ``node_previews``). Waiting for the names matters: a node that replaces one of the same id
    shows the old node's outputs until the new ones arrive."""
    previews = node_previews(renderer)
    page.wait_for_function(f"""(files) => Object.entries(files).every(([id, names]) => {{
        const imgs = ({previews})(id);
        return imgs.every(([done]) => done) && JSON.stringify(imgs.map((i) => i[3])) === JSON.stringify(names);
    }})""", arg=files, timeout=timeout)
    return {node_id: page.evaluate(previews, node_id) for node_id in files}


@contextlib.contextmanager
def open_frontend(server: ComfyServer, frontend: Frontend, extra_args=(), console_errors=console_error):
    """``frontend_page`` on ``server``, asserting that the page runs ``frontend``'s version."""
    with frontend_page(server, extra_args, console_errors) as (page, errors):
        served = page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__")
        assert served == frontend.version, f"{server.url} serves frontend {served}, not {frontend.version}"
        yield page, errors
