"""The OCIO helper: linear conversions equal to OCIO's own processor and to published matrices;
display/view transforms and looks equal to OCIO's own display path built here; LUT files equal to
OCIO's FileTransform and, for .cube, to a trilinear interpolation written here."""

import os

import numpy as np
import PyOpenColorIO as ocio
import pytest
import torch

from lediff_core.color import ocio as ocio_helper
from lediff_core.color.ocio import LINEAR_SPACES, WORKING_SPACE, convert_linear, linear_matrix
from support.color import ocio_display


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


# --- display/view transforms, looks, LUT files ----------------------------------------------------

ACES2_STUDIO = "ocio://studio-config-v4.0.0_aces-v2.0_ocio-v2.5"
SDR = ("sRGB - Display", "ACES 2.0 - SDR 100 nits (Rec.709)")
PQ = ("Rec.2100-PQ - Display", "ACES 2.0 - HDR 1000 nits (Rec.2020)")
GAMUT_COMPRESSION = "ACES 1.3 Reference Gamut Compression"


def hdr_rgb(n=512, seed=1):
    rng = np.random.default_rng(seed)
    return np.exp2(rng.uniform(-10, 6, (n, 3))).astype(np.float32)


def test_default_config_is_the_aces2_studio_config():
    cfg = ocio_helper.load_config()
    assert ocio_helper.STUDIO_CONFIG == ACES2_STUDIO
    assert "aces-v2.0" in cfg.getName() and "studio" in cfg.getName()
    assert ocio_helper.display_names()[0] == SDR[0] and PQ[0] in ocio_helper.display_names()
    assert SDR[1] in ocio_helper.view_names() and PQ[1] in ocio_helper.view_names(cfg, PQ[0])
    assert ocio_helper.input_space(cfg) == WORKING_SPACE


@pytest.mark.parametrize("display,view", [SDR, PQ, ("Display P3 - Display", "ACES 2.0 - SDR 100 nits (P3 D65)"),
                                          ("sRGB - Display", "Un-tone-mapped")])
def test_display_view_equals_ocio_direct(display, view):
    cfg = ocio.Config.CreateFromFile(ACES2_STUDIO)
    pixels = hdr_rgb()
    want = ocio_display(cfg, pixels, display, view)
    processor = ocio_helper.display_view_processor(ocio_helper.load_config(), display, view)
    got = ocio_helper.apply_processor(processor, torch.from_numpy(pixels.reshape(1, 16, 32, 3)))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy().reshape(-1, 3), want, rtol=1e-6, atol=1e-6)


def test_sdr_and_pq_views_are_what_they_say():
    cfg = ocio_helper.load_config()
    grey = np.full((1, 3), 0.18, np.float32)
    bright = np.full((1, 3), 64.0, np.float32)
    sdr = ocio_helper.display_view_processor(cfg, *SDR)
    pq = ocio_helper.display_view_processor(cfg, *PQ)
    # SDR: sRGB-encoded 0..1; 18 % grey near the ACES 2.0 SDR mid-grey (about 10 nits of 100: sRGB ~0.35)
    assert 0.3 < ocio_helper.apply_processor(sdr, grey)[0, 0] < 0.4
    assert ocio_helper.apply_processor(sdr, bright).max() <= 1.0 + 1e-4
    # PQ: a very bright pixel lands near the 1000-nit peak, far above SDR white (PQ 100 nits ~0.508)
    peak = ocio_helper.apply_processor(pq, bright)[0, 0]
    assert 0.70 < peak <= 0.7518 + 1e-3  # PQ(1000 nits) = 0.7518


