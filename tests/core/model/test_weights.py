"""Loading LEDiff weights in the official layout and as converted single files, strictly."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from lediff_core.model.convert import convert
from lediff_core.model.fusion import ExposureFusion
from lediff_core.model.hdr_vae import HDRVAE, LatentError, check_brackets, check_latent
from lediff_core.model.unet_config import UNetConfigError, ldm_unet_config
from lediff_core.model.weights import WeightError, list_models, load_denoiser, load_hdr_vae, load_state_dict
from support import tiny_models as fx
from support.common import REPO


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    return fx.write_official_folder(str(tmp_path_factory.mktemp("lediff")), "LEDiff_highlight")


def test_official_folder_loads_exactly(official):
    config, sd = load_denoiser(official)
    assert config["in_channels"] == 8
    assert set(sd) == set(fx.make_unet().state_dict())
    vae_config, vae_sd, fusion = load_hdr_vae(official)
    ref = fx.make_vae(seed=2)
    assert all(torch.equal(vae_sd[k], v) for k, v in ref.state_dict().items())
    assert set(fusion) == {"weight_conv.weight", "weight_conv.bias"}


def test_bin_and_pth_load_with_weights_only(tmp_path):
    folder = fx.write_official_folder(str(tmp_path), "bin_model", weight_format="bin")
    # pickled .bin files only: no safetensors to fall back on
    assert sorted(os.listdir(os.path.join(folder, "unet"))) == ["config.json", "diffusion_pytorch_model.bin"]
    assert sorted(os.listdir(os.path.join(folder, "vae"))) == ["config.json", "diffusion_pytorch_model.bin",
                                                               "merge_model.pth"]
    _, unet_sd = load_denoiser(folder)
    _, vae_sd, fusion = load_hdr_vae(folder)
    # the same tensors the fixture wrote: unet (seed 1), vae (seed 2), fusion merge_model.pth (seed 3)
    for loaded, ref in ((unet_sd, fx.make_unet(seed=1).state_dict()), (vae_sd, fx.make_vae(seed=2).state_dict()),
                        (fusion, fx.fusion_state_dict(seed=3))):
        assert loaded.keys() == ref.keys() and all(torch.equal(loaded[k], v) for k, v in ref.items())
    for ext in (".pth", ".pt", ".bin"):
        path = str(tmp_path / f"fusion{ext}")
        torch.save(fx.fusion_state_dict(seed=9), path)
        loaded = load_state_dict(path)
        assert all(torch.equal(loaded[k], v) for k, v in fx.fusion_state_dict(seed=9).items())


class Exploit:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("ext", [".pth", ".bin"])
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_pickle_that_would_execute_code_is_refused(tmp_path, ext, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / f"weights{ext}"
    payload = {"weight_conv.weight": Exploit(marker)}
    if writer == "pickle":
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    else:
        torch.save(payload, path)
    # a bare pickle is no torch file: refused before anything unpickles it (the legacy-format check)
    refusal = "would run code" if writer == "torch.save" else "is not a PyTorch file"
    with pytest.raises(WeightError, match=refusal):
        load_state_dict(str(path))
    assert not marker.exists()
    # the payload is live: an unrestricted unpickler would have run it (so the refusal is what saved us)
    if writer == "pickle":
        with open(path, "rb") as f:
            pickle.load(f)
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


def test_folder_without_unet_or_vae_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightError, match="no unet/ folder"):
        load_denoiser(str(tmp_path / "empty"))
    with pytest.raises(WeightError, match="no vae/ folder"):
        load_hdr_vae(str(tmp_path / "empty"))


def test_missing_fusion_file_and_weights(tmp_path, official):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(official, broken)
    os.remove(broken / "vae" / "merge_model.pth")
    with pytest.raises(WeightError, match="merge_model.pth"):
        load_hdr_vae(str(broken))
    os.remove(broken / "unet" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(WeightError, match="diffusion_pytorch_model"):
        load_denoiser(str(broken))


def test_missing_and_unexpected_keys_are_listed(official):
    config, sd, fusion = load_hdr_vae(official)
    fusion = dict(fusion)
    del fusion["weight_conv.bias"]
    fusion["weight_conv.extra"] = torch.zeros(1)
    listed = r"missing key\(s\): weight_conv.bias.*unexpected key\(s\): weight_conv.extra"
    with pytest.raises(WeightError, match=listed):
        HDRVAE(config, sd, fusion)
    sd = dict(sd)
    sd.pop("decoder.conv_out.bias")
    with pytest.raises(ValueError, match="decoder.conv_out.bias"):
        HDRVAE(config, sd, load_hdr_vae(official)[2])


def test_converter_round_trip_and_no_overwrite(tmp_path, official):
    out = tmp_path / "converted"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-m", "lediff_core.model.convert", official, "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    denoiser, hdr_vae = (str(out / f"LEDiff_highlight_{k}.safetensors") for k in ("denoiser", "hdr_vae"))
    assert proc.stdout.split() == [denoiser, hdr_vae]
    c1, sd1 = load_denoiser(official)
    c2, sd2 = load_denoiser(denoiser)
    assert c1 == c2 and sd1.keys() == sd2.keys() and all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    v1, f1 = load_hdr_vae(official)[1:], load_hdr_vae(hdr_vae)[1:]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(v1, f1, strict=True) for k in a)
    # the wrong kind in the wrong loader, and a second conversion, are errors
    with pytest.raises(WeightError, match="holds a LEDiff hdr_vae, not a denoiser"):
        load_denoiser(hdr_vae)
    before = os.path.getmtime(denoiser)
    with pytest.raises(FileExistsError):
        convert(official, str(out))
    assert os.path.getmtime(denoiser) == before
    assert sorted(os.listdir(out)) == ["LEDiff_highlight_denoiser.safetensors",
                                       "LEDiff_highlight_hdr_vae.safetensors"]


def test_plain_safetensors_is_not_a_lediff_model(tmp_path):
    path = tmp_path / "random.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(WeightError, match=r"^'random.safetensors' is not a LEDiff model: it has no LEDiff metadata"):
        load_denoiser(str(path))


def test_model_listing(tmp_path, official):
    base = tmp_path / "models"
    (base / "nested" / "LEDiff_shadow" / "unet").mkdir(parents=True)
    (base / "stray_folder").mkdir()
    (base / "LEDiff_highlight_denoiser.safetensors").write_bytes(b"")
    (base / "notes.txt").write_text("x")
    names = list_models([str(base), str(tmp_path / "absent")])
    assert names == ["LEDiff_highlight_denoiser.safetensors", "nested", "nested/LEDiff_shadow", "stray_folder"]


def test_unet_config_translation_matches_sd15():
    # SD1.5's published unet/config.json (as in the official LEDiff download, with 8 input channels)
    sd15 = {"in_channels": 8, "out_channels": 4, "block_out_channels": [320, 640, 1280, 1280],
            "layers_per_block": 2, "attention_head_dim": 8, "cross_attention_dim": 768,
            "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, "norm_num_groups": 32}
    c = ldm_unet_config(sd15)
    # ComfyUI's own SD15 entry (comfy/model_detection.py), published values
    assert c["channel_mult"] == [1, 2, 4, 4] and c["model_channels"] == 320
    assert c["transformer_depth"] == [1, 1, 1, 1, 1, 1, 0, 0]
    assert c["transformer_depth_output"] == [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert c["num_heads"] == 8 and c["context_dim"] == 768 and c["num_res_blocks"] == [2, 2, 2, 2]


def test_four_channel_unet_and_unsupported_configs_are_refused():
    with pytest.raises(UNetConfigError, match="4 input channels.*8-channel|has 8"):
        ldm_unet_config({**fx.UNET_CONFIG, "in_channels": 4})
    with pytest.raises(UNetConfigError, match="class_embed_type"):
        ldm_unet_config({**fx.UNET_CONFIG, "class_embed_type": "timestep"})
    with pytest.raises(UNetConfigError, match="norm_num_groups"):
        ldm_unet_config({**fx.UNET_CONFIG, "norm_num_groups": 16})


def test_fusion_matches_the_formula():
    sd = fx.fusion_state_dict()
    fusion = ExposureFusion()
    fusion.load_weights(sd)
    gen = torch.Generator().manual_seed(0)
    latents = [torch.randn(2, 4, 5, 7, generator=gen) for _ in range(5)]
    fused, weights = fusion(latents)
    # w_i = a_c * C_i + b_c per channel; W = softmax over brackets; sum_i W_i C_i
    a, b = sd["weight_conv.weight"].view(1, 4, 1, 1), sd["weight_conv.bias"].view(1, 4, 1, 1)
    logits = torch.stack([a * c + b for c in latents])
    w = torch.exp(logits) / torch.exp(logits).sum(0)
    assert torch.allclose(weights, w, atol=1e-6)
    assert torch.allclose(fused, sum(wi * c for wi, c in zip(w, latents, strict=True)), atol=1e-5)
    # the paper's initialisation is a plain average of any number of brackets
    assert torch.allclose(ExposureFusion()(latents[:3])[0], sum(latents[:3]) / 3, atol=1e-6)


def test_latent_checks():
    good = torch.zeros(1, 4, 8, 8)
    check_brackets({"a": good, "b": good.clone()})
    with pytest.raises(LatentError, match="16 channels"):
        check_latent(torch.zeros(1, 16, 8, 8))
    with pytest.raises(LatentError, match="shape"):
        check_latent(torch.zeros(1, 4, 2, 8, 8))
    bad = good.clone()
    bad[0, 0, 0, :2] = float("nan")
    with pytest.raises(LatentError, match="2 NaN"):
        check_latent(bad, "dark")
    with pytest.raises(LatentError, match="differ in batch or size"):
        check_brackets({"dark": good, "mid": torch.zeros(2, 4, 8, 8)})
