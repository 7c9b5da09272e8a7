"""Log encodings (lediff_core.color.log, through spaces.convert_image): curves against colour-science
and the publishers' reference values, gamuts against colour-science's published primaries, whole
transforms against OpenColorIO's studio config, round trips, and the behaviour outside the domain."""

from __future__ import annotations

import numpy as np
import PyOpenColorIO as ocio
import pytest
import torch

from lediff_core.color.log import LOG_ENCODINGS, PU21_L_MIN, PU21_TOP, pu21_signal_decode, pu21_signal_encode
from lediff_core.color.ocio import WORKING_SPACE
from lediff_core.color.spaces import COLOR_SPACES, LOG_SPACES, convert_image, gamut_matrix
from lediff_core.qa.pu21 import pu21_encode
from support.color import hdr_pixels, rel_error

colour = pytest.importorskip("colour")  # requirements-dev.txt

ACESCCT, LOGC3, LOGC4, SLOG3, PU21 = LOG_SPACES
F64 = torch.float64

# colour-science's own curves, with the parameters our records claim
COLOUR_CURVES = {
    ACESCCT: (colour.models.log_encoding_ACEScct, colour.models.log_decoding_ACEScct),
    LOGC3: (lambda x: colour.models.log_encoding_ARRILogC3(x, firmware="SUP 3.x", EI=800),
            lambda y: colour.models.log_decoding_ARRILogC3(y, firmware="SUP 3.x", EI=800)),
    LOGC4: (colour.models.log_encoding_ARRILogC4, colour.models.log_decoding_ARRILogC4),
    SLOG3: (colour.models.log_encoding_SLog3, colour.models.log_decoding_SLog3),
}
COLOUR_GAMUTS = {LOGC3: "ARRI Wide Gamut 3", LOGC4: "ARRI Wide Gamut 4", SLOG3: "S-Gamut3.Cine"}
# the studio config's names for the same encodings (curve and gamut)
OCIO_STUDIO = {ACESCCT: "ACEScct", LOGC3: "ARRI LogC3 (EI800)", LOGC4: "ARRI LogC4", SLOG3: "S-Log3 S-Gamut3.Cine"}


def test_publishers_reference_values_for_18_percent_grey():
    # Academy S-2016-001 (ACEScct) section 4; ARRI "ALEXA Log C Curve - Usage in VFX" table (EI 800,
    # 0.18 -> 0.391007); Sony's S-Log3 technical summary (18 % grey -> code 420 of 1023);
    # ARRI LogC4 specification (18 % grey -> code 278 / 1000, i.e. 0.2784 of the range).
    grey = torch.tensor(0.18, dtype=F64)
    assert float(LOG_ENCODINGS[ACESCCT].encode(grey)) == pytest.approx(0.4135884, abs=5e-8)
    assert float(LOG_ENCODINGS[LOGC3].encode(grey)) == pytest.approx(0.391007, abs=5e-7)
    assert float(LOG_ENCODINGS[SLOG3].encode(grey)) == pytest.approx(420 / 1023, abs=1e-12)
    assert float(LOG_ENCODINGS[LOGC4].encode(grey)) == pytest.approx(0.2784, abs=5e-5)


