"""Absurd model configs and lying weight headers, written as the attacks they are (issue 25, class 2).

A config.json asking for block_out_channels [4096]*4 or layers_per_block 1000 beside small weights
is refused by name (the config's path, the key, the fix) before any model is built, by the nodes in a
genuine ComfyUI and by the recipe's model reader; a safetensors file whose header lies about the file
is refused by name before anything is read into memory; a .bin that would unpack or broadcast to more
than its bytes is refused. Memory is measured in a child process (VmHWM after resetting it), under a
data limit so that a regression fails there instead of taking the machine down."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile

import lediff_fixtures as fx
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
from lediff_testing import REPO

MB = 1 << 20
GROWTH_LIMIT = 500 * MB
DATA_LIMIT = 3 << 30  # the most a regression may take in the child before it fails with MemoryError

# (part, setting, value, what the weights have): the attacks, against the fixture's small weights
ATTACKS = [
    ("vae", "block_out_channels", [4096] * 4, "[32, 64, 64, 64]"),
    ("vae", "layers_per_block", 1000, "1"),
    ("unet", "block_out_channels", [4096] * 4, "[32, 64, 64]"),
    ("unet", "block_out_channels", [4096] * 3, "[32, 64, 64]"),  # as many levels as its block types
    ("unet", "layers_per_block", 1000, "1"),
]

MEASURE = r"""
import json, re, resource, sys

def status(key):
    return int(re.search(key + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

def measured(run, limit):
    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    resource.setrlimit(resource.RLIMIT_DATA, (status("VmData") + limit, hard))
    open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS
    before = status("VmRSS")
    try:
        run()
        result = {"error": None}
    except BaseException as e:
        result = {"error": type(e).__name__, "message": str(e)}
    resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))
    result["grew"] = status("VmHWM") - before
    print(json.dumps(result), flush=True)
"""

TRAIN_CHILD = MEASURE + r"""
from diffusers import UNet2DConditionModel  # imported before measuring: the reads are measured, not imports
from lediff_train import models
from lediff_core.model.weights import load_state_dict
readers = {"unet": lambda p: models.read_model(p).load_unet(), "vae": lambda p: models.read_model(p).load_vae(),
           "weights": load_state_dict}
for reader, path in zip(sys.argv[2::2], sys.argv[3::2]):
    measured(lambda: readers[reader](path), int(sys.argv[1]))
"""

HOST_CHILD = MEASURE + r"""
sys.path.insert(0, "tests")
from comfy_harness import ComfyHost
host = ComfyHost.start()
import folder_paths  # ComfyUI's, importable once the host is up
host.use_folders(sys.argv[2])
folder_paths.add_model_folder_path("lediff", sys.argv[2])
graphs = {
    "unet": lambda name: {"1": {"class_type": "LEDiffLoadDenoiser", "inputs": {"model_name": name}},
                          "2": {"class_type": "ModelSave", "inputs": {"model": ["1", 0], "filename_prefix": "x"}}},
    "vae": lambda name: {"1": {"class_type": "LEDiffLoadHDRVAE", "inputs": {"model_name": name}},
                         "2": {"class_type": "VAESave", "inputs": {"vae": ["1", 1], "filename_prefix": "x"}}},
}
for part, name in zip(sys.argv[3::2], sys.argv[4::2]):
    measured(lambda: host.run(graphs[part](name)), int(sys.argv[1]))
