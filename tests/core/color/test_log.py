"""Log encodings (lediff_core.color.log, through spaces.convert_image): curves against colour-science
and the publishers' reference values, gamuts against colour-science's published primaries, whole
transforms against OpenColorIO's studio config, round trips, and the behaviour outside the domain."""

from __future__ import annotations

import re

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

ACESCCT, LOGC3, LOGC4, SLOG3, PU21, X2HDR, LTX, DIFFHDR = LOG_SPACES
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
    assert any("beyond PU21 (banding_glare, Rec.709)'s 10000 cd/m2 (linear > 49.26)" in n for n in notes)
    assert float(signal[0, 0, 1].max()) == pytest.approx(1.0)
    _, notes = convert_image(hot, WORKING_SPACE, PU21, reference_white=10.0)
    assert not any("10000" in n for n in notes)


@pytest.mark.parametrize("name", LOG_SPACES)
def test_nonfinite_pixels_are_refused_in_and_out_of_a_log_encoding(name):
    """NaN/Inf have no code in a 0..1 signal, and the clamping node it is for would make them
    ordinary values: an error that says where they are and what to do (finite values of any size
    have a signal and back, so nothing else is out of the domain)."""
    image = torch.tensor([[[[float("nan"), 0.2, 0.2], [0.18, 0.18, 0.18], [float("inf"), 1, 1]]]])
    for source, target in ((WORKING_SPACE, name), (name, WORKING_SPACE), (name, "ACEScg")):
        with pytest.raises(ValueError, match=r"image 1 of 1: 2 of 3 pixel\(s\) NaN/Inf \(1 NaN, 1 Inf\).*"
                           "has no code for them.*Find the node that made them"):
            convert_image(image, source, target)
    # HLG/PQ keep passing them through with a note
    signal, notes = convert_image(image, WORKING_SPACE, "PQ Rec.2020")
    assert any("2 pixel(s) with NaN/Inf" in n for n in notes) and torch.isfinite(signal[0, 0, 1]).all()


def test_log_spaces_are_color_space_choices_and_peaks_are_documented():
    assert COLOR_SPACES[-len(LOG_SPACES):] == LOG_SPACES
    peaks = {name: round(e.peak, 2) for name, e in LOG_ENCODINGS.items()}
    assert peaks == {ACESCCT: 222.86, LOGC3: 55.08, LOGC4: 469.8, SLOG3: 38.42, PU21: 49.26, X2HDR: 49.26,
                     LTX: 55.08, DIFFHDR: 65536.0}


# --- the signals HDR LoRAs generate in, against their publishers' formulas, written here in numpy ---

def test_ltx_hdr_lora_is_arri_logc3_on_rec709():
    """Lightricks LTX-2 (packages/ltx-core/src/ltx_core/hdr.py, commit 400fd310): ARRI's LogC3 EI 800
    constants applied to linear Rec.709 with no gamut conversion (its native primaries are Rec.709),
    input clipped to >= 0 and the signal to 0..1. Checked: colour-science's LogC3 (SUP 3.x, EI 800)
    of the working-space RGB as it is, and the publisher's clipping on 0..55.08."""
    rgb = np.concatenate([hdr_pixels(2000, seed=6, lo=-12, hi=5.7), [[0.0, 0.18, 55.0]]])
    signal, notes = convert_image(torch.from_numpy(rgb).to(F64), WORKING_SPACE, LTX)
    want = colour.models.log_encoding_ARRILogC3(rgb.astype(np.float64), firmware="SUP 3.x", EI=800)
    np.testing.assert_allclose(signal.numpy(), want, rtol=1e-12, atol=1e-13)
    assert not notes and float(signal.max()) <= 1.0 and float(signal.min()) >= 0.0
    back, _ = convert_image(signal, LTX, WORKING_SPACE)
    np.testing.assert_allclose(back.numpy(), rgb, rtol=1e-9, atol=1e-12)
    # the same curve and numbers as the camera's LogC3 entry, without ARRI Wide Gamut 3
    assert LOG_ENCODINGS[LTX].encode is LOG_ENCODINGS[LOGC3].encode
    assert LOG_ENCODINGS[LTX].gamut == WORKING_SPACE


def diffhdr_published(x):
    """DiffHDR's Lin_to_Log (Eyeline-Labs/DiffHDR utils/color_utils.py): clip at 65536, then
    (ln(2.2 x + 1) / ln(2.2 * 65536 + 1))^(1 / 2.2)."""
    x = np.minimum(x, 65536.0)
    return (np.log(2.2 * x + 1.0) / np.log(2.2 * 65536.0 + 1.0)) ** (1 / 2.2)


