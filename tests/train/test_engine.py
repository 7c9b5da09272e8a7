"""The training loop (lediff_train.engine) and the MODEL reader: data order, widened UNet, exact
resume, two processes vs one, NaN stop, refusals. Tiny models in the official layouts, data
prepared from real CC0 HDRIs (tests/data/hdri) at 64 pixels."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from lediff_train import cli, engine, models
from support.common import REPO
from support.train_models import prepared_lediff_data, write_sd15_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A LEDiff MODEL and data prepared with it from three real HDRIs (2 views each)."""
    root = tmp_path_factory.mktemp("train_engine")
    return {"root": root, **prepared_lediff_data(root)}


def train(setup, stage, out, *extra):
    argv = [stage, *(["--direction", "highlight"] if stage == "denoiser" else []),
            "--data", setup["data"], "--model", setup["model"], "--out", str(out), "--report-to", "csv",
            "--validate-every", "0", *extra]
    assert cli.main(argv) == 0


def weights(run):
    folder = os.path.join(engine.latest_checkpoint(str(run)), "weights")
    return {f: load_file(os.path.join(folder, f)) for f in sorted(os.listdir(folder)) if f.endswith(".safetensors")}


def assert_same(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for f in a:
        assert a[f].keys() == b[f].keys()
        for k in a[f]:
            if atol:
                torch.testing.assert_close(a[f][k], b[f][k], atol=atol, rtol=0, msg=f"{f}:{k}")
            else:
                assert torch.equal(a[f][k], b[f][k]), f"{f}:{k}"


def test_positions_split_a_global_batch_between_processes():
    # 2 processes x 2 samples cover exactly what 1 process x 4 samples does, step by step
    for step in range(3):
        one = engine.sample_positions(step, 0, 1, 4, 0, 1)
        two = engine.sample_positions(step, 0, 1, 2, 0, 2) + engine.sample_positions(step, 0, 1, 2, 1, 2)
        assert one == two == list(range(4 * step, 4 * step + 4))
    # accumulation: micro-steps continue the same sequence
    assert engine.sample_positions(1, 1, 2, 3, 0, 1) == [9, 10, 11]
    # every epoch visits each item once, in a different order
    idx = engine.data_indices(list(range(20)), 10, seed=5)
    assert sorted(idx[:10]) == sorted(idx[10:]) == list(range(10)) and idx[:10] != idx[10:]
    assert engine.data_indices([3, 14], 10, 5) == [idx[3], idx[14]]


def test_a_widened_sd_unet_starts_as_the_sd_unet(tmp_path):
    from diffusers import UNet2DConditionModel

    sd = write_sd15_model(str(tmp_path))
    wide, widened = models.read_model(sd).load_unet()
    assert widened and wide.config.in_channels == 8
    reference = UNet2DConditionModel.from_pretrained(os.path.join(sd, "unet")).eval()  # diffusers' own loader
    wide.eval()
    gen = torch.Generator().manual_seed(0)
    x, cond = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 4, 8, 8, generator=gen)
    ctx = torch.randn(1, 77, 768, generator=gen)
    with torch.no_grad():
        ref = reference(x, 500, encoder_hidden_states=ctx).sample
        out = wide(torch.cat([x, cond], 1), 500, encoder_hidden_states=ctx).sample
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.count_nonzero(wide.conv_in.weight[:, 4:]) == 0


def test_model_folders_with_the_wrong_parts_are_refused(tmp_path, setup):
    bad = shutil.copytree(setup["model"], tmp_path / "nine")
    cfg = json.loads((bad / "unet" / "config.json").read_text())
    (bad / "unet" / "config.json").write_text(json.dumps({**cfg, "in_channels": 9}))
    with pytest.raises(models.ModelError, match="in_channels=9"):
        models.read_model(str(bad)).load_unet()
    shutil.rmtree(bad / "text_encoder")
    with pytest.raises(models.ModelError, match="--text-model"):
        models.read_model(str(bad)).text_source()
    cfg["in_channels"] = 8
    (bad / "unet" / "config.json").write_text(json.dumps({**cfg, "block_out_channels": [32, 64, 32]}))
    with pytest.raises(ValueError, match=r"config.json' does not match the weights.*block_out_channels is "
                       r"\[32, 64, 32\] where the weights have"):
        models.read_model(str(bad)).load_unet()
    shutil.rmtree(bad / "vae")
    with pytest.raises(models.ModelError, match="no vae/ folder"):
        models.read_model(str(bad))


