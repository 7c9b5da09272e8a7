"""Links and special files, tried as an attacker and as an unlucky user would (issue 25, class 3), in a
genuine ComfyUI (the batch runner's, the recipe's and the weights module's own: tests/runner,
tests/train and tests/core/model, test_special_files.py).

Every file is checked where it is opened, not only its folder: an EXR sequence's frame that is a
symbolic link leading outside ComfyUI's input folder is refused by name (a link inside it is fine);
a FIFO under an image's name is refused by name without being opened, in Load EXR (its change
fingerprint too), among a sequence's frames, in the batch runner's inputs and in the recipe's.
Model folders follow ComfyUI's own rule: a model folder in models/lediff/ that is a link to another
disk is listed and loaded by both loaders; hidden staging folders are not listed.

A regression that opens a FIFO blocks forever: every such call runs beside a watchdog process that
frees it by opening the FIFO for writing after a timeout (``promptly``), or in a subprocess with a
timeout, so the suite cannot hang.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from lediff_core.io.exr import read_exr
from lediff_core.io.exr import write_exr as write_float_exr
from support import tiny_models as fx
from support.comfy_harness import GraphError, failure
from support.exr_files import write_exr
from support.fifos import promptly
from support.graphs import LOADERS, load_exr_graph
from support.sequences import graph_error, through_save_exr, write_sequence


def outside_file(host, name="secret.exr"):
    """A real EXR outside ComfyUI's folders (input/, output/ and temp/ are siblings of it)."""
    path = os.path.join(os.path.dirname(host.input_dir), "elsewhere", name)
    write_exr(path, {"RGB": np.full((6, 8, 3), 7.0, np.float32)})
    return path


def published(host):
    return sorted(os.path.relpath(os.path.join(d, f), host.output_dir)
                  for d, _, fs in os.walk(host.output_dir) for f in fs)


# ------------------------------------------------------------------------------ EXR sequences
def test_a_sequence_frame_linked_outside_the_input_folder_is_refused_by_name(host):
    write_sequence(host, "shot", [1, 2, 3])
    frame = os.path.join(host.input_dir, "shot", "plate.0002.exr")
    os.unlink(frame)
    os.symlink(outside_file(host), frame)  # the folder is inside input/, this frame is not
    message = graph_error(host, "shot")
    assert "frame 2 (plate.0002.exr) cannot be read" in message, message
    assert "leads outside the input folder" in message and "copy the file itself there" in message, message
    assert published(host) == []


def test_a_sequence_frame_linked_inside_the_input_folder_loads(host):
    write_sequence(host, "shot", [1, 3])
    write_sequence(host, "renders", [2], value=42.0)  # the same plate, rendered again elsewhere in input/
    os.symlink(os.path.join("..", "renders", "plate.0002.exr"), os.path.join(host.input_dir, "shot", "plate.0002.exr"))
    frames = through_save_exr(host, "shot")
    assert len(frames) == 3
    np.testing.assert_array_equal(frames[1][1:, 1:], 42.0)  # the link's target, read exactly


def test_a_fifo_among_a_sequences_frames_is_refused_by_name_without_opening_it(host):
    write_sequence(host, "shot", [1, 3])
    fifo = os.path.join(host.input_dir, "shot", "plate.0002.exr")
    os.mkfifo(fifo)
    node = host.node_class("LEDiffLoadEXRSequence")
    assert "shot/plate.####.exr" in node.GET_SCHEMA().inputs[0].options  # listed, not a silent gap
    args = {"sequence": "shot", "start": 0, "count": 0, "step": 1, "fps": 24.0, "layer": ""}
    assert promptly(lambda: node.fingerprint_inputs(**args), fifo)  # stat only
    with pytest.raises(GraphError) as e:
        promptly(lambda: through_save_exr(host, "shot"), fifo)
    message = json.dumps(e.value.report)
    assert "frame 2 (plate.0002.exr) cannot be read" in message and "is a FIFO (named pipe)" in message, message
    assert published(host) == []
    # around it is fine
    assert len(promptly(lambda: through_save_exr(host, "shot", count=1), fifo)) == 1


