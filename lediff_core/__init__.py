"""LEDiff HDR core: the pure torch/numpy library under the ComfyUI nodes, with no ComfyUI import.

It is made of domain packages only; each package's docstring says what it owns and what it may
import (tests/e2e/test_layout.py checks both):

- ``color``     colour science: transfer functions, chromaticities, OpenColorIO spaces, PQ/HLG
                quantisation, tone mapping. Imports nothing else of lediff_core.
- ``io``        files: OpenEXR (incl. luminance/chroma), Radiance .hdr, readers by extension, safe
                publishing, and the display formats (Ultra HDR, AVIF, JPEG XL). Imports ``color``.
- ``model``     the LEDiff method: VAE, HDR VAE, exposure fusion, weights and conversion, UNet
                config, tiling, and the paper's blend with the LDR. Imports ``color``, ``io``.
- ``qa``        quality assessment: PU21, metrics, camera simulation, baselines, exposure strips,
                statistics. Imports ``color``.
- ``panorama``  equirectangular maths and the image-based-lighting preview. Imports ``color``.
- ``lens``      what optics and shutter do to linear light: depth of field (circle of confusion, bokeh
                kernels, Lens Blur), glare, motion blur along the flow. Imports ``color``, ``video``.

The ComfyUI nodes in ``nodes/`` are thin adapters over this package (mirroring its split), so
everything here can be used and tested without a ComfyUI host. See docs/ARCHITECTURE.md.
"""

import importlib.abc
import sys

__version__ = "0.1.0"
SOFTWARE = f"lediff-hdr {__version__}"

ERROR_MODULE = "lediff"


class LEDiffError(Exception):
    """Base of the pack's own exceptions (each also derives from the builtin it refines, e.g.
    ``ValueError``), so that ComfyUI's error panel shows a short type before the message.

    The panel prints ``exception_type``, the class's module path and qualified name (ComfyUI's
    ``execution.full_type_name``; the qualified name alone only for builtins), and ComfyUI imports a
    custom node pack under its absolute folder path, so a class of this package would be reported as
    ``/home/.../custom_nodes/lediff-hdr.lediff_core.model.weights.WeightError`` ahead of the message.
    Every subclass reports the module ``lediff`` instead (``lediff.WeightError``). The price: the
    classes cannot be pickled by reference (nothing here pickles them)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__module__ = ERROR_MODULE


LEDiffError.__module__ = ERROR_MODULE

# Modules that lived directly in lediff_core/ before the domain packages: importing or running one
# (``python -m lediff_core.convert``) fails with a message that says where it went.
MOVED = {
    "convert": "model.convert", "vae": "model.vae", "hdr_vae": "model.hdr_vae", "fusion": "model.fusion",
    "weights": "model.weights", "unet_config": "model.unet_config", "tiling": "model.tiling",
    "blend": "model.blend", "exr": "io.exr", "exr_yca": "io.exr_yc", "radiance": "io.radiance",
    "image_io": "io.readers", "safe_files": "io.publish", "formats": "io.display",
    "tonemap": "color.tonemap", "ibl": "panorama.ibl",
}


class _MovedModules(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(__name__ + "."):
            return None
        old = fullname[len(__name__) + 1:].split(".")[0]
        if old not in MOVED:
            return None
        new = f"{__name__}.{MOVED[old]}"
        hint = f"; run python -m {new}" if old == "convert" else ""
        raise ImportError(f"{__name__}.{old} moved to {new} (lediff_core is domain packages now: "
                          f"see docs/ARCHITECTURE.md){hint}", name=fullname)


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