def test_resume_continues_exactly(setup, tmp_path):
    # the discriminator starts at step 2, so the resumed half restores both optimizers mid-GAN
    common = ["--batch-size", "2", "--lpips-weight", "0", "--gan-start", "2", "--checkpoint-every", "2",
              "--lr", "1e-4", "--ema", "0.5"]
    train(setup, "decoder", tmp_path / "straight", "--steps", "4", *common)
    train(setup, "decoder", tmp_path / "resumed", "--steps", "2", *common)
    assert open(tmp_path / "resumed" / "checkpoints" / "latest").read().strip() == "step-2"
    train(setup, "decoder", tmp_path / "resumed", "--steps", "4", "--resume", *common)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert_same(a, b)
    first = load_file(tmp_path / "straight" / "checkpoints" / "step-2" / "weights" / "vae_decoder.safetensors")
    assert not torch.equal(first["decoder.conv_out.weight"], a["vae_decoder.safetensors"]["decoder.conv_out.weight"])
    config = json.loads((tmp_path / "resumed" / "config.json").read_text())
    assert config["stage"] == "decoder" and config["gan_start"] == 2 and config["data_fingerprint"]


def test_two_processes_give_the_update_of_one_with_the_combined_batch(setup, tmp_path):
    # GAN off: with it, Adam's first steps turn rounding noise in near-zero discriminator gradients into
    # full-size steps; test_train_losses checks the GAN's two-process equality (adaptive weight incl.) with SGD
    common = ["--steps", "2", "--lpips-weight", "0", "--gan-weight", "0", "--lr", "1e-3"]
    train(setup, "decoder", tmp_path / "one", "--batch-size", "4", *common)
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "lediff_train", "decoder", "--data", setup["data"], "--model", setup["model"],
           "--out", str(tmp_path / "two"), "--report-to", "csv", "--validate-every", "0", "--batch-size", "2", *common]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "config.json").read_text())["processes"] == 2
    # Compared as functions: some parameters get an exactly-zero gradient (conv biases right before a
    # GroupNorm, the fusion bias shared by all brackets under the softmax), which Adam turns from
    # rounding noise into full-size steps that differ between runs yet change no output.
    one, two, start = (decode(setup, run) for run in (tmp_path / "one", tmp_path / "two", None))
    assert (one - start).abs().max() > 100 * (one - two).abs().max()
    torch.testing.assert_close(two, one, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU launch: accelerate picks its launcher by the GPUs")
def test_accelerate_launch_starts_the_processes_asked_for_or_refuses(setup, tmp_path):
    # the guide's command as a user types it: two real processes on CPU (gloo), recorded and logged;
    # without --multi_gpu accelerate starts ONE process on a machine without GPUs: refused, nothing written
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1",
           "HF_HOME": str(tmp_path / "hf")}  # no accelerate config of the machine's user
    env.pop("MASTER_ADDR", None)

    def launch(out, *flags):
        cmd = [accelerate, "launch", *flags, "-m", "lediff_train", "decoder", "--data", setup["data"],
               "--model", setup["model"], "--out", str(out), "--report-to", "csv", "--validate-every", "0",
               "--steps", "2", "--batch-size", "1", "--lpips-weight", "0", "--gan-weight", "0"]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)

    refused = launch(tmp_path / "one", "--num_processes", "2")
    assert refused.returncode != 0
    assert "started this one alone" in refused.stderr, refused.stderr[-3000:]
    assert "accelerate launch --multi_gpu --num_processes N -m lediff_train" in refused.stderr
    assert not (tmp_path / "one").exists()

    done = launch(tmp_path / "two", "--multi_gpu", "--num_processes", "2", "--main_process_port", "29533")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "config.json").read_text())["processes"] == 2
    assert "decoder: 2 process(es), MULTI_CPU on cpu; global batch 1 x 2 x 1 = 2" in done.stdout + done.stderr
    trainer = json.loads((tmp_path / "two" / "checkpoints" / "step-2" / "trainer.json").read_text())
    assert trainer["samples"] == 4


def decode(setup, run):
    """Held-out crops through a run's fusion + decoder (the MODEL's own when ``run`` is None)."""
    from lediff_train.data import LatentData
    from lediff_train.decoder import HDRDecoderModel

    folder = models.read_model(setup["model"])
    model = HDRDecoderModel(folder.load_vae(), folder.load_fusion()).eval()
    if run is not None:
        w = weights(run)
        model.fusion.load_state_dict(w["fusion.safetensors"])
        model.vae.load_state_dict(w["vae_decoder.safetensors"])
    batch = LatentData(setup["data"], "val").get([0, 1])
    with torch.no_grad():
        return model(batch["c_minus"], batch["c0"], batch["c_plus"])


