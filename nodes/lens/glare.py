"""Glare: bloom and diffraction streaks of the bright light of a linear HDR image."""

from __future__ import annotations

import comfy.model_management as mm
from comfy_api.latest import io

from ...lediff_core.color import check_image_size
from ...lediff_core.lens.glare import MAX_BLADES, MAX_RADIUS, Glare, apply_glare
from ..io.savers import frame_progress


class GlareNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffGlare",
            display_name="Glare (HDR)",
            category="LEDiff/lens",
            description="Bloom and aperture streaks of the light above a threshold, spread by a lens point-spread "
                        "function in linear light (FFT convolution). Energy-conserving: light is moved, never added.",
            inputs=[
                io.Image.Input("image", tooltip="Linear HDR image (scene-linear, 1.0 = diffuse white); alpha kept."),
                io.Float.Input("intensity", default=0.1, min=0.0, max=1.0, step=0.01,
                               tooltip="Share of the light above the threshold that the lens spreads (0 = none)."),
                io.Float.Input("threshold", default=1.0, min=0.0, max=1e6, step=0.1,
                               tooltip="Linear level above which light glares (1.0 = diffuse white), on each "
                               "pixel's brightest channel."),
                io.Float.Input("knee", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="Soft knee around the threshold, as a share of it (0 = hard cut)."),
                io.Int.Input("radius", default=128, min=1, max=MAX_RADIUS,
                             tooltip="Reach of the point-spread function in pixels (the whole pattern scales "
                             "with it); larger than the image is allowed (cut where light cannot land)."),
                io.Int.Input("blades", default=6, min=0, max=MAX_BLADES,
                             tooltip="Aperture blades: n streaks for even n, 2n for odd n; 0 = round aperture "
                             "(no streaks, scatter only). 1 and 2 are not apertures: refused."),
                io.Float.Input("rotation", default=0.0, min=-360.0, max=360.0, step=1.0,
                               tooltip="Clockwise rotation of the aperture (and so of the streaks), degrees; 0: a "
                               "corner straight up, as Lens Blur's polygon (the same blades and rotation: one lens)."),
                io.Float.Input("streaks", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="Share of the spread light in the diffraction streaks; the rest is the "
                               "wide veiling scatter."),
                io.Boolean.Input("spectral", default=True,
                                 tooltip="Scale the streaks by wavelength per channel (red longer, blue shorter), "
                                 "as diffraction does."),
            ],
            outputs=[io.Image.Output("image", tooltip="Linear HDR image with glare, same total light, unclamped.")],
        )

    @classmethod
    def execute(cls, image, intensity, threshold, knee, radius, blades, rotation, streaks,
                spectral) -> io.NodeOutput:
        check_image_size(image, "image")
        glare = Glare(intensity=intensity, threshold=threshold, knee=knee, radius=float(radius), blades=blades,
                      rotation=rotation, streaks=streaks, spectral=spectral)
        out = apply_glare(image, glare, device=mm.get_torch_device(), on_step=frame_progress(3 * image.shape[0]))
        return io.NodeOutput(out.to(mm.intermediate_device()))


NODES = [GlareNode]
