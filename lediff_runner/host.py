"""A genuine ComfyUI embedded in this process: no server, ComfyUI's own validation
(``execution.validate_prompt``) and executor (``execution.PromptExecutor``).

The batch runner keeps ComfyUI's output cache across prompts, so loader nodes whose inputs do not
change (checkpoints, the LEDiff models) run once per process and every later item reuses the
loaded models; the tests (tests/support/comfy_harness.py) ask for a fresh uncached executor per graph
instead (``cached=False``), so every graph runs in full. Both go through ``run_graph``.

ComfyUI's root holds top-level modules named ``nodes``, ``execution``, ``utils``, ``server``...
(this pack has a ``nodes`` package too): ComfyUI's root goes first on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sys
import tempfile
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACK_NODE = "LEDiffSaveEXR"  # a node of this pack: tells whether ComfyUI loaded the pack


def default_comfyui() -> str:
    """$LEDIFF_COMFYUI, else the ComfyUI this pack is installed in (custom_nodes/<pack>), else the
    development host in .dev/ComfyUI."""
    if os.environ.get("LEDIFF_COMFYUI"):
        return os.environ["LEDIFF_COMFYUI"]
    parent = os.path.dirname(REPO)
    if os.path.basename(parent) == "custom_nodes" and os.path.isfile(os.path.join(parent, "..", "main.py")):
        return os.path.dirname(parent)
    return os.path.join(REPO, ".dev", "ComfyUI")


class GraphError(AssertionError):
    """A graph failed validation or execution; carries ComfyUI's own error report."""

    def __init__(self, message: str, report):
        super().__init__(f"{message}: {report}")
        self.message, self.report = message, report

    def __reduce__(self):  # crosses process boundaries (Ray returns a worker's exception to the driver)
        return (type(self), (self.message, self.report))

    @property
    def brief(self) -> str:
        """The message with ComfyUI's words for each failing node (id, type, what is wrong), without
        the rest of the report (input specs, tooltips): what a batch's failure line shows."""
        parts = []
        if isinstance(self.report, dict):
            for node_id, entry in (self.report.get("node_errors") or {}).items():
                parts += [f"node {node_id} ({entry.get('class_type')}): {e.get('message')}: {e.get('details')}"
                          for e in entry.get("errors", [])]
            error = self.report.get("error")
            if not parts and isinstance(error, dict):
                parts.append(f"{error.get('message')}: {error.get('details')}")
        elif isinstance(self.report, list):
            parts += [f"node {e.get('node_id')} ({e.get('node_type')}): {e.get('exception_type')}: "
                      f"{str(e.get('exception_message')).strip()}" for e in self.report
                      if isinstance(e, dict) and "exception_message" in e]
        return f"{self.message}: {'; '.join(parts)}" if parts else str(self)


class MessageSink:
    """What the executor talks to instead of the websocket server: keeps its latest messages (a
    bounded number: a host runs for a whole batch)."""

    def __init__(self, keep: int = 1000):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.messages = collections.deque(maxlen=keep)

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


def _accelerator_present() -> bool:
    import torch

    if torch.cuda.is_available():
        return True
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def import_comfyui(comfyui: str, base_directory: str | None = None, cpu: bool | None = None):
    """Import ComfyUI from ``comfyui`` (its root, with main.py). ``base_directory`` is ComfyUI's
    ``--base-directory`` (models/, custom_nodes/, input/, output/, temp/, user/ below it).
    ``cpu=None`` uses ComfyUI's defaults where a GPU exists and ``--cpu`` where none does."""
    comfyui = os.path.abspath(comfyui)
    if not os.path.isfile(os.path.join(comfyui, "main.py")):
        raise FileNotFoundError(f"no ComfyUI at {comfyui} (no main.py there): pass --comfyui DIR with "
                                "the folder of your ComfyUI install, or run scripts/setup.sh")
    if "comfy.cli_args" in sys.modules:
        loaded = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["comfy.cli_args"].__file__)))
        if os.path.realpath(loaded) != os.path.realpath(comfyui):
            raise RuntimeError(f"this process already imported ComfyUI from {loaded}, not {comfyui}")
    else:
        if comfyui in sys.path:
            sys.path.remove(comfyui)
        sys.path.insert(0, comfyui)
    from comfy.cli_args import args

    if "comfy.model_management" not in sys.modules:
        args.cpu = (not _accelerator_present()) if cpu is None else cpu
    if base_directory is not None and "folder_paths" not in sys.modules:
        # folder_paths reads it once, when first imported (like ComfyUI's own --base-directory)
        args.base_directory = os.path.abspath(base_directory)
        for sub in ("models", "custom_nodes", "input", "output", "temp", "user"):
            os.makedirs(os.path.join(args.base_directory, sub), exist_ok=True)
    import execution
    import folder_paths
    import nodes

    return execution, folder_paths, nodes