def test_looks_equal_ocio_viewing_pipeline_and_change_the_picture():
    cfg = ocio.Config.CreateFromFile(ACES2_STUDIO)
    rng = np.random.default_rng(3)
    # saturated colours well outside AP1, where the gamut compression acts
    pixels = np.concatenate([hdr_rgb(256), rng.uniform(-0.5, 2, (256, 3)).astype(np.float32)])
    got = ocio_helper.apply_processor(
        ocio_helper.display_view_processor(ocio_helper.load_config(), *SDR, looks=GAMUT_COMPRESSION), pixels)
    np.testing.assert_allclose(got, ocio_display(cfg, pixels, *SDR, looks=GAMUT_COMPRESSION), rtol=1e-5, atol=1e-5)
    plain = ocio_helper.apply_processor(ocio_helper.display_view_processor(ocio_helper.load_config(), *SDR), pixels)
    assert np.abs(got - plain).max() > 1e-3


def test_alpha_passes_and_numpy_in_numpy_out():
    processor = ocio_helper.display_view_processor(ocio_helper.load_config(), *SDR)
    rgba = np.concatenate([hdr_rgb(24).reshape(2, 12, 3), np.full((2, 12, 1), 0.25, np.float32)], axis=-1)
    out = ocio_helper.apply_processor(processor, rgba)
    assert isinstance(out, np.ndarray) and out.shape == rgba.shape
    np.testing.assert_array_equal(out[..., 3], 0.25)
    np.testing.assert_allclose(out[..., :3], ocio_helper.apply_processor(processor, rgba[..., :3]))


def user_config(tmp_path, name="config.ocio"):
    """A user's config file: OCIO's built-in CG config (ACES 1.3 names), written out."""
    cfg = ocio.Config.CreateFromFile("ocio://cg-config-v2.2.0_aces-v1.3_ocio-v2.4")
    path = tmp_path / name
    path.write_text(cfg.serialize())
    return cfg, str(path)


def test_user_config_from_a_path_relative_path_and_ocio_variable(tmp_path, monkeypatch):
    cfg, path = user_config(tmp_path)
    display = cfg.getDefaultDisplay()
    view = cfg.getDefaultView(display)
    pixels = hdr_rgb()
    want = ocio_display(cfg, pixels, display, view)
    monkeypatch.setenv("OCIO", path)
    for source, base in ((path, None), ("config.ocio", str(tmp_path)), ("$OCIO", None)):
        loaded = ocio_helper.load_config(source, base)
        got = ocio_helper.apply_processor(ocio_helper.display_view_processor(loaded, display, view), pixels)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_config_errors_name_the_problem_and_the_fix(tmp_path, monkeypatch):
    Error = ocio_helper.OCIOConfigError
    with pytest.raises(Error, match=r"no OCIO config file .*nothere.ocio.*leave config empty"):
        ocio_helper.load_config(str(tmp_path / "nothere.ocio"))
    broken = tmp_path / "broken.ocio"
    broken.write_text("ocio_profile_version: 2\ncolorspaces: [ {not yaml\n")
    with pytest.raises(Error, match=r"does not load: .*ociocheck.*studio-config"):
        ocio_helper.load_config(str(broken))
    with pytest.raises(Error, match="does not load"):
        ocio_helper.load_config("ocio://no-such-config")
    monkeypatch.delenv("OCIO", raising=False)
    with pytest.raises(Error, match="OCIO environment variable is not set"):
        ocio_helper.load_config("$OCIO")
    cfg = ocio_helper.load_config()
    with pytest.raises(Error, match=r"no display 'Cinema'.*sRGB - Display.*Rec.2100-PQ - Display"):
        ocio_helper.display_view_processor(cfg, "Cinema", SDR[1])
    with pytest.raises(Error, match=r"display 'sRGB - Display' .* has no view 'ACES 2.0 - HDR 1000 nits \(Rec.2020\)'"
                                    r".*Un-tone-mapped"):
        ocio_helper.display_view_processor(cfg, SDR[0], PQ[1])
    with pytest.raises(Error, match=r"no look 'Film'.*ACES 1.3 Reference Gamut Compression.*leave looks empty"):
        ocio_helper.display_view_processor(cfg, *SDR, looks=f"{GAMUT_COMPRESSION}, -Film")
    with pytest.raises(Error, match=r"no colour space 'Log C'.*ACEScg.*input_space"):
        ocio_helper.display_view_processor(cfg, *SDR, source="Log C")


