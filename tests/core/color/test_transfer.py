"""BT.2100 PQ/HLG curves against published check values (BT.2100 tables, BT.2408 reference white)."""

import torch

from lediff_core.color.transfer import (
    HLG_REFERENCE_WHITE_SCENE,
    PQ_REFERENCE_WHITE_NITS,
    hlg_decode,
    hlg_encode,
    pq_decode,
    pq_encode,
)


def t(*v):
    return torch.tensor(v, dtype=torch.float64)


def test_pq_published_points():
    # ST 2084: 10000 cd/m2 is signal 1; BT.2408: 203 cd/m2 is signal 0.58 (58 %); 100 cd/m2 is 0.508
    s = pq_encode(t(0.0, 100.0, PQ_REFERENCE_WHITE_NITS, 1000.0, 10000.0))
    torch.testing.assert_close(s, t(0.0, 0.5081, 0.5807, 0.7518, 1.0), atol=1e-4, rtol=0)


def test_hlg_published_points():
    # BT.2100: E = 1/12 is the joint of the sqrt and log segments (E' = 0.5); E = 1 gives E' = 1.
    # BT.2408: reference white is 75 % signal, scene light 0.265 (no OOTF).
    torch.testing.assert_close(hlg_encode(t(0.0, 1 / 12, 1.0)), t(0.0, 0.5, 1.0), atol=1e-7, rtol=0)
    assert abs(HLG_REFERENCE_WHITE_SCENE - 0.265) < 5e-4


def test_round_trips_and_odd_extension():
    x = torch.linspace(-2, 2, 401, dtype=torch.float64)
    torch.testing.assert_close(hlg_decode(hlg_encode(x)), x, atol=1e-12, rtol=1e-10)
    nits = torch.logspace(-3, 4, 200, dtype=torch.float64)
    torch.testing.assert_close(pq_decode(pq_encode(nits)), nits, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(pq_encode(-nits), -pq_encode(nits))


def test_chromaticity_matrices_against_published_values():
    # IEC 61966-2-1 (sRGB) RGB->XYZ matrix, and BT.709's luminance coefficients
    import numpy as np

    from lediff_core.color import REC709_CHROMATICITIES
    from lediff_core.color.chromaticities import luminance_weights, rgb_to_xyz_matrix, xyz_to_rgb_matrix

    srgb = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    np.testing.assert_allclose(rgb_to_xyz_matrix(REC709_CHROMATICITIES), srgb, atol=1e-4)
    np.testing.assert_allclose(luminance_weights(REC709_CHROMATICITIES), [0.2126, 0.7152, 0.0722], atol=1e-4)
    xyz_primaries = (1, 0, 0, 1, 0, 0, 1 / 3, 1 / 3)  # CIE XYZ as RGB primaries, equal-energy white
    np.testing.assert_allclose(rgb_to_xyz_matrix(xyz_primaries), np.eye(3), atol=1e-12)
    np.testing.assert_allclose(xyz_to_rgb_matrix(REC709_CHROMATICITIES) @ srgb, np.eye(3), atol=1e-3)
    # the inverse is written out (no LAPACK, which can exit the process when memory is short):
    # LAPACK's own inverse agrees on random primaries and whites
    rng = np.random.default_rng(7)
    for _ in range(200):
        c = tuple(rng.uniform(0.02, 0.7, 8))
        np.testing.assert_allclose(xyz_to_rgb_matrix(c), np.linalg.inv(rgb_to_xyz_matrix(c)), rtol=1e-9, atol=1e-9)
