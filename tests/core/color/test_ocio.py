"""The OCIO path for linear conversions: equal to OCIO's own processor, and to published matrices."""

import numpy as np
import PyOpenColorIO as ocio
import torch

from lediff_core.color.ocio import LINEAR_SPACES, WORKING_SPACE, convert_linear, linear_matrix


def test_matrix_equals_ocio_processor_on_hdr_pixels():
    rng = np.random.default_rng(0)
    pixels = (rng.standard_normal((64, 3)) * 50).astype(np.float32)
    cfg = ocio.Config.CreateFromFile("ocio://default")
    for target in LINEAR_SPACES:
        expected = pixels.copy()
        cfg.getProcessor(WORKING_SPACE, target).getDefaultCPUProcessor().applyRGB(expected)
        got = convert_linear(pixels, WORKING_SPACE, target)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
        back = convert_linear(torch.from_numpy(got), target, WORKING_SPACE)
        np.testing.assert_allclose(back.numpy(), pixels, rtol=1e-5, atol=1e-5 * np.abs(pixels).max())


def test_published_srgb_to_acescg_matrix():
    # ACES TB-2014-004 / widely published linear sRGB (D65) -> ACEScg (Bradford to the ACES white)
    published = [[0.6131, 0.3395, 0.0474], [0.0701, 0.9164, 0.0135], [0.0206, 0.1096, 0.8698]]
    np.testing.assert_allclose(linear_matrix(WORKING_SPACE, "ACEScg"), published, atol=2e-4)
    # BT.2087: linear BT.709 -> BT.2020 (same white, no adaptation)
    bt2087 = [[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]]
    np.testing.assert_allclose(linear_matrix(WORKING_SPACE, "Linear Rec.2020"), bt2087, atol=2e-4)
