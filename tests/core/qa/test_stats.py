"""HDR Stats' histogram plot in the core (lediff_core.qa.stats): levels drawn where they belong."""

from __future__ import annotations

import numpy as np
import pytest


def test_histogram_plot_puts_levels_where_they_belong():
    from lediff_core.qa.stats import HDR_COLOUR, histogram_plot, range_stats

    img = np.ones((64, 64, 3), np.float32) * 2.0**-4
    img[:, 32:] = 2.0**2  # half the pixels 4 stops below SDR white, half 2 stops above
    plot = histogram_plot([("HDR", range_stats(img), HDR_COLOUR)])
    body = plot[28:-36, 48:-12]  # inside the plot frame (margins of histogram_plot)
    orange = (np.abs(body * 255 - np.array(HDR_COLOUR)).max(-1) < 3)
    white_cols = np.where((body > 0.9).all(-1).sum(0) > body.shape[0] * 0.8)[0]
    top_rows = np.where(orange.any(1))[0][:3]
    tall = np.where(orange[top_rows].any(0))[0]
    xw = white_cols.mean()
    left, right = tall[tall < xw], tall[tall > xw]
    assert left.size and right.size
    assert (right.mean() - xw) / (xw - left.mean()) == pytest.approx(2 / 4, abs=0.1)

