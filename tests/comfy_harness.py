"""Running graphs in a genuine ComfyUI, in-process.

ComfyUI's own validation (``execution.validate_prompt``) and executor (``execution.PromptExecutor``)
run the graphs, through the same ``run_graph`` as the batch runner (lediff_runner.host); the only
stand-in is the websocket server object the executor reports progress to. Tests use no output
cache: each graph runs in full.
"""

from __future__ import annotations

import asyncio
import os
import sys

from lediff_runner.host import GraphError, MessageSink, run_graph, validate_graph

__all__ = ["REPO", "COMFY_ROOT", "ComfyHost", "GraphError"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMFY_ROOT = os.environ.get("LEDIFF_COMFYUI", os.path.join(REPO, ".dev", "ComfyUI"))
PACK_LINK = os.path.join(COMFY_ROOT, "custom_nodes", "lediff_hdr")


class ComfyHost:
    def __init__(self, execution, folder_paths, nodes):
        self.execution = execution
        self.folder_paths = folder_paths
        self.nodes = nodes
        self.input_dir = self.output_dir = self.temp_dir = None

    @classmethod
    def start(cls) -> ComfyHost:
        if not os.path.isfile(os.path.join(COMFY_ROOT, "main.py")):
            raise RuntimeError(f"no ComfyUI at {COMFY_ROOT}: run scripts/setup.sh first")
        if os.path.realpath(PACK_LINK) != os.path.realpath(REPO):
            raise RuntimeError(f"{PACK_LINK} does not link to {REPO}: run scripts/setup.sh")
        sys.path.insert(0, COMFY_ROOT)
        from comfy.cli_args import args

        args.cpu = True  # must precede the first import of comfy.model_management
        import execution
        import folder_paths
        import nodes

        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        if not asyncio.run(nodes.load_custom_node(PACK_LINK)):
            raise RuntimeError("ComfyUI failed to load the pack (see the log above)")
        return cls(execution, folder_paths, nodes)

    def close(self):
        pass

    def use_folders(self, root) -> None:
        self.input_dir = os.path.join(root, "input")
        self.output_dir = os.path.join(root, "output")
        self.temp_dir = os.path.join(root, "temp")
        for d in (self.input_dir, self.output_dir, self.temp_dir):
            os.makedirs(d, exist_ok=True)
        self.folder_paths.set_input_directory(self.input_dir)
        self.folder_paths.set_output_directory(self.output_dir)
        self.folder_paths.set_temp_directory(self.temp_dir)

    def node_class(self, node_id: str):
        return self.nodes.NODE_CLASS_MAPPINGS[node_id]

    def pack_module(self, name: str):
        """A module of the pack as ComfyUI imported it (e.g. 'nodes.brackets')."""
        import importlib

        package = self.node_class("LEDiffSaveEXR").__module__.rsplit(".", 2)[0]
        return importlib.import_module(f"{package}.{name}")

    def validate(self, prompt: dict):
        return validate_graph(self.execution, prompt)

    def run(self, prompt: dict, extra_pnginfo: dict | None = None) -> dict:
        """Validate and execute an API-format graph with a fresh executor (no output cache);
        returns ``{node_id: ui output}``."""
        executor = self.execution.PromptExecutor(
            MessageSink(), cache_type=self.execution.CacheType.NONE,
            cache_args={"lru": 0, "ram": 0, "ram_inactive": 0},
        )
        return run_graph(self.execution, executor, prompt, extra_pnginfo)
