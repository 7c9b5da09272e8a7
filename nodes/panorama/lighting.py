"""Preview Lighting: spheres lit by an equirect HDR, to judge an HDRI at a glance."""

from __future__ import annotations

from comfy_api.latest import io

from ...lediff_core.color import check_finite, check_image_size
from ...lediff_core.color.tonemap import tone_map
from ...lediff_core.panorama.ibl import render_spheres


class PreviewLighting(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffIBLPreview",
            display_name="Preview Lighting",
            category="LEDiff/panorama",
            description="Renders a diffuse and a mirror sphere lit by an equirectangular HDR environment.",
            inputs=[
                io.Image.Input("image", tooltip="Linear HDR equirect panorama (2:1, up at the top, "
                               "Blender's World-texture convention)."),
                io.Int.Input("size", default=256, min=32, max=2048, step=32,
                             tooltip="Height of the preview (each sphere is size x size)."),
                io.Float.Input("exposure", default=0.0, min=-32.0, max=32.0, step=0.1,
                               tooltip="Stops added to the automatic exposure of the preview."),
            ],
            outputs=[
                io.Image.Output("preview", tooltip="Tone-mapped preview: diffuse sphere left, mirror right."),
                io.Image.Output("hdr", tooltip="The same render, linear HDR."),
            ],
        )

    @classmethod
    def execute(cls, image, size, exposure) -> io.NodeOutput:
        check_image_size(image, "image")
        # refused, not painted: every pixel of the environment lights every pixel of the spheres
        check_finite(image, "image", "every pixel of the environment lights the whole preview")
        rgb = image[..., :3].float()
        hdr = render_spheres(rgb, size)
        return io.NodeOutput(tone_map(hdr, "aces", exposure, auto_exposure=True), hdr)


NODES = [PreviewLighting]
