"""Video: LEDiff over a batch of consecutive frames (ComfyUI's IMAGE/LATENT batch = frames).

Owns what makes frames of one shot hang together: optical flow between input frames (OpenCV's
DIS, a maintained implementation; ``flow``), noise warped along that flow (``noise``), the
temporal blending of the denoiser's predictions (``temporal``), and how well a batch of HDR frames
hangs together (``consistency``: the warping error along their flow, as HDR Stats reports it).
Frame files in and out (EXR sequences, HDR10/HLG masters) are file formats and live in
``lediff_core.io``; the warping-error metric itself is a measurement and lives in ``lediff_core.qa``.

May import ``lediff_core.color``, ``lediff_core.qa`` (its warping maths) and ``lediff_core.io``
(the OpenCV loader); never ComfyUI.
"""

FRAMES = ("independent", "video")
"""The ``frames`` option of the nodes that can treat a batch as a shot: ``independent`` (every
batch item on its own) or ``video`` (the batch is consecutive frames of one shot)."""