"""


def in_child(script: str, *args: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", script, str(DATA_LIMIT), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def attacked_folder(root, part: str, setting: str, value, name: str | None = None, **kwargs) -> str:
    """The fixture's official folder with one setting of ``part``'s config.json replaced."""
    folder = fx.write_official_folder(str(root), name or f"{part}_{setting}", extras=False, **kwargs)
    path = os.path.join(folder, part, "config.json")
    config = json.load(open(path))
    json.dump({**config, setting: value}, open(path, "w"))
    return folder


def assert_names_the_config(message: str, folder: str, part: str, setting: str, weights: str) -> None:
    assert os.path.join(folder, part, "config.json") in message, message
    assert f"{setting} is " in message and f"where the weights have {weights}" in message, message
    assert "re-download the model" in message, message


# ------------------------------------------------------------------ absurd configs beside small weights

@pytest.fixture(scope="module")
def attacks(tmp_path_factory):
    root = tmp_path_factory.mktemp("lediff")
    return root, [attacked_folder(root, part, setting, value, f"{part}_{setting}_{i}")
                  for i, (part, setting, value, _) in enumerate(ATTACKS)]


def test_the_nodes_refuse_an_absurd_config_by_name_before_building_in_a_genuine_comfyui(attacks):
    root, folders = attacks
    args = [x for (part, *_), folder in zip(ATTACKS, folders, strict=True) for x in (part, os.path.basename(folder))]
    results = in_child(HOST_CHILD, str(root), *args)
    for (part, setting, _, weights), folder, result in zip(ATTACKS, folders, results, strict=True):
        assert result["error"] == "GraphError", result
        assert "lediff.ConfigMismatchError" in result["message"], result["message"][:600]
        assert_names_the_config(result["message"], folder, part, setting, weights)
        assert result["grew"] < GROWTH_LIMIT, (setting, result["grew"] / MB)


def test_the_recipe_refuses_an_absurd_config_by_name_before_building(attacks):
    _, folders = attacks
    args = [x for (part, *_), folder in zip(ATTACKS, folders, strict=True) for x in (part, folder)]
    for (part, setting, _, weights), folder, result in zip(ATTACKS, folders, in_child(TRAIN_CHILD, *args), strict=True):
        assert result["error"] == "ConfigMismatchError", result
        assert_names_the_config(result["message"], folder, part, setting, weights)
        assert result["grew"] < GROWTH_LIMIT, (setting, result["grew"] / MB)


def test_pickled_weights_are_checked_the_same_way(tmp_path):
    folder = attacked_folder(tmp_path, "vae", "layers_per_block", 1000, weight_format="bin")
    config, sd, fusion = load_hdr_vae(folder)
    with pytest.raises(ConfigMismatchError) as err:
        HDRVAE(config, sd, fusion, "bin", config_name(folder, "vae"), weights_name(folder, "vae"))
    assert_names_the_config(str(err.value), folder, "vae", "layers_per_block", "1")
    assert "diffusion_pytorch_model.bin" in str(err.value)


def test_a_config_that_differs_in_any_parameter_is_refused_with_the_tensor(tmp_path):
    """What no sizing setting shows (linear vs 1x1-conv projections) is found by the meta build."""
    from lediff_train import models

    folder = attacked_folder(tmp_path, "unet", "use_linear_projection", True)
    with pytest.raises(ConfigMismatchError, match=r"unet/config.json' does not match the weights.*proj_in.weight: "
                       r"the config gives \[32, 32\], the weights hold \[32, 32, 1, 1\]"):
        models.read_model(folder).load_unet()


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


# ------------------------------------------------------------------ lying safetensors headers

def safetensors_bytes(header: dict, data: bytes, length: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def f32(shape, start=0, end=8):
    return {"dtype": "F32", "shape": shape, "data_offsets": [start, end]}


# name -> (file bytes, what the refusal says). What the safetensors library guarantees is tested
# here, not assumed: it refuses each of these before allocating (checked for the installed version).
LIES = {
    "length beyond the file": (safetensors_bytes({"x": f32([2])}, b"\0" * 8, length=10 ** 6),
                               "claims a 1000000-byte header, beyond the file's"),
    "absurd header length": (safetensors_bytes({"x": f32([2])}, b"\0" * 8, length=1 << 62),
                             "beyond the file's"),
    "offsets beyond the file": (safetensors_bytes({"x": f32([1 << 30], 0, 4 << 30)}, b"\0" * 8),
                                "file not fully covered"),
    "a 1e12-element shape": (safetensors_bytes({"x": f32([10 ** 12])}, b"\0" * 8),
                             "invalid shape, data type, or offset"),
    "a shape whose size overflows": (safetensors_bytes({"x": f32([1 << 40, 1 << 40])}, b"\0" * 8), "overflow"),
    "a gap before a tensor": (safetensors_bytes({"x": f32([2], 8, 16)}, b"\0" * 16), "invalid offset"),
    "trailing bytes": (safetensors_bytes({"x": f32([2])}, b"\0" * (8 + MB)), "file not fully covered"),
    "a truncated length": (b"\x10\0\0", "shorter than a safetensors header's length field"),
}


@pytest.fixture(scope="module")
def lies(tmp_path_factory):
    root = tmp_path_factory.mktemp("lies")
    paths = {}
    for i, (name, (data, _)) in enumerate(LIES.items()):
        paths[name] = str(root / f"lie{i}.safetensors")
        open(paths[name], "wb").write(data)
    return paths


@pytest.mark.parametrize("name", LIES)
def test_a_lying_safetensors_header_is_refused_by_name(lies, name):
    path, said = lies[name], LIES[name][1]
    for read in (read_header, load_state_dict):
        with pytest.raises(WeightError) as err:
            read(path)
        assert path in str(err.value) and said in str(err.value), str(err.value)
        assert "re-download" in str(err.value)


def test_lying_headers_allocate_nothing_big(lies):
    args = [x for name in LIES for x in ("weights", lies[name])]
    for name, result in zip(LIES, in_child(TRAIN_CHILD, *args), strict=True):
        assert result["error"] == "WeightError", (name, result)
        assert result["grew"] < 50 * MB, (name, result["grew"] / MB)


def test_a_lying_checkpoint_header_is_refused_by_the_recipe(lies):
    from lediff_train import checkpoint

    with pytest.raises(checkpoint.CheckpointError, match=r"claims a 1000000-byte header.*expected a Stable Diffusion"):
        checkpoint.shapes(lies["length beyond the file"])


# ------------------------------------------------------------------ pickled weights larger than their file

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


def test_a_broadcast_tensor_claiming_more_than_its_bytes_is_refused(tmp_path):
    path = str(tmp_path / "expanded.bin")
    torch.save({"conv_in.weight": torch.zeros(1).expand(10 ** 10)}, path)
    assert os.path.getsize(path) < 4096
    with pytest.raises(WeightError, match=r"expanded.bin': tensor 'conv_in.weight' claims \[10000000000\]"):
        load_state_dict(path)
