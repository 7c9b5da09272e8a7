"""The training recipe on SDXL, on CPU: a tiny plain SDXL diffusers pipeline folder (4-channel
SDXL-architecture UNet widened to 8, SDXL's VAE config with scaling factor 0.13025, CLIP-L +
CLIP-G text encoders; tests/train_models.write_sdxl_model) -> prepare on three real CC0 HDRIs at
64 pixels -> stage 1 -> a highlight denoiser with SDXL's pooled text and size ids -> resume ->
export -> our loaders, diffusers, and Load Bracket Denoiser in the genuine ComfyUI as an SDXL MODEL.

References are independent of the code under test: latents from diffusers' own AutoencoderKL,
the first step's loss recomputed here from transformers' two text encoders (SDXL's convention:
penultimate hidden states concatenated, pooled from text_encoder_2) and diffusers' own 4-channel
UNet (the widened UNet's extra conv_in weights are zero, so at step 1 it must equal that UNet).
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lediff_core.model.hdr_vae import HDRVAE
from lediff_core.model.weights import load_denoiser, load_hdr_vae
from lediff_train import cli, engine, models
from lediff_train import prepare as prep
from lediff_train.data import LatentData
from lediff_train.denoiser import ddim_sample, size_ids, text_condition
from lediff_train.export import export
from support.common import REPO
from support.train_models import hdri_folder, logged, quiet, write_sdxl_model

SCALE = 0.13025
SIZE = 64
CAPTION = "a street in a city at dusk"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_sdxl")
    model = write_sdxl_model(str(root))
    hdr = Path(hdri_folder(str(root / "hdr")))
    (hdr / "city.txt").write_text(CAPTION)
    data = str(root / "data")
    prep.prepare(str(hdr), model, data, size=SIZE, views=2, seed=0, log=quiet)
    return {"root": root, "model": model, "hdr": str(hdr), "data": data}


def train(setup, stage, out, *extra):
    argv = [stage, *(["--direction", "highlight"] if stage == "denoiser" else []),
            "--data", setup["data"], "--model", setup["model"], "--out", str(out), "--report-to", "csv",
            "--batch-size", "2", *extra]
    assert cli.main(argv) == 0


def run_weights(run):
    folder = os.path.join(engine.latest_checkpoint(str(run)), "weights")
    return {f: load_file(os.path.join(folder, f)) for f in sorted(os.listdir(folder)) if f.endswith(".safetensors")}


@pytest.fixture(scope="module")
def runs(setup):
    root = setup["root"]
    out = {name: str(root / name) for name in ("decoder", "highlight", "resumed", "shadow")}
    train(setup, "decoder", out["decoder"], "--steps", "2", "--lpips-weight", "0", "--gan-weight", "0",
          "--validate-every", "0")
    den = ["--lr", "1e-3", "--caption-dropout", "0.3", "--val-samples", "1", "--val-steps", "2"]
    train(setup, "denoiser", out["highlight"], "--steps", "2", "--validate-every", "2", *den)
    train(setup, "denoiser", out["resumed"], "--steps", "1", "--validate-every", "0", *den)
    train(setup, "denoiser", out["resumed"], "--steps", "2", "--validate-every", "0", "--resume", *den)
    # the shadow model under bf16 autocast, validating (DDIM + the VAE decode forced to float32), in its
    # own process: accelerate fixes the precision once per process
    cmd = [sys.executable, "-m", "lediff_train", "denoiser", "--direction", "shadow", "--data", setup["data"],
           "--model", setup["model"], "--out", out["shadow"], "--report-to", "csv", "--batch-size", "2",
           "--steps", "1", "--validate-every", "1", "--val-samples", "1", "--val-steps", "2", "--mixed-precision",
           "bf16"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO}, cwd=REPO,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def exported(setup, runs):
    """The highlight export's path; the shadow one beside it, both under the names sdxl_text_to_hdr loads."""
    from workflow_specs import SDXL_HIGHLIGHT, SDXL_SHADOW

    folder = os.path.join(setup["root"], "lediff")
    export(runs["decoder"], runs["shadow"], os.path.join(folder, SDXL_SHADOW), log=quiet)
    return export(runs["decoder"], runs["highlight"], os.path.join(folder, SDXL_HIGHLIGHT), log=quiet)


