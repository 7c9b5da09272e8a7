"""OpenCV (``cv2``), imported only where it is used: optical flow (``lediff_core.video.flow``; the
HDR video masters' per-pixel arithmetic is torch's since it moved to ComfyUI's device). It is not a fixed requirement of
the pack, since a ComfyUI install usually carries one of its four distributions already
(``install.py`` at the repository root adds ``opencv-python-headless`` only where none is present).
"""

from __future__ import annotations


def opencv(purpose: str):
    """The ``cv2`` module, or an ImportError that says what needs it and how to install it."""
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(
            f"{purpose} needs OpenCV (cv2), which is not installed in this Python: run this pack's "
            "install.py (`python install.py` in its folder, with ComfyUI's Python), or `pip install "
            "opencv-python-headless` if no other opencv-python/opencv-contrib-python distribution is "
            "installed (two cv2 distributions side by side break each other)") from exc
    return cv2
