"""Lens Blur (HDR): depth of field on linear HDR, each pixel's light scattered over its bokeh."""

from __future__ import annotations

import logging

import comfy.model_management as mm
import comfy.utils
import torch
from comfy_api.latest import io

from ...lediff_core.color import check_finite, check_image_size
from ...lediff_core.lens.bokeh import MAX_BLADES, Bokeh
from ...lediff_core.lens.lens_blur import DEPTH_CONVENTIONS, Lens, blur_radius_map, lens_blur, tiles_per_frame

log = logging.getLogger("lediff")
PRECISIONS = {"float32": torch.float32, "float64": torch.float64}
ASPECT_TOLERANCE = 0.02  # an estimator's map rounded to whole pixels differs by well under 2 %


def _depth_map(depth, depth_mask, frames: int):
    """The connected depth input as [B, H, W] (an IMAGE's channels averaged), checked; None if none."""
    if depth is not None and depth_mask is not None:
        raise ValueError("both depth and depth_mask are connected; connect one of them (a depth estimator's IMAGE "
                         "to depth, its MASK to depth_mask)")
    if depth is not None:
        check_image_size(depth, "depth")
        check_finite(depth, "depth", "a depth map with holes cannot place those pixels")
        values, name = depth[..., :3].float().mean(dim=-1), "depth"
    elif depth_mask is not None:
        check_image_size(depth_mask, "depth_mask")
        check_finite(depth_mask[..., None], "depth_mask", "a depth map with holes cannot place those pixels")
        values, name = depth_mask.float(), "depth_mask"
    else:
        return None
    if values.shape[0] not in (1, frames):
        raise ValueError(f"{name} has {values.shape[0]} frames and image {frames}; give one depth map for all "
                         "frames or one per frame")
    return values


def _warn_about_depth(values, height: int, width: int) -> None:
    """Warnings for depth maps that run but are likely not what the user meant. A map of another
    aspect ratio is stretched to the picture: an estimator keeps the photo's aspect (at 512 or 518
    px), so a different one is more likely a crop or another picture's map, which would blur the
    wrong places. A flat map puts the whole picture on one plane: core Load Image's MASK output is
    a 64x64 zero mask for a picture without alpha, the likeliest way to connect one by mistake."""
    if float(values.amin()) == float(values.amax()):
        log.warning("Lens Blur: the depth map is flat (every value %.4g): the whole picture is one plane. If it is "
                    "Load Image's MASK output, that is the picture's alpha (a 64x64 zero mask when it has none): "
                    "connect Load Image's IMAGE to depth instead", float(values.amin()))
    dh, dw = values.shape[-2:]
    if abs((dw / dh) / (width / height) - 1) > ASPECT_TOLERANCE:
        log.warning("Lens Blur: the depth map (%dx%d, aspect %.3g) is stretched to the picture (%dx%d, aspect "
                    "%.3g): is it this picture's map? A crop or another picture's map puts the blur in the wrong "
                    "places; make the map from this picture (an estimator keeps its aspect)", dw, dh, dw / dh, width,
                    height, width / height)


