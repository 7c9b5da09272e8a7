"""The one OpenColorIO helper: conversions between linear colour spaces (OCIO's built-in ACES
config), a config's display/view transforms with looks (``display_view_processor``, by default the
built-in ACES 2.0 studio config), and LUT files through OCIO's FileTransform (``lut_file_processor``).

``opencolorio`` (PyPI, BSD-3) ships the ACES "CG" config in its wheel as ``ocio://default``, so the
matrices (including the Bradford-adapted D65 <-> ACES white conversions) are OCIO's own, not ours.
The pack's working space is ``WORKING_SPACE``: linear Rec.709/sRGB primaries, D65 white, which is
what HDR Decode produces.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import torch

from .. import LEDiffError

WORKING_SPACE = "Linear Rec.709 (sRGB)"
# The linear spaces the nodes offer, by their names in OCIO's default (ACES CG) config.
LINEAR_SPACES = ("Linear Rec.709 (sRGB)", "Linear P3-D65", "Linear Rec.2020", "ACEScg", "ACES2065-1")
DEFAULT_CONFIG = "ocio://default"

# The published primaries and white of each linear space, as an EXR ``chromaticities`` attribute
# stores them (Rx, Ry, Gx, Gy, Bx, By, Wx, Wy). They tag files and recognise them; the conversions
# themselves are OCIO's (tests check that these describe the same spaces as OCIO's matrices).
CHROMATICITIES = {
    # ITU-R BT.709 / IEC 61966-2-1 (sRGB), D65
    "Linear Rec.709 (sRGB)": (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290),
    # SMPTE EG 432-1 (Display P3 / P3-D65)
    "Linear P3-D65": (0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.3127, 0.3290),
    # ITU-R BT.2020 / BT.2100, D65
    "Linear Rec.2020": (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290),
    # ACES AP1 (Academy S-2014-004), ACES white (approx. D60)
    "ACEScg": (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767),
    # ACES AP0 (SMPTE ST 2065-1), ACES white
    "ACES2065-1": (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.0770, 0.32168, 0.33767),
}
# How far (largest difference of the 8 numbers) a file's chromaticities may be from a space's to
# count as that space: files round the same values differently (e.g. D65 as 0.31271, 0.32902).
CHROMATICITIES_TOLERANCE = 1e-3


@lru_cache(maxsize=1)
def config():
    import PyOpenColorIO as ocio  # imported lazily: a pack import must not need it

    return ocio.Config.CreateFromFile(DEFAULT_CONFIG)


@lru_cache(maxsize=64)
def _processor(source: str, target: str):
    names = {cs.getName() for cs in config().getColorSpaces()}
    for name in (source, target):
        if name not in names:
            raise ValueError(f"unknown colour space {name!r}; OCIO's default config has {sorted(names)}")
    return config().getProcessor(source, target).getDefaultCPUProcessor()


@lru_cache(maxsize=64)
def linear_matrix(source: str, target: str) -> np.ndarray:
    """The 3x3 matrix OCIO applies between two linear spaces (read back from the processor by
    transforming the unit vectors, so that large images can go through torch instead of a copy)."""
    basis = np.eye(3, dtype=np.float32).copy()
    _processor(source, target).applyRGB(basis)
    # applyRGB transforms each row (a pixel); the matrix's columns are the transformed unit vectors
    return basis.T.astype(np.float64)


def convert_linear(rgb, source: str, target: str):
    """Convert linear RGB (numpy array or torch tensor, channels last; a 4th alpha channel passes
    through) from ``source`` to ``target`` (OCIO colour space names, see LINEAR_SPACES).
    Never clamps. Returns the same type (torch keeps device, computes in at least float32)."""
    if source == target:
        return rgb
    m = linear_matrix(source, target)
    if isinstance(rgb, torch.Tensor):
        dtype = torch.promote_types(rgb.dtype, torch.float32)
        mt = torch.as_tensor(m, dtype=dtype, device=rgb.device)
        if rgb.shape[-1] == 3:
            return rgb.to(dtype) @ mt.T
        out = rgb.to(dtype).clone()
        out[..., :3] = rgb[..., :3].to(dtype) @ mt.T
        return out
    arr = np.asarray(rgb)
    out = np.array(arr, dtype=np.promote_types(arr.dtype, np.float32), copy=True)
    out[..., :3] = arr[..., :3] @ m.T.astype(out.dtype)
    return out


def space_of_chromaticities(chromaticities, tolerance: float = CHROMATICITIES_TOLERANCE) -> str | None:
    """The linear space (one of LINEAR_SPACES) whose published chromaticities are within
    ``tolerance`` of the given 8 numbers, or None for any other primaries (XYZ, camera spaces)."""
    value = np.asarray(chromaticities, dtype=np.float64).reshape(-1)
    if value.size != 8:
        raise ValueError(f"chromaticities must be 8 numbers (R, G, B, white x/y), got {chromaticities!r}")
    for name, known in CHROMATICITIES.items():
        if np.max(np.abs(value - np.asarray(known))) <= tolerance:
            return name
    return None


# --- Display/view transforms, looks and LUT files -------------------------------------------------
#
# OpenColorIO 2.5+ ships the ACES studio configs in its wheel. The ACES 2.0 one is named exactly (not
# ``ocio://studio-config-latest``, which moves with each OCIO release: ACES 2.1 in OCIO 2.6), so the
# display and view names the node offers, and the pictures it makes, do not change under an upgrade.
STUDIO_CONFIG = "ocio://studio-config-v4.0.0_aces-v2.0_ocio-v2.5"
# What the working space is called in the configs users bring: the ACES 1.x/2.x colour-space names
# and aliases of linear Rec.709 (OCIO's ``lin_rec709_srgb`` interop id), first match wins.
WORKING_SPACE_NAMES = (WORKING_SPACE, "lin_rec709_srgb", "Utility - Linear - sRGB", "Utility - Linear - Rec.709",
                       "lin_srgb", "linear_srgb", "Linear sRGB")
# OCIO's interpolation for LUT files: best is tetrahedral for 3D LUTs, linear for 1D ones.
INTERPOLATIONS = ("linear", "tetrahedral", "best")
DIRECTIONS = ("forward", "inverse")


class OCIOConfigError(LEDiffError, ValueError):
    """An OCIO config that does not load, or lacks the display, view, look or colour space asked
    for: the message names it, lists what the config has, and says what to do."""


class LUTFileError(LEDiffError, ValueError):
    """A LUT file OCIO cannot read (malformed, wrong number of entries, unknown format): the message
    names the file, OCIO's reason and the fix."""


