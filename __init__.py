"""LEDiff HDR for ComfyUI: registration only.

ComfyUI calls ``comfy_entrypoint()`` when it loads the pack; importing this module does nothing
else, so tools (pytest, linters) can import it without a ComfyUI host.
"""


async def comfy_entrypoint():
    from comfy_api.latest import ComfyExtension

    from .nodes import NODES
    from .nodes.model.paths import register_model_folder

    register_model_folder()

    class LEDiffExtension(ComfyExtension):
        async def get_node_list(self):
            return list(NODES)

    return LEDiffExtension()
