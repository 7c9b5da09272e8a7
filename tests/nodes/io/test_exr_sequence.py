"""Save EXR Sequence / Load EXR Sequence in a genuine ComfyUI, checked with tools we did not write.

Inputs are written with the OpenEXR bindings directly; what the saver writes is read back with the
bindings, Debian's exrheader, ffmpeg (image2 demuxer, ``name.%04d.exr``) and OpenImageIO's oiiotool
(``name.1001-1004#.exr``). Frames go into the saver through Load EXR and core's Image Batch, so the
saver's tests do not depend on Load EXR Sequence.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import OpenEXR
import pytest

from support.comfy_harness import GraphError
from support.common import DATA, REPO, require_tool
from support.exr_files import exrheader, hdr_frames, listing, read_rgb, write_exr
from support.sequences import batch_graph, graph_error, load_graph, through_save_exr, write_sequence

WORKFLOW = {"workflow": {"nodes": [{"id": 9, "type": "LEDiffSaveEXRSequence"}], "links": []}}
# a fuzzer finding of OpenEXR's damaged-file collection (tests/data/openexr-damaged/README.md)
DAMAGED = os.path.join(DATA, "openexr-damaged", "asan_heap-oob_7efd58fcbf3d_356_668b128c27c62e0d8314c503831fde88_exr")


def ffmpeg_frames(folder, name, n, h, w, start=1001):
    """The sequence as ffmpeg's image2 demuxer reads name.%04d.exr: [N, H, W, 3] float32 RGB."""
    raw = subprocess.run(
        [require_tool("ffmpeg"), "-v", "error", "-framerate", "24", "-start_number", str(start), "-i",
         os.path.join(folder, f"{name}.%04d.exr"), "-f", "rawvideo", "-pix_fmt", "gbrpf32le", "-"],
        capture_output=True, check=True).stdout
    planes = np.frombuffer(raw, np.float32)
    assert planes.size == n * 3 * h * w, f"ffmpeg decoded {planes.size / (3 * h * w)} frames, not {n}"
    g, b, r = np.moveaxis(planes.reshape(n, 3, h, w), 1, 0)  # gbrp: planes in G, B, R order
    return np.stack([r, g, b], -1)


def pyav_frames(folder, name, n):
    """The sequence as PyAV's bundled FFmpeg (8.x) decodes it: [N, H, W, 3] float32 RGB."""
    import av

    frames = []
    for i in range(n):
        with av.open(os.path.join(folder, f"{name}.{1001 + i}.exr")) as c:
            # PyAV hands planar GBR back as [H, W, 3] in R, G, B order
            frames.append(next(c.decode(video=0)).to_ndarray(format="gbrpf32le"))
    return np.stack(frames)


def oiio_stats(folder, name, first, last):
    """oiiotool over the frame range name.1001-1004#.exr: per frame (max per channel, NaN count)."""
    out = subprocess.run([require_tool("oiiotool"), "-i", os.path.join(folder, f"{name}.{first}-{last}#.exr"),
                          "--printstats"], capture_output=True, text=True, check=True).stdout
    maxima = [[float(v) for v in m.split()] for m in re.findall(r"Stats Max: ([\d. e+-]+) \(float\)", out)]
    nans = [sum(int(v) for v in m.split()) for m in re.findall(r"Stats NanCount: ([\d ]+)", out)]
    return maxima, nans


def loader_outputs(host, sequence, **inputs):
    """(frame_count, fps, first_frame) from the node ComfyUI registered, run through its execute."""
    node = host.node_class("LEDiffLoadEXRSequence")
    args = {"start": 0, "count": 0, "step": 1, "fps": 24.0, "layer": "", **inputs}
    out = node.execute(sequence=sequence, **args).args
    return out[3], out[2], out[4], out[0]


# --- the saver ---------------------------------------------------------------------------------

