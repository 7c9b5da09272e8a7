"""Motion Blur: frames of a clip blurred along their optical flow across the shutter interval."""

from __future__ import annotations

import comfy.model_management as mm
from comfy_api.latest import io

from ...lediff_core.color import check_finite, check_image_size
from ...lediff_core.lens.motion import MAX_SAMPLES, clip_flow, motion_blur
from ..io.savers import frame_progress


class MotionBlur(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffMotionBlur",
            display_name="Motion Blur (HDR)",
            category="LEDiff/lens",
            description="Blurs each frame of a clip (the IMAGE batch) along its optical flow over the shutter "
                        "interval, in linear light, so moving highlights streak with their full energy.",
            inputs=[
                io.Image.Input("frames", tooltip="Linear HDR frames of one shot, in order (the batch is the clip; "
                               "at least 8x12 pixels for the optical flow)."),
                io.Float.Input("shutter_angle", default=180.0, min=0.0, max=720.0, step=15.0,
                               tooltip="Degrees of the frame interval the shutter is open, centred on the frame "
                               "(180 = the film look, 360 = the whole interval, 0 = no blur)."),
                io.Int.Input("samples", default=0, min=0, max=MAX_SAMPLES,
                             tooltip="Instants sampled across the shutter per frame; 0 = automatic (one per pixel "
                             "of the fastest motion, at most 128)."),
            ],
            outputs=[io.Image.Output("frames", tooltip="The blurred linear HDR frames, unclamped; a single frame "
                                     "is returned unchanged (no motion to measure).")],
        )

    @classmethod
    def execute(cls, frames, shutter_angle, samples) -> io.NodeOutput:
        check_image_size(frames, "frames")
        check_finite(frames, "frames", "motion blur spreads every pixel along its motion, and the flow needs them")
        if frames.shape[0] < 2 or shutter_angle == 0:
            return io.NodeOutput(frames)
        backward, forward = clip_flow(frames)
        out = motion_blur(frames, backward, forward, shutter_angle, samples, device=mm.get_torch_device(),
                          on_frame=frame_progress(frames.shape[0]))
        return io.NodeOutput(out.to(mm.intermediate_device()))


NODES = [MotionBlur]
