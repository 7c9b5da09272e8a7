"""Degenerate inputs in the core, no host: Tone Map treats NaN and Inf pixels as absent and paints them,
and the size checks every node calls name the input, its size and the minimum."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def test_tone_map_treats_nan_and_inf_pixels_as_absent_and_paints_them():
    """Core, no host: the finite pixels come out exactly as if the bad ones were black (which the
    automatic exposure ignores, being non-positive), the bad ones cyan."""
    from lediff_core.color import NONFINITE_RGB
    from lediff_core.color.tonemap import tone_map

    g = torch.Generator().manual_seed(5)
    hdr = torch.rand((2, 8, 8, 3), generator=g) * 8
    bad = torch.zeros((2, 8, 8), dtype=torch.bool)
    bad[0, 1, 2] = bad[1, 7, 7] = bad[1, 0, 0] = True
    holed = hdr.clone()
    hdr[0, 1, 2, 1] = float("nan")
    hdr[1, 7, 7] = float("inf")
    hdr[1, 0, 0, 2] = float("-inf")
    holed[bad] = 0.0
    for operator in ("aces", "reinhard", "clip"):
        out = tone_map(hdr, operator, exposure=1.0, auto_exposure=True)
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
        assert torch.equal(out[~bad], tone_map(holed, operator, exposure=1.0, auto_exposure=True)[~bad])
        assert (out[bad] == torch.tensor(NONFINITE_RGB)).all()


def test_core_size_checks_name_input_size_and_minimum():
    from lediff_core.color import ImageSizeError, check_image_size
    from lediff_core.model.hdr_vae import LatentError, check_latent

    with pytest.raises(ImageSizeError, match=r"^ldr is 0x3 pixels \(width x height\); at least 1x1 is needed\."):
        check_image_size(torch.zeros(2, 3, 0, 3), "ldr")
    with pytest.raises(ImageSizeError, match=r"^test is 5x4 pixels .* at least 11x11 is needed by pu21_ssim"):
        check_image_size(np.zeros((4, 5, 3)), "test", 11, batched=False, why=" by pu21_ssim")
    with pytest.raises(ImageSizeError, match=r"^image has 2 channel\(s\); at least 3 \(RGB\)"):
        check_image_size(torch.zeros(1, 4, 4, 2))
    check_image_size(torch.zeros(1, 1, 1, 4))  # RGBA 1x1: fine
    check_image_size(torch.zeros(1, 1, 1))  # a MASK has no channel axis
    with pytest.raises(LatentError, match=r"^dark is 0x0 latent pixels \(width x height\); at least 1x1 is needed"):
        check_latent(torch.zeros(1, 4, 0, 0), "dark")
    with pytest.raises(LatentError, match=r"^latent is an empty batch \(no latents\); at least 1 latent"):
        check_latent(torch.zeros(0, 4, 8, 8))

