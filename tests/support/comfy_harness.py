"""The tests' ComfyUI: lediff_runner's embedded host (a genuine ComfyUI in this process, ComfyUI's
own validation and executor, the same ``run_graph`` as the batch runner) with a fresh uncached
executor per graph, so each graph runs in full; the only stand-in is the websocket server object
the executor reports progress to. Adds what tests need on top: per-test folders, node classes and
the pack's modules as ComfyUI imported them.
"""

from __future__ import annotations

import importlib
import os

import pytest

from lediff_runner.host import REPO, EmbeddedComfyUI, GraphError, validate_graph

__all__ = ["COMFY_ROOT", "ComfyHost", "GraphError"]

COMFY_ROOT = os.environ.get("LEDIFF_COMFYUI", os.path.join(REPO, ".dev", "ComfyUI"))


class ComfyHost(EmbeddedComfyUI):
    @classmethod
    def start(cls) -> ComfyHost:
        if not os.path.isfile(os.path.join(COMFY_ROOT, "main.py")):
            raise RuntimeError(f"no ComfyUI at {COMFY_ROOT}: run scripts/setup.sh first")
        # the pack is loaded from this checkout, whatever the host's custom_nodes/ holds
        return cls(COMFY_ROOT, cpu=True, custom_nodes=False, cached=False)

    def use_folders(self, root) -> None:
        """Fresh input/, output/ and temp/ folders under ``root`` for one test."""
        folders = [os.path.join(root, d) for d in ("input", "output", "temp")]
        for d in folders:
            os.makedirs(d, exist_ok=True)
        self.set_folders(*folders)

    def node_class(self, node_id: str):
        return self.node_classes[node_id]

    @property
    def pack_package(self) -> str:
        """The name ComfyUI imported the pack under (its folder's absolute path, dotted)."""
        return self.node_class("LEDiffSaveEXR").__module__.rsplit(".nodes.", 1)[0]

    def pack_module(self, name: str):
        """A module of the pack as ComfyUI imported it (e.g. 'nodes.model.brackets')."""
        return importlib.import_module(f"{self.pack_package}.{name}")

    def validate(self, prompt: dict):
        return validate_graph(self.execution, prompt)


def pack_nodes(host, leave_out=()) -> dict:
    """{node id: class} of every node the pack registered in ``host``, but those in ``leave_out``."""
    package = host.pack_package
    return {nid: cls for nid, cls in host.node_classes.items()
            if cls.__module__.startswith(package + ".") and nid not in leave_out}


def failure(host, graph) -> dict:
    """The one error report of running ``graph``, which must fail."""
    with pytest.raises(GraphError) as raised:
        host.run(graph)
    (report,) = raised.value.report
    return report