# ----------------------------------------------------------------------------------- Load EXR
def test_a_fifo_named_exr_in_the_input_folder_is_refused_by_name_promptly(host):
    fifo = os.path.join(host.input_dir, "x.exr")
    os.mkfifo(fifo)
    os.symlink("x.exr", os.path.join(host.input_dir, "link_to_fifo.exr"))
    node = host.node_class("LEDiffLoadEXR")
    for image in ("x.exr", "link_to_fifo.exr"):
        valid, _, _, node_errors = promptly(lambda image=image: host.validate(load_exr_graph(image)), fifo)
        assert not valid
        text = json.dumps(node_errors["1"])
        assert f"{image!r} is a FIFO (named pipe), not a regular file: refused without opening it" in text, text
        # ComfyUI asks for the change fingerprint (IS_CHANGED) before running: it hashed the file
        fingerprint = promptly(lambda image=image: node.fingerprint_inputs(image, ""), fifo)
        assert "FIFO" in fingerprint
        with pytest.raises(ValueError, match="FIFO"):
            promptly(lambda image=image: node.execute(image, ""), fifo)
    assert published(host) == []


def test_load_exr_refuses_a_link_leading_out_and_reads_one_inside(host):
    os.symlink(outside_file(host), os.path.join(host.input_dir, "out.exr"))
    valid, _, _, node_errors = host.validate(load_exr_graph("out.exr"))
    assert not valid
    assert "'out.exr' leads outside ComfyUI's input folder" in json.dumps(node_errors["1"])

    rgb = np.random.default_rng(0).uniform(0, 900, (5, 7, 3)).astype(np.float32)
    os.makedirs(os.path.join(host.input_dir, "shots"))
    write_float_exr(os.path.join(host.input_dir, "shots", "a.exr"), rgb, precision="float")
    os.symlink(os.path.join("shots", "a.exr"), os.path.join(host.input_dir, "in.exr"))
    host.run(load_exr_graph("in.exr"))
    np.testing.assert_array_equal(read_exr(os.path.join(host.output_dir, "copy_00001.exr")).rgb, rgb)


# --------------------------------------------------------------------------------- model folders
def loader_options(host, loader):
    return host.node_class(loader).GET_SCHEMA().inputs[0].options


@pytest.fixture
def other_disk(models, tmp_path):
    """A download kept outside models/ (another disk), linked into models/lediff/; removed after."""
    target = tmp_path / "disk2" / "LEDiff_highlight"
    shutil.copytree(models["highlight"], target)
    link = os.path.join(models["lediff"], "LEDiff_on_disk2")
    os.symlink(target, link)
    yield "LEDiff_on_disk2"
    os.unlink(link)


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_model_folder_linked_to_another_disk_is_listed_and_loaded(host, other_disk, loader):
    assert other_disk in loader_options(host, loader)
    host.run({**LOADERS[loader](other_disk), "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}})


def test_hidden_staging_names_are_not_listed_and_a_fifo_model_is_refused(host, models):
    lediff = models["lediff"]
    staging = fx.write_official_folder(lediff, ".LEDiff_export.1a2b3c4d.tmp", seed=60)  # an export mid-way
    partial = os.path.join(lediff, ".LEDiff_single.safetensors.x1y2.tmp.safetensors")  # a conversion mid-way
    open(partial, "wb").close()
    fifo = os.path.join(lediff, "pipe.safetensors")
    os.mkfifo(fifo)
    try:
        for loader in LOADERS:
            names = loader_options(host, loader)
            assert not [n for n in names if n.startswith(".") or "/." in n], names
            report = promptly(lambda loader=loader: failure(host, LOADERS[loader]("pipe.safetensors")), fifo)
            assert report["exception_type"] == "lediff.WeightError"
            assert "'pipe.safetensors' is a FIFO (named pipe), not a regular file" in report["exception_message"]
        # ComfyUI refuses a name its list lacks; the resolver itself too, for callers that bypass the list
        with pytest.raises(ValueError, match="is hidden"):
            host.pack_module("nodes.model.runtime").model_path(".LEDiff_export.1a2b3c4d.tmp")
    finally:
        shutil.rmtree(staging)
        os.unlink(partial)
        os.unlink(fifo)


@pytest.mark.parametrize("reader", ["read_exr", "read_hdr", "read_linear_image", "read_sdr_frames", "sha256_file"])
def test_every_reader_refuses_a_fifo_by_name(tmp_path, reader):
    """The readers behind the nodes, the evaluation (references, pan:FILE, SDR clips, input hashes)
    and the recipe, each given a FIFO under its own kind of name."""
    from lediff_core.io import exr, radiance, readers, video
    from lediff_runner import batch

    call = {"read_exr": exr.read_exr, "read_hdr": radiance.read_hdr, "read_linear_image": readers.read_linear_image,
            "read_sdr_frames": video.read_sdr_frames, "sha256_file": batch.sha256_file}[reader]
    fifo = str(tmp_path / ("clip.mp4" if reader == "read_sdr_frames" else "x.hdr" if reader == "read_hdr" else "x.exr"))
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"is a FIFO \(named pipe\), not a regular file: refused without opening it"):
        promptly(lambda: call(fifo), fifo)