class EmbeddedComfyUI:
    """One in-process ComfyUI with its custom nodes (this pack included).

    ``cached=True``: one executor for the life of the host, whose CLASSIC cache keeps each node's
    outputs while the node's inputs stay the same (what keeps models loaded across items).
    ``cached=False``: a fresh executor without an output cache for every graph."""

    def __init__(self, comfyui: str | None = None, base_directory: str | None = None, cpu: bool | None = None,
                 custom_nodes: bool = True, cached: bool = True):
        self.comfyui = os.path.abspath(comfyui or default_comfyui())
        self.execution, self.folder_paths, self.nodes = import_comfyui(self.comfyui, base_directory, cpu)
        self._load_nodes(custom_nodes)
        self.sink = MessageSink()
        self.executor = self._executor(self.execution.CacheType.CLASSIC) if cached else None
        self._own_temp = tempfile.mkdtemp(prefix="lediff_runner_temp_")  # removed by close()
        self.folder_paths.set_temp_directory(self._own_temp)

    def _executor(self, cache_type):
        return self.execution.PromptExecutor(self.sink, cache_type=cache_type,
                                             cache_args={"lru": 0, "ram": 0, "ram_inactive": 0})

    def _load_nodes(self, custom_nodes: bool) -> None:
        if PACK_NODE in self.nodes.NODE_CLASS_MAPPINGS:
            return  # already loaded in this process
        asyncio.run(self.nodes.init_extra_nodes(init_custom_nodes=custom_nodes, init_api_nodes=False))
        if PACK_NODE not in self.nodes.NODE_CLASS_MAPPINGS:
            # the pack is not in the host's custom_nodes/: load it from where this runner lives
            if not asyncio.run(self.nodes.load_custom_node(REPO)):
                raise RuntimeError(f"ComfyUI failed to load the LEDiff pack from {REPO} (see the log above)")

    @property
    def node_classes(self) -> dict:
        return self.nodes.NODE_CLASS_MAPPINGS

    def to_api(self, workflow: dict) -> dict:
        from .workflow import input_types_from_host, is_ui_format, to_api

        return to_api(workflow, input_types_from_host(self.node_classes)) if is_ui_format(workflow) else workflow

    @property
    def input_dir(self) -> str:
        return self.folder_paths.get_input_directory()

    @property
    def output_dir(self) -> str:
        return self.folder_paths.get_output_directory()

    @property
    def temp_dir(self) -> str:
        return self.folder_paths.get_temp_directory()

    def set_folders(self, input_dir: str | None = None, output_dir: str | None = None,
                    temp_dir: str | None = None) -> None:
        if input_dir is not None:
            self.folder_paths.set_input_directory(os.path.abspath(input_dir))
        if output_dir is not None:
            self.folder_paths.set_output_directory(os.path.abspath(output_dir))
        if temp_dir is not None:
            self.folder_paths.set_temp_directory(os.path.abspath(temp_dir))

    def run(self, prompt: dict, extra_pnginfo: dict | None = None) -> dict:
        """Validate and execute an API-format graph; returns ``{node_id: ui output}``."""
        executor = self.executor or self._executor(self.execution.CacheType.NONE)
        return run_graph(self.execution, executor, prompt, extra_pnginfo)

    def close(self) -> None:
        import shutil

        shutil.rmtree(self._own_temp, ignore_errors=True)


def validate_graph(execution, prompt: dict):
    """ComfyUI's own validation: (valid, error, outputs to run, node errors)."""
    return asyncio.run(execution.validate_prompt(str(uuid.uuid4()), prompt, None))


def run_graph(execution, executor, prompt: dict, extra_pnginfo: dict | None = None) -> dict:
    """Validate an API-format graph and execute it with ComfyUI's ``executor``; returns
    ``{node_id: ui output}`` or raises GraphError with ComfyUI's report (the failing node, its
    exception type and message)."""
    valid, error, outputs, node_errors = validate_graph(execution, prompt)
    if not valid:
        raise GraphError("graph failed validation", {"error": error, "node_errors": node_errors})
    extra = {"extra_pnginfo": extra_pnginfo} if extra_pnginfo is not None else {}
    executor.execute(prompt, str(uuid.uuid4()), extra, outputs)
    if not executor.success:
        errors = [d for e, d in executor.status_messages if e == "execution_error"]
        raise GraphError("graph failed to execute", [
            {k: e.get(k) for k in ("node_id", "node_type", "exception_type", "exception_message")}
            for e in errors] or executor.status_messages)
    return executor.history_result["outputs"]


def quiet_comfyui_logs(level=logging.WARNING) -> None:
    logging.getLogger().setLevel(level)
