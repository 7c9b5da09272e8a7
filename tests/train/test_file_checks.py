"""Every file the training recipe opens is checked where it is opened (issue 25, class 3): a FIFO
under a MODEL's weight or config name, a checkpoint's trainer.json or state file, the `latest`
pointer, a DATA folder's shard or a run's log is refused by name, never opened, so nothing waits
forever; and `prepare` follows symbolic links in --hdr (docs/training.md), each file once.

A regression that opens a FIFO blocks forever: each such call runs beside the watchdog of
``test_links_and_special_files.promptly``, which frees it after a timeout and fails the test.
"""

from __future__ import annotations

import json
import os

import pytest

from lediff_train import models, run_folder
from lediff_train import prepare as prep
from lediff_train.data import DataError, LatentData
from support.fifos import promptly
from support.train_models import hdri_folder, write_lediff_model

FIFO_MESSAGE = r"is a FIFO \(named pipe\), not a regular file"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_lediff_model(str(tmp_path_factory.mktemp("model")))


def piped(folder, rel: str) -> str:
    """Replace ``folder/rel`` (a file, or a new name) by a FIFO; its path."""
    path = os.path.join(folder, *rel.split("/"))
    if os.path.lexists(path):
        os.unlink(path)
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("part", ["unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                                  "vae/merge_model.pth", "unet/config.json", "scheduler/scheduler_config.json"])
def test_a_fifo_in_a_model_folder_is_refused_by_name_when_the_model_is_read(model, tmp_path, part):
    import shutil

    folder = shutil.copytree(model, tmp_path / "MODEL")
    fifo = piped(folder, part)
    with pytest.raises(models.ModelError, match=FIFO_MESSAGE) as err:
        promptly(lambda: models.read_model(str(folder)), fifo)
    assert part.split("/")[-1] in str(err.value)


def test_a_fifo_as_model_text_parts_or_tokenizer_is_refused_by_name(model, tmp_path):
    import shutil

    # a single-file MODEL that is a FIFO: refused by name, not taken for a folder without unet/
    fifo = piped(tmp_path, "sd15.safetensors")
    with pytest.raises(models.ModelError, match=f"MODEL: .*sd15.safetensors' {FIFO_MESSAGE}"):
        promptly(lambda: models.read_model(fifo), fifo)
    # a tokenizer's file, which transformers would open
    folder = shutil.copytree(model, tmp_path / "MODEL")
    vocab = piped(folder, "tokenizer/vocab.json")
    source = models.read_model(str(folder)).text_source()
    with pytest.raises(models.ModelError, match=f"tokenizer/.*vocab.json' {FIFO_MESSAGE}"):
        promptly(lambda: models.CaptionEncoder(source), vocab)
    # --tokenizer (for a single-file checkpoint's captions)
    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    (tokenizer / "vocab.json").write_text("{}")
    merges = piped(tokenizer, "merges.txt")
    with pytest.raises(models.ModelError, match=f"--tokenizer: .*merges.txt' {FIFO_MESSAGE}"):
        promptly(lambda: models.check_tokenizer(str(tokenizer)), merges)


def checkpoint_folder(run, step: int) -> str:
    """A checkpoint folder as the trainer writes it (a state file, then trainer.json with its manifest)."""
    folder = os.path.join(run, run_folder.CHECKPOINTS, f"step-{step}")
    os.makedirs(os.path.join(folder, "state"))
    with open(os.path.join(folder, "state", "model-x.safetensors"), "wb") as f:
        f.write(bytes([step]) * 64)
    run_folder.write_trainer_json(folder, {"step": step, "stage": "decoder"})
    return folder


@pytest.mark.parametrize("damage", ["trainer.json", "state/model-x.safetensors"])
def test_a_fifo_in_a_checkpoint_is_damage_named_by_file_and_resume_falls_back(tmp_path, damage):
    run = str(tmp_path / "RUN")
    checkpoint_folder(run, 1)
    newest = checkpoint_folder(run, 2)
    run_folder.write_pointer(run, "step-2")
    fifo = piped(newest, damage)
    with pytest.raises(run_folder.CheckpointError, match=f"step-2.*{damage}' {FIFO_MESSAGE}.*--resume"):
        promptly(lambda: run_folder.latest_checkpoint(run), fifo)
    lines = []
    chosen = promptly(lambda: run_folder.resume_from(run, lines.append), fifo)
    assert os.path.basename(chosen) == "step-1"
    assert f"checkpoint step-2 is damaged: '{damage}' is a FIFO" in lines[0] and "Continuing from step-1" in lines[0]
    assert os.path.isdir(newest + ".damaged") and run_folder.pointer(run) == "step-1"


def test_a_fifo_as_the_latest_pointer_is_no_pointer_and_is_replaced(tmp_path):
    run = str(tmp_path / "RUN")
    checkpoint_folder(run, 3)
    fifo = piped(os.path.join(run, run_folder.CHECKPOINTS), run_folder.LATEST)
    assert promptly(lambda: run_folder.pointer(run), fifo) is None
    lines = []
    assert os.path.basename(promptly(lambda: run_folder.resume_from(run, lines.append), fifo)) == "step-3"
    assert os.path.isfile(fifo) and run_folder.pointer(run) == "step-3"


def test_a_fifo_as_a_data_shard_or_manifest_is_refused_by_name(tmp_path):
    data = tmp_path / "DATA"
    (data / prep.SHARDS).mkdir(parents=True)
    manifest = {"format": prep.FORMAT, "complete": True, "model": {"scaling_factor": 0.18215},
                "shards": [{"name": "00000.safetensors", "source": "a.exr", "split": "train", "views": 1}]}
    (data / prep.MANIFEST).write_text(json.dumps(manifest))
    shard = piped(data / prep.SHARDS, "00000.safetensors")
    with pytest.raises(DataError, match=f"00000.safetensors' {FIFO_MESSAGE}.*prepare command with --resume"):
        promptly(lambda: LatentData(str(data)), shard)
    pipe = piped(data, prep.MANIFEST)
    with pytest.raises(DataError, match=f"prepare.json' {FIFO_MESSAGE}"):
        promptly(lambda: LatentData(str(data)), pipe)


def touch(path) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def test_hdr_listing_follows_links_once_and_survives_loops(tmp_path):
    hdr, outside = tmp_path / "hdr", tmp_path / "outside"
    for rel in ("city/a.exr", "city/b.hdr", "city/.hidden.exr", "city/notes.md"):
        touch(hdr / rel)
    for rel in ("c.exr", "deeper/d.exr"):
        touch(outside / rel)
    os.symlink("../outside", hdr / "outside_link")         # a folder elsewhere: followed
    os.symlink("../outside", hdr / "second_link")          # the same folder again: walked once
    os.symlink("city", hdr / "again")                      # one of the data set's own folders
    os.symlink(".", hdr / "self")                          # a loop
    os.symlink("..", outside / "deeper" / "up")            # a loop that starts outside
    os.symlink("city/a.exr", hdr / "alias.exr")            # a file beside its target
    os.symlink("../outside/c.exr", hdr / "ext.exr")        # a file also reached through outside_link/
    os.symlink("nowhere.exr", hdr / "dangling.exr")        # listed, reported as unreadable when read
    files = promptly(lambda: prep.list_hdr_files(str(hdr)))
    assert files == ["city/a.exr", "city/b.hdr", "dangling.exr", "ext.exr", "outside_link/deeper/d.exr"]


def test_prepare_takes_linked_folders_and_redoes_a_fifo_shard_on_resume(model, tmp_path):
    hdr, shared = tmp_path / "hdr", tmp_path / "shared_photos"
    hdri_folder(str(hdr / "own"), ("city",))
    hdri_folder(str(shared), ("forest",))
    os.symlink(shared, hdr / "linked")
    out = tmp_path / "DATA"
    args = {"size": 64, "views": 1, "device": "cpu", "val_fraction": 0.0}
    first = prep.prepare(str(hdr), model, str(out), log=lambda s: None, **args)
    assert [s["source"] for s in first["shards"]] == ["linked/forest.exr", "own/city.exr"]
    assert first["sources"] == 2 and not first["unreadable"]
    fifo = piped(out / prep.SHARDS, prep.shard_name(0))
    lines = []
    again = promptly(lambda: prep.prepare(str(hdr), model, str(out), resume=True, log=lines.append, **args), fifo)
    assert any("shard 00000.safetensors is unreadable" in line and "FIFO" in line for line in lines), lines
    assert again["shards"] == first["shards"] and os.path.isfile(fifo)
    assert prep.read_shard_meta(fifo)["source"] == "linked/forest.exr"
