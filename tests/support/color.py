"""Independent references for the colour tests: SMPTE RP 177 matrices written from their
definition, PyOpenColorIO called directly, and HDR test pixels."""

from __future__ import annotations

import math

import numpy as np
import PyOpenColorIO as ocio

from lediff_core.color.ocio import WORKING_SPACE

XYZ_PRIMARIES = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1 / 3, 1 / 3)


def rp177(chroma) -> np.ndarray:
    """SMPTE RP 177 normalised primary matrix (RGB -> XYZ, white at Y = 1), written here for the
    tests from its definition so that the pack's own matrices are not the reference."""
    rx, ry, gx, gy, bx, by, wx, wy = chroma
    p = np.array([[rx, gx, bx], [ry, gy, by], [1 - rx - ry, 1 - gx - gy, 1 - bx - by]], dtype=np.float64)
    w = np.array([wx / wy, 1.0, (1 - wx - wy) / wy])
    return p * np.linalg.solve(p, w)


def ocio_apply(pixels: np.ndarray, source: str, target: str) -> np.ndarray:
    out = np.ascontiguousarray(pixels, dtype=np.float32).copy()
    cfg = ocio.Config.CreateFromFile("ocio://default")
    cfg.getProcessor(source, target).getDefaultCPUProcessor().applyRGB(out)
    return out


def hdr_pixels(n=4096, seed=0, lo=-10.0, hi=5.0) -> np.ndarray:
    """Positive linear HDR over 15 stops, per-channel independent (saturated colours included)."""
    rng = np.random.default_rng(seed)
    return np.exp2(rng.uniform(lo, hi, (n, 3))).astype(np.float32)


def rel_error(got, want) -> float:
    """Largest error relative to each pixel's largest component."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float((np.abs(got - want) / np.abs(want).max(axis=-1, keepdims=True)).max())


# ITU-R BT.2087-0: linear Rec.709 -> Rec.2020 (published, 4 decimals)
REC709_TO_2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114],
                           [0.0164, 0.0880, 0.8956]])
# ITU-R BT.2100-2 Table 4 / SMPTE ST 2084
M1, M2 = 2610 / 16384, 2523 / 4096 * 128
C1, C2, C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
# ITU-R BT.2100-2 Table 5 (HLG)
HA, HB = 0.17883277, 0.28466892
HC = 0.5 - HA * math.log(4 * HA)
LW, GAMMA = 1000.0, 1.2  # HLG's nominal display peak and its system gamma (BT.2100 Table 5 note)


def pq_eotf(e):
    p = np.power(np.clip(e, 0, 1), 1 / M2)
    return 10000 * np.power(np.maximum(p - C1, 0) / (C2 - C3 * p), 1 / M1)


def pq_inverse_eotf(nits):
    y = np.power(np.clip(nits, 0, 10000) / 10000, M1)
    return np.power((C1 + C2 * y) / (1 + C3 * y), M2)


def hlg_inverse_oetf(e):
    e = np.clip(e, 0, None)
    return np.where(e <= 0.5, e * e / 3, (np.exp((e - HC) / HA) + HB) / 12)


def hlg_oetf(scene):
    """Scene light E (0..1) -> HLG signal E', the BT.2100 OETF (Table 5)."""
    e = np.clip(scene, 0, None)
    return np.where(e <= 1 / 12, np.sqrt(3 * e), HA * np.log(np.maximum(12 * e - HB, 1e-12)) + HC)


def hlg_ootf(scene):
    """Scene light E (BT.2020 RGB, 0..1) -> display light in cd/m2 on the nominal 1000 cd/m2 HLG
    display (BT.2100: F_D = Lw * Ys^(gamma-1) * E, black level 0)."""
    ys = scene @ np.array([0.2627, 0.6780, 0.0593])
    return LW * np.power(np.maximum(ys, 1e-12), GAMMA - 1)[..., None] * scene


HLG_WHITE_SCENE = float(hlg_inverse_oetf(np.array(0.75)))  # BT.2408: 75 % signal


def ocio_display(cfg, pixels, display, view, looks=""):
    """OCIO's own display path, built in the test (the pack's working space in):
    Config.getProcessor(src, display, view) or, with looks, OCIO's viewing pipeline with a looks
    override."""
    out = np.ascontiguousarray(pixels, dtype=np.float32).copy()
    if looks:
        pipeline = ocio.LegacyViewingPipeline()
        pipeline.setDisplayViewTransform(ocio.DisplayViewTransform(src=WORKING_SPACE, display=display, view=view))
        pipeline.setLooksOverrideEnabled(True)
        pipeline.setLooksOverride(looks)
        processor = pipeline.getProcessor(cfg)
    else:
        processor = cfg.getProcessor(WORKING_SPACE, display, view, ocio.TRANSFORM_DIR_FORWARD)
    processor.getDefaultCPUProcessor().applyRGB(out.reshape(-1, 3))
    return out