def test_diffhdr_log_gamma_matches_its_published_formula():
    x = np.concatenate([[0.0, 1e-9, 0.18, 1.0, 50.0, 65536.0], np.exp2(np.linspace(-20, 16, 500))])
    signal, notes = convert_image(torch.from_numpy(np.repeat(x[:, None], 3, axis=1)), WORKING_SPACE, DIFFHDR)
    np.testing.assert_allclose(signal[:, 0].numpy(), diffhdr_published(x), rtol=1e-6, atol=1e-9)
    assert not notes
    # reference points of the formula: black 0, the LDR's white 1.0 -> 0.34778, the clip 65536 -> 1
    got = LOG_ENCODINGS[DIFFHDR].encode(torch.tensor([0.0, 1.0, 65536.0], dtype=F64)).numpy()
    np.testing.assert_allclose(got, [0.0, 0.3477773169, 1.0], atol=1e-10)
    # its Log_to_Lin, (exp(y^2.2 * ln(2.2 * 65536 + 1)) - 1) / 2.2, on the whole signal range
    y = np.linspace(0, 1, 1001)
    published = (np.exp(y**2.2 * np.log(2.2 * 65536.0 + 1.0)) - 1.0) / 2.2
    np.testing.assert_allclose(LOG_ENCODINGS[DIFFHDR].decode(torch.from_numpy(y)).numpy(), published, rtol=1e-9)
    # below 0 the curve is mirrored: negative light round-trips and encodes below signal 0
    neg = torch.tensor([-3.0, -1e-6], dtype=F64)
    assert (LOG_ENCODINGS[DIFFHDR].encode(neg) < 0).all()
    torch.testing.assert_close(LOG_ENCODINGS[DIFFHDR].decode(LOG_ENCODINGS[DIFFHDR].encode(neg)), neg)


def x2hdr_published(nits):
    """X2HDR's pu21_encode (X2HDR/X2HDR utils/util_hdr.py): clip to [0.005, 10000] cd/m2, then
    a x^2 + b x with x = log2(L) - log2(0.005), a = 0.001908, b = 0.0078."""
    x = np.log2(np.clip(nits, 0.005, 10000.0)) - np.log2(0.005)
    return 0.001908 * x * x + 0.0078 * x


def x2hdr_published_inverse(v):
    """X2HDR's pu21_decode: V clipped to 0..1, L = 2^((2 a log2(0.005) - b + sqrt(b^2 + 4 a V)) / (2 a)),
    clipped to [0.005, 10000]."""
    a, b = 0.001908, 0.0078
    v = np.clip(v, 0.0, 1.0)
    return np.clip(2.0 ** ((2 * a * np.log2(0.005) - b + np.sqrt(b * b + 4 * a * v)) / (2 * a)), 0.005, 10000.0)


@pytest.mark.parametrize("reference_white", [1.0, 4000 / 203])
def test_x2hdr_pu21_matches_its_published_formula(reference_white):
    """Per RGB channel of absolute light: linear x reference_white -> 203 cd/m2 (X2HDR scales each
    training image so that its maximum is 4000 cd/m2: reference_white = max / 19.7 does the same)."""
    nits = np.concatenate([[0.005, 1.0, 203.0, 4000.0, 10000.0], np.exp2(np.linspace(-7.6, 13.28, 400))])
    linear = nits / 203.0 * reference_white
    signal, notes = convert_image(torch.from_numpy(np.repeat(linear[:, None], 3, axis=1)), WORKING_SPACE, X2HDR,
                                  reference_white=reference_white)
    np.testing.assert_allclose(signal[:, 0].numpy(), x2hdr_published(nits), rtol=1e-9, atol=1e-12)
    assert not notes and float(signal.max()) == pytest.approx(0.9992193486, abs=1e-9)  # X2HDR's V(10000)
    back, _ = convert_image(signal, X2HDR, WORKING_SPACE, reference_white=reference_white)
    np.testing.assert_allclose(back[:, 0].numpy() * 203.0 / reference_white,
                               x2hdr_published_inverse(x2hdr_published(nits)), rtol=1e-9)
    # X2HDR's decode of the top of the signal: clipped to 10000 cd/m2, as ours
    top = np.array([0.9995, 1.0])
    np.testing.assert_allclose(LOG_ENCODINGS[X2HDR].decode(torch.from_numpy(top)).numpy(),
                               x2hdr_published_inverse(top), rtol=1e-12)


def test_x2hdr_quadratic_is_not_the_papers_pu21():
    """X2HDR's curve is its own fit, not PU21/PU21(10000): up to 0.116 apart (around 2.7 cd/m2), so
    the two are separate choices and a signal must be decoded with the curve that made it."""
    nits = torch.from_numpy(np.exp2(np.linspace(np.log2(PU21_L_MIN), np.log2(10000), 2000)))
    gap = (LOG_ENCODINGS[X2HDR].encode(nits) - LOG_ENCODINGS[PU21].encode(nits)).abs()
    assert 0.11 < float(gap.max()) < 0.12


@pytest.mark.parametrize("name", [ACESCCT, LOGC3, LOGC4, SLOG3, LTX, DIFFHDR])
def test_a_signal_that_decodes_beyond_float_range_is_an_error_naming_the_likely_mistake(name):
    """Finite signals a little above 1 decode (no ceiling), but a linear image read as a log signal
    (values of 50 here) leaves float range: an error that says so, not a picture of Inf."""
    image = torch.tensor([[[[50.0, 1.0, 1.0], [0.5, 0.5, 0.5]]]])
    with pytest.raises(ValueError, match=rf"1 pixel\(s\) decode beyond float range as {re.escape(name)} \(signals "
                       r"up to 50, .*probably not in .*set source to the space it is in"):
        convert_image(image, name, WORKING_SPACE)
    back, _ = convert_image(torch.tensor([[[[1.2, 1.0, 0.5]]]]), name, WORKING_SPACE)
    assert torch.isfinite(back).all() and float(back.max()) > LOG_ENCODINGS[name].peak
