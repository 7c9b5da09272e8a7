"""Chromium reads Save HDR Image's 16-bit PNGs (``png_pq``, ``png_hlg``) as HDR: Debian's Chromium
156, headless, driven by Playwright, shows each file at its size and decodes it by its ``cICP``
chunk as BT.2020 PQ or HLG, tone-mapping it for its screen with the ``cLLI``/``mDCV`` we wrote.

Headless Chromium has no HDR screen, so what it would light up above SDR white cannot be seen; what
is checked is what a page gets when it draws the image (an ``<img>`` into a float16 2D canvas,
read back as ``rgba-float16``): (1) without colour conversion, the file's 16-bit codes (the test's
ST 2084 / BT.2100 values); (2) with it, not those codes but Chromium's BT.2100-to-sRGB
rendering: a pure Rec.709 red stays pure (BT.2020 primaries honoured; the same file re-tagged as
BT.709 turns orange), the grey ramp stays in order, and for PQ the brightest pixel lands on SDR
white because our MaxCLL is its light (re-tagged with a larger MaxCLL, or with no cLLI and a larger
mastering peak, it stays below: Chromium reads both chunks). Negative control: the same pixels
without the HDR chunks are taken as sRGB, drawn as their codes. No ComfyUI is needed: the page is
served by Playwright's router at a localhost address (a secure context), nothing listens there.
Every evaluation carries its own time limit (``EVAL_MS``)."""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass

import numpy as np
import pytest

from lediff_core.io.display import FORMATS, Settings
from support.color import HLG_WHITE_SCENE, hlg_oetf, pq_inverse_eotf, rp177
from support.comfy_server import CHROMIUM, CHROMIUM_ARGS
from support.png import read_info, rewrite, untagged

ORIGIN = "http://localhost:9"  # answered by the route below; never reached
EVAL_MS = 30000
# patches, 8x8 each, left to right: greys at 0.5, 1 (reference white), 2 and 4 (the brightest),
# a pure Rec.709 red and green
PATCHES = [(0.5,) * 3, (1.0,) * 3, (2.0,) * 3, (4.0,) * 3, (0.5, 0.0, 0.0), (0.0, 0.5, 0.0)]
GREYS, RED = slice(0, 4), 4
REC709 = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)
BT2020 = (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290)

DRAW_JS = """async ([name, convert, ms]) => {
  const draw = async () => {
    const img = new Image();
    img.src = name;
    await img.decode();
    // convert === false: the file's samples as they are (no colour conversion)
    const src = convert ? img : await createImageBitmap(img, {colorSpaceConversion: 'none'});
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d', {colorSpace: 'srgb', colorType: 'float16'});
    ctx.drawImage(src, 0, 0);
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height,
                                  {colorSpace: 'srgb', pixelFormat: 'rgba-float16'}).data;
    return {size: [img.naturalWidth, img.naturalHeight], pixels: Array.from(data, Number)};
  };
  const late = new Promise((_, fail) => setTimeout(() => fail(new Error(`${name}: no answer in ${ms} ms`)), ms));
  return Promise.race([draw(), late]);
}"""


def patch_image() -> np.ndarray:
    return np.concatenate([np.broadcast_to(np.array(p, np.float32), (8, 8, 3)) for p in PATCHES], axis=1).copy()


def expected_codes(transfer: str) -> np.ndarray:
    """[patches, 3] 16-bit codes from the definitions (support/color.py), not from the encoder."""
    light = np.array(PATCHES) @ (np.linalg.inv(rp177(BT2020)) @ rp177(REC709)).T
    if transfer == "pq":
        signal = pq_inverse_eotf(np.clip(light * 203, 0, 1000))
    else:
        signal = hlg_oetf(np.clip(light * HLG_WHITE_SCENE, 0, 1))
    return np.round(signal * 65535)


def retagged(data: bytes, cicp: bytes | None = None, max_cll: int | None = None, mastering_peak: int | None = None,
             drop: tuple[bytes, ...] = ()) -> bytes:
    def edit(kind, body):
        if kind in drop:
            return None
        if kind == b"cICP" and cicp is not None:
            return kind, cicp
        if kind == b"cLLI" and max_cll is not None:
            return kind, struct.pack(">I", max_cll * 10000) + body[4:]
        if kind == b"mDCV" and mastering_peak is not None:
            return kind, body[:16] + struct.pack(">I", mastering_peak * 10000) + body[20:]
        return kind, body

    return rewrite(data, edit)


