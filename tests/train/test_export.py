"""lediff_train.export: RUN folders -> the official LEDiff download layout, loaded back strictly by our
own loaders, by diffusers (the reference for the unet/ format) and by torch's weights_only loader.
(test_train_recipe runs the shipped workflows on an export of real runs.)

The RUN folders are written here directly in the trainer's format (lediff_train.engine's docstring):
config.json, checkpoints/step-N/{trainer.json, weights/...}, checkpoints/latest. Their
trained weights are the MODEL's perturbed (decoder) or freshly random (UNet, fusion), so that every
exported tensor can be traced to where it must come from.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from lediff_core.io.publish import write_new_folder
from lediff_core.model.hdr_vae import HDRVAE
from lediff_core.model.weights import load_denoiser, load_hdr_vae
from lediff_train import export as ex
from support.tiny_models import UNET_CONFIG, write_official_folder
from support.train_models import (
    DECODER_PREFIXES,
    decoder_weights,
    denoiser_weights,
    fake_run,
    model_vae,
    write_lediff_model,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("runs"))
    model = write_lediff_model(root, "MODEL")
    return {"root": root, "model": model,
            "decoder": fake_run(root, "dec", "decoder", model, decoder_weights(model), step=9),
            "denoiser": fake_run(root, "den", "denoiser", model, denoiser_weights(), direction="highlight", step=12)}


def weights_of(run, name):
    return load_file(os.path.join(ex.latest_checkpoint(run), "weights", name))


def test_export_loads_strictly_and_holds_exactly_the_runs_weights(runs, tmp_path):
    logs = []
    out = ex.export(runs["decoder"], runs["denoiser"], str(tmp_path / "LEDiff_mine"), log=logs.append)
    assert out == str(tmp_path / "LEDiff_mine") and logs
    assert sorted(os.listdir(tmp_path)) == ["LEDiff_mine"]  # no staging folder left beside it

    # the denoiser: our loader, then diffusers' own
    config, unet_sd = load_denoiser(out)
    assert config["in_channels"] == 8 and {k: config[k] for k in UNET_CONFIG} == UNET_CONFIG
    trained_unet = weights_of(runs["denoiser"], "unet.safetensors")
    assert unet_sd.keys() == trained_unet.keys()
    assert all(torch.equal(unet_sd[k], trained_unet[k]) for k in trained_unet)
    from diffusers import UNet2DConditionModel

    unet, info = UNet2DConditionModel.from_pretrained(os.path.join(out, "unet"), output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")), info
    assert torch.equal(unet.conv_in.weight, trained_unet["conv_in.weight"])

    # the HDR VAE: decoder from the run, encoder from the MODEL, fusion from the run; strict load
    vae_config, vae_sd, fusion = load_hdr_vae(out)
    with open(os.path.join(runs["model"], "vae", "config.json")) as f:
        assert vae_config == json.load(f)
    model_sd, trained_dec = model_vae(runs["model"]), weights_of(runs["decoder"], "vae_decoder.safetensors")
    assert list(vae_sd) == list(model_sd)
    for k, v in vae_sd.items():
        expected = trained_dec[k] if k.startswith(DECODER_PREFIXES) else model_sd[k]
        assert torch.equal(v, expected), k
    assert any(k.startswith("encoder.") for k in vae_sd) and any(k.startswith("decoder.") for k in trained_dec)
    trained_fusion = weights_of(runs["decoder"], "fusion.safetensors")
    assert fusion.keys() == trained_fusion.keys() and all(torch.equal(fusion[k], trained_fusion[k]) for k in fusion)
    hdr = HDRVAE(vae_config, vae_sd, fusion, out)
    assert torch.equal(hdr.fusion.weight_conv.bias, trained_fusion["weight_conv.bias"])
    raw = torch.load(os.path.join(out, "vae", "merge_model.pth"), weights_only=True)
    assert type(raw) is dict and all(type(v) is torch.Tensor for v in raw.values())

    # the scheduler: DDIM (as released) over exactly the noise schedule the trainer used
    from diffusers import DDIMScheduler

    from lediff_train.models import read_model

    scheduler = DDIMScheduler.from_pretrained(os.path.join(out, "scheduler"))
    assert (scheduler.config.clip_sample, scheduler.config.set_alpha_to_one, scheduler.config.steps_offset,
            scheduler.config.prediction_type) == (False, False, 1, "epsilon")
    assert torch.equal(scheduler.alphas_cumprod, read_model(runs["model"]).noise_schedule().alphas_cumprod)

    # text parts copied as they are; model_index names exactly the parts present
    for part in ("text_encoder", "tokenizer"):
        cmp = filecmp.dircmp(os.path.join(runs["model"], part), os.path.join(out, part))
        assert not (cmp.left_only or cmp.right_only or cmp.diff_files), part
    with open(os.path.join(out, "model_index.json")) as f:
        index = json.load(f)
    parts = {k for k, v in index.items() if isinstance(v, list) and None not in v}
    assert parts == {"unet", "vae", "scheduler", "text_encoder", "tokenizer"}
    assert all(os.path.isdir(os.path.join(out, p)) for p in parts)

    with open(os.path.join(out, ex.PROVENANCE_NAME)) as f:
        prov = json.load(f)
    assert prov["format"] == ex.FORMAT and prov["direction"] == "highlight"
    assert (prov["decoder"]["step"], prov["denoiser"]["step"]) == (9, 12)
    assert prov["decoder"]["data_fingerprint"] == "fingerprint-dec"
    assert prov["denoiser"]["config"]["stage"] == "denoiser"


def test_existing_out_is_refused_and_untouched(runs, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="never overwrites"):
        ex.export(runs["decoder"], runs["denoiser"], str(out))
    assert os.listdir(out) == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileExistsError):
        ex.export(runs["decoder"], runs["denoiser"], str(empty))
    assert os.listdir(empty) == [] and sorted(os.listdir(tmp_path)) == ["empty", "taken"]


def _copy_run(run, dest):
    shutil.copytree(run, dest)
    return str(dest)


def test_corrupt_weights_leave_no_out_and_no_staging(runs, tmp_path):
    den = _copy_run(runs["denoiser"], tmp_path / "runs" / "den")
    unet_file = os.path.join(ex.latest_checkpoint(den), "weights", "unet.safetensors")
    with open(unet_file, "r+b") as f:
        f.truncate(os.path.getsize(unet_file) // 2)
    dec = _copy_run(runs["decoder"], tmp_path / "runs" / "dec")
    with open(os.path.join(ex.latest_checkpoint(dec), "weights", "fusion.safetensors"), "wb") as f:
        f.write(b"not a safetensors file")
    (tmp_path / "models").mkdir()
    for bad_dec, bad_den, what in ((runs["decoder"], den, "unet.safetensors"), (dec, runs["denoiser"], "fusion")):
        with pytest.raises(ex.ExportError, match=what):
            ex.export(bad_dec, bad_den, str(tmp_path / "models" / "out"))
        assert os.listdir(tmp_path / "models") == []


def test_a_failure_while_writing_removes_the_staging_folder(runs, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ex.shutil, "copytree", disk_full)  # after unet/ and vae/ are written
    with pytest.raises(OSError, match="No space"):
        ex.export(runs["decoder"], runs["denoiser"], str(tmp_path / "out"))
    assert os.listdir(tmp_path) == []


def test_swapped_or_wrong_runs_are_clear_errors(runs, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(ex.ExportError, match=r"--decoder .* is not a decoder run.*swapped"):
        ex.export(runs["denoiser"], runs["decoder"], out)
    with pytest.raises(ex.ExportError, match="--denoiser .* is not a denoiser run"):
        ex.export(runs["decoder"], runs["decoder"], out)
    with pytest.raises(ex.ExportError, match="not a training RUN folder"):
        ex.export(runs["model"], runs["denoiser"], out)
    fresh = fake_run(str(tmp_path), "fresh", "denoiser", runs["model"], {}, direction="shadow")
    # the step-N folders are the truth, not the pointer: without `latest` the complete step-7 is found
    os.remove(os.path.join(fresh, "checkpoints", "latest"))
    assert ex.latest_checkpoint(fresh) == os.path.join(fresh, "checkpoints", "step-7")
    shutil.rmtree(os.path.join(fresh, "checkpoints", "step-7"))
    with pytest.raises(ex.ExportError, match="no checkpoint yet"):
        ex.export(runs["decoder"], fresh, out)
    four = fake_run(str(tmp_path), "four", "denoiser", runs["model"],
                    denoiser_weights(config={**UNET_CONFIG, "in_channels": 4}), direction="shadow")
    with pytest.raises(ex.ExportError, match="in_channels=4"):
        ex.export(runs["decoder"], four, out)
    assert sorted(os.listdir(tmp_path)) == ["four", "fresh"]


def test_trained_decoder_must_match_the_models_vae(runs, tmp_path):
    out = str(tmp_path / "out")
    weights = decoder_weights(runs["model"])
    key = "decoder.conv_in.weight"
    missing = {**weights, "vae_decoder.safetensors": {k: v for k, v in weights["vae_decoder.safetensors"].items()
                                                      if k != key}}
    with pytest.raises(ex.ExportError, match=f"1 missing key.*{key}"):
        ex.export(fake_run(str(tmp_path), "a", "decoder", runs["model"], missing), runs["denoiser"], out)
    shape = dict(weights["vae_decoder.safetensors"])
    shape[key] = shape[key][:, :2]
    with pytest.raises(ex.ExportError, match=f"{key} has shape"):
        ex.export(fake_run(str(tmp_path), "b", "decoder", runs["model"],
                           {**weights, "vae_decoder.safetensors": shape}), runs["denoiser"], out)
    encoder = {**weights["vae_decoder.safetensors"], "encoder.conv_in.weight": torch.zeros(1)}
    with pytest.raises(ex.ExportError, match="unexpected key.*encoder.conv_in.weight"):
        ex.export(fake_run(str(tmp_path), "c", "decoder", runs["model"],
                           {**weights, "vae_decoder.safetensors": encoder}), runs["denoiser"], out)
    assert not os.path.exists(out)


def test_runs_on_different_vaes_are_refused(runs, tmp_path):
    out = str(tmp_path / "out")
    other = write_official_folder(str(tmp_path), "other_encoder", seed=5)  # same config, other weights
    den = fake_run(str(tmp_path), "den_other", "denoiser", other, denoiser_weights(), direction="highlight")
    with pytest.raises(ex.ExportError, match="different VAE encoders"):
        ex.export(runs["decoder"], den, out)
    # same weights, other latent scale: the denoiser's latents would not be the decoder's
    scaled = str(tmp_path / "other_scale")
    shutil.copytree(runs["model"], scaled)
    config_path = os.path.join(scaled, "vae", "config.json")
    with open(config_path) as f:
        config = json.load(f)
    with open(config_path, "w") as f:
        json.dump({**config, "scaling_factor": 0.13025}, f)
    den = fake_run(str(tmp_path), "den_scale", "denoiser", scaled, denoiser_weights(), direction="highlight")
    with pytest.raises(ex.ExportError, match="different VAEs.*scaling_factor"):
        ex.export(runs["decoder"], den, out)
    # a copy of the same MODEL elsewhere is the same VAE
    copy = str(tmp_path / "copy")
    shutil.copytree(runs["model"], copy)
    den = fake_run(str(tmp_path), "den_copy", "denoiser", copy, denoiser_weights(), direction="highlight")
    assert os.path.isdir(ex.export(runs["decoder"], den, out))


def test_cli_arguments(runs, tmp_path):
    parser = argparse.ArgumentParser()
    ex.add_arguments(parser)
    out = str(tmp_path / "cli_out")
    args = parser.parse_args(["--decoder", runs["decoder"], "--denoiser", runs["denoiser"], "--out", out])
    assert ex.run(args) is None and os.path.isfile(os.path.join(out, "vae", "merge_model.pth"))
    with pytest.raises(SystemExit):
        parser.parse_args(["--decoder", runs["decoder"], "--denoiser", runs["denoiser"]])


def test_write_new_folder(tmp_path):
    seen = []

    def fill(staging):
        seen.append(staging)
        assert os.path.basename(staging).startswith(".new.") and os.path.dirname(staging) == str(tmp_path)
        (tmp_path / staging / "a.txt").write_text("a")
        return 42

    assert write_new_folder(str(tmp_path / "new"), fill) == 42
    assert os.listdir(tmp_path) == ["new"] and (tmp_path / "new" / "a.txt").read_text() == "a"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "new").st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    with pytest.raises(FileExistsError):
        write_new_folder(str(tmp_path / "new"), fill)
    assert len(seen) == 1  # refused before any work

    def late(staging):  # the name is taken while filling: the rename refuses, atomically
        os.mkdir(tmp_path / "race")
        return 1

    with pytest.raises(FileExistsError):
        write_new_folder(str(tmp_path / "race"), late)

    def broken(staging):
        (tmp_path / staging / "half").write_text("x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_new_folder(str(tmp_path / "broken"), broken)
    assert sorted(os.listdir(tmp_path)) == ["new", "race"] and os.listdir(tmp_path / "race") == []
