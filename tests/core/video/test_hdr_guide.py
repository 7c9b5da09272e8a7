"""The HDR guide the flow is computed on (lediff_core.video.flow.hdr_guide): one mapping for the whole
clip, so brightness changes between frames stay visible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lediff_core.video.flow import hdr_guide
from support.clips import CLIP_THRESHOLD


def test_hdr_guide_is_one_mapping_for_the_clip():
    frames = np.ones((3, 4, 5, 3), np.float32)
    frames[1] *= 4  # two stops brighter: the guide must show it, not re-expose it away
    frames[:, 0, 0] = 2.0 ** -12
    frames[:, 3, 4] = 2.0 ** 6
    g = hdr_guide(torch.from_numpy(frames))
    assert g.shape == (3, 4, 5, 1) and 0 <= g.min() and g.max() <= 1
    assert float(g[1, 1, 1]) > float(g[0, 1, 1]) + 0.05
    assert float(g[0, 1, 1]) == pytest.approx(float(g[2, 1, 1]))
    assert CLIP_THRESHOLD == 0.99

