"""lediff_train's data preparation: bracket simulation against closed forms and the inverse camera
of `python -m lediff_runner evaluate`, random views, and `prepare` on real CC0 HDRIs with a tiny official-layout
MODEL (latents checked against diffusers' own AutoencoderKL), determinism, resume, bad input, and
LatentData."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from lediff_core.io.exr import write_exr
from lediff_core.io.readers import read_linear_image
from lediff_core.qa.camera import inverse_response
from lediff_train import brackets as br
from lediff_train import prepare as prep
from lediff_train.data import DataError, LatentData
from support.common import DATA
from support.train_models import write_lediff_model

HDRI = os.path.join(DATA, "hdri")
DAMAGED = os.path.join(DATA, "openexr-damaged", "asan_heap-oob_7efd58fcbf3d_356_668b128c27c62e0d8314c503831fde88_exr")
LUMA = np.array([0.2126, 0.7152, 0.0722])  # Rec.709
WHITE = 2.118874  # HDR-FLIP's constant


def by_hand(hdr, e, n, a):
    """round(255 (1 + a) E^n / (E^n + a)), E = min(2^e H, 1), written out independently (a sensor
    records the tiny negative values of lossy EXR codecs as no light)."""
    exposed = np.clip(np.asarray(hdr, np.float64) * 2.0 ** e, 0.0, 1.0)
    p = exposed ** n
    return np.round(255 * (1 + a) * p / (p + a)).astype(np.uint8)


def real_crop(name="forest.exr", top=200, left=300, size=64):
    return read_linear_image(os.path.join(HDRI, name)).rgb[top:top + size, left:left + size].copy()


# ------------------------------------------------------------------------------------ exposures
def test_hdrflip_rule_closed_form():
    # grey pixels (Y = value) plus four black ones, which the rule's median leaves out
    values = [0, 0, 0, 0, 0.5, 1, 2, 8, 64]
    hdr = np.repeat(np.array(values, np.float32)[:, None], 3, axis=1).reshape(3, 3, 3)
    e_minus, e0, e_plus = br.hdrflip_exposures(hdr)
    assert e_minus == pytest.approx(math.log2(WHITE / 64), abs=1e-12)
    assert e_plus == pytest.approx(math.log2(WHITE / 2), abs=1e-12)  # median of 0.5..64, not of all 9
    assert e0 == pytest.approx((math.log2(WHITE / 64) + math.log2(WHITE / 2)) / 2, abs=1e-12)
    # luminance is Rec.709: a pure red pixel of 1 has Y = 0.2126
    red = np.zeros((1, 2, 3), np.float32)
    red[0, 0, 0] = 1.0
    assert br.hdrflip_exposures(red)[0] == pytest.approx(math.log2(WHITE / 0.2126), abs=1e-9)
    with pytest.raises(ValueError, match="no positive"):
        br.hdrflip_exposures(np.zeros((2, 2, 3), np.float32))


def test_fixed_ev_step_keeps_the_rules_midpoint():
    hdr = real_crop()
    y = hdr.astype(np.float64) @ LUMA
    mid = (math.log2(WHITE / y.max()) + math.log2(WHITE / np.median(y[y > 0]))) / 2
    assert br.bracket_exposures(hdr, 3.0) == pytest.approx((mid - 3, mid, mid + 3), abs=1e-9)
    rng = np.random.default_rng(5)
    images, info = br.simulate_brackets(hdr, rng, ev_step=2.5)
    assert info["exposures"] == pytest.approx([mid - 2.5, mid, mid + 2.5], abs=1e-9)
    n, a = info["camera"]["n"], info["camera"]["a"]
    for img, e in zip(images, info["exposures"], strict=True):
        np.testing.assert_array_equal(img, by_hand(hdr, e, n, a))
    with pytest.raises(ValueError, match="positive"):
        br.bracket_exposures(hdr, 0.0)


# --------------------------------------------------------------------------------------- camera
def test_camera_curve_clipping_and_8_bit_by_hand():
    e = 3.0
    s = 2.0 ** -e  # a pixel of 2^-e exposes to exactly E = 1
    hdr = np.array([[[s, s, s], [0, 0, 0], [8 * s, 100.0, 1e6], [0.25 * s, 0.5 * s, s / 1024]]], np.float32)
    out = br.expose(hdr, e, n=1.0, a=0.6)
    assert out.dtype == np.uint8
    assert out[0, 0].tolist() == [255, 255, 255]  # E = 1 -> f(1) = 1 -> 255
    assert out[0, 1].tolist() == [0, 0, 0]  # f(0) = 0
    assert out[0, 2].tolist() == [255, 255, 255]  # E > 1 clips to 1
    # n = 1, a = 0.6: f(0.25) = 1.6 * 0.25 / 0.85 = 0.470588 -> 120; f(0.5) = 0.8 / 1.1 -> 185.45 -> 185;
    # f(1/1024) = 1.6 / 1024 / (1/1024 + 0.6) -> 0.6631 -> 1
    assert out[0, 3].tolist() == [120, 185, 1]
    # n = 0.9, a = 0.6 at E = 0.5: 0.5^0.9 = 0.535887, f = 1.6 * 0.535887 / 1.135887 = 0.754844 -> 192
    assert br.expose(np.full((1, 1, 3), 0.5 * s, np.float32), e, n=0.9, a=0.6)[0, 0, 0] == 192


def test_simulated_camera_draws_and_shared_curve():
    hdr = real_crop()
    images, info = br.simulate_brackets(hdr, np.random.default_rng(11))
    ref = np.random.default_rng(11)
    n = float(np.clip(ref.normal(0.9, 0.1), 0.6, 1.3))  # gamma ~ N(0.9, 0.1), camera.N_RANGE
    a = float(np.clip(ref.normal(0.6, 0.1), 0.3, 1.0))  # beta ~ N(0.6, 0.1), camera.A_RANGE
    assert info["camera"] == {"n": n, "a": a} and info["jpeg"] is None
    y = hdr.astype(np.float64) @ LUMA
    e_minus, e_plus = math.log2(WHITE / y.max()), math.log2(WHITE / np.median(y[y > 0]))
    assert info["exposures"] == pytest.approx([e_minus, (e_minus + e_plus) / 2, e_plus], abs=1e-9)
    assert len(images) == 3
    for img, e in zip(images, info["exposures"], strict=True):
        assert img.shape == hdr.shape and img.dtype == np.uint8
        np.testing.assert_array_equal(img, by_hand(hdr, e, n, a))
    # darkest first: every pixel gets brighter (or stays) from C- to C0 to C+
    assert (images[0] <= images[1]).all() and (images[1] <= images[2]).all()
    # e- maps Y_max to 2.118874 > 1, so the brightest pixel clips even in the darkest bracket
    assert images[0].reshape(-1, 3)[np.argmax(y)].max() == 255


def test_inverse_camera_recovers_the_exposure_within_quantisation():
    """lediff_core.qa.camera.inverse_response (the inverse camera of the evaluation) on the 8-bit
    bracket brackets 2^e H of every unclipped pixel between the inverses of I -/+ half a code."""
    hdr = real_crop("city.exr", 260, 500)
    images, info = br.simulate_brackets(hdr, np.random.default_rng(2))
    n, a = info["camera"]["n"], info["camera"]["a"]
    for img, e in zip(images, info["exposures"], strict=True):
        exposed = hdr.astype(np.float64) * 2.0 ** e
        ok = (exposed < 1) & (exposed > 0)
        assert ok.sum() > 1000
        code = img.astype(np.float64)
        lo = inverse_response((code - 0.5) / 255, n, a)
        hi = inverse_response((code + 0.5) / 255, n, a)
        assert (lo[ok] <= exposed[ok] + 1e-9).all() and (exposed[ok] <= hi[ok] + 1e-9).all()
        recovered = inverse_response(code / 255, n, a)
        assert np.median(np.abs(recovered[ok] - exposed[ok]) / exposed[ok]) < 0.02


def test_jpeg_brackets():
    import io

    from PIL import Image

    hdr = real_crop()
    lossless, info = br.simulate_brackets(hdr, np.random.default_rng(3))
    jpeg, info_q = br.simulate_brackets(hdr, np.random.default_rng(3), jpeg=80)
    assert info_q["jpeg"] == 80 and info_q["camera"] == info["camera"]
    for plain, compressed in zip(lossless, jpeg, strict=True):
        buffer = io.BytesIO()
        Image.fromarray(plain).save(buffer, format="JPEG", quality=80)
        np.testing.assert_array_equal(compressed, np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))
        assert compressed.dtype == np.uint8 and not np.array_equal(compressed, plain)
        assert np.abs(compressed.astype(int) - plain).mean() < 15  # foliage: JPEG loses detail


def test_view_problems():
    assert br.view_problem(np.zeros((8, 8, 3), np.float32)) == "black"
    assert br.view_problem(np.full((8, 8, 3), 3.0, np.float32)) == "clipped"  # flat: every pixel clips
    nearly_flat = np.full((8, 8, 3), 3.0, np.float32)
    # one pixel of 3.5: e0 scales 3 to 2.118874 * sqrt(3 / 3.5) = 1.96, every pixel clips
    nearly_flat[0, 0] = 3.5
    assert br.view_problem(nearly_flat) == "clipped"
    # one pixel of 30: 3 goes to 2.118874 * sqrt(3 / 30) = 0.67, only the bright one clips
    nearly_flat[0, 0] = 30.0
    assert br.view_problem(nearly_flat) is None
    bad = real_crop()
    bad[3, 3, 1] = np.nan
    assert br.view_problem(bad) == "non_finite"
    assert br.view_problem(real_crop()) is None


# ---------------------------------------------------------------------------------------- views
def test_perspective_view_geometry():
    """A panorama whose pixels hold their own directions: each view pixel must show the direction of
    its pinhole ray, built here from rotation matrices (yaw about +Z, pitch about -Y)."""
    from lediff_core.panorama.equirect import equirect_pixel_directions

    env = equirect_pixel_directions(256, 512).numpy().astype(np.float32)
    yaw, pitch, fov, size = math.radians(30), math.radians(12), math.radians(70), 16
    view = br.perspective_view(env, yaw, pitch, fov, size).astype(np.float64)
    rz = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
    ry = np.array([[math.cos(pitch), 0, -math.sin(pitch)], [0, 1, 0], [math.sin(pitch), 0, math.cos(pitch)]])
    c = ((np.arange(size) + 0.5) / size * 2 - 1) * math.tan(fov / 2)
    cam = np.stack(np.broadcast_arrays(1.0, -c[None, :], -c[:, None]), -1)  # forward, left (-right), up
    rays = cam @ (rz @ ry).T
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    got = view / np.linalg.norm(view, axis=-1, keepdims=True)
    assert np.degrees(np.arccos(np.clip((rays * got).sum(-1), -1, 1))).max() < 0.2
    # the corner rays are fov/2 off-axis horizontally and vertically
    corner = np.degrees(math.acos(float(rays[0, 0] @ rays[0, -1])))
    assert corner == pytest.approx(np.degrees(2 * math.atan(c[-1] / math.hypot(1, c[-1]))), abs=1e-6)


def test_random_views():
    rng = np.random.default_rng(0)
    image = np.random.default_rng(1).random((40, 70, 3)).astype(np.float32)
    view, geometry = br.random_view(image, 32, rng)
    assert geometry["kind"] == "crop"
    top, left = geometry["top"], geometry["left"]
    np.testing.assert_array_equal(view, image[top:top + 32, left:left + 32])
    with pytest.raises(ValueError, match="smaller"):
        br.random_view(image, 48, rng)
    pano = read_linear_image(os.path.join(HDRI, "studio.exr")).rgb
    view, geometry = br.random_view(pano, 32, rng)
    assert view.shape == (32, 32, 3) and view.dtype == np.float32 and geometry["kind"] == "perspective"
    assert -30 <= geometry["pitch_deg"] <= 30 and 60 <= geometry["fov_deg"] <= 90
    again = br.perspective_view(pano, *(math.radians(geometry[k]) for k in ("yaw_deg", "pitch_deg", "fov_deg")), 32)
    np.testing.assert_array_equal(view, again)


def test_split_sources():
    files = [f"f{i}.exr" for i in range(40)]
    split = prep.split_sources(files, 0.1, seed=0)
    assert sum(v == "val" for v in split.values()) == 4
    assert split == prep.split_sources(files, 0.1, seed=0)
    assert split != prep.split_sources(files, 0.1, seed=1)
    assert list(prep.split_sources(files[:2], 0.01, 0).values()).count("val") == 1  # at least one
    assert set(prep.split_sources(files[:1], 0.5, 0).values()) == {"train"}  # never the only source
    assert set(prep.split_sources(files, 0.0, 0).values()) == {"train"}


# -------------------------------------------------------------------------------------- prepare
@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_lediff_model(str(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def hdr_dir(tmp_path_factory):
    """Two real panoramas, a non-panorama crop (in a subfolder), a damaged EXR, a too-small image,
    an all-black image; captions from a sidecar and captions.jsonl (one naming a missing image)."""
    root = tmp_path_factory.mktemp("hdr")
    for name in ("city", "night"):
        shutil.copy(os.path.join(HDRI, f"{name}.exr"), root / f"{name}.exr")
    (root / "sub").mkdir()
    write_exr(str(root / "sub" / "crop.exr"), real_crop("forest.exr", 150, 100, 96)[:, :80], precision="float")
    shutil.copy(DAMAGED, root / "bad.exr")
    write_exr(str(root / "tiny.exr"), np.ones((30, 40, 3), np.float32), precision="float")
    write_exr(str(root / "black.exr"), np.zeros((80, 80, 3), np.float32), precision="float")
    (root / "city.txt").write_text("a city at dusk\n")
    (root / "captions.jsonl").write_text(json.dumps({"file": "sub/crop.exr", "caption": "forest"}) + "\n"
                                         + json.dumps({"file": "gone.exr", "caption": "nothing"}) + "\n")
    return str(root)


ARGS = {"size": 64, "views": 2, "seed": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def prepared(hdr_dir, model, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("data") / "DATA")
    lines = []
    manifest = prep.prepare(hdr_dir, model, out, log=lines.append, **ARGS)
    return out, manifest, lines


def shard(out, name):
    path = os.path.join(out, "shards", name)
    with safe_open(path, framework="pt") as f:
        meta = json.loads(f.metadata()["lediff_train"])
    return load_file(path), meta


def test_prepare_lists_and_counts_bad_input(prepared):
    out, manifest, lines = prepared
    assert manifest["complete"] and manifest["format"] == "lediff-train-data/1"
    assert manifest["sources"] == 6
    assert [u["file"] for u in manifest["unreadable"]] == ["bad.exr"] and manifest["unreadable"][0]["reason"]
    assert manifest["skipped"]["unreadable"] == 1
    assert manifest["skipped"]["too_small"] == 1
    assert manifest["skipped"]["black"] == 2  # both views of black.exr
    # sorted: bad 0, black 1, city 2, night 3, sub/crop 4, tiny 5; shards only for usable sources
    assert sorted(os.listdir(os.path.join(out, "shards"))) == ["00002.safetensors", "00003.safetensors",
                                                               "00004.safetensors"]
    assert any("gone.exr" in line and "warning" in line for line in lines)
    assert manifest["captions_without_image"] == ["gone.exr"]
    with open(os.path.join(out, "prepare.json")) as f:
        assert json.load(f) == json.loads(json.dumps(manifest))


def test_prepare_shards_match_an_independent_encode(prepared, model):
    """The crop source's latents equal diffusers' AutoencoderKL encoding (posterior mode x 0.18215) of
    brackets rebuilt here from the stored crop position, exposures and camera; log_hdr is
    ln(2^e0 H + 1e-5)."""
    from diffusers import AutoencoderKL

    out, manifest, _ = prepared
    tensors, meta = shard(out, "00004.safetensors")
    assert meta["source"] == "sub/crop.exr" and meta["caption"] == "forest" and len(meta["views"]) == 2
    for key in ("c_minus", "c0", "c_plus"):
        assert tensors[key].shape == (2, 4, 8, 8) and tensors[key].dtype == torch.float32
    assert tensors["log_hdr"].shape == (2, 3, 64, 64) and tensors["log_hdr"].dtype == torch.float16
    source = real_crop("forest.exr", 150, 100, 96)[:, :80]
    vae = AutoencoderKL.from_pretrained(os.path.join(model, "vae")).eval()
    for v, view in enumerate(meta["views"]):
        g = view["view"]
        assert g["kind"] == "crop"
        hdr = source[g["top"]:g["top"] + 64, g["left"]:g["left"] + 64]
        y = hdr.astype(np.float64) @ LUMA
        e_minus, e_plus = math.log2(WHITE / y.max()), math.log2(WHITE / np.median(y[y > 0]))
        e = [e_minus, (e_minus + e_plus) / 2, e_plus]
        assert view["exposures"] == pytest.approx(e, abs=1e-9)
        n, a = view["camera"]["n"], view["camera"]["a"]
        for key, ek in zip(("c_minus", "c0", "c_plus"), e, strict=True):
            x = torch.from_numpy(by_hand(hdr, ek, n, a).astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
            with torch.no_grad():
                ref = vae.encode(x).latent_dist.mode() * 0.18215
            torch.testing.assert_close(tensors[key][v:v + 1], ref, atol=1e-4, rtol=1e-4)
        # ln is undefined below 0: tiny negative values (DWA-coded source) count as black
        expected = np.log(np.maximum(hdr.astype(np.float64), 0) * 2.0 ** e[1] + 1e-5).transpose(2, 0, 1)
        np.testing.assert_allclose(tensors["log_hdr"][v].float().numpy(), expected, atol=5e-3, rtol=1e-3)


def test_prepare_panorama_views_follow_the_rule(prepared):
    """Perspective views of the panoramas: 2^e0 H recovered from log_hdr obeys the exposure rule."""
    out, _, _ = prepared
    expected = (("00002.safetensors", "city.exr", "a city at dusk"), ("00003.safetensors", "night.exr", ""))
    for name, source, caption in expected:
        tensors, meta = shard(out, name)
        assert meta["source"] == source and meta["caption"] == caption
        assert tensors["c0"].shape == (2, 4, 8, 8)
        for v, view in enumerate(meta["views"]):
            assert view["view"]["kind"] == "perspective"
            scaled = np.exp(tensors["log_hdr"][v].double().numpy()) - 1e-5  # = 2^e0 H
            y = np.einsum("chw,c->hw", scaled, LUMA)
            e_minus, e0, e_plus = view["exposures"]
            assert e_minus < e0 < e_plus and e0 == pytest.approx((e_minus + e_plus) / 2)
            assert y.max() == pytest.approx(WHITE * 2.0 ** (e0 - e_minus), rel=2e-2)
            assert np.median(y[y > 1e-4]) == pytest.approx(WHITE * 2.0 ** (e0 - e_plus), rel=2e-2)
            assert not torch.equal(tensors["c_minus"][v], tensors["c_plus"][v])


def test_prepare_is_deterministic_and_resumes(prepared, hdr_dir, model, tmp_path):
    out, manifest, _ = prepared
    names = sorted(os.listdir(os.path.join(out, "shards")))
    again = str(tmp_path / "again")
    # a prepare killed while writing its first prepare.json leaves only that temporary file: not refused
    os.makedirs(again)
    with open(os.path.join(again, ".prepare.json.k1ll3d.tmp.json"), "w") as f:
        f.write('{"format"')
    prep.prepare(hdr_dir, model, again, log=lambda s: None, **ARGS)
    assert sorted(os.listdir(again)) == ["prepare.json", "shards"]
    for name in names:  # byte-identical shards
        with open(os.path.join(out, "shards", name), "rb") as f1, open(os.path.join(again, "shards", name), "rb") as f2:
            assert f1.read() == f2.read()
    assert LatentData(out).fingerprint() == LatentData(again).fingerprint()

    # an interrupted run: one shard missing, the manifest not complete
    resumed = str(tmp_path / "resumed")
    shutil.copytree(out, resumed)
    os.unlink(os.path.join(resumed, "shards", "00003.safetensors"))
    with open(os.path.join(resumed, "shards", ".00003.safetensors.k1ll3d.tmp.safetensors"), "wb") as f:
        f.write(b"\0" * 100)  # the shard a kill cut short, under its temporary name
    with open(os.path.join(resumed, "prepare.json")) as f:
        partial = json.load(f)
    partial["complete"] = False
    with open(os.path.join(resumed, "prepare.json"), "w") as f:
        json.dump(partial, f)
    with pytest.raises(DataError, match="--resume"):
        LatentData(resumed)
    inodes = {n: os.stat(os.path.join(resumed, "shards", n)).st_ino for n in ("00002.safetensors", "00004.safetensors")}
    lines = []
    result = prep.prepare(hdr_dir, model, resumed, resume=True, log=lines.append, **ARGS)
    assert sum("already written" in line for line in lines) == 2
    assert any("night.exr" in line and "00003" in line and "already" not in line for line in lines)
    for n, ino in inodes.items():
        assert os.stat(os.path.join(resumed, "shards", n)).st_ino == ino  # untouched
    with open(os.path.join(out, "shards", "00003.safetensors"), "rb") as f1, \
            open(os.path.join(resumed, "shards", "00003.safetensors"), "rb") as f2:
        assert f1.read() == f2.read()
    assert {k: v for k, v in result.items()} == manifest
    assert sorted(os.listdir(os.path.join(resumed, "shards"))) == names
    assert LatentData(resumed).fingerprint() == LatentData(out).fingerprint()

    # a different seed gives different views
    other = str(tmp_path / "other")
    prep.prepare(hdr_dir, model, other, log=lambda s: None, **{**ARGS, "seed": 1})
    t0, m0 = shard(out, "00004.safetensors")
    t1, m1 = shard(other, "00004.safetensors")
    assert m0["views"] != m1["views"] and not torch.equal(t0["c0"], t1["c0"])
    assert LatentData(other).fingerprint() != LatentData(out).fingerprint()


def test_prepare_refuses_existing_out_and_changed_args(prepared, hdr_dir, model):
    out, _, _ = prepared
    def stamps():
        return {n: os.stat(os.path.join(out, "shards", n)).st_mtime_ns for n in os.listdir(os.path.join(out, "shards"))}

    before = stamps()
    with pytest.raises(prep.PrepareError, match="already exists.*--resume"):
        prep.prepare(hdr_dir, model, out, log=lambda s: None, **ARGS)
    with pytest.raises(prep.PrepareError, match="different arguments.*views"):
        prep.prepare(hdr_dir, model, out, resume=True, log=lambda s: None, **{**ARGS, "views": 3})
    assert before == stamps()


def test_prepare_bad_arguments(hdr_dir, model, tmp_path):
    with pytest.raises(prep.PrepareError, match="multiple of 8"):
        prep.prepare(hdr_dir, model, str(tmp_path / "a"), **{**ARGS, "size": 60})
    with pytest.raises(prep.PrepareError, match="ev-step"):
        prep.prepare(hdr_dir, model, str(tmp_path / "a"), ev_step="lots", **ARGS)
    with pytest.raises(prep.PrepareError, match="vae/"):
        prep.prepare(hdr_dir, str(tmp_path), str(tmp_path / "a"), **ARGS)
    with pytest.raises(prep.PrepareError, match="no HDR files"):
        prep.prepare(str(tmp_path), model, str(tmp_path / "a"), **ARGS)
    assert not os.path.exists(tmp_path / "a")  # nothing written on refusal


def test_fixed_step_jpeg_prepare_and_cli(hdr_dir, model, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(os.path.join(hdr_dir, "sub", "crop.exr"), src / "crop.exr")
    src_caption = tmp_path / "caps.jsonl"
    src_caption.write_text(json.dumps({"file": "crop.exr", "caption": "from --captions"}) + "\n")
    parser = argparse.ArgumentParser()
    prep.add_arguments(parser)
    out = str(tmp_path / "DATA")
    args = parser.parse_args(["--hdr", str(src), "--model", model, "--out", out, "--size", "64", "--views", "1",
                              "--ev-step", "2.5", "--jpeg", "70", "--captions", str(src_caption), "--device", "cpu"])
    manifest = prep.run(args)
    assert manifest["args"]["ev_step"] == 2.5 and manifest["args"]["jpeg"] == 70
    assert manifest["samples"] == {"train": 1, "val": 0}  # a single source is never held out
    _, meta = shard(out, "00000.safetensors")
    e_minus, e0, e_plus = meta["views"][0]["exposures"]
    assert (e0 - e_minus, e_plus - e0) == pytest.approx((2.5, 2.5), abs=1e-9)
    assert meta["views"][0]["jpeg"] == 70 and meta["caption"] == "from --captions"
    assert parser.parse_args(["--hdr", "a", "--model", "b", "--out", "c"]).ev_step is None  # auto
    assert parser.parse_args(["--hdr", "a", "--model", "b", "--out", "c", "--ev-step", "auto"]).ev_step is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--hdr", "a", "--model", "b", "--out", "c", "--ev-step", "-1"])
    with pytest.raises(DataError, match="'val' split .* no samples"):
        LatentData(out, "val")


# ------------------------------------------------------------------------------------ LatentData
def test_latent_data(prepared, model):
    out, manifest, _ = prepared
    train, val = LatentData(out, "train"), LatentData(out, "val")
    # default --val-fraction 0.05 of 6 sources: one held out (city, by the seeded hash)
    assert len(train) == 4 and len(val) == 2
    assert [s["source"] for s in train.shards] == ["night.exr", "sub/crop.exr"]
    assert [s["source"] for s in val.shards] == ["city.exr"]
    assert manifest["samples"] == {"train": 4, "val": 2}
    assert train.scaling_factor == pytest.approx(0.18215) and train.model_path == os.path.abspath(model)
    batch = train.get([3, 0, 2])
    night, _ = shard(out, "00003.safetensors")
    crop, _ = shard(out, "00004.safetensors")
    for key in ("c_minus", "c0", "c_plus", "log_hdr"):
        expected = torch.stack([crop[key][1], night[key][0], crop[key][0]]).float()
        assert batch[key].dtype == torch.float32
        torch.testing.assert_close(batch[key], expected, atol=0, rtol=0)
    assert batch["caption"] == ["forest", "", "forest"]
    assert val.get([1])["caption"] == ["a city at dusk"]
    one = train[1]
    assert one["c0"].shape == (4, 8, 8) and one["caption"] == ""
    assert train.metadata(2)["view"]["exposures"] == shard(out, "00004.safetensors")[1]["views"][0]["exposures"]
    with pytest.raises(IndexError):
        train.get([4])
    assert train.fingerprint() == LatentData(out, "train").fingerprint() == val.fingerprint()
    with pytest.raises(DataError, match="prepare"):
        LatentData(os.path.join(out, "nope"))
    with pytest.raises(DataError, match="no prepare.json"):
        LatentData(os.path.join(out, "shards"))
