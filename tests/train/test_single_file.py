"""A ComfyUI single-file SD checkpoint (models/checkpoints/*.safetensors, the original "ldm" layout) as
the training MODEL, offline: lediff_train.checkpoint converts it with diffusers' key maps and configs
built from its shapes. The tiny checkpoints are diffusers fixture folders mapped to the ldm layout by
the genuine ComfyUI's own key maps (train_models.write_single_file_checkpoint), so the conversion is
checked against an independent map; ComfyUI's model detection checks the inferred UNet layout."""

from __future__ import annotations

import dataclasses
import os
import socket

import pytest
import torch
from safetensors.torch import load_file, save_file

from lediff_core.model.hdr_vae import HDRVAE
from lediff_core.model.unet_config import ldm_unet_config
from lediff_core.model.vae import parse_vae_config
from lediff_core.model.weights import load_denoiser, load_hdr_vae
from lediff_train import checkpoint, cli, engine, models
from lediff_train.export import export
from support.train_models import HOST_TOKENIZER, hdri_folder, write_single_file_checkpoint

BACKBONES = ("sd15", "sdxl")


@pytest.fixture
def offline(monkeypatch):
    """The Hub switched off, and any connection attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def checkpoints(comfy, tmp_path_factory):
    root = tmp_path_factory.mktemp("single_file")
    return {b: write_single_file_checkpoint(str(root), b) for b in BACKBONES}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_the_conversion_gives_the_diffusers_folders_model(checkpoints, offline, backbone):
    import comfy.model_detection

    path, folder = checkpoints[backbone]
    single, diffusers_folder = models.read_model(path), models.read_model(folder)
    assert single.backbone == diffusers_folder.backbone == backbone
    # the UNet: the architecture of the folder's config, every tensor equal (widened to 8 channels alike)
    config = single.unet_config
    assert ldm_unet_config(config, None) == ldm_unet_config(diffusers_folder.unet_config, None)
    detected = comfy.model_detection.detect_unet_config(load_file(path), "model.diffusion_model.")
    mine = ldm_unet_config(config, None)
    for key in ("in_channels", "model_channels", "channel_mult", "num_res_blocks", "transformer_depth",
                "transformer_depth_output", "transformer_depth_middle", "context_dim", "use_linear_in_transformer"):
        assert mine[key] == detected[key], key
    assert detected.get("adm_in_channels") == (config.get("projection_class_embeddings_input_dim"))
    (unet, widened), (ref, _) = single.load_unet(), diffusers_folder.load_unet()
    assert widened
    a, b = unet.state_dict(), ref.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the VAE
    assert parse_vae_config(single.vae_config) == parse_vae_config(diffusers_folder.vae_config)
    assert single.scaling_factor == {"sd15": 0.18215, "sdxl": 0.13025}[backbone]
    a, b = single.load_vae().state_dict(), diffusers_folder.load_vae().state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert single.fusion is None
    assert single.noise_schedule().config.beta_schedule == "scaled_linear"
    # the text encoders, with the host's CLIP tokenizer (the folder's tokenizers are copies of it)
    text = models.CaptionEncoder(path, backbone, HOST_TOKENIZER)
    reference = models.CaptionEncoder(folder, backbone)
    for captions in (["a street in a city at dusk"], ["", "sunlight on a wet road"]):
        got, want = text.encode(captions), reference.encode(captions)
        torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=0)
        if backbone == "sdxl":
            torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=0)
        else:
            assert got[1] is None
    single.check_text_fits(text)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_both_stages_from_a_single_file_export_what_the_loaders_load(checkpoints, offline, backbone, tmp_path):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    from lediff_train.prepare import prepare

    path, _ = checkpoints[backbone]
    data = str(tmp_path / "data")
    prepare(hdri_folder(str(tmp_path / "hdr"), ("city", "forest")), path, data, size=64, views=1, seed=0,
            log=lambda *a, **k: None)
    common = ["--data", data, "--model", path, "--report-to", "csv", "--validate-every", "0", "--steps", "1",
              "--batch-size", "1"]
    assert cli.main(["decoder", *common, "--out", str(tmp_path / "dec"), "--lpips-weight", "0",
                     "--gan-weight", "0"]) == 0
    assert cli.main(["denoiser", "--direction", "highlight", *common, "--out", str(tmp_path / "den"),
                     "--tokenizer", HOST_TOKENIZER]) == 0
    out = export(str(tmp_path / "dec"), str(tmp_path / "den"), str(tmp_path / "My_highlight"), log=lambda *a: None)

    config, unet_sd = load_denoiser(out)
    trained = load_file(os.path.join(engine.latest_checkpoint(str(tmp_path / "den")), "weights", "unet.safetensors"))
    assert config["in_channels"] == 8 and unet_sd.keys() == trained.keys()
    assert all(torch.equal(unet_sd[k], trained[k]) for k in trained)
    _, info = UNet2DConditionModel.from_pretrained(os.path.join(out, "unet"), output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")), info
    ldm_unet_config(config)  # what Load Bracket Denoiser builds
    vae_config, vae_sd, fusion = load_hdr_vae(out)
    HDRVAE(vae_config, vae_sd, fusion, out)
    encoder = {k: v for k, v in models.read_model(path).load_vae().state_dict().items()
               if k.startswith("encoder.")}
    assert all(torch.equal(vae_sd[k], v) for k, v in encoder.items())
    # the text parts the captions were encoded with, as a pipeline folder holds them
    parts = ["text_encoder", "tokenizer"] + (["text_encoder_2", "tokenizer_2"] if backbone == "sdxl" else [])
    assert all(os.path.isdir(os.path.join(out, p)) for p in parts)
    saved = models.CaptionEncoder(out, backbone)
    original = models.CaptionEncoder(path, backbone, HOST_TOKENIZER)
    torch.testing.assert_close(saved.encode(["a city"])[0], original.encode(["a city"])[0], atol=1e-6, rtol=0)
    assert isinstance(saved.model, CLIPTextModel)


def test_refusals_name_the_file_and_the_fix(checkpoints, offline, tmp_path, capsys):
    path, folder = checkpoints["sd15"]
    single, diffusers_folder = models.read_model(path), models.read_model(folder)
    with pytest.raises(models.ModelError, match="--tokenizer .*comfy/sd1_tokenizer"):
        single.text_source()
    with pytest.raises(models.ModelError, match="leave --tokenizer out"):
        diffusers_folder.text_source(None, HOST_TOKENIZER)
    with pytest.raises(models.ModelError, match="single-file sd15 checkpoint, but the UNet is sdxl"):
        dataclasses.replace(diffusers_folder, backbone="sdxl").text_source(path, HOST_TOKENIZER)
    with pytest.raises(models.ModelError, match="not a CLIP tokenizer folder"):
        single.text_source(None, str(tmp_path))
    # a .safetensors that is no SD checkpoint (a LoRA-like file), and a pickled one
    lora = str(tmp_path / "style_lora.safetensors")
    save_file({"lora_unet_down_blocks_0.alpha": torch.ones(())}, lora)
    ckpt = str(tmp_path / "sd.ckpt")
    for bad, expected in ((lora, "is not a Stable Diffusion checkpoint"), (ckpt, "not a .safetensors")):
        open(bad, "ab").close()
        with pytest.raises(models.ModelError) as err:
            models.read_model(bad)
        message = str(err.value)
        assert bad in message and expected in message and "model.diffusion_model.*" in message
    # an SD1.5 file without its text encoder
    partial = str(tmp_path / "unet_and_vae.safetensors")
    save_file({k: v for k, v in load_file(path).items() if not k.startswith("cond_stage_model.")}, partial)
    with pytest.raises(checkpoint.CheckpointError, match="without the text encoders"):
        checkpoint.read(partial)
    # on the command line: exit code 2, the file and what was expected, nothing written
    hdr = hdri_folder(str(tmp_path / "hdr"), ("city",))
    assert cli.main(["prepare", "--hdr", hdr, "--model", lora, "--out", str(tmp_path / "data"), "--size", "64"]) == 2
    err = capsys.readouterr().err
    assert lora in err and "is not a Stable Diffusion checkpoint" in err and not (tmp_path / "data").exists()
