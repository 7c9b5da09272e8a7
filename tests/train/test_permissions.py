"""What the recipe publishes gets the permissions an ordinary open() / mkdir() gets under the process
umask (issue 24): the training data, a checkpoint of a real training run, an export."""

from __future__ import annotations

import os

import pytest

from support.permissions import assert_ordinary
from support.train_models import decoder_weights, denoiser_weights, fake_run, hdri_folder, write_lediff_model


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    """A LEDiff MODEL, one HDRI, and fake decoder/denoiser runs (test_train_export's) to export."""
    root = str(tmp_path_factory.mktemp("perm_train"))
    model = write_lediff_model(root, "MODEL")
    return {"root": root, "model": model, "hdr": hdri_folder(os.path.join(root, "hdr"), names=("city",)),
            "decoder": fake_run(root, "dec", "decoder", model, decoder_weights(model), step=3),
            "denoiser": fake_run(root, "den", "denoiser", model, denoiser_weights(), direction="highlight", step=4)}


def test_training_data_runs_checkpoints_and_exports_get_the_umasks_modes(training, umask, tmp_path):
    from lediff_train import cli
    from lediff_train.export import export
    from lediff_train.prepare import prepare

    data, run = str(tmp_path / "data"), str(tmp_path / "run")
    prepare(training["hdr"], training["model"], data, size=64, views=1, seed=0, log=lambda *a, **k: None)
    assert cli.main(["decoder", "--data", data, "--model", training["model"], "--out", run, "--steps", "1",
                     "--checkpoint-every", "1", "--report-to", "csv", "--validate-every", "0",
                     "--lpips-weight", "0"]) == 0
    checkpoint = os.path.join(run, "checkpoints", "step-1")
    state = sorted(os.listdir(os.path.join(checkpoint, "state")))
    assert any(f.endswith(".safetensors") for f in state) and any(f.endswith(".pt") for f in state), state
    out = export(training["decoder"], training["denoiser"], str(tmp_path / "LEDiff_mine"), log=lambda *a: None)
    assert os.path.isfile(os.path.join(out, "vae", "merge_model.pth"))
    checked = assert_ordinary(data, run, out)
    assert checked > 20