def test_a_nan_loss_stops_with_the_last_good_checkpoint_kept(setup, tmp_path, capsys):
    # an absurd learning rate blows the weights up after the first update
    argv = ["decoder", "--data", setup["data"], "--model", setup["model"], "--out", str(tmp_path / "run"),
            "--report-to", "csv", "--validate-every", "0", "--steps", "6", "--batch-size", "2", "--lpips-weight", "0",
            "--gan-weight", "0", "--lr", "1e30", "--checkpoint-every", "1"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "the loss became" in err and "last good checkpoint (step-" in err and "--resume" in err
    latest = engine.latest_checkpoint(str(tmp_path / "run"))
    assert os.path.isfile(os.path.join(latest, "trainer.json"))
    assert not [n for n in os.listdir(tmp_path / "run" / "checkpoints") if n.endswith(".tmp")]


def test_existing_runs_and_changed_settings_are_refused(setup, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    argv = ["decoder", "--data", setup["data"], "--model", setup["model"], "--out", str(run), "--steps", "1",
            "--lpips-weight", "0", "--gan-weight", "0", "--report-to", "csv", "--validate-every", "0"]
    assert cli.main(argv) == 2 and "pass --resume" in capsys.readouterr().err
    assert os.listdir(run) == []
    shutil.rmtree(run)
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--resume", "--lr", "1e-3"]) == 2
    assert "lr: 1e-06 -> 0.001" in capsys.readouterr().err
    # a killed checkpoint write leaves a staging folder and never moves `latest`
    (run / "checkpoints" / ".step-9.tmp").mkdir()
    assert cli.main([*argv, "--resume", "--steps", "2"]) == 0
    assert open(run / "checkpoints" / "latest").read().strip() == "step-2"
    assert not (run / "checkpoints" / ".step-9.tmp").exists()


def test_accumulation_checkpointing_and_precision_options(setup, tmp_path):
    base = ["--steps", "2", "--lpips-weight", "0", "--gan-weight", "0", "--lr", "1e-3"]
    train(setup, "decoder", tmp_path / "b4", "--batch-size", "4", *base)
    # 2 micro-steps of 2 = one step of 4 (same samples, averaged gradient); recomputed activations
    # change nothing but memory
    train(setup, "decoder", tmp_path / "acc", "--batch-size", "2", "--grad-accum", "2", "--gradient-checkpointing",
          *base)
    b4, acc = decode(setup, tmp_path / "b4"), decode(setup, tmp_path / "acc")
    torch.testing.assert_close(acc, b4, atol=1e-4, rtol=1e-4)
    # bf16 autocast (what a GPU run uses; accelerate supports it on CPU too): the stored weights stay
    # float32, the step runs, TensorBoard gets the scalars
    # (in its own process: accelerate fixes the precision once per process)
    cmd = [sys.executable, "-m", "lediff_train", "decoder", "--data", setup["data"], "--model", setup["model"],
           "--out", str(tmp_path / "bf16"), "--validate-every", "0", "--batch-size", "2", "--mixed-precision", "bf16",
           "--report-to", "tensorboard", *base]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO}, cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    w = weights(tmp_path / "bf16")
    assert {v.dtype for f in w.values() for v in f.values()} == {torch.float32}
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["mixed_precision_used"] == "bf16"
    assert [n for n in os.listdir(tmp_path / "bf16" / "logs") if n.startswith("events.out.tfevents")]


def test_missing_optional_parts_fail_at_start_and_leave_nothing(setup, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # no LPIPS backbone there
    argv = ["decoder", "--data", setup["data"], "--model", setup["model"], "--out", str(tmp_path / "run"),
            "--steps", "1", "--report-to", "csv"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "alexnet-owt-7be5be79.pth" in err and "--lpips-weight 0" in err
    assert not (tmp_path / "run").exists()
    # bitsandbytes is not installed here: the flag must say so, never fall back to another optimizer
    assert importlib.util.find_spec("bitsandbytes") is None
    assert cli.main([*argv, "--lpips-weight", "0", "--adam8bit"]) == 2
    assert "bitsandbytes" in capsys.readouterr().err and not (tmp_path / "run").exists()
