"""Whole-image colour-space conversions: the spaces of the HDR Color Space node, and EXR
pixels tagged with any ``chromaticities`` into a linear space.

Linear spaces convert through ``ocio.convert_linear`` (OCIO's own matrices), never clamped. The log
encodings (``LOG_SPACES``: ACEScct, ARRI LogC3 and LogC4, Sony S-Log3, PU21, and those of LTX-2.3's
HDR LoRA, DiffHDR and X2HDR) are the records of ``log.py``, each on its own gamut; their out-of-range
behaviour is described there and counted in the notes (signals outside 0..1 that a clamping node
would cut). NaN/Inf in or out of a log encoding are refused with an error: a 0..1 signal has no
code for them, and the clamping node the encoding is for would quietly make them ordinary values.
The two BT.2100 encoded spaces are signals on Rec.2020 primaries, with the curves of ``transfer.py``:

- ``HLG Rec.2020 (ComfyUI HDR)``: the convention of ComfyUI core's Save Image (Advanced) with
  colorspace ``HDR``: the signal decodes (inverse OETF, no OOTF) to scene light E where E = 1 is
  HLG's nominal peak. ``reference_white`` (the linear value that is diffuse white) maps to BT.2408's
  reference white, signal 0.75 (E = 0.2647).
- ``PQ Rec.2020``: SMPTE ST 2084 signal of absolute light; ``reference_white`` maps to BT.2408's
  203 cd/m2 (signal 0.5807).

Out-of-range values (counted, and reported in the returned notes):
- Encoding: negative components (below black or outside Rec.2020's gamut) are clipped to 0: neither
  format has negative light, and core's ``hlg_to_linear`` would decode a negative signal as
  *positive* light. HLG above its nominal peak (E > 1) is kept: the log segment continues, exactly
  as core's ``hlg_to_linear`` decodes it, so nothing is lost inside a graph. PQ above 10000 cd/m2
  is clipped to signal 1 (PQ defines nothing beyond its peak).
- Decoding: negative signals are decoded mirrored (negative light, the odd extension of the
  curves), so the decode stays monotonic; core's ``hlg_to_linear`` instead squares them into
  positive light (-0.5 would come out brighter than +0.4). HLG signals above 1 continue the log
  segment like core's; PQ signals above 1 are read as 1 (10000 cd/m2).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import REC709_CHROMATICITIES, check_finite
from .chromaticities import as_chromaticities, rgb_to_xyz_matrix, xyz_to_rgb_matrix
from .log import LOG_ENCODINGS, PU21_L_MAX, LogEncoding
from .ocio import CHROMATICITIES, LINEAR_SPACES, WORKING_SPACE, convert_linear, space_of_chromaticities
from .transfer import (
    HLG_REFERENCE_WHITE_SCENE,
    PQ_PEAK_NITS,
    PQ_REFERENCE_WHITE_NITS,
    hlg_decode,
    hlg_encode,
    pq_decode,
    pq_encode,
)

HLG_SPACE = "HLG Rec.2020 (ComfyUI HDR)"
PQ_SPACE = "PQ Rec.2020"
LOG_SPACES = tuple(LOG_ENCODINGS)
ENCODED_SPACES = (HLG_SPACE, PQ_SPACE, *LOG_SPACES)
COLOR_SPACES = (*LINEAR_SPACES, *ENCODED_SPACES)
# the linear space under both BT.2100 encodings
BT2100_PRIMARIES = "Linear Rec.2020"


def _check(source: str, target: str, reference_white: float) -> None:
    for role, name in (("source", source), ("target", target)):
        if name not in COLOR_SPACES:
            raise ValueError(f"unknown {role} colour space {name!r}; choose one of {list(COLOR_SPACES)}")
    if not (math.isfinite(reference_white) and reference_white > 0):
        raise ValueError(
            f"reference_white must be a positive number (the linear value of diffuse white), got {reference_white}"
        )


def _count(mask: torch.Tensor) -> int:
    """Pixels with at least one flagged component (mask [..., 3])."""
    return int(mask.any(dim=-1).sum())


def gamut_matrix(encoding: LogEncoding, to_working: bool = True) -> np.ndarray:
    """Linear RGB in a log encoding's D65 gamut -> the working space (Rec.709, D65), or back
    (``to_working`` False), through XYZ from the published primaries: the whites are the same, so
    there is nothing to adapt."""
    if to_working:
        return xyz_to_rgb_matrix(REC709_CHROMATICITIES) @ rgb_to_xyz_matrix(encoding.gamut)
    return xyz_to_rgb_matrix(encoding.gamut) @ rgb_to_xyz_matrix(REC709_CHROMATICITIES)


def _to_linear(rgb: torch.Tensor, source: str, reference_white: float,
               notes: list[str]) -> tuple[torch.Tensor, str]:
    """An encoded signal -> linear light and the linear space (of LINEAR_SPACES) it is in."""
    if source in LOG_ENCODINGS:
        encoding = LOG_ENCODINGS[source]
        if encoding.absolute:
            above = _count(rgb > 1)
            linear = encoding.decode(rgb.clamp(max=1.0)) * (reference_white / PQ_REFERENCE_WHITE_NITS)
            if above:
                notes.append(f"{above} pixel(s) above {source}'s peak (signal > 1): read as signal 1 (10000 cd/m2)")
        else:
            linear = encoding.decode(rgb)
        if isinstance(encoding.gamut, str):
            return linear, encoding.gamut
        m = torch.as_tensor(gamut_matrix(encoding), dtype=linear.dtype, device=linear.device)
        return linear @ m.T, WORKING_SPACE
    return _decode(rgb, source, reference_white, notes), BT2100_PRIMARIES


def _from_linear(linear: torch.Tensor, space: str, target: str, reference_white: float,
                 notes: list[str]) -> torch.Tensor:
    """Linear light in ``space`` (of LINEAR_SPACES) -> the signal of the encoded ``target``."""
    if target not in LOG_ENCODINGS:
        return _encode(convert_linear(linear, space, BT2100_PRIMARIES), target, reference_white, notes)
    encoding = LOG_ENCODINGS[target]
    if isinstance(encoding.gamut, str):
        linear = convert_linear(linear, space, encoding.gamut)
    else:
        m = torch.as_tensor(gamut_matrix(encoding, to_working=False), dtype=linear.dtype, device=linear.device)
        linear = convert_linear(linear, space, WORKING_SPACE) @ m.T
    if encoding.absolute:
        nits = linear * (PQ_REFERENCE_WHITE_NITS / reference_white)
        above = _count(nits > PU21_L_MAX)
        if above:
            notes.append(f"{above} pixel(s) beyond {target}'s 10000 cd/m2 (linear > "
                         f"{reference_white * PU21_L_MAX / PQ_REFERENCE_WHITE_NITS:.4g}): clipped to signal 1; "
                         "raise reference_white to keep them")
        signal = encoding.encode(nits.clamp(max=PU21_L_MAX))
    else:
        signal = encoding.encode(linear)
        above = _count(signal > 1)
        if above:
            notes.append(f"{above} pixel(s) encode above signal 1 (linear > {encoding.peak:.4g} in "
                         f"{encoding.gamut_name}): kept, but a node that clamps to 0..1 will cut them")
    negative = _count(signal < 0)
    if negative:
        notes.append(f"{negative} pixel(s) encode below signal 0 (far below black or outside "
                     f"{encoding.gamut_name}): kept (the curve continues below black, invertibly); a node that clamps "
                     "to 0..1 will cut them")
    return signal


def _decode(rgb: torch.Tensor, source: str, reference_white: float, notes: list[str]) -> torch.Tensor:
    """BT.2100 signal -> linear Rec.2020 in units where ``reference_white`` is diffuse white."""
    negative = _count(rgb < 0)
    if source == HLG_SPACE:
        above = _count(rgb > 1)
        linear = hlg_decode(rgb) * (reference_white / HLG_REFERENCE_WHITE_SCENE)
        if above:
            notes.append(f"{above} pixel(s) above HLG's nominal peak (signal > 1): decoded along the "
                         "continued log segment, as ComfyUI core's hlg_to_linear does")
    else:
        above = _count(rgb > 1)
        linear = pq_decode(rgb.clamp(max=1.0)) * (reference_white / PQ_REFERENCE_WHITE_NITS)
        if above:
            notes.append(f"{above} pixel(s) above PQ's peak (signal > 1): read as signal 1 (10000 cd/m2)")
    if negative:
        core = "; core's hlg_to_linear would make them positive" if source == HLG_SPACE else ""
        notes.append(f"{negative} pixel(s) with negative {source} signals: decoded as negative light "
                     f"(mirrored curve{core})")
    return linear


def _encode(linear: torch.Tensor, target: str, reference_white: float, notes: list[str]) -> torch.Tensor:
    """Linear Rec.2020 (``reference_white`` = diffuse white) -> BT.2100 signal."""
    negative = _count(linear < 0)
    linear = linear.clamp(min=0.0)
    if target == HLG_SPACE:
        scene = linear * (HLG_REFERENCE_WHITE_SCENE / reference_white)
        above = _count(scene > 1)
        signal = hlg_encode(scene)
        if above:
            notes.append(f"{above} pixel(s) beyond HLG's nominal peak (linear > "
                         f"{reference_white / HLG_REFERENCE_WHITE_SCENE:.4g}): kept above signal 1 along "
                         "the log segment (ComfyUI core's hlg_to_linear decodes them); raise "
                         "reference_white to fit them under signal 1")
    else:
        nits = linear * (PQ_REFERENCE_WHITE_NITS / reference_white)
        above = _count(nits > PQ_PEAK_NITS)
        signal = pq_encode(nits.clamp(max=PQ_PEAK_NITS))
        if above:
            notes.append(f"{above} pixel(s) beyond PQ's 10000 cd/m2 (linear > "
                         f"{reference_white * PQ_PEAK_NITS / PQ_REFERENCE_WHITE_NITS:.4g}): clipped to "
                         "signal 1; raise reference_white to keep them")
    if negative:
        notes.append(f"{negative} pixel(s) with negative components (below black or outside "
                     f"Rec.2020's gamut): clipped to 0, {target} has no negative light")
    return signal


def convert_image(image: torch.Tensor, source: str, target: str,
                  reference_white: float = 1.0) -> tuple[torch.Tensor, list[str]]:
    """Convert an image [..., 3 or 4] (a 4th alpha channel passes through) between two of
    COLOR_SPACES. Returns the converted image (float32 or wider, same device) and notes on
    out-of-range pixels (empty when none), for the caller to log.

    ``reference_white`` is the linear value of diffuse white; it only matters when the source or
    target is HLG or PQ. Linear results are never clamped.
    """
    _check(source, target, reference_white)
    if image.shape[-1] not in (3, 4):
        raise ValueError(f"expected RGB or RGBA pixels in the last dimension, got {image.shape[-1]} channels")
    dtype = torch.promote_types(image.dtype, torch.float32)
    x = image.to(dtype)
    if source == target:
        return x.clone(), []
    notes: list[str] = []
    if source not in ENCODED_SPACES and target not in ENCODED_SPACES:
        return convert_linear(x, source, target), notes
    # PQ's curve cancels digits near black (p - c1): float32 would lose about 1e-4 relative there
    work = x.to(_curve_dtype(x.device))
    batch = work if work.ndim == 4 else work.reshape(1, 1, -1, work.shape[-1])  # check_finite reads [B, H, W, C]
    for role, name in (("source", source), ("target", target)):
        if name in LOG_ENCODINGS:
            check_finite(batch, "image", f"{name} (the {role}) is a 0..1 signal that has no code for "
                         "them, and the clamping node it is for would turn them into ordinary values")
    nonfinite = _count(~torch.isfinite(work[..., :3]))
    if nonfinite:
        notes.append(f"{nonfinite} pixel(s) with NaN/Inf components: passed through the curves unchanged "
                     "(NaN stays NaN); find the node that made them")
    rgb, alpha = work[..., :3], work[..., 3:]
    linear_space = source
    if source in ENCODED_SPACES:
        rgb, linear_space = _to_linear(rgb, source, reference_white, notes)
    if target in ENCODED_SPACES:
        rgb = _from_linear(rgb, linear_space, target, reference_white, notes)
    else:
        rgb = convert_linear(rgb, linear_space, target)
    out = torch.cat([rgb, alpha], dim=-1).to(dtype)
    if source in LOG_ENCODINGS:
        _check_decoded(out[..., :3], work[..., :3], source)
    return out, notes


def _check_decoded(linear: torch.Tensor, signal: torch.Tensor, source: str) -> None:
    """Finite log signals (checked before) decode to finite light unless they are far above 1,
    where the exponential leaves float range: the usual cause is an image that is not that signal."""
    overflow = ~torch.isfinite(linear).all(dim=-1)
    if overflow.any():
        raise ValueError(
            f"{int(overflow.sum())} pixel(s) decode beyond float range as {source} (signals up to "
            f"{float(signal[overflow].max()):.4g}, where the signal's 1 is linear {LOG_ENCODINGS[source].peak:.4g}): "
            f"the image is probably not in {source} (a linear or display image decoded as a log signal "
            "explodes); set source to the space it is in"
        )


def _curve_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def from_chromaticities(rgb: np.ndarray, chromaticities=None, target: str = WORKING_SPACE) -> tuple[np.ndarray, str]:
    """Convert linear RGB [..., 3] tagged with an EXR ``chromaticities`` attribute (None: the file
    has none, which OpenEXR defines as Rec.709/D65) into ``target`` (one of LINEAR_SPACES).

    Chromaticities of a space OCIO knows (within ``ocio.CHROMATICITIES_TOLERANCE``) convert with
    OCIO's matrices; any others (XYZ primaries, camera spaces) go to the working space with
    OpenEXR's RGB -> XYZ -> RGB matrices, without chromatic adaptation (how OpenEXR's own tools
    display them), then on with OCIO. Returns float32 pixels and the space they were read as.
    """
    if target not in LINEAR_SPACES:
        raise ValueError(f"unknown target colour space {target!r}; choose one of {list(LINEAR_SPACES)}")
    try:
        chroma = REC709_CHROMATICITIES if chromaticities is None else as_chromaticities(chromaticities)
        space = space_of_chromaticities(chroma)
        if space is not None:
            return np.asarray(convert_linear(rgb, space, target), dtype=np.float32), space
        m = xyz_to_rgb_matrix(REC709_CHROMATICITIES) @ rgb_to_xyz_matrix(chroma)
    except ValueError as e:
        raise ValueError(
            f"the file's chromaticities attribute cannot describe colours ({e}); rewrite it with the "
            "primaries the pixels are in, e.g. for Rec.709: exrstdattr -chromaticities 0.64 0.33 0.3 "
            "0.6 0.15 0.06 0.3127 0.329 in.exr out.exr"
        ) from e
    working = np.asarray(rgb, dtype=np.float32) @ m.T.astype(np.float32)
    described = "chromaticities " + ", ".join(f"{v:.4g}" for v in chroma)
    return np.asarray(convert_linear(working, WORKING_SPACE, target), dtype=np.float32), described


def exr_color_tags(space: str, precision: str, compression: str,
                   extra_layers: bool = False) -> tuple[tuple, dict, str | None]:
    """What an EXR of linear pixels in ``space`` carries: its ``chromaticities``, extra header
    attributes, and a note when an ACES2065-1 file cannot be an ACES container.

    SMPTE ST 2065-4 (the ACES image container) is an uncompressed, half-float, scanline RGB(A)
    OpenEXR with AP0 chromaticities and ``acesImageContainerFlag`` = 1; the flag claims all of that,
    so it is written only when the file meets it: our files are always scanline, and RGB(A) only
    unless they carry ``extra_layers``.
    """
    if space not in LINEAR_SPACES:
        raise ValueError(f"unknown colour space {space!r}; choose one of {list(LINEAR_SPACES)}")
    chromaticities = CHROMATICITIES[space]
    if space != "ACES2065-1":
        return chromaticities, {}, None
    if precision == "half" and compression == "none" and not extra_layers:
        return chromaticities, {"acesImageContainerFlag": 1}, None
    reasons = []
    if precision != "half" or compression != "none":
        reasons.append(f"an ACES container (SMPTE ST 2065-4) is half precision and uncompressed, this "
                       f"file is {precision}/{compression}")
    if extra_layers:
        reasons.append("an ACES container (SMPTE ST 2065-4) holds only R, G, B(, A), this file has extra layers")
    return chromaticities, {}, (
        "ACES2065-1 written with AP0 chromaticities but without acesImageContainerFlag: " + "; ".join(reasons)
    )