# --- prepare ------------------------------------------------------------------------------------

def test_prepare_encodes_with_sdxls_vae_and_scale_and_defaults_to_1024(setup, tmp_path):
    from diffusers import AutoencoderKL

    assert models.read_model(setup["model"]).backbone == "sdxl"
    manifest = json.loads(open(os.path.join(setup["data"], "prepare.json")).read())
    assert manifest["model"]["scaling_factor"] == SCALE and manifest["args"]["size"] == SIZE
    # the cached latents are diffusers' own encoding of the same brackets (posterior mode x 0.13025)
    vae = AutoencoderKL.from_pretrained(os.path.join(setup["model"], "vae")).eval()
    data = LatentData(setup["data"], "train")
    meta = data.metadata(0)
    kept, _ = prep.process_source(os.path.join(setup["hdr"], meta["source"]), meta["source"], size=SIZE, views=2,
                                  seed=0, ev_step=None, jpeg=None)
    view = next(v for v in kept if v["info"]["index"] == meta["view"]["index"])
    x = torch.from_numpy(np.stack(view["brackets"]).astype(np.float32)).permute(0, 3, 1, 2) / 127.5 - 1
    with torch.no_grad():
        ref = vae.encode(x).latent_dist.mode() * SCALE
    got = data.get([0])
    ours = torch.cat([got[k] for k in ("c_minus", "c0", "c_plus")])
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    # the crop size follows the backbone when not given: SDXL's 1024, SD1.5's 512
    assert prep.default_size(models.read_model(setup["model"])) == 1024
    from support.train_models import write_sd15_model

    assert prep.default_size(models.read_model(write_sd15_model(str(tmp_path)))) == 512
    import argparse

    parser = argparse.ArgumentParser()
    prep.add_arguments(parser)
    assert parser.parse_args(["--hdr", "h", "--model", "m", "--out", "o"]).size is None


# --- the denoiser's conditioning ----------------------------------------------------------------

