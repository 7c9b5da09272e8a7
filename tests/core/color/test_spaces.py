"""Colour management core: every linear conversion against PyOpenColorIO called directly, the
chromaticities against published matrices, round trips, and BT.2100/BT.2408 reference white."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lediff_core.color.log import LOG_ENCODINGS
from lediff_core.color.ocio import CHROMATICITIES, LINEAR_SPACES, WORKING_SPACE, space_of_chromaticities
from lediff_core.color.spaces import (
    COLOR_SPACES,
    HLG_SPACE,
    LOG_SPACES,
    PQ_SPACE,
    convert_image,
    exr_color_tags,
    from_chromaticities,
)
from support.color import XYZ_PRIMARIES, hdr_pixels, ocio_apply, rel_error, rp177


@pytest.mark.parametrize("source", LINEAR_SPACES)
@pytest.mark.parametrize("target", LINEAR_SPACES)
def test_every_linear_conversion_equals_ocio(source, target):
    pixels = hdr_pixels()
    pixels[::7] *= -1  # negative (out-of-gamut) components go through unclamped
    want = ocio_apply(pixels, source, target)
    got, notes = convert_image(torch.from_numpy(pixels), source, target)
    assert notes == [] and got.dtype == torch.float32
    assert rel_error(got.numpy(), want) < 1e-5
    # EXR pixels tagged with the space's chromaticities take the same path
    loaded, read_as = from_chromaticities(pixels, CHROMATICITIES[source], target)
    assert read_as == source and rel_error(loaded, want) < 1e-5


def test_chromaticities_describe_ocios_spaces():
    # Published normalised primary matrices: SMPTE ST 2065-1 (AP0) and Academy S-2014-004 (AP1)
    ap0 = [[0.9525523959, 0.0, 0.0000936786], [0.3439664498, 0.7281660966, -0.0721325464],
           [0.0, 0.0, 1.0088251844]]
    ap1 = [[0.6624541811, 0.1340042065, 0.1561876870], [0.2722287168, 0.6740817658, 0.0536895174],
           [-0.0055746495, 0.0040607335, 1.0103391003]]
    np.testing.assert_allclose(rp177(CHROMATICITIES["ACES2065-1"]), ap0, atol=1e-7)
    np.testing.assert_allclose(rp177(CHROMATICITIES["ACEScg"]), ap1, atol=1e-7)
    # OCIO's ACEScg -> ACES2065-1 (same white) is the published AP1 -> AP0 matrix
    ap1_to_ap0 = np.array([[0.6954522414, 0.1406786965, 0.1638690622], [0.0447945634, 0.8596711185, 0.0955343182],
                           [-0.0055258826, 0.0040252103, 1.0015006723]])
    np.testing.assert_allclose(ocio_apply(np.eye(3), "ACEScg", "ACES2065-1").T, ap1_to_ap0, atol=1e-6)
    # D65 spaces: OCIO's matrices are the chromaticities' RP 177 matrices, with no adaptation
    for space in ("Linear P3-D65", "Linear Rec.2020"):
        want = np.linalg.inv(rp177(CHROMATICITIES[space])) @ rp177(CHROMATICITIES[WORKING_SPACE])
        np.testing.assert_allclose(ocio_apply(np.eye(3), WORKING_SPACE, space).T, want, atol=1e-6)
    # ACES spaces: the same with a Bradford adaptation from D65 to the ACES white
    bradford = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])

    def white_xyz(c):
        return rp177(c) @ np.ones(3)

    d65, aces = white_xyz(CHROMATICITIES[WORKING_SPACE]), white_xyz(CHROMATICITIES["ACES2065-1"])
    cat = np.linalg.inv(bradford) @ np.diag((bradford @ aces) / (bradford @ d65)) @ bradford
    for space in ("ACEScg", "ACES2065-1"):
        want = np.linalg.inv(rp177(CHROMATICITIES[space])) @ cat @ rp177(CHROMATICITIES[WORKING_SPACE])
        np.testing.assert_allclose(ocio_apply(np.eye(3), WORKING_SPACE, space).T, want, atol=1e-6)


@pytest.mark.parametrize("space", [s for s in COLOR_SPACES if s != WORKING_SPACE])
@pytest.mark.parametrize("reference_white", [1.0, 0.05])
def test_round_trips_through_every_space(space, reference_white):
    # in range for every space: HLG's nominal peak is 3.78 x reference white, PQ's 49.3 x
    image = torch.from_numpy(hdr_pixels(lo=-12, hi=1.8).reshape(1, 64, 64, 3)) * reference_white
    there, notes = convert_image(image, WORKING_SPACE, space, reference_white)
    back, notes_back = convert_image(there, space, WORKING_SPACE, reference_white)
    assert notes == notes_back == []
    # camera logs ignore reference_white: at 0.05 the darkest pixels sit 16 stops down, on the
    # toe, where a float32 signal holds linear light to about 5e-5 of a pixel's largest component
    camera_log = space in LOG_SPACES and not LOG_ENCODINGS[space].absolute
    assert rel_error(back.numpy(), image.numpy()) < (1e-4 if camera_log and reference_white < 1 else 1e-5)
    # alpha passes through untouched
    rgba = torch.cat([image, torch.rand(1, 64, 64, 1)], dim=-1)
    out, _ = convert_image(rgba, WORKING_SPACE, space, reference_white)
    assert torch.equal(out[..., 3], rgba[..., 3])


def test_reference_white_maps_to_bt2408():
    for rw in (1.0, 0.18, 37.0):
        white = torch.full((1, 1, 1, 3), rw)
        hlg, _ = convert_image(white, WORKING_SPACE, HLG_SPACE, rw)
        pq, _ = convert_image(white, WORKING_SPACE, PQ_SPACE, rw)
        # BT.2408: HLG reference white at 75 % signal; PQ reference white 203 cd/m2 = 58 % (0.5807)
        torch.testing.assert_close(hlg, torch.full_like(white, 0.75), atol=1e-6, rtol=0)
        torch.testing.assert_close(pq, torch.full_like(white, 0.5807), atol=5e-5, rtol=0)
    # HLG's nominal peak (signal 1, E = 1) and PQ's 10000 cd/m2 (signal 1) in linear units
    hlg, _ = convert_image(torch.full((1, 1, 1, 3), 1 / 0.26496256), WORKING_SPACE, HLG_SPACE)
    pq, _ = convert_image(torch.full((1, 1, 1, 3), 10000 / 203), WORKING_SPACE, PQ_SPACE)
    torch.testing.assert_close(hlg, torch.ones_like(hlg), atol=2e-6, rtol=0)
    torch.testing.assert_close(pq, torch.ones_like(pq), atol=1e-6, rtol=0)


def test_out_of_range_values_are_counted_and_handled_as_documented():
    # grey pixels: negative, HLG-overrange (8 > 3.78), PQ-overrange (100 > 49.3), and in range
    image = torch.tensor([-0.5, 8.0, 100.0, 0.5]).reshape(1, 1, 4, 1).expand(1, 1, 4, 3).contiguous()
    hlg, notes = convert_image(image, WORKING_SPACE, HLG_SPACE)
    assert hlg[0, 0, 0].tolist() == [0.0, 0.0, 0.0]  # negative light clipped to black
    # beyond the peak the log segment continues: E' = a ln(12 E - b) + c (BT.2100 Table 5)
    a, b, c = 0.17883277, 0.28466892, 0.55991072928
    e = 8.0 * 0.26496256
    assert abs(hlg[0, 0, 1, 0].item() - (a * np.log(12 * e - b) + c)) < 1e-5 and hlg[0, 0, 1, 0] > 1
    assert len(notes) == 2
    assert any(n.startswith("2 pixel(s) beyond HLG") and "kept" in n for n in notes)
    assert any(n.startswith("1 pixel(s) with negative") and "clipped to 0" in n for n in notes)

    pq, notes = convert_image(image, WORKING_SPACE, PQ_SPACE)
    assert pq[0, 0, 0].tolist() == [0.0, 0.0, 0.0] and pq[0, 0, 2].tolist() == [1.0, 1.0, 1.0]
    assert pq[0, 0, 1, 0] < 1
    assert any(n.startswith("1 pixel(s) beyond PQ") and "clipped to signal 1" in n for n in notes)

    # decoding: negative signals mirror (negative light), PQ above 1 reads as 1
    signal = torch.tensor([-0.25, 0.25, 1.2]).reshape(1, 1, 3, 1).expand(1, 1, 3, 3).contiguous()
    linear, notes = convert_image(signal, HLG_SPACE, "Linear Rec.2020")
    assert linear[0, 0, 0, 0] == -linear[0, 0, 1, 0] < 0
    assert any(n.startswith("1 pixel(s) with negative") and "negative light" in n for n in notes)
    assert any(n.startswith("1 pixel(s) above HLG") for n in notes)
    linear, notes = convert_image(signal, PQ_SPACE, "Linear Rec.2020")
    torch.testing.assert_close(linear[0, 0, 2], torch.full((3,), 10000 / 203), rtol=1e-6, atol=0)


def test_bad_names_and_reference_white_are_refused():
    image = torch.ones(1, 2, 2, 3)
    with pytest.raises(ValueError, match="unknown source colour space 'sRGB'.*ACEScg"):
        convert_image(image, "sRGB", WORKING_SPACE)
    with pytest.raises(ValueError, match="reference_white must be a positive"):
        convert_image(image, WORKING_SPACE, PQ_SPACE, 0.0)
    with pytest.raises(ValueError, match="got 2 channels"):
        convert_image(torch.ones(1, 2, 2, 2), WORKING_SPACE, PQ_SPACE)


def test_chromaticities_are_recognised_with_a_tolerance():
    rounded = (0.64, 0.33, 0.3, 0.6, 0.15, 0.06, 0.31271, 0.32902)
    assert space_of_chromaticities(rounded) == WORKING_SPACE
    assert space_of_chromaticities(np.float32(CHROMATICITIES["ACES2065-1"])) == "ACES2065-1"
    dci_p3 = (0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.314, 0.351)  # P3 primaries, DCI white
    assert space_of_chromaticities(dci_p3) is None
    assert space_of_chromaticities(XYZ_PRIMARIES) is None


def test_other_primaries_convert_without_adaptation():
    """XYZ and camera primaries: OpenEXR's RGB -> XYZ -> RGB, no chromatic adaptation, so a file
    made from a Rec.709 image with those matrices loads as that image."""
    rec709 = hdr_pixels(seed=3)
    for chroma in (XYZ_PRIMARIES, (0.71, 0.30, 0.20, 0.75, 0.12, 0.05, 0.3457, 0.3585)):  # D50 camera
        file_pixels = rec709 @ (np.linalg.inv(rp177(chroma)) @ rp177(CHROMATICITIES[WORKING_SPACE])).T
        loaded, read_as = from_chromaticities(file_pixels.astype(np.float32), chroma)
        assert read_as.startswith("chromaticities ")
        assert rel_error(loaded, rec709) < 1e-5
        # into another space: the same as loading the Rec.709 twin (OCIO from the working space)
        acescg, _ = from_chromaticities(file_pixels.astype(np.float32), chroma, "ACEScg")
        assert rel_error(acescg, ocio_apply(rec709, WORKING_SPACE, "ACEScg")) < 1e-5
    with pytest.raises(ValueError, match="collinear.*exrstdattr -chromaticities"):
        from_chromaticities(rec709, (0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.3127, 0.329))
    with pytest.raises(ValueError, match="8 finite numbers.*rewrite it"):
        from_chromaticities(rec709, (np.nan,) * 8)
    # no attribute: Rec.709, unchanged
    same, read_as = from_chromaticities(rec709, None)
    assert read_as == WORKING_SPACE and np.array_equal(same, rec709)


def test_aces_container_flag_only_on_conforming_ap0_files():
    chroma, attrs, note = exr_color_tags("ACES2065-1", "half", "none")
    assert chroma == CHROMATICITIES["ACES2065-1"] and attrs == {"acesImageContainerFlag": 1} and note is None
    for precision, compression in (("float", "none"), ("half", "zip")):
        chroma, attrs, note = exr_color_tags("ACES2065-1", precision, compression)
        assert chroma == CHROMATICITIES["ACES2065-1"] and attrs == {} and "ST 2065-4" in note
    assert exr_color_tags("ACEScg", "half", "none") == (CHROMATICITIES["ACEScg"], {}, None)
    # extra layers (EXR Layer) break the container's RGB(A)-only rule, even at half/none
    chroma, attrs, note = exr_color_tags("ACES2065-1", "half", "none", extra_layers=True)
    assert attrs == {} and "ST 2065-4" in note and "extra layers" in note
