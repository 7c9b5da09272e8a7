"""LEDiff HDR for ComfyUI: registration only.

ComfyUI calls ``comfy_entrypoint()`` when it loads the pack; importing this module does nothing
else, so tools (pytest, linters) can import it without a ComfyUI host.
"""


async def comfy_entrypoint():
    from comfy_api.latest import ComfyExtension

    from .nodes import brackets, color, display_formats, hdr, hdr_io, loaders, panorama, qa
    from .nodes.model_paths import register_model_folder

    register_model_folder()

    class LEDiffExtension(ComfyExtension):
        async def get_node_list(self):
            return [*loaders.NODES, *brackets.NODES, *hdr.NODES, *panorama.NODES, *hdr_io.NODES,
                    *display_formats.NODES, *color.NODES, *qa.NODES]

    return LEDiffExtension()