def test_float_sequence_folder_names_fps_metadata_and_independent_readers(host):
    frames = hdr_frames(4)
    ui = host.run(batch_graph(host, frames, {"fps": 23.976}), WORKFLOW)
    parent = os.path.join(host.output_dir, "LEDiff")
    assert listing(parent) == ["sequence_00001"]  # one new folder, no staging left beside it
    folder = os.path.join(parent, "sequence_00001")
    names = [f"sequence.{n}.exr" for n in range(1001, 1005)]
    assert listing(folder) == names
    assert ui["9"]["images"][0] == {"filename": "sequence.1001.exr", "subfolder": "LEDiff/sequence_00001",
                                    "type": "output"}
    assert ui["9"]["images"][1]["type"] == "temp" and ui["9"]["images"][1]["filename"].endswith(".png")

    for i, name in enumerate(names):
        header = exrheader(os.path.join(folder, name))
        assert "framesPerSecond (type rational): 24000/1001" in header, header
        has_workflow = re.search(r"^workflow \(type string\)", header, re.M) is not None
        has_prompt = re.search(r"^prompt \(type string\)", header, re.M) is not None
        assert has_workflow == has_prompt == (i == 0), (name, header)
        rgb, h = read_rgb(os.path.join(folder, name))
        assert rgb.dtype == np.float32 and np.array_equal(rgb.view(np.uint32), frames[i].view(np.uint32))
        assert h["framesPerSecond"] == Fraction(24000, 1001)
        if i == 0:
            assert json.loads(h["workflow"]) == WORKFLOW["workflow"]
            assert json.loads(h["prompt"])["9"]["class_type"] == "LEDiffSaveEXRSequence"

    # Debian's ffmpeg 5.1 reads all four frames; it misreads the first scanline block of a file
    # with a string attribute of 256 bytes or more (the first frame's workflow), which FFmpeg 8
    # (PyAV's) reads exactly: docs/formats.md#exr-sequences
    decoded = ffmpeg_frames(folder, "sequence", 4, 48, 64)
    assert np.array_equal(decoded[1:], np.stack(frames[1:]))
    assert np.array_equal(pyav_frames(folder, "sequence", 4), np.stack(frames))
    maxima, nans = oiio_stats(folder, "sequence", 1001, 1004)
    assert len(maxima) == 4 and nans == [0] * 4
    np.testing.assert_allclose(maxima, [f.reshape(-1, 3).max(0) for f in frames], rtol=1e-6)
    assert max(max(m) for m in maxima) > 4000  # HDR well above 1 went through

    # and back through Load EXR Sequence: bit-exact, fps from the attribute
    shutil.copytree(folder, os.path.join(host.input_dir, "shot"))
    back = through_save_exr(host, "shot")
    assert len(back) == 4
    assert all(np.array_equal(b.view(np.uint32), f.view(np.uint32)) for b, f in zip(back, frames, strict=True))
    count, fps, first, _ = loader_outputs(host, "shot/sequence.####.exr")
    assert (count, first) == (4, 1001) and fps == pytest.approx(24000 / 1001, abs=1e-12)


def test_half_sequence_rounds_to_half_for_every_reader(host, monkeypatch):
    from comfy.cli_args import args

    # without the workflow (--disable-metadata) Debian's ffmpeg 5.1 reads every frame exactly
    monkeypatch.setattr(args, "disable_metadata", True)
    frames = hdr_frames(3, seed=1)
    host.run(batch_graph(host, frames, {"precision": "half", "compression": "piz", "fps": 29.97,
                                        "start_frame": 1}))
    folder = os.path.join(host.output_dir, "LEDiff", "sequence_00001")
    assert listing(folder) == ["sequence.0001.exr", "sequence.0002.exr", "sequence.0003.exr"]
    half = np.stack([f.astype(np.float16).astype(np.float32) for f in frames])
    for i in range(3):
        path = os.path.join(folder, f"sequence.{i + 1:04d}.exr")
        header = exrheader(path)
        assert "framesPerSecond (type rational): 30000/1001" in header and "workflow" not in header
        with OpenEXR.File(path, separate_channels=True) as f:
            assert f.channels()["R"].pixels.dtype == np.float16
        assert np.array_equal(read_rgb(path)[0], half[i])
    # half keeps ~3 significant digits: the half-rounded values, not the float input
    assert np.array_equal(ffmpeg_frames(folder, "sequence", 3, 48, 64, start=1), half)
    assert not np.array_equal(half, np.stack(frames))
    shutil.copytree(folder, os.path.join(host.input_dir, "half"))
    assert np.array_equal(np.stack(through_save_exr(host, "half/sequence.%04d.exr")), half)
    assert loader_outputs(host, "half")[1] == pytest.approx(30000 / 1001)


def test_one_frame_sequence_and_counter_moves_on(host):
    frames = hdr_frames(1)
    host.run(batch_graph(host, frames))
    host.run(batch_graph(host, frames))
    parent = os.path.join(host.output_dir, "LEDiff")
    assert listing(parent) == ["sequence_00001", "sequence_00002"]
    for d in listing(parent):
        assert listing(os.path.join(parent, d)) == ["sequence.1001.exr"]


