"""Workflows: loading UI- or API-format JSON, converting a UI-format workflow (what the frontend's
Save writes) into the API format that ``/prompt`` runs, the way the frontend's graphToPrompt does it,
from the nodes' input definitions (what /object_info serves), and finding the node that loads a
batch item. The browser test checks the converter against the real frontend."""

from __future__ import annotations

import copy
import hashlib
import json

# frontend-only nodes: they never reach the server
VIRTUAL_NODES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _inputs_in_order(types: dict) -> list[tuple[str, tuple]]:
    return [*types.get("required", {}).items(), *types.get("optional", {}).items()]


def input_types_from_host(node_classes: dict):
    """Input definitions from node classes loaded in-process (what /object_info is built from)."""
    return lambda node_type: node_classes[node_type].INPUT_TYPES() if node_type in node_classes else None


def input_types_from_object_info(object_info: dict):
    """Input definitions from a server's GET /object_info."""
    return lambda node_type: object_info[node_type]["input"] if node_type in object_info else None


def _extra_widget_values(spec) -> int:
    """Widgets the frontend adds after an input's own: the seed's 'control after generate' and
    the upload button of file inputs, which both leave a value in widgets_values."""
    options = _options(spec)
    upload = any(options.get(k) for k in ("image_upload", "audio_upload", "video_upload", "file_upload"))
    return int(bool(options.get("control_after_generate"))) + int(upload)


def _options(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def is_widget(spec) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def to_api(workflow: dict, input_types) -> dict:
    """API-format prompt for an active (mode 0) UI workflow; ``input_types(node_type)`` gives a node's
    {"required": ..., "optional": ...} input definitions. Raises KeyError for unknown node types."""
    links = {link[0]: link for link in workflow["links"]}  # [id, from node, from slot, to node, to slot, type]
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) != 0:
            continue
        types = input_types(node["type"])
        if types is None:
            raise KeyError(f"workflow node {node['id']} has unknown type {node['type']!r} (missing custom node?)")
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        inputs, position = {}, 0
        for name, spec in _inputs_in_order(types):
            if is_widget(spec) and position < len(values):
                inputs[name] = values[position]
                position += 1 + _extra_widget_values(spec)
            elif is_widget(spec) and "default" in _options(spec):
                # a widget newer than the saved workflow: the frontend creates it with its default
                inputs[name] = _options(spec)["default"]
            if name in linked:
                _, source, slot = linked[name][:3]
                inputs[name] = [str(source), slot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title") or node["type"]}}
    return prompt


# image-loading nodes a batch item can be fed to: class_type -> (input name, file kinds)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
HDR_EXTENSIONS = (".exr", ".hdr", ".pic")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi")
LOADERS = {
    "LoadImage": ("image", IMAGE_EXTENSIONS),
    "LEDiffLoadEXR": ("image", HDR_EXTENSIONS),
    "LoadVideo": ("file", VIDEO_EXTENSIONS),  # core's: a clip per item (video_to_hdr)
}


def is_ui_format(workflow: dict) -> bool:
    return isinstance(workflow.get("nodes"), list) and "links" in workflow


def load_workflow_file(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        try:
            workflow = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e}); export the workflow with ComfyUI's Save "
                             "or Export (API)") from None
    if not isinstance(workflow, dict) or not (is_ui_format(workflow) or all(
            isinstance(v, dict) and "class_type" in v for v in workflow.values())):
        raise ValueError(f"{path}: neither a UI-format workflow (nodes, links) nor an API-format "
                         "prompt ({id: {class_type, inputs}})")
    return workflow


def workflow_hash(workflow: dict) -> str:
    """sha256 of the workflow's canonical JSON (key order and whitespace do not matter)."""
    return hashlib.sha256(json.dumps(workflow, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def find_loader(prompt: dict, node_id: str | None = None) -> tuple[str, str, tuple[str, ...]]:
    """The node that receives each batch item: ``node_id`` if given, else the graph's only
    image-loading node. Returns (node id, input name, accepted extensions)."""
    if node_id is not None:
        if node_id not in prompt:
            raise ValueError(f"--input-node {node_id}: no such node in the workflow")
        class_type = prompt[node_id]["class_type"]
        if class_type not in LOADERS:
            raise ValueError(f"--input-node {node_id} is a {class_type}, not one of {sorted(LOADERS)}")
        return (node_id, *LOADERS[class_type])
    found = [nid for nid, node in prompt.items() if node["class_type"] in LOADERS]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(found)})"
        raise ValueError(f"the workflow has {what} image-loading nodes ({' or '.join(sorted(LOADERS))}); "
                         "a batch feeds exactly one: keep one or name it with --input-node ID")
    return (found[0], *LOADERS[prompt[found[0]]["class_type"]])


def with_input(prompt: dict, node_id: str, input_name: str, value) -> dict:
    """A copy of the prompt with one node input replaced."""
    prompt = copy.deepcopy(prompt)
    prompt[node_id]["inputs"][input_name] = value
    return prompt
