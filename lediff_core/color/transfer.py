"""BT.2100 transfer functions (PQ and HLG) and BT.2408 reference white, written once for every
colour conversion and display format in the pack (torch tensors, float32 or wider).

Sources: ITU-R BT.2100-2 Table 4 (PQ, identical to SMPTE ST 2084) and Table 5 (HLG OETF and its
inverse); ITU-R BT.2408-7 section 2.2 (reference white: 203 cd/m2 for PQ, 75 % HLG signal).

Conventions:
- PQ works on absolute display light in cd/m2 (0..10000).
- HLG works on normalised *scene* light E in 0..1 (no OOTF), which is exactly what ComfyUI core's
  ``hlg_to_linear`` produces from an HLG-encoded IMAGE. Beyond 1 the log segment simply continues
  (as core's does); below 0 both curves are mirrored (odd extension), so nothing is clamped here.
  Callers that must stay inside a format's range count and handle out-of-range values themselves.
"""

from __future__ import annotations

import math

import torch

# SMPTE ST 2084 / BT.2100 PQ constants
PQ_M1 = 2610 / 16384
PQ_M2 = 2523 / 4096 * 128
PQ_C1 = 3424 / 4096
PQ_C2 = 2413 / 4096 * 32
PQ_C3 = 2392 / 4096 * 32
PQ_PEAK_NITS = 10000.0

# BT.2100 HLG constants
HLG_A = 0.17883277
HLG_B = 1 - 4 * HLG_A  # 0.28466892
HLG_C = 0.5 - HLG_A * math.log(4 * HLG_A)  # 0.55991072928

# BT.2408 reference (diffuse) white
PQ_REFERENCE_WHITE_NITS = 203.0
HLG_REFERENCE_WHITE_SIGNAL = 0.75


def _odd(f, x: torch.Tensor) -> torch.Tensor:
    """Apply a curve defined for x >= 0 to |x| and restore the sign (odd extension)."""
    return torch.sign(x) * f(x.abs())


def pq_encode(nits: torch.Tensor) -> torch.Tensor:
    """Absolute luminance (cd/m2) -> PQ signal (1.0 at 10000 cd/m2), the ST 2084 inverse EOTF."""

    def f(n):
        y = (n / PQ_PEAK_NITS) ** PQ_M1
        return ((PQ_C1 + PQ_C2 * y) / (1 + PQ_C3 * y)) ** PQ_M2

    return _odd(f, nits)


def pq_decode(signal: torch.Tensor) -> torch.Tensor:
    """PQ signal -> absolute luminance in cd/m2, the ST 2084 EOTF."""

    def f(e):
        p = e ** (1 / PQ_M2)
        return PQ_PEAK_NITS * (torch.clamp(p - PQ_C1, min=0) / (PQ_C2 - PQ_C3 * p)) ** (1 / PQ_M1)

    return _odd(f, signal)


def hlg_encode(scene: torch.Tensor) -> torch.Tensor:
    """Normalised scene light E (1.0 = HLG peak) -> HLG signal E', the BT.2100 OETF."""

    def f(e):
        # the clamp only keeps log() finite on the branch torch.where discards
        log_branch = HLG_A * torch.log(torch.clamp(12 * e - HLG_B, min=1e-12)) + HLG_C
        return torch.where(e <= 1 / 12, torch.sqrt(3 * e), log_branch)

    return _odd(f, scene)


def hlg_decode(signal: torch.Tensor) -> torch.Tensor:
    """HLG signal E' -> normalised scene light E, the BT.2100 inverse OETF (no OOTF)."""

    def f(s):
        return torch.where(s <= 0.5, s * s / 3, (torch.exp((s - HLG_C) / HLG_A) + HLG_B) / 12)

    return _odd(f, signal)


# Scene light of BT.2408's HLG reference white (signal 0.75): about 0.265.
HLG_REFERENCE_WHITE_SCENE = float(hlg_decode(torch.tensor(HLG_REFERENCE_WHITE_SIGNAL, dtype=torch.float64)))
