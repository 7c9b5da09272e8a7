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


def _active(workflow: dict) -> list[dict]:
    """The nodes of a UI workflow that reach the server: not frontend-only, not muted or bypassed."""
    return [node for node in workflow["nodes"] if node["type"] not in VIRTUAL_NODES and node.get("mode", 0) == 0]


def node_types(workflow: dict) -> dict[str, str]:
    """{node id: class_type} of the nodes a UI- or API-format workflow runs (the ids of its API
    prompt), read from the file alone: what a batch checks its loader options against before
    ComfyUI starts."""
    if is_ui_format(workflow):
        return {str(node["id"]): node["type"] for node in _active(workflow)}
    return {node_id: node["class_type"] for node_id, node in workflow.items()}


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
    for node in _active(workflow):
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


def _loader_list(types: dict[str, str]) -> str:
    found = [f"{nid} ({class_type})" for nid, class_type in types.items() if class_type in LOADERS]
    return ", ".join(found) or "none"


def find_loader(types: dict[str, str], node_id: str | None = None,
                paired: tuple[str, ...] = ()) -> tuple[str, str, tuple[str, ...]]:
    """The node that receives each batch item (``types``: {node id: class_type}, ``node_types``):
    ``node_id`` if given, else the graph's only image-loading node that is not ``paired`` (fed a
    partner file per item, ``find_paired``). Returns (node id, input name, accepted extensions)."""
    if node_id is not None:
        if node_id not in types:
            raise ValueError(f"--input-node {node_id}: no such node in the workflow (its loaders: "
                             f"{_loader_list(types)})")
        class_type = types[node_id]
        if class_type not in LOADERS:
            raise ValueError(f"--input-node {node_id} is a {class_type}, not one of {sorted(LOADERS)}")
        if node_id in paired:
            raise ValueError(f"--pair {node_id}=...: node {node_id} is --input-node, which receives the batch's "
                             "inputs (from --inputs); pair another loader")
        return (node_id, *LOADERS[class_type])
    found = [nid for nid, class_type in types.items() if class_type in LOADERS and nid not in paired]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(found)})"
        unpaired = " not named by --pair" if paired else ""
        raise ValueError(f"the workflow has {what} image-loading nodes ({' or '.join(sorted(LOADERS))}){unpaired}; "
                         "a batch feeds exactly one: keep one or name it with --input-node ID "
                         "(and a second input per item with --pair ID=FOLDER)")
    return (found[0], *LOADERS[types[found[0]]])


def find_paired(types: dict[str, str], paired: tuple[str, ...]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The loaders fed a partner file per item (``--pair``), checked: each a loader of the workflow,
    named once (``find_loader`` keeps them apart from the node that receives the item itself).
    Returns {node id: (input name, accepted extensions)}, in the order given."""
    loaders = {}
    for node_id in paired:
        if node_id not in types:
            raise ValueError(f"--pair {node_id}=...: no such node in the workflow; pair one of its loaders: "
                             f"{_loader_list(types)}")
        if types[node_id] not in LOADERS:
            raise ValueError(f"--pair {node_id}=...: node {node_id} is a {types[node_id]}, not a loader "
                             f"({' or '.join(sorted(LOADERS))}); pair one of the workflow's loaders: "
                             f"{_loader_list(types)}")
        if node_id in loaders:
            raise ValueError(f"--pair {node_id}=... is given twice: give each loader one folder")
        loaders[node_id] = LOADERS[types[node_id]]
    return loaders


def with_inputs(prompt: dict, values: dict[str, dict]) -> dict:
    """A copy of the prompt with node inputs replaced: ``values`` is {node id: {input name: value}}."""
    prompt = copy.deepcopy(prompt)
    for node_id, inputs in values.items():
        prompt[node_id]["inputs"].update(inputs)
    return prompt