def _ocio():
    import PyOpenColorIO as ocio  # imported lazily: a pack import must not need it

    return ocio


def lut_extensions() -> tuple[str, ...]:
    """The file extensions OCIO's FileTransform reads (``.cube``, ``.3dl``, ``.spi3d``, ``.spi1d``,
    ``.clf``, ...), lower case with the dot, as the installed OCIO reports them."""
    return tuple(sorted({"." + ext.lower() for _, ext in _ocio().FileTransform.getFormats()}))


def config_source(source: str = "", base: str | None = None) -> str:
    """What ``load_config`` opens for a user's ``source``: empty = the built-in ACES 2.0 studio config
    (``STUDIO_CONFIG``), ``$OCIO`` = the file the OCIO environment variable names, ``ocio://...`` a
    built-in config by name, anything else a path to a ``config.ocio`` (relative paths from ``base``)."""
    source = source.strip()
    if not source:
        return STUDIO_CONFIG
    if source == "$OCIO":
        value = os.environ.get("OCIO", "").strip()
        if not value:
            raise OCIOConfigError("config is $OCIO but the OCIO environment variable is not set: set it to your "
                                  "config.ocio before starting ComfyUI, type the config's path, or leave config "
                                  "empty for the built-in ACES 2.0 studio config")
        return value
    if source.startswith("ocio://"):
        return source
    path = os.path.expanduser(source)
    if base is not None and not os.path.isabs(path):
        path = os.path.join(base, path)
    return os.path.abspath(path)