def test_nan_frame_is_refused_with_its_number_and_count_and_nothing_is_published(host):
    frames = hdr_frames(4)
    frames[2][0, 0, 1] = np.nan
    frames[2][5, 7] = np.inf
    with pytest.raises(GraphError) as e:
        host.run(batch_graph(host, frames))
    message = str(e.value.report)
    assert "frame 1003" in message and "sequence.1003.exr" in message and "2 pixel(s)" in message, message
    assert listing(os.path.join(host.output_dir, "LEDiff")) == []


@pytest.mark.parametrize("fps", [0.0, -24.0, float("nan"), float("inf")])
def test_bad_fps_is_refused_at_queue_time(host, fps):
    valid, error, _, node_errors = host.validate(batch_graph(host, hdr_frames(1), {"fps": fps}))
    assert not valid
    assert "positive" in json.dumps(node_errors["9"]), node_errors


@pytest.mark.parametrize("prefix", ["../escape/seq", "/tmp/elsewhere/seq"])
def test_prefix_outside_the_output_folder_is_refused(host, prefix):
    with pytest.raises(GraphError) as e:
        host.run(batch_graph(host, hdr_frames(1), {"filename_prefix": prefix}))
    assert "outside the output folder" in str(e.value.report)
    assert not os.path.exists(os.path.join(os.path.dirname(host.output_dir), "escape"))


DISK_FULL = textwrap.dedent("""
    import json, os, resource, signal, sys
    import numpy as np
    from support.comfy_harness import ComfyHost, GraphError
    from support.exr_files import hdr_frames
    from support.sequences import batch_graph
    host = ComfyHost.start()
    host.use_folders(sys.argv[1])
    frames = [np.full((48, 64, 3), 2.5, np.float32), np.full((48, 64, 3), 700.0, np.float32), *hdr_frames(2)]
    graph = batch_graph(host, frames)
    # files may not grow past 16 KB: the constant frames compress to under 1 KB, the noisy third
    # frame (36 KB of float noise) fails mid-write with EFBIG, as on a full disk
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, resource.RLIM_INFINITY))
    try:
        host.run(graph)
        report = None
    except GraphError as e:
        report = e.report
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print("RESULT", json.dumps(report))
""")