def sdxl_text(model, captions):
    """SDXL's text conditioning from transformers directly: CLIP-L's and CLIP-G's penultimate hidden
    states side by side; pooled = CLIP-G's projected pooled output."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    out = []
    for sub, cls in (("", CLIPTextModel), ("_2", CLIPTextModelWithProjection)):
        tok = CLIPTokenizer.from_pretrained(os.path.join(model, f"tokenizer{sub}"))
        enc = cls.from_pretrained(os.path.join(model, f"text_encoder{sub}")).eval()
        ids = tok(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            out.append(enc(ids, output_hidden_states=True))
    return torch.cat([out[0].hidden_states[-2], out[1].hidden_states[-2]], -1), out[1].text_embeds


def test_first_step_loss_is_sdxls_with_pooled_text_and_size_ids(setup, runs):
    from diffusers import UNet2DConditionModel

    data = LatentData(setup["data"], "train")
    positions = [0, 1]
    batch = data.get(engine.data_indices(positions, len(data), 0))
    ts, noises, captions = [], [], []
    for g, caption in zip(engine.sample_generators(0, positions), batch["caption"], strict=True):
        ts.append(int(torch.randint(0, 1000, (1,), generator=g)))
        noises.append(torch.randn(batch["c0"].shape[1:], generator=g))
        captions.append(caption if float(torch.rand((), generator=g)) >= 0.3 else "")
    t, noise = torch.tensor(ts), torch.stack(noises)
    context, pooled = sdxl_text(setup["model"], captions)
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2  # scaled_linear
    a = torch.cumprod(1 - betas, 0)[t].float().view(-1, 1, 1, 1)
    noisy = a.sqrt() * batch["c0"] + (1 - a).sqrt() * noise
    # the widened UNet at step 1 is the 4-channel SDXL UNet ignoring the condition
    unet = UNet2DConditionModel.from_pretrained(os.path.join(setup["model"], "unet")).eval()
    time_ids = torch.tensor([[SIZE, SIZE, 0, 0, SIZE, SIZE]] * 2, dtype=torch.float32)
    with torch.no_grad():
        pred = unet(noisy, t, encoder_hidden_states=context,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        wrong = unet(noisy, t, encoder_hidden_states=context,
                     added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids * 2}).sample
    expected = F.mse_loss(pred, noise).item()
    got = logged(runs["highlight"])[(1, "train/loss")]
    assert got == pytest.approx(expected, rel=1e-5)
    assert F.mse_loss(wrong, noise).item() != pytest.approx(expected, rel=1e-5)  # the size ids take part
    torch.testing.assert_close(size_ids(2, SIZE, SIZE), time_ids)


def test_validation_samples_with_sdxl_conditioning_in_both_branches(setup, runs):
    logs = logged(runs["highlight"])
    bf16 = logged(runs["shadow"])
    for name in ("val/denoise_loss", "val/bracket_mse", "val/log_l1_aligned", "val/pu21_psnr"):
        assert np.isfinite(logs[(2, name)]) and np.isfinite(bf16[(1, name)]), name
    assert json.loads(open(os.path.join(runs["shadow"], "config.json")).read())["mixed_precision_used"] == "bf16"
    assert {v.dtype for v in run_weights(runs["shadow"])["unet.safetensors"].values()} == {torch.float32}
    # ddim_sample's SDXL branches: with the unconditional text equal to the conditional one, any CFG
    # scale gives the CFG-1 result; another pooled embedding in the unconditional branch changes it
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_config({**models.read_model(setup["model"]).unet_config, "in_channels": 8})
    unet.load_state_dict(run_weights(runs["highlight"])["unet.safetensors"])
    unet.eval()
    gen = torch.Generator().manual_seed(3)
    cond = torch.randn(1, 4, 8, 8, generator=gen)
    text = text_condition(torch.randn(1, 77, 768, generator=gen), torch.randn(1, 768, generator=gen),
                          size_ids(1, SIZE, SIZE))
    other = text_condition(text["context"], torch.randn(1, 768, generator=gen), text["time_ids"])
    config = models.read_model(setup["model"]).noise_schedule().config
    with torch.no_grad():
        one = ddim_sample(unet, cond, text, text, config, 2, 1.0, 0)
        same = ddim_sample(unet, cond, text, text, config, 2, 7.5, 0)
        guided = ddim_sample(unet, cond, text, other, config, 2, 7.5, 0)
    torch.testing.assert_close(same, one, atol=1e-5, rtol=1e-5)
    assert (guided - one).abs().max() > 1e-4


def test_mismatched_text_encoders_are_refused(setup, tmp_path):
    text = models.CaptionEncoder(setup["model"], "sdxl")
    model = models.read_model(setup["model"])
    config = model.unet_config
    model.check_text_fits(text)
    with pytest.raises(models.ModelError, match="projection_class_embeddings_input_dim"):
        replace(model, unet_config={**config, "projection_class_embeddings_input_dim": 2816}).check_text_fits(text)
    with pytest.raises(models.ModelError, match="cross_attention_dim is 2048"):
        replace(model, unet_config={**config, "cross_attention_dim": 2048}).check_text_fits(text)
    bad = shutil.copytree(setup["model"], tmp_path / "no_g")
    shutil.rmtree(bad / "text_encoder_2")
    with pytest.raises(models.ModelError, match="text_encoder_2/.*SDXL"):
        models.read_model(str(bad)).text_source()


def test_resume_continues_exactly(runs):
    straight, resumed = run_weights(runs["highlight"]), run_weights(runs["resumed"])
    assert straight.keys() == resumed.keys()
    for f in straight:
        for k in straight[f]:
            assert torch.equal(straight[f][k], resumed[f][k]), f"{f}:{k}"


# --- export -------------------------------------------------------------------------------------

def test_export_is_the_sdxl_official_layout(setup, runs, exported):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModelWithProjection

    config, sd = load_denoiser(exported)
    assert config["in_channels"] == 8 and config["addition_embed_type"] == "text_time"
    assert config["projection_class_embeddings_input_dim"] == 768 + 6 * 256
    trained = run_weights(runs["highlight"])["unet.safetensors"]
    unet = UNet2DConditionModel.from_pretrained(os.path.join(exported, "unet"))
    for k, v in unet.state_dict().items():
        assert torch.equal(v, trained[k]) and torch.equal(sd[k], trained[k]), k
    vae_config, vae_sd, fusion = load_hdr_vae(exported)
    hdr = HDRVAE(vae_config, vae_sd, fusion)
    assert hdr.scaling_factor == SCALE and vae_config["force_upcast"] is True
    decoder = run_weights(runs["decoder"])
    assert torch.equal(vae_sd["decoder.conv_out.weight"], decoder["vae_decoder.safetensors"]["decoder.conv_out.weight"])
    for part in ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"):
        cmp = filecmp.dircmp(os.path.join(setup["model"], part), os.path.join(exported, part))
        assert not (cmp.left_only or cmp.right_only or cmp.diff_files), part
    CLIPTextModelWithProjection.from_pretrained(os.path.join(exported, "text_encoder_2"))
    index = json.loads(open(os.path.join(exported, "model_index.json")).read())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    assert index["tokenizer_2"] == ["transformers", "CLIPTokenizer"]
    assert index["scheduler"] == ["diffusers", "DDIMScheduler"]
    scheduler = json.loads(open(os.path.join(exported, "scheduler", "scheduler_config.json")).read())
    assert scheduler["_class_name"] == "DDIMScheduler" and scheduler["beta_schedule"] == "scaled_linear"
    provenance = json.loads(open(os.path.join(exported, "lediff_train.json")).read())
    assert provenance["backbone"] == "sdxl"


def test_the_export_loads_as_an_sdxl_model_in_comfyui(comfy, setup, exported, monkeypatch):
    import comfy.model_base as model_base
    import folder_paths

    from support.tiny_models import sdxl_conditioning

    monkeypatch.setitem(folder_paths.folder_names_and_paths, "lediff",
                        ([os.path.dirname(exported)], folder_paths.folder_names_and_paths["lediff"][1]))
    model = comfy.node_class("LEDiffLoadDenoiser").execute(os.path.basename(exported))[0]
    assert type(model.model) is model_base.SDXL_instructpix2pix
    unet = model.get_model_object("diffusion_model")
    sd = load_file(os.path.join(exported, "unet", "diffusion_pytorch_model.safetensors"))
    assert torch.equal(unet.label_emb[0][0].weight, sd["add_embedding.linear_1.weight"])
    size = {"width": 64, "height": 64, "crop_w": 0, "crop_h": 0, "target_width": 64, "target_height": 64}
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) / SCALE}
    out = comfy.node_class("LEDiffHighlightBracket").execute(
        model, sdxl_conditioning(1, **size), sdxl_conditioning(2, **size), latent, 0, 2, 7.5, "ddim",
        "ddim_uniform").args
    assert all(torch.isfinite(o["samples"]).all() and o["lediff_backbone"] == "sdxl" for o in out)


def test_the_exports_run_the_sdxl_workflow(host, exported, workflow_models, monkeypatch):
    """The two SDXL exports as the only LEDiff models, under the names sdxl_text_to_hdr loads, the
    workflow run in the genuine ComfyUI with its stand-in checkpoint (conftest.workflow_models)."""
    from support.workflows import SDXL_WORKFLOWS, run_with_only_these_models

    assert SDXL_WORKFLOWS
    run_with_only_these_models(host, monkeypatch, os.path.dirname(exported),
                               str(workflow_models / "models" / "checkpoints"), SDXL_WORKFLOWS)