def load_config(source: str = "", base: str | None = None):
    """The OCIO config for ``source`` (see ``config_source``), checked to load; a file config is
    re-read when its file changes. Callers that take a path from a user check it first
    (``lediff_core.io.access.check_readable``: a FIFO would block OCIO's read). Raises
    OCIOConfigError naming the config, OCIO's reason and the fix."""
    name = config_source(source, base)
    stamp = None
    if not name.startswith("ocio://"):
        try:
            st = os.stat(name)
        except OSError:
            raise OCIOConfigError(f"no OCIO config file {name!r}: type the path of an existing config.ocio "
                                  "(absolute, or relative to ComfyUI's input folder), $OCIO, or leave config "
                                  "empty for the built-in ACES 2.0 studio config") from None
        stamp = (st.st_mtime_ns, st.st_size)
    return _load_config(name, stamp)


@lru_cache(maxsize=8)
def _load_config(name: str, stamp):
    ocio = _ocio()
    try:
        cfg = ocio.Config.CreateFromFile(name)
        cfg.validate()
    except ocio.Exception as e:
        builtins = ", ".join("ocio://" + c[0] for c in ocio.BuiltinConfigRegistry().getBuiltinConfigs())
        raise OCIOConfigError(
            f"the OCIO config {name!r} does not load: {e}. Fix the config (ociocheck reports its problems), "
            f"or use a built-in one: leave config empty for the ACES 2.0 studio config, or type one of "
            f"{builtins}") from None
    return cfg


def _config_label(cfg) -> str:
    return repr(cfg.getName() or "(unnamed)")


def display_names(cfg=None) -> list[str]:
    """The displays of ``cfg`` (default: the built-in ACES 2.0 studio config), in the config's order."""
    return list((cfg or load_config()).getDisplays())


def view_names(cfg=None, display: str | None = None) -> list[str]:
    """The views of one display of ``cfg``, or with no display every view of any display (each once,
    in the order the displays list them)."""
    cfg = cfg or load_config()
    displays = [display] if display is not None else cfg.getDisplays()
    return list(dict.fromkeys(v for d in displays for v in cfg.getViews(d)))


def look_names(cfg=None) -> list[str]:
    return [look.getName() for look in (cfg or load_config()).getLooks()]


def split_looks(looks: str) -> list[str]:
    """Look names from a comma-separated list, each optionally prefixed with ``+`` (forward, the
    default) or ``-`` (inverse), as OCIO's look syntax writes them. Spaces around names are dropped."""
    return [part.strip() for part in looks.split(",") if part.strip()]


def input_space(cfg, name: str = "") -> str:
    """The colour space of ``cfg`` the image is in: ``name`` when given, else the config's
    working space (linear Rec.709, D65) under one of ``WORKING_SPACE_NAMES``."""
    spaces = [cs.getName() for cs in cfg.getColorSpaces()]
    candidates = (name.strip(),) if name.strip() else WORKING_SPACE_NAMES
    for candidate in candidates:
        cs = cfg.getColorSpace(candidate)  # also finds aliases
        if cs is not None:
            return cs.getName()
    wanted = repr(name.strip()) if name.strip() else f"the working space (linear Rec.709, D65: {WORKING_SPACE!r})"
    raise OCIOConfigError(
        f"the OCIO config {_config_label(cfg)} has no colour space {wanted}; it has: {', '.join(spaces)}. "
        "Type the name of the config's colour space that holds scene-linear Rec.709 (D65) in input_space, "
        "or convert the image to the space you name first")


