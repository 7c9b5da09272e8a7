"""Table-driven code values (lediff_core.color.quantize) against the BT.2100 formulas evaluated in
float64: the tables are built from the *inverse* curves, the reference uses the forward ones, which
test_transfer.py checks against published values."""

import numpy as np
import pytest
import torch

from lediff_core.color.quantize import curve_codes
from lediff_core.color.transfer import hlg_decode, hlg_encode, pq_decode, pq_encode

CURVES = {"pq": (pq_encode, pq_decode), "hlg": (hlg_encode, hlg_decode)}


def probe_values(decode, bits, scale):
    """Log-uniform values over the float32 range that matters, signed zeros, negatives,
    subnormals, and the float32 neighbours of every code threshold."""
    rng = np.random.default_rng(bits)
    x = [10.0 ** rng.uniform(-12, 6, 200_000), -(10.0 ** rng.uniform(-12, 6, 1000)),
         [0.0, -0.0, 1e-45, 1e-40, -1e-40, 3e38]]
    code_max = (1 << bits) - 1
    thresholds = decode(torch.arange(0.5, code_max, dtype=torch.float64) / code_max).numpy() / scale
    t32 = thresholds.astype(np.float32)
    x += [t32, np.nextafter(t32, np.float32(0)), np.nextafter(t32, np.float32(np.inf))]
    return np.concatenate([np.asarray(v, np.float32).ravel() for v in x])


@pytest.mark.parametrize("bits", [10, 12])
@pytest.mark.parametrize("curve,scale,limit", [
    ("pq", 203.0, 1000.0), ("pq", 203.0 / 2.5, 10000.0), ("pq", 1.0, 10000.0),
    ("hlg", 0.265, 1.0), ("hlg", 0.1, 1.0), ("hlg", 1.0, 0.5),
])
def test_codes_are_the_rounded_float64_curve(curve, scale, limit, bits):
    encode, decode = CURVES[curve]
    x = probe_values(decode, bits, scale)
    codes = curve_codes(x, decode, bits, scale, limit)
    assert codes.dtype == np.uint16 and codes.shape == x.shape
    code_max = (1 << bits) - 1
    exact = encode(torch.from_numpy(x).double().mul(scale).clamp(0, limit)).numpy() * code_max
    expected = np.round(exact)
    # a value within float64 noise of a rounding boundary may fairly go either way
    clear = np.abs(exact - np.floor(exact) - 0.5) > 1e-9
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(codes[clear], expected[clear])
    assert codes[x <= 0].max() == 0
    over = x.astype(np.float64) * scale >= limit
    assert np.all(codes[over] == np.round(encode(torch.tensor(float(limit))).item() * code_max))
    # a torch tensor takes the same tables: the same codes, int16, on its device (CUDA where there is one)
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        on_device = curve_codes(torch.from_numpy(x).to(device), decode, bits, scale, limit)
        assert on_device.dtype == torch.int16 and on_device.device.type == device
        np.testing.assert_array_equal(on_device.cpu().numpy(), codes.astype(np.int16))


def test_threshold_neighbours_straddle_each_code_step():
    # the float32 just below a threshold has the lower code, the threshold's own float32 ceiling
    # the higher one: every one of the 1023 steps is hit exactly once, in order
    t = pq_decode(torch.arange(0.5, 1023, dtype=torch.float64) / 1023).numpy() / 203.0
    hi = t.astype(np.float32)
    hi = np.where(hi < t, np.nextafter(hi, np.float32(np.inf)), hi)
    lo = np.nextafter(hi, np.float32(0))
    np.testing.assert_array_equal(curve_codes(hi, pq_decode, 10, 203.0), np.arange(1, 1024))
    np.testing.assert_array_equal(curve_codes(lo, pq_decode, 10, 203.0), np.arange(0, 1023))


def test_refuses_curves_finer_than_its_table():
    with pytest.raises(ValueError, match="SHIFT"):
        curve_codes(np.ones(4, np.float32), hlg_decode, 16)
    with pytest.raises(ValueError, match="strictly increasing"):
        curve_codes(np.ones(4, np.float32), lambda s: -s, 10)