def test_disk_full_mid_clip_publishes_nothing_and_leaves_no_staging(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.path.join(REPO, "tests")])}
    proc = subprocess.run([sys.executable, "-c", DISK_FULL, str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert report, "the clip was written despite the file size limit"
    message = report[0]["exception_message"]
    assert "frame 1003" in message and "too large" in message.lower(), message
    parent = tmp_path / "output" / "LEDiff"
    assert listing(parent) == [], listing(parent)  # no sequence folder, no hidden staging folder


# --- the loader --------------------------------------------------------------------------------


def test_frames_load_in_numeric_order_and_keep_their_numbering(host):
    # 998 ... 1002 unpadded: lexicographic order would put 1000 first
    write_sequence(host, "shot", range(998, 1003), fmt="{}")
    g = {"1": load_graph("shot"),
         "2": {"class_type": "LEDiffSaveEXRSequence", "inputs": {
             "images": ["1", 0], "filename_prefix": "LEDiff/renum", "fps": ["1", 2], "start_frame": ["1", 4],
             "precision": "float", "compression": "zip"}}}
    host.run(g)
    folder = os.path.join(host.output_dir, "LEDiff", "renum_00001")
    assert listing(folder) == [f"renum.{n:04d}.exr" for n in range(998, 1003)]
    for n in range(998, 1003):
        rgb, header = read_rgb(os.path.join(folder, f"renum.{n:04d}.exr"))
        assert rgb[1, 1, 0] == n and list(rgb[0, 0]) == [n, 2 * n, 5000.0]
        assert header["framesPerSecond"] == Fraction(24, 1)  # no attribute in the input: the fps input
    assert "shot/plate.###.exr" in host.node_class("LEDiffLoadEXRSequence").GET_SCHEMA().inputs[0].options


def test_start_count_step_pick_frames_by_position(host):
    write_sequence(host, "s", range(1, 13))
    back = through_save_exr(host, "s", start=2, count=3, step=3)
    assert [b[1, 1, 0] for b in back] == [3, 6, 9]
    count, fps, first, images = loader_outputs(host, "s", start=2, count=3, step=3)
    assert (count, first, fps, tuple(images.shape)) == (3, 3, 8.0, (3, 6, 8, 3))
    assert loader_outputs(host, "s", start=10)[0] == 2  # count 0: up to the last frame
    assert loader_outputs(host, "s", start=10, count=5)[0] == 2  # count is a maximum
    with pytest.raises(GraphError, match="past the end"):
        through_save_exr(host, "s", start=12)


def test_fps_from_the_attribute_else_the_input(host):
    write_sequence(host, "ntsc", range(1001, 1004), header={"framesPerSecond": Fraction(60000, 1001)})
    write_sequence(host, "plain", range(1001, 1004))
    assert loader_outputs(host, "ntsc", fps=25.0)[1] == pytest.approx(60000 / 1001, abs=1e-12)
    assert loader_outputs(host, "plain", fps=25.0)[1] == 25.0


def test_a_gap_a_size_or_channel_mismatch_and_a_damaged_frame_name_the_file(host):
    write_sequence(host, "gap", [1, 2, 4, 5])
    message = graph_error(host, "gap")
    assert "frame 3" in message and "plate.0003.exr" in message and "missing" in message, message
    assert len(through_save_exr(host, "gap", count=2)) == 2  # around the gap is fine

    write_sequence(host, "size", [1, 2])
    write_sequence(host, "size", [3], shape=(7, 8))
    message = graph_error(host, "size")
    assert "plate.0003.exr" in message and "8x7" in message and "8x6" in message, message

    write_sequence(host, "alpha", [1, 3])
    write_exr(os.path.join(host.input_dir, "alpha", "plate.0002.exr"),
              {"RGBA": np.ones((6, 8, 4), np.float32)})
    message = graph_error(host, "alpha")
    assert "plate.0002.exr" in message and "channels" in message and "'A'" in message, message

    write_sequence(host, "damaged", [1, 2, 4])
    shutil.copy(DAMAGED, os.path.join(host.input_dir, "damaged", "plate.0003.exr"))
    message = graph_error(host, "damaged")
    assert "frame 3" in message and "plate.0003.exr" in message, message

    # a frame cut short, as an interrupted render or copy leaves it
    write_sequence(host, "cut", [1, 2, 3], shape=(64, 64))
    path = os.path.join(host.input_dir, "cut", "plate.0002.exr")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    message = graph_error(host, "cut")
    assert "frame 2" in message and "plate.0002.exr" in message, message

    write_sequence(host, "dup", [7])
    write_sequence(host, "dup", [7], fmt="{:05d}")
    assert "both frame 7" in graph_error(host, "dup")


@pytest.mark.parametrize("sequence", ["../outside", "../outside/plate.####.exr", "shot/../../outside",
                                      "/etc", "link", "link/plate.####.exr", ""])
def test_paths_outside_the_input_folder_are_refused(host, sequence):
    outside = os.path.join(os.path.dirname(host.input_dir), "outside")
    write_sequence(host, "../outside", [1, 2])
    write_sequence(host, "shot", [1, 2])
    os.symlink(outside, os.path.join(host.input_dir, "link"))
    valid, _, _, node_errors = host.validate({"1": load_graph(sequence), "2": {
        "class_type": "LEDiffSaveEXRSequence", "inputs": {"images": ["1", 0], "filename_prefix": "x", "fps": 24.0,
                                                         "start_frame": 1, "precision": "half", "compression": "zip"}}})
    assert not valid
    text = json.dumps(node_errors["1"])
    assert "input folder" in text or "no sequence" in text, text
    assert not any(p.startswith(("link/", "../")) for p in find_listing(host)), find_listing(host)


def find_listing(host):
    return host.node_class("LEDiffLoadEXRSequence").GET_SCHEMA().inputs[0].options


def test_a_rewritten_frame_changes_the_fingerprint(host):
    write_sequence(host, "fp", [1, 2, 3])
    node = host.node_class("LEDiffLoadEXRSequence")
    args = {"sequence": "fp", "start": 0, "count": 0, "step": 1, "fps": 24.0, "layer": ""}
    before = node.fingerprint_inputs(**args)
    assert node.fingerprint_inputs(**args) == before
    write_sequence(host, "fp", [2], shape=(6, 9))
    assert node.fingerprint_inputs(**args) != before


# --- missing frames ------------------------------------------------------------------------------

def input_frame(host, folder, frame):
    return read_rgb(os.path.join(host.input_dir, folder, f"plate.{frame:04d}.exr"))[0]


@pytest.mark.parametrize("missing, start, count, sources, line", [
    # holes at the start of the span (start lands in 2-3), the middle (5) and the end (count stops in 8-9)
    ("hold", 1, 8, [1, 1, 4, 4, 6, 7, 7, 7], "filled 2-3, 5, 8-9 (hold)"),
    ("nearest", 1, 8, [1, 4, 4, 4, 6, 7, 7, 10], "filled 2-3, 5, 8-9 (nearest)"),  # 5: 4 and 6 tie, 4 wins
    ("black", 1, 8, [None, None, 4, None, 6, 7, None, None], "filled 2-3, 5, 8-9 (black)"),
    ("hold", 0, 4, [1, 1, 1, 4], "filled 2-3 (hold)"),
])
def test_missing_frames_are_filled_by_the_policy_and_logged(host, caplog, missing, start, count, sources, line):
    write_sequence(host, "holes", [1, 4, 6, 7, 10])
    with caplog.at_level(logging.INFO, logger="lediff"):
        back = through_save_exr(host, "holes", start=start, count=count, missing_frames=missing)
    expected = [np.zeros((6, 8, 3), np.float32) if s is None else input_frame(host, "holes", s) for s in sources]
    assert len(back) == len(expected)
    for i, (b, e) in enumerate(zip(back, expected, strict=True)):
        assert np.array_equal(b, e), (i, b[1, 1], e[1, 1])
    logged = [r.getMessage() for r in caplog.records if "filled" in r.getMessage()]
    assert logged == [f"Load EXR Sequence: holes: {line}"], logged
    count_out, _, first, _ = loader_outputs(host, "holes", start=start, count=count, missing_frames=missing)
    assert (count_out, first) == (len(sources), 1 + start)


def test_missing_frames_default_is_the_error_of_before_and_damage_is_never_filled(host):
    write_sequence(host, "gap", [1, 2, 4])
    message = graph_error(host, "gap")  # no missing_frames input: as graphs saved before it existed
    assert "frame 3 (plate.0003.exr) is missing from plate.####.exr" in message, message
    assert json.loads(message)[0]["exception_message"] == \
        json.loads(graph_error(host, "gap", missing_frames="error"))[0]["exception_message"]
    shutil.copy(DAMAGED, os.path.join(host.input_dir, "gap", "plate.0002.exr"))
    for missing in ("black", "hold", "nearest"):
        message = graph_error(host, "gap", missing_frames=missing)
        assert "frame 2 (plate.0002.exr) cannot be read" in message, message
    write_sequence(host, "sparse", [1, 9])
    for missing in ("error", "black", "hold", "nearest"):
        message = graph_error(host, "sparse", start=1, count=3, missing_frames=missing)
        assert "is missing" in message or "none of the frames asked for (2-4) exists" in message, message


def test_an_unknown_missing_frames_policy_is_refused_at_queue_time(host):
    write_sequence(host, "gap", [1, 3])
    valid, _, _, node_errors = host.validate({"1": load_graph("gap", missing_frames="freeze"), "2": {
        "class_type": "LEDiffSaveEXRSequence", "inputs": {"images": ["1", 0], "filename_prefix": "x", "fps": 24.0,
                                                         "start_frame": 1, "precision": "half", "compression": "zip"}}})
    assert not valid and "freeze" in json.dumps(node_errors["1"]), node_errors


def test_the_fingerprint_changes_with_the_policy_and_when_a_hole_is_filled(host):
    write_sequence(host, "fp", [1, 3])
    node = host.node_class("LEDiffLoadEXRSequence")
    args = {"sequence": "fp", "start": 0, "count": 0, "step": 1, "fps": 24.0, "layer": ""}
    default = node.fingerprint_inputs(**args)
    assert node.fingerprint_inputs(**args, missing_frames="error") == default
    hold = node.fingerprint_inputs(**args, missing_frames="hold")
    assert len({default, hold, node.fingerprint_inputs(**args, missing_frames="nearest"),
                node.fingerprint_inputs(**args, missing_frames="black")}) == 4
    assert np.array_equal(through_save_exr(host, "fp", missing_frames="hold")[1], input_frame(host, "fp", 1))
    write_sequence(host, "fp", [2], value=42.0)  # the missing frame arrives
    assert node.fingerprint_inputs(**args, missing_frames="hold") != hold
    shutil.rmtree(os.path.join(host.output_dir, "check"))
    # the same graph queued again now loads the new frame, not the cached fill
    assert np.array_equal(through_save_exr(host, "fp", missing_frames="hold")[1], input_frame(host, "fp", 2))
