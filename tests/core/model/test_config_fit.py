"""Absurd model configs and lying weight headers against the core's weights module (issue 25, class 2):
a config.json that differs from its weights is refused by name (the config's path, the key, the fix)
before any model is built, also in a converted single file; building stops once a model outgrows its
weights; a safetensors file whose header lies about the file is refused by name before anything is read
into memory; a .bin that would unpack or broadcast to more than its bytes is refused. The same attacks
against the recipe: tests/train/test_config_fit.py; through the nodes: tests/nodes/model/test_config_fit.py."""

from __future__ import annotations

import json
import os
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file

from lediff_core.model.convert import convert
from lediff_core.model.fit import ConfigMismatchError, meta_model
from lediff_core.model.hdr_vae import HDRVAE
from lediff_core.model.weights import (
    CONFIG_KEY,
    WeightError,
    config_name,
    load_denoiser,
    load_hdr_vae,
    load_state_dict,
    read_header,
    weights_name,
)
from support import tiny_models as fx
from support.attacks import LIES, assert_names_the_config, attacked_folder


def test_pickled_weights_are_checked_the_same_way(tmp_path):
    folder = attacked_folder(tmp_path, "vae", "layers_per_block", 1000, weight_format="bin")
    config, sd, fusion = load_hdr_vae(folder)
    with pytest.raises(ConfigMismatchError) as err:
        HDRVAE(config, sd, fusion, "bin", config_name(folder, "vae"), weights_name(folder, "vae"))
    assert_names_the_config(str(err.value), folder, "vae", "layers_per_block", "1")
    assert "diffusion_pytorch_model.bin" in str(err.value)


def test_a_converted_single_file_carries_its_config_and_is_checked_too(tmp_path):
    good = fx.write_official_folder(str(tmp_path), "good", extras=False)
    out = tmp_path / "out"
    out.mkdir()
    vae_file = [p for p in convert(good, str(out)) if p.endswith("_hdr_vae.safetensors")][0]
    tampered = str(out / "tampered_hdr_vae.safetensors")
    _, meta = read_header(vae_file)
    config = json.loads(meta[CONFIG_KEY])
    absurd = json.dumps({**config, "layers_per_block": 1000})
    save_file(load_file(vae_file), tampered, metadata={**meta, CONFIG_KEY: absurd})
    config, sd, fusion = load_hdr_vae(tampered)
    with pytest.raises(ConfigMismatchError, match=rf"the config in '{tampered}' \(its {CONFIG_KEY} metadata.*"
                       r"layers_per_block is 1000 where the weights have 1"):
        HDRVAE(config, sd, fusion, "tampered", config_name(tampered, "hdr_vae"), weights_name(tampered, "hdr_vae"))
    # and the converter refuses to carry a config that does not fit into a single file
    bad = attacked_folder(tmp_path, "unet", "layers_per_block", 1000)
    with pytest.raises(ConfigMismatchError, match="unet/config.json' does not match the weights"):
        convert(bad, str(out))
    assert not [p for p in os.listdir(out) if p.startswith("unet_layers_per_block")]


def test_building_stops_once_a_model_outgrows_its_weights():
    """The ceiling of the meta build: a config asking for a million layers is stopped at once."""
    def million_layers():
        return torch.nn.Sequential(*(torch.nn.Linear(4, 4) for _ in range(1_000_000)))

    with pytest.raises(ConfigMismatchError, match=r"'c.json' describes a model of more than 1400 modules and "
                       r"tensors, but 'w.safetensors' holds 100 tensors"):
        meta_model(million_layers, 100, "'c.json'", "'w.safetensors'")
    assert meta_model(lambda: torch.nn.Linear(4, 4), 2, "c", "w").weight.is_meta


def test_the_fixture_models_still_load(tmp_path):
    folder = fx.write_official_folder(str(tmp_path), "fine", extras=False)
    config, sd = load_denoiser(folder)
    assert config["layers_per_block"] == 1 and sd
    config, sd, fusion = load_hdr_vae(folder)
    HDRVAE(config, sd, fusion, "fine", config_name(folder, "vae"), weights_name(folder, "vae"))


@pytest.mark.parametrize("name", LIES)
def test_a_lying_safetensors_header_is_refused_by_name(lies, name):
    path, said = lies[name], LIES[name][1]
    for read in (read_header, load_state_dict):
        with pytest.raises(WeightError) as err:
            read(path)
        assert path in str(err.value) and said in str(err.value), str(err.value)
        assert "re-download" in str(err.value)


def test_a_compressed_torch_archive_is_refused_before_it_unpacks(tmp_path):
    plain = str(tmp_path / "plain.pth")
    torch.save({"weight_conv.weight": torch.zeros(2_000_000)}, plain)
    bomb = str(tmp_path / "bomb.pth")
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(bomb, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    assert os.path.getsize(bomb) < os.path.getsize(plain) / 100
    assert torch.load(bomb, weights_only=True)["weight_conv.weight"].numel() == 2_000_000  # torch would inflate it
    with pytest.raises(WeightError, match=r"bomb.pth' unpacks to \d+ bytes from a \d+-byte file"):
        load_state_dict(bomb)
    assert load_state_dict(plain)["weight_conv.weight"].numel() == 2_000_000


def test_a_legacy_torch_file_is_refused_by_name_before_torch_load(tmp_path):
    """The pre-1.6 format (torch.save(..., _use_new_zipfile_serialization=False), still what old
    .pth/.pt/.ckpt downloads are): torch.load allocates each storage at the size its pickle claims,
    which no check of the file bounds, so it is refused before torch.load, naming the format and the fix."""
    weights = {"weight_conv.weight": torch.arange(6.0)}
    for name in ("old.pth", "old.pt", "old.ckpt", "old.bin"):
        path = str(tmp_path / name)
        torch.save(weights, path, _use_new_zipfile_serialization=False)
        assert not zipfile.is_zipfile(path)
        assert torch.equal(torch.load(path, weights_only=True)["weight_conv.weight"], weights["weight_conv.weight"])
        with pytest.raises(WeightError) as caught:
            load_state_dict(path)
        message = str(caught.value)
        assert message.startswith(f"{path!r} is a legacy PyTorch file (the format torch.save wrote before "
                                  "PyTorch 1.6): its loader allocates what the file claims"), message
        assert "re-save trusted weights with a current torch.save" in message and ".safetensors" in message
        # the fix works: re-saved with today's torch.save, the same file loads
        torch.save(torch.load(path, weights_only=True), path + ".new")
        assert torch.equal(load_state_dict(path + ".new")["weight_conv.weight"], weights["weight_conv.weight"])


def test_a_legacy_fusion_file_in_an_official_folder_names_the_file(tmp_path):
    folder = fx.write_official_folder(str(tmp_path), "LEDiff_highlight")
    fusion = os.path.join(folder, "vae", "merge_model.pth")
    torch.save(torch.load(fusion, weights_only=True), fusion, _use_new_zipfile_serialization=False)
    with pytest.raises(WeightError, match=r"merge_model.pth' is a legacy PyTorch file"):
        load_hdr_vae(str(folder))


def test_a_broadcast_tensor_claiming_more_than_its_bytes_is_refused(tmp_path):
    path = str(tmp_path / "expanded.bin")
    torch.save({"conv_in.weight": torch.zeros(1).expand(10 ** 10)}, path)
    assert os.path.getsize(path) < 4096
    with pytest.raises(WeightError, match=r"expanded.bin': tensor 'conv_in.weight' claims \[10000000000\]"):
        load_state_dict(path)