def test_a_config_without_the_working_space_asks_for_input_space(tmp_path):
    cfg = ocio.Config.CreateRaw()  # one colour space, "raw", one display
    path = tmp_path / "raw.ocio"
    path.write_text(cfg.serialize())
    loaded = ocio_helper.load_config(str(path))
    display = loaded.getDefaultDisplay()
    with pytest.raises(ocio_helper.OCIOConfigError, match=r"no colour space the working space .*raw.*input_space"):
        ocio_helper.display_view_processor(loaded, display, loaded.getDefaultView(display))
    out = ocio_helper.apply_processor(ocio_helper.display_view_processor(
        loaded, display, loaded.getDefaultView(display), source="raw"), hdr_rgb(8))
    np.testing.assert_array_equal(out, hdr_rgb(8))  # the raw config's view is the identity


# --- LUT files ----------------------------------------------------------------------------------

def lut_function(rgb):
    """A smooth, channel-mixing, non-separable curve for the test LUT."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.stack([r ** 0.8 * 0.9 + 0.1 * g * b, np.sqrt(g) * (0.7 + 0.3 * r), 0.5 * b + 0.5 * r * g], axis=-1)


def write_cube(path, size=5, function=lut_function):
    """A .cube 3D LUT (Adobe Cube LUT spec 1.0: red varies fastest); returns the table [b, g, r, 3]."""
    axis = np.linspace(0, 1, size)
    b, g, r = np.meshgrid(axis, axis, axis, indexing="ij")
    table = function(np.stack([r, g, b], axis=-1))
    with open(path, "w") as f:
        f.write(f'TITLE "test"\nLUT_3D_SIZE {size}\n')
        for rgb in table.reshape(-1, 3):
            f.write(" ".join(f"{v:.9f}" for v in rgb) + "\n")
    return table


def trilinear(table, rgb):
    """Trilinear interpolation of a [b, g, r, 3] table at rgb in 0..1 (clamped to the cube, as a
    .cube's domain is), written here from its definition."""
    n = table.shape[0]
    x = np.clip(rgb, 0, 1) * (n - 1)
    i0 = np.minimum(np.floor(x).astype(int), n - 2)
    f = x - i0
    out = np.zeros(rgb.shape)
    for dr in (0, 1):
        for dg in (0, 1):
            for db in (0, 1):
                w = ((f[:, 0] if dr else 1 - f[:, 0]) * (f[:, 1] if dg else 1 - f[:, 1])
                     * (f[:, 2] if db else 1 - f[:, 2]))
                out += w[:, None] * table[i0[:, 2] + db, i0[:, 1] + dg, i0[:, 0] + dr]
    return out


def test_cube_linear_equals_trilinear_written_here(tmp_path):
    path = str(tmp_path / "look.cube")
    table = write_cube(path)
    rng = np.random.default_rng(5)
    rgb = np.concatenate([rng.uniform(0, 1, (2000, 3)), [[0, 0, 0], [1, 1, 1], [0.25, 0.5, 0.75]]]).astype(np.float32)
    got = ocio_helper.apply_processor(ocio_helper.lut_file_processor(path, "linear"), rgb)
    np.testing.assert_allclose(got, trilinear(table, rgb.astype(np.float64)), atol=2e-6)
    # outside the cube the LUT holds its edge (the .cube domain is 0..1)
    edge = np.array([[2.0, -1.0, 0.5]], np.float32)
    np.testing.assert_allclose(ocio_helper.apply_processor(ocio_helper.lut_file_processor(path, "linear"), edge),
                               trilinear(table, np.array([[1.0, 0.0, 0.5]])), atol=2e-6)


@pytest.mark.parametrize("interpolation", ["linear", "tetrahedral", "best"])
def test_lut_file_equals_ocio_file_transform(tmp_path, interpolation):
    path = str(tmp_path / "look.cube")
    write_cube(path, size=9)
    rgb = np.random.default_rng(6).uniform(0, 1, (1000, 3)).astype(np.float32)
    want = rgb.copy()
    transform = ocio.FileTransform(path, interpolation=getattr(ocio, f"INTERP_{interpolation.upper()}"),
                                   direction=ocio.TRANSFORM_DIR_FORWARD)
    ocio.Config.CreateRaw().getProcessor(transform).getDefaultCPUProcessor().applyRGB(want)
    got = ocio_helper.apply_processor(ocio_helper.lut_file_processor(path, interpolation), rgb)
    np.testing.assert_array_equal(got, want)
    if interpolation == "tetrahedral":  # a different interpolation from trilinear on a curved LUT
        linear = ocio_helper.apply_processor(ocio_helper.lut_file_processor(path, "linear"), rgb)
        assert np.abs(got - linear).max() > 1e-4


def test_1d_luts_and_the_inverse_direction(tmp_path):
    spi1d = tmp_path / "gamma.spi1d"
    values = np.linspace(0, 1, 64) ** (1 / 2.4)
    spi1d.write_text("Version 1\nFrom 0.0 1.0\nLength 64\nComponents 1\n{\n"
                     + "".join(f"  {v:.9f}\n" for v in values) + "}\n")
    rgb = np.random.default_rng(7).uniform(0.01, 1, (200, 3)).astype(np.float32)
    forward = ocio_helper.apply_processor(ocio_helper.lut_file_processor(str(spi1d), "linear"), rgb)
    np.testing.assert_allclose(forward, np.interp(rgb, np.linspace(0, 1, 64), values), atol=1e-6)
    back = ocio_helper.apply_processor(ocio_helper.lut_file_processor(str(spi1d), "linear", "inverse"), forward)
    np.testing.assert_allclose(back, rgb, atol=1e-4)


def test_an_edited_lut_file_is_read_again(tmp_path):
    path = str(tmp_path / "look.cube")
    write_cube(path, size=3)
    first = ocio_helper.apply_processor(ocio_helper.lut_file_processor(path), np.full((1, 3), 0.5, np.float32))
    write_cube(path, size=3, function=lambda rgb: 1 - rgb)
    second = ocio_helper.apply_processor(ocio_helper.lut_file_processor(path), np.full((1, 3), 0.5, np.float32))
    np.testing.assert_allclose(second, 0.5, atol=1e-6)
    assert np.abs(first - second).max() > 1e-3


@pytest.mark.parametrize("content,reason", [
    ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 7, r"Incorrect number of 3D LUT entries. Found 7, expected 8"),
    ("LUT_3D_SIZE 300\n0 0 0\n", r"must be between 2 and 129"),
    ("LUT_3D_SIZE 2\n0 0 zero\n", r"Malformed color triples"),
    ("this is not a LUT\n", r"Malformed|could not be loaded"),
])
def test_bad_lut_files_name_the_file_reason_and_fix(tmp_path, content, reason):
    path = tmp_path / "bad.cube"
    path.write_text(content)
    with pytest.raises(ocio_helper.LUTFileError, match=rf"'bad.cube'.*{reason}.*Export the LUT again"):
        ocio_helper.lut_file_processor(str(path))


def test_missing_lut_file_and_unknown_settings(tmp_path):
    with pytest.raises(ocio_helper.LUTFileError, match=r"no LUT file 'gone.cube'.*input folder"):
        ocio_helper.lut_file_processor(os.path.join(tmp_path, "gone.cube"))
    with pytest.raises(ValueError, match="interpolation must be one of"):
        ocio_helper.lut_file_processor("x.cube", "cubic")
    assert {".cube", ".3dl", ".spi3d", ".spi1d", ".clf"} <= set(ocio_helper.lut_extensions())