class LensBlur(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffLensBlur",
            display_name="Lens Blur (HDR)",
            category="LEDiff/lens",
            description="Depth of field in linear light: scatters each pixel's light over its circle of confusion "
                        "(thin lens, bokeh disc or polygon) with occlusion, keeping the highlights' energy.",
            inputs=[
                io.Image.Input("image", tooltip="Linear HDR picture (or frames), never clamped."),
                io.Combo.Input("depth_convention", options=list(DEPTH_CONVENTIONS), default="near = bright",
                               tooltip="How the depth map reads: near = bright (0..1 inverse depth: Depth Anything, "
                                       "MiDaS), near = dark (0..1 depth), distance (the values are distances in "
                                       "metres: a render's Z pass), blur radius (signed blur radius in pixels, "
                                       "negative in front of the focus; focus and aperture are then not used)."),
                io.Float.Input("near", default=1.0, min=0.001, max=1e6, step=0.1,
                               tooltip="Distance (m) the map's nearest value (1 for near = bright, 0 for near = "
                                       "dark) stands for."),
                io.Float.Input("far", default=100.0, min=0.001, max=1e6, step=1.0,
                               tooltip="Distance (m) the map's farthest value stands for; without a depth map the "
                                       "whole picture is at this distance."),
                io.Combo.Input("focus", options=["distance", "point"], default="distance",
                               tooltip="Focus at focus_distance, or at the depth of the picture at (focus_x, "
                                       "focus_y)."),
                io.Float.Input("focus_distance", default=2.0, min=0.001, max=1e6, step=0.1,
                               tooltip="Distance (m) in sharp focus (focus = distance)."),
                io.Float.Input("focus_x", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="Focus point across the picture, 0 = left, 1 = right (focus = point)."),
                io.Float.Input("focus_y", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="Focus point down the picture, 0 = top, 1 = bottom (focus = point)."),
                io.Combo.Input("aperture", options=["f-stop", "largest blur"], default="f-stop",
                               tooltip="The amount of blur: a lens (f-stop, focal length, sensor width) or the "
                                       "largest blur radius in pixels (at the nearer or farther end of the range)."),
                io.Float.Input("f_stop", default=2.8, min=0.1, max=256.0, step=0.1,
                               tooltip="f-number N: aperture diameter = focal length / N (aperture = f-stop)."),
                io.Float.Input("focal_length_mm", default=50.0, min=1.0, max=2000.0, step=1.0,
                               tooltip="Focal length in mm (aperture = f-stop)."),
                io.Float.Input("sensor_width_mm", default=36.0, min=1.0, max=200.0, step=0.1,
                               tooltip="Width of the sensor the picture spans, in mm (36: full frame)."),
                io.Float.Input("largest_blur", default=16.0, min=0.01, max=4096.0, step=0.5,
                               tooltip="Largest blur radius in pixels (aperture = largest blur)."),
                io.Combo.Input("shape", options=["circle", "polygon"], default="circle",
                               tooltip="Bokeh shape: a round aperture, or a polygon of aperture blades."),
                io.Int.Input("blades", default=6, min=3, max=MAX_BLADES,
                             tooltip="Number of aperture blades (shape = polygon)."),
                io.Float.Input("rotation", default=0.0, min=-360.0, max=360.0, step=1.0,
                               tooltip="Clockwise rotation of the polygon in degrees (0: a corner straight up), the "
                                       "same orientation as Glare's rotation."),
                io.Float.Input("cat_eye", default=0.0, min=0.0, max=1.0, step=0.05,
                               tooltip="Cat's-eye bokeh toward the edges (the lens barrel cutting the aperture): 0 "
                                       "none, 1 cut by one radius at the corners."),
                io.Int.Input("tile", default=512, min=64, max=8192, step=64,
                             tooltip="Tile size in pixels: memory stays bounded by tiles of this size plus the "
                                     "largest blur on each side."),
                io.Combo.Input("precision", options=list(PRECISIONS), default="float32",
                               tooltip="float32: FFT error about 1e-6 of the brightest light near a pixel; float64 "
                                       "(slower, much slower on most GPUs) for suns a million times brighter than "
                                       "the shadows beside them."),
                io.Image.Input("depth", optional=True,
                               tooltip="Depth map as an IMAGE (its channels averaged); resized to the picture if its "
                                       "size differs. Without one, the picture is one plane at far."),
                io.Mask.Input("depth_mask", optional=True,
                              tooltip="Depth map as a MASK (instead of depth); resized the same way."),
            ],
            outputs=[
                io.Image.Output("image", tooltip="The blurred picture, linear HDR (RGB), never clamped."),
                io.Mask.Output("blur_radius", tooltip="Signed blur radius in pixels of each pixel (negative in "
                                                      "front of the focus): where the focus lies."),
            ],
        )

    @classmethod
    def execute(cls, image, depth_convention, near, far, focus, focus_distance, focus_x, focus_y, aperture, f_stop,
                focal_length_mm, sensor_width_mm, largest_blur, shape, blades, rotation, cat_eye, tile,
                precision="float32", depth=None, depth_mask=None) -> io.NodeOutput:
        check_image_size(image, "image")
        check_finite(image, "image", "a NaN/Inf pixel would spread over its whole bokeh")
        b, h, w = image.shape[:3]
        values = _depth_map(depth, depth_mask, b)
        if values is not None:
            _warn_about_depth(values, h, w)
        elif focus == "point":
            raise ValueError("focus = point focuses on the depth map's value at (focus_x, focus_y), and no depth map "
                             "is connected: connect one to depth (an IMAGE) or depth_mask (a MASK), or set focus = "
                             "distance and focus_distance")
        lens = Lens(f_stop, focal_length_mm, sensor_width_mm, largest_blur if aperture == "largest blur" else None)
        point = (focus_x, focus_y) if focus == "point" else None
        radius, notes = blur_radius_map(values, h, w, depth_convention, near, far, lens, focus_distance, point)
        for note in notes:  # a resized depth map is worth a warning; the picked focus is information
            (log.warning if note.startswith("resized") else log.info)("Lens Blur: %s", note)
        bokeh = Bokeh(blades if shape == "polygon" else 0, rotation, cat_eye)
        total = sum(tiles_per_frame(h, w, float(radius[min(i, radius.shape[0] - 1)].abs().max()), tile)
                    for i in range(b))
        bar = comfy.utils.ProgressBar(total)

        def on_tile():
            mm.throw_exception_if_processing_interrupted()
            bar.update(1)

        with torch.inference_mode():
            out = lens_blur(image, radius, bokeh, tile, mm.get_torch_device(), on_tile, PRECISIONS[precision])
        return io.NodeOutput(out.to(image.device), radius.expand(b, h, w).contiguous())


NODES = [LensBlur]