def display_view_processor(cfg, display: str, view: str, looks: str = "", source: str = ""):
    """OCIO's CPU processor for ``cfg``'s ``display``/``view`` transform from the colour space
    ``source`` (see ``input_space``), with ``looks`` (comma-separated, see ``split_looks``) applied
    in their process space before the view. Every name is checked first: an unknown one raises
    OCIOConfigError listing the config's displays, the display's views or the config's looks."""
    ocio = _ocio()
    label = _config_label(cfg)
    displays = display_names(cfg)
    if display not in displays:
        raise OCIOConfigError(f"the OCIO config {label} has no display {display!r}; its displays are: "
                              f"{', '.join(displays)}. Type one of these as the display")
    views = view_names(cfg, display)
    if view not in views:
        raise OCIOConfigError(f"the display {display!r} of the OCIO config {label} has no view {view!r}; its "
                              f"views are: {', '.join(views)}. Pick one of these as the view")
    known = look_names(cfg)
    names = split_looks(looks)
    for look in names:
        if look.lstrip("+-").strip() not in known:
            raise OCIOConfigError(
                f"the OCIO config {label} has no look {look.lstrip('+-').strip()!r}; its looks are: "
                f"{', '.join(known) or 'none'}. Type looks as a comma-separated list of these (a leading - "
                "applies one inverted), or leave looks empty")
    space = input_space(cfg, source)
    steps = []
    if names:
        steps.append(ocio.LookTransform(src=space, dst=space, looks=", ".join(names)))
    steps.append(ocio.DisplayViewTransform(src=space, display=display, view=view))
    try:
        return cfg.getProcessor(ocio.GroupTransform(steps)).getDefaultCPUProcessor()
    except ocio.Exception as e:
        raise OCIOConfigError(f"the OCIO config {label} cannot build {display!r}/{view!r} from {space!r}"
                              f"{' with looks ' + repr(looks) if names else ''}: {e}. Fix the config, or "
                              "choose another display, view or look") from None


def lut_file_processor(path: str, interpolation: str = "linear", direction: str = "forward"):
    """OCIO's CPU processor for the LUT file ``path`` (any format of ``lut_extensions``) through a
    FileTransform. The file is read afresh each call (OCIO's file cache cleared), so an edited LUT
    is seen. Raises LUTFileError with OCIO's reason (malformed, wrong number of entries)."""
    ocio = _ocio()
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    ocio.ClearAllCaches()
    transform = ocio.FileTransform(
        src=path, interpolation=getattr(ocio, f"INTERP_{interpolation.upper()}"),
        direction=getattr(ocio, f"TRANSFORM_DIR_{direction.upper()}"))
    try:
        return ocio.Config.CreateRaw().getProcessor(transform).getDefaultCPUProcessor()
    except ocio.ExceptionMissingFile:
        raise LUTFileError(f"no LUT file {os.path.basename(path)!r} (looked for {path!r}): put the LUT file "
                           "in ComfyUI's input folder and pick it again") from None
    except ocio.Exception as e:
        reason = " ".join(str(e).split())
        raise LUTFileError(
            f"OCIO cannot read the LUT file {os.path.basename(path)!r}: {reason}. Export the LUT again "
            f"(a 3D .cube needs LUT_3D_SIZE 2..129 and size^3 lines of 3 numbers), or use another file of "
            f"a format OCIO reads ({', '.join(lut_extensions())})") from None


def apply_processor(cpu, image):
    """Apply an OCIO CPU processor to RGB(A) pixels, channels last (torch tensor or numpy array;
    alpha passes through). Returns float32 of the same type (torch keeps device)."""
    is_torch = isinstance(image, torch.Tensor)
    arr = image.detach().cpu().numpy() if is_torch else np.asarray(image)
    rgb = np.ascontiguousarray(arr[..., :3], dtype=np.float32).reshape(-1, 3).copy()
    cpu.applyRGB(rgb)
    out = np.array(arr, dtype=np.float32, copy=True)
    out[..., :3] = rgb.reshape(arr.shape[:-1] + (3,))
    return torch.from_numpy(out).to(image.device) if is_torch else out