@pytest.mark.parametrize("name", list(COLOUR_CURVES))
def test_curves_match_colour_science(name):
    encoding = LOG_ENCODINGS[name]
    encode, decode = COLOUR_CURVES[name]
    # through black, both toes and the log segment, up to far above the signal's 1
    x = np.concatenate([np.linspace(-0.2, 0.05, 201), np.exp2(np.linspace(-12, 9, 400))])
    ours = encoding.encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, encode(x), rtol=1e-12, atol=1e-13)
    signal = np.linspace(-0.3, 1.2, 301)
    np.testing.assert_allclose(encoding.decode(torch.from_numpy(signal)).numpy(), decode(signal),
                               rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("name", list(COLOUR_GAMUTS))
def test_gamut_matrices_match_colour_science(name):
    theirs = colour.RGB_COLOURSPACES[COLOUR_GAMUTS[name]]
    srgb = colour.RGB_COLOURSPACES["sRGB"]
    np.testing.assert_allclose(LOG_ENCODINGS[name].gamut[:6], theirs.primaries.ravel(), atol=0)
    np.testing.assert_allclose(LOG_ENCODINGS[name].gamut[6:], theirs.whitepoint, atol=0)
    ours = gamut_matrix(LOG_ENCODINGS[name])
    # colour-science derives the matrices from the same primaries: the same numbers
    derived = [space.copy() for space in (theirs, srgb)]
    for space in derived:
        space.use_derived_transformation_matrices(True)
    want = colour.matrix_RGB_to_RGB(*derived, chromatic_adaptation_transform=None)
    np.testing.assert_allclose(ours, want, rtol=1e-12, atol=1e-14)
    # the matrices as ARRI, Sony and IEC 61966-2-1 print them (rounded to 4-6 decimals)
    printed = colour.matrix_RGB_to_RGB(theirs, srgb, chromatic_adaptation_transform=None)
    np.testing.assert_allclose(ours, printed, atol=3e-4)
    np.testing.assert_allclose(gamut_matrix(LOG_ENCODINGS[name], to_working=False) @ ours, np.eye(3), atol=1e-14)


@pytest.mark.parametrize("name", list(OCIO_STUDIO))
def test_encodings_match_ocio_studio_config(name):
    """Against OCIO's built-in studio config: the curve alone (its linear camera gamut -> its log
    space, where its matrices cancel) to float32 precision; the whole working space -> signal
    transform loosely, because OCIO goes through ACES2065-1 with each camera maker's own
    adaptation (CAT02 for ARRI and Sony, Bradford for sRGB), which moves colours by up to about
    0.2 % where our D65 -> D65 matrices adapt nothing."""
    rgb = np.concatenate([hdr_pixels(2000, seed=3, lo=-10, hi=5), -hdr_pixels(48, seed=4, lo=-9, hi=-5)])
    cfg = ocio.Config.CreateFromFile("ocio://studio-config-latest")
    linear_name = {ACESCCT: "ACEScg", LOGC3: "Linear ARRI Wide Gamut 3", LOGC4: "Linear ARRI Wide Gamut 4",
                   SLOG3: "Linear S-Gamut3.Cine"}[name]
    curve = rgb.astype(np.float32).copy()
    cfg.getProcessor(linear_name, OCIO_STUDIO[name]).getDefaultCPUProcessor().applyRGB(curve)
    ours = LOG_ENCODINGS[name].encode(torch.from_numpy(rgb).to(F64)).numpy()
    np.testing.assert_allclose(ours, curve, rtol=2e-6, atol=2e-6)
    whole = rgb.astype(np.float32).copy()
    cfg.getProcessor(WORKING_SPACE, OCIO_STUDIO[name]).getDefaultCPUProcessor().applyRGB(whole)
    got, _ = convert_image(torch.from_numpy(rgb).to(F64), WORKING_SPACE, name)
    np.testing.assert_allclose(got.numpy(), whole, atol=2e-5 if name == ACESCCT else 3e-3)


def test_acescct_gamut_is_ocio_acescg():
    rgb = hdr_pixels(500, seed=1)
    linear, _ = convert_image(torch.from_numpy(rgb), WORKING_SPACE, "ACEScg")
    signal, _ = convert_image(torch.from_numpy(rgb), WORKING_SPACE, ACESCCT)
    torch.testing.assert_close(signal, LOG_ENCODINGS[ACESCCT].encode(linear.to(F64)).float())


def test_pu21_is_the_metrics_pu21_normalised_at_10000():
    nits = np.exp2(np.linspace(np.log2(PU21_L_MIN), np.log2(10000), 300))
    np.testing.assert_allclose(pu21_signal_encode(torch.from_numpy(nits)).numpy() * PU21_TOP, pu21_encode(nits),
                               rtol=1e-10, atol=1e-12)
    assert float(pu21_signal_encode(torch.tensor(10000.0, dtype=F64))) == pytest.approx(1.0, abs=1e-15)
    # the toe continues the curve: continuous at the floor and invertible below it (black, negatives)
    below = torch.tensor([-1.0, 0.0, 0.001, PU21_L_MIN], dtype=F64)
    back = pu21_signal_decode(pu21_signal_encode(below))
    torch.testing.assert_close(back, below, rtol=1e-9, atol=1e-12)
    step = pu21_signal_encode(torch.tensor([PU21_L_MIN * (1 - 1e-9), PU21_L_MIN * (1 + 1e-9)], dtype=F64))
    assert float(step[1] - step[0]) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("name", LOG_SPACES)
def test_round_trip_keeps_hdr_and_negative_light(name):
    rgb = np.concatenate([hdr_pixels(3000, seed=2, lo=-12, hi=5.5), -hdr_pixels(30, seed=5, lo=-12, hi=-4)])
    image = torch.from_numpy(rgb).reshape(1, 30, 101, 3)
    image = torch.cat([image, torch.rand(1, 30, 101, 1)], dim=-1)  # alpha passes through
    signal, _ = convert_image(image, WORKING_SPACE, name)
    back, notes = convert_image(signal, name, WORKING_SPACE)
    assert back.dtype == torch.float32 and not notes
    torch.testing.assert_close(back[..., 3], image[..., 3])
    assert rel_error(back[..., :3].reshape(-1, 3), rgb) < 1e-5


def test_signal_range_and_notes():
    hot = torch.tensor([[[[0.18, 0.18, 0.18], [300.0, 300.0, 300.0], [-0.5, 0.1, 0.1]]]])
    _, notes = convert_image(hot, WORKING_SPACE, LOGC3)
    assert any("1 pixel(s) encode above signal 1 (linear > 55.08" in n for n in notes)
    assert any("1 pixel(s) encode below signal 0" in n for n in notes)
    # PU21 stops at 10000 cd/m2: 300 x (203 cd/m2) is clipped to signal 1, like PQ
    signal, notes = convert_image(hot, WORKING_SPACE, PU21, reference_white=1.0)
    assert any("beyond PU21 (X2HDR, Rec.709)'s 10000 cd/m2 (linear > 49.26)" in n for n in notes)
    assert float(signal[0, 0, 1].max()) == pytest.approx(1.0)
    _, notes = convert_image(hot, WORKING_SPACE, PU21, reference_white=10.0)
    assert not any("10000" in n for n in notes)


def test_nonfinite_pixels_pass_through_and_are_noted():
    image = torch.tensor([[[[float("nan"), 0.2, 0.2], [0.18, 0.18, 0.18]]]])
    signal, notes = convert_image(image, WORKING_SPACE, SLOG3)
    assert any("1 pixel(s) with NaN/Inf" in n for n in notes)
    assert torch.isnan(signal[0, 0, 0]).any() and torch.isfinite(signal[0, 0, 1]).all()


def test_log_spaces_are_color_space_choices_and_peaks_are_documented():
    assert COLOR_SPACES[-len(LOG_SPACES):] == LOG_SPACES
    peaks = {name: round(e.peak, 2) for name, e in LOG_ENCODINGS.items()}
    assert peaks == {ACESCCT: 222.86, LOGC3: 55.08, LOGC4: 469.8, SLOG3: 38.42, PU21: 49.26}
