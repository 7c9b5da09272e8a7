"""Converting a UI-format workflow (what the frontend's Save writes) into the API format that
``/prompt`` runs, the way the frontend's graphToPrompt does it, from the nodes' input definitions
(what /object_info serves). The browser test checks this converter against the real frontend."""

from __future__ import annotations

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