@dataclass
class Viewer:
    page: object  # Playwright's Page
    files: dict[str, bytes]  # what the page's origin serves, by name


@pytest.fixture(scope="module")
def viewer():
    from playwright.sync_api import sync_playwright

    files: dict[str, bytes] = {}

    def answer(route):
        name = route.request.url.rsplit("/", 1)[1]
        if name in files:
            route.fulfill(body=files[name], content_type="image/png")
        else:
            route.fulfill(body="<!doctype html><title>HDR PNG</title>", content_type="text/html")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        with contextlib.closing(browser):
            page = browser.new_page()
            page.set_default_timeout(EVAL_MS)
            page.route(f"{ORIGIN}/**", answer)
            page.goto(f"{ORIGIN}/", timeout=EVAL_MS)
            yield Viewer(page, files)


def draw(viewer: Viewer, name: str, data: bytes, convert: bool = True) -> np.ndarray:
    """[patches, 3]: the middle pixel of each patch as the page gets it (the image's size checked)."""
    viewer.files[name] = data
    out = viewer.page.evaluate(DRAW_JS, [name, convert, EVAL_MS])
    assert out["size"] == [8 * len(PATCHES), 8], (name, out["size"])
    pixels = np.array(out["pixels"]).reshape(8, 8 * len(PATCHES), 4)
    assert np.all(pixels[..., 3] == 1)
    return pixels[4, 4::8, :3]


@pytest.mark.parametrize("transfer", ["pq", "hlg"])
def test_chromium_shows_the_png_by_its_cicp_tag(viewer, transfer):
    data = FORMATS[f"png_{transfer}"].encode(patch_image(), Settings(), None).data
    assert read_info(data).cicp == (9, 16 if transfer == "pq" else 18, 0, 1)
    # the samples, unconverted: the test's codes (to within the canvas's float16 and an 8-bit step)
    raw = draw(viewer, f"{transfer}_raw.png", data, convert=False)
    assert np.abs(raw - expected_codes(transfer) / 65535).max() < 1.5 / 255, raw
    shown = draw(viewer, f"{transfer}.png", data)
    plain = draw(viewer, f"{transfer}_plain.png", untagged(data))
    # negative control: without the tags the same samples are sRGB, drawn as they are
    assert np.abs(plain - raw).max() < 1.5 / 255, (plain, raw)
    # tagged, they are BT.2100: another rendering than the codes
    assert np.abs(shown[GREYS] - plain[GREYS]).max() > 0.05, (shown, plain)
    greys = shown[GREYS, 0]
    assert np.all(np.diff(greys) > 0.02) and np.allclose(shown[GREYS], greys[:, None], atol=2e-3), shown
    # BT.2020 primaries honoured: a Rec.709 red stays pure red; read as BT.709 primaries, it is orange
    red = shown[RED]
    assert red[0] > 0.3 and np.abs(red[1:]).max() < 0.01, red
    as_709 = draw(viewer, f"{transfer}_709.png", retagged(data, cicp=bytes((1, 16 if transfer == "pq" else 18, 0, 1))))
    assert as_709[RED][1] > 0.05, as_709[RED]


def test_chromium_tone_maps_the_pq_png_with_its_light_levels(viewer):
    """MaxCLL is the brightest patch's light (4x reference white: 812 cd/m2 in BT.2020, below the
    1000 cd/m2 peak), so Chromium's tone mapping puts that patch on SDR white, and the others below
    it. A file claiming brighter content (cLLI 4000), or, without cLLI, a brighter mastering display
    (mDCV 4000), leaves room above the patch: Chromium reads both chunks."""
    data = FORMATS["png_pq"].encode(patch_image(), Settings(), None).data
    assert read_info(data).max_cll == pytest.approx(812, abs=1e-6)
    shown = draw(viewer, "levels.png", data)
    assert shown[3, 0] > 0.999 and shown[2, 0] < 0.95, shown
    for name, copy in (("cll4000.png", retagged(data, max_cll=4000)),
                       ("mdcv4000.png", retagged(data, mastering_peak=4000, drop=(b"cLLI",)))):
        brighter = draw(viewer, name, copy)
        assert brighter[3, 0] < 0.95, (name, brighter)
