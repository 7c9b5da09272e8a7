"""`python -m lediff_runner batch` end to end: the shipped photo_to_hdr workflow (scaled down as in
tests/e2e/test_workflows.py) over a folder of photos with the fixture models, in an embedded ComfyUI and on a
local two-worker Ray cluster (loopback only) with a worker killed mid-item. Each run is the real
command in its own process, as a user starts it."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from lediff_core.color.tonemap import tone_map
from lediff_core.io.exr import read_exr, write_exr
from lediff_runner.workflow import input_types_from_host, to_api, workflow_hash
from support.clips import synthetic_pan, write_clip
from support.common import HDRI_DIR, REPO
from support.workflows import load_workflow, scale_down

PHOTOS = ("city", "forest", "sunset")
EXR = os.path.join("LEDiff", "photo_to_hdr_00001.exr")
ULTRAHDR = os.path.join("LEDiff", "photo_to_hdr_ultrahdr_00001.jpg")  # the workflow's second saver


def batch_command(setup, output, *extra):
    return [sys.executable, "-m", "lediff_runner", "batch", "--workflow", setup["workflow"],
            "--inputs", setup["inputs"], "--output", str(output), "--base-directory", setup["base"], *extra]


def run(cmd, timeout=900, env=None):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


@pytest.fixture(scope="module")
def setup(comfy, workflow_models, tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("batch")
    prompt = scale_down(to_api(load_workflow("photo_to_hdr"), input_types_from_host(comfy.nodes.NODE_CLASS_MAPPINGS)))
    workflow = root / "photo_to_hdr_api.json"
    workflow.write_text(json.dumps(prompt))
    inputs = root / "photos"
    inputs.mkdir()
    for name in PHOTOS:
        rgb = torch.from_numpy(read_exr(os.path.join(HDRI_DIR, f"{name}.exr")).rgb)[None]
        ldr = (tone_map(rgb, "clip", exposure=1)[0].numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(ldr).resize((64, 48), Image.LANCZOS).save(inputs / f"{name}.png")
    (inputs / "broken.png").write_bytes(b"not an image")  # fails inside ComfyUI's Load Image
    (inputs / "notes.txt").write_text("not an input")  # ignored: Load Image takes images only
    return {"workflow": str(workflow), "inputs": str(inputs), "base": str(workflow_models), "root": root,
            "prompt": prompt}


@pytest.fixture(scope="module")
def local_run(setup):
    """The in-process run with the default thread count (the Ray tests compare their outputs with
    it, bit for bit, also with defaults) and its repetition."""
    output = setup["root"] / "local"
    first = run(batch_command(setup, output))
    snapshot = files_state(output)
    second = run(batch_command(setup, output))
    return {"output": output, "first": first, "second": second, "snapshot": snapshot}


def files_state(output):
    return {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns)
            for p in glob.glob(f"{output}/**", recursive=True) if os.path.isfile(p)}


def pixels(path):
    with OpenEXR.File(str(path)) as f:
        return f.channels()["RGB"].pixels


def assert_clean(output):
    """Nothing but finished items: no work folder, no temporary or partial file."""
    assert not os.path.exists(os.path.join(output, ".lediff_batch"))
    names = [n for _, dirs, files in os.walk(output) for n in dirs + files]
    assert not [n for n in names if ".tmp" in n or n.startswith(".")]
    assert sorted(os.listdir(output)) == sorted(PHOTOS)
    for name in PHOTOS:
        files = sorted(os.path.relpath(p, os.path.join(output, name))
                       for p in glob.glob(f"{output}/{name}/**", recursive=True) if os.path.isfile(p))
        assert files == sorted(["batch_item.json", EXR, ULTRAHDR]), files


def test_batch_runs_every_input_lists_failures_and_resumes(setup, local_run):
    output, first, second = local_run["output"], local_run["first"], local_run["second"]
    assert first.returncode == 1, first.stdout + first.stderr
    assert "batch: 3 done, 0 already complete, 1 failed" in first.stdout
    assert "FAILED broken.png" in first.stdout and "notes.txt" not in first.stdout
    assert "batch: " in first.stderr and "4/4" in first.stderr  # the progress bar
    assert_clean(output)
    for name in PHOTOS:
        manifest = json.loads((output / name / "batch_item.json").read_text())
        assert manifest["input"] == f"{name}.png" and manifest["attempt"] == 1
        assert manifest["workflow_sha256"] == workflow_hash(setup["prompt"])
        rgb = pixels(output / name / EXR)
        assert rgb.shape == (48, 64, 3) and np.isfinite(rgb).all()
    # different photos, different HDRs: each item really ran on its own input
    assert not np.array_equal(pixels(output / "city" / EXR), pixels(output / "forest" / EXR))
    # the second run does only what is missing (the broken input again) and touches nothing
    assert second.returncode == 1
    assert "batch: 0 done, 3 already complete, 1 failed" in second.stdout
    assert files_state(output) == local_run["snapshot"]


def test_batch_never_overwrites_a_folder_it_did_not_finish(setup, tmp_path):
    output = tmp_path / "out"
    (output / "city").mkdir(parents=True)
    (output / "city" / "mine.txt").write_text("keep me")
    (inputs := tmp_path / "in").mkdir()
    os.link(os.path.join(setup["inputs"], "city.png"), inputs / "city.png")
    result = run(batch_command({**setup, "inputs": str(inputs)}, output))
    assert result.returncode == 1
    assert "FAILED city.png" in result.stdout and "move it away" in result.stdout
    assert os.listdir(output / "city") == ["mine.txt"]


def _ray_processes(tmp):
    """Processes started with this test's RAY_TMPDIR in their environment (Ray's, all of them)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"RAY_TMPDIR={tmp}".encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_ray_batch_survives_a_killed_worker_with_identical_outputs(setup, local_run, tmp_path):
    output = tmp_path / "ray"
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    process = subprocess.Popen(batch_command(setup, output, "--ray", "--workers", "2"), cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    try:
        deadline = time.time() + 600
        while killed is None and process.poll() is None and time.time() < deadline:
            for pid_file in glob.glob(f"{output}/.lediff_batch/staging/*/.worker_pid"):
                key = os.path.basename(os.path.dirname(pid_file)).split(".")[0]
                try:
                    pid = int(open(pid_file).read())
                except (OSError, ValueError):
                    continue  # being written
                if key in PHOTOS:
                    os.kill(pid, signal.SIGKILL)  # a worker dies in the middle of an item
                    killed = (key, pid)
                    break
            time.sleep(0.01)
        stdout, stderr = process.communicate(timeout=max(1, deadline - time.time()))
    finally:
        if process.poll() is None:
            process.kill()
    assert killed, "no item started on the Ray workers"
    key, pid = killed
    assert process.returncode == 1, stdout + stderr
    assert "batch: 3 done, 0 already complete, 1 failed" in stdout and "FAILED broken.png" in stdout
    assert f"worker lost during {key}.png" in stderr
    assert_clean(output)
    manifest = json.loads((output / key / "batch_item.json").read_text())
    assert manifest["attempt"] == 2 and not manifest["worker"].endswith(f":{pid}")
    for name in PHOTOS:  # bit for bit what the in-process run wrote
        np.testing.assert_array_equal(pixels(output / name / EXR), pixels(local_run["output"] / name / EXR))
    # the local cluster is gone with the command
    deadline = time.time() + 60
    while _ray_processes(ray_tmp) and time.time() < deadline:
        time.sleep(0.5)
    assert not _ray_processes(ray_tmp)
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_cluster(ray_tmp):
    """Ends the processes of this test's cluster only, by pid (found by their RAY_TMPDIR): ``ray stop
    --force`` would kill every Ray process of the user on the machine, other test runs' clusters too."""
    deadline = time.time() + 30
    while (pids := _ray_processes(ray_tmp)) and time.time() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    return _ray_processes(ray_tmp)


@pytest.fixture
def ray_cluster():
    """An existing single-node cluster started the way a user does (``ray start --head``), on the
    loopback interface, with two CPUs and token authentication (what Ray does once a token exists,
    e.g. after any local cluster: here the token is this test's own); torn down whatever the test does."""
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    token = os.path.join(ray_tmp, "auth_token")
    with open(token, "w") as f:
        f.write(uuid.uuid4().hex)
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_AUTH_TOKEN_PATH": token}
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS"):
        env.pop(name, None)
    port = _free_port()
    try:
        # Ray's switch for single-machine clusters keeps the node on 127.0.0.1 (without it, ray start
        # replaces --node-ip-address 127.0.0.1 with the machine's network address)
        started = run([os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head",
                       "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
                       "--include-dashboard", "false", "--disable-usage-stats"], timeout=180,
                      env={**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
        assert started.returncode == 0, started.stdout + started.stderr
        yield {"address": f"127.0.0.1:{port}", "env": env, "tmp": ray_tmp}
    finally:
        left = _stop_cluster(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"


def test_ray_batch_joins_an_existing_cluster_with_identical_outputs(setup, local_run, ray_cluster, tmp_path):
    (inputs := tmp_path / "in").mkdir()
    for name in PHOTOS[:2]:
        os.link(os.path.join(setup["inputs"], f"{name}.png"), inputs / f"{name}.png")
    cluster = _ray_processes(ray_cluster["tmp"])
    assert cluster
    sessions = glob.glob(os.path.join(ray_cluster["tmp"], "**", "session_2*"), recursive=True)
    assert len(sessions) == 1, sessions
    output = tmp_path / "ray"
    process = subprocess.Popen(
        batch_command({**setup, "inputs": str(inputs)}, output, "--ray", ray_cluster["address"], "--workers", "2"),
        cwd=REPO, env=ray_cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stdout + stderr[-3000:]
    assert "batch: 2 done, 0 already complete, 0 failed" in stdout
    assert f"batch: joined the Ray cluster at {ray_cluster['address']}: 1 node(s), 2 CPUs" in stderr
    # it ran on that cluster and started none of its own: the driver's log is in the cluster's one
    # session (a cluster of its own would have made a second session under the same RAY_TMPDIR) ...
    assert glob.glob(os.path.join(ray_cluster["tmp"], "**", "session_2*"), recursive=True) == sessions
    assert glob.glob(os.path.join(sessions[0], "logs", f"python-core-driver-*_{process.pid}.log"))
    # ... with both workers on it, and left the cluster running
    workers = {json.loads((output / name / "batch_item.json").read_text())["worker"] for name in PHOTOS[:2]}
    assert len(workers) == 2, workers
    for worker in workers:
        pid = worker.rsplit(":", 1)[1]
        assert glob.glob(os.path.join(sessions[0], "logs", f"worker-*-{pid}.out")), worker
    assert all(os.path.exists(f"/proc/{pid}") for pid in cluster)
    assert not os.path.exists(os.path.join(output, ".lediff_batch"))
    assert sorted(os.listdir(output)) == sorted(PHOTOS[:2])
    for name in PHOTOS[:2]:  # complete, and bit for bit what the in-process run wrote
        files = sorted(os.path.relpath(p, output / name)
                       for p in glob.glob(f"{output}/{name}/**", recursive=True) if os.path.isfile(p))
        assert files == sorted(["batch_item.json", EXR, ULTRAHDR]), files
        np.testing.assert_array_equal(pixels(output / name / EXR), pixels(local_run["output"] / name / EXR))


def test_a_refused_input_folder_or_workflow_leaves_no_output_folder(tmp_path):
    """Refused before ComfyUI starts and before anything is created: no empty --output is left."""
    photos = tmp_path / "photos"
    photos.mkdir()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    shipped = os.path.join(REPO, "workflows", "photo_to_hdr.json")
    for inputs, workflow, message in ((tmp_path / "missing", shipped, "no such folder"),
                                      (photos, broken, "not valid JSON")):
        output = tmp_path / "out"
        result = run([sys.executable, "-m", "lediff_runner", "batch", "--workflow", str(workflow),
                      "--inputs", str(inputs), "--output", str(output)], timeout=120)
        assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
        assert not output.exists()


def test_one_command_line_lists_batch_and_evaluate():
    """`python -m lediff_runner` is the runner's one command line, like `python -m lediff_train`."""
    result = run([sys.executable, "-m", "lediff_runner", "--help"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m lediff_runner [-h] {batch,evaluate}" in result.stdout
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ") and line.split()}
    assert {"batch", "evaluate"} <= listed, result.stdout
    for command, option in (("batch", "--inputs INPUTS"), ("evaluate", "--references REFERENCES")):
        sub = run([sys.executable, "-m", "lediff_runner", command, "--help"], timeout=120)
        assert sub.returncode == 0 and option in sub.stdout and f"python -m lediff_runner {command}" in sub.stdout
    missing = run([sys.executable, "-m", "lediff_runner"], timeout=120)
    assert missing.returncode == 2 and "the following arguments are required: {batch,evaluate}" in missing.stderr


def test_ray_option_without_ray_says_how_to_install_it(setup, tmp_path):
    code = ("import runpy, sys; sys.modules['ray'] = None; sys.argv = sys.argv[2:]; "
            "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")
    result = run([sys.executable, "-c", code, *batch_command(setup, tmp_path / "out", "--ray")[1:]], timeout=120)
    assert result.returncode != 0
    assert "pip install 'ray" in result.stderr and "--ray needs Ray" in result.stderr


def test_batch_feeds_hdr_files_to_load_exr(setup, tmp_path):
    """A graph that loads HDR: each .exr/.hdr goes to LEDiff Load EXR (other files are left out),
    and a float EXR saved from it holds exactly the input's pixels."""
    (inputs := tmp_path / "in").mkdir()
    originals = {}
    for name in ("night", "studio"):
        rgb = np.ascontiguousarray(read_exr(os.path.join(HDRI_DIR, f"{name}.exr")).rgb[::16, ::16])
        write_exr(str(inputs / f"{name}.exr"), rgb, precision="float")
        originals[name] = rgb
    os.link(os.path.join(setup["inputs"], "city.png"), inputs / "city.png")
    graph = {
        "1": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "placeholder.exr", "layer": ""}},
        "2": {"class_type": "LEDiffSaveEXR", "inputs": {
            "images": ["1", 0], "filename_prefix": "copy", "precision": "float", "compression": "zip",
            "input_encoding": "linear", "envmap": "none"}},
    }
    (workflow := tmp_path / "copy.json").write_text(json.dumps(graph))
    output = tmp_path / "out"
    result = run(batch_command({**setup, "inputs": str(inputs), "workflow": str(workflow)}, output))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "batch: 2 done, 0 already complete, 0 failed" in result.stdout
    assert sorted(os.listdir(output)) == ["night", "studio"]
    for name, rgb in originals.items():
        np.testing.assert_array_equal(pixels(output / name / "copy_00001.exr"), rgb)


def test_batch_feeds_clips_to_load_video(setup, tmp_path):
    """A graph that loads a clip (core Load Video -> Get Video Components): each video file is one
    item, whose EXR sequence has every frame of it at its frame rate."""
    (inputs := tmp_path / "in").mkdir()
    lengths = {"pan": 3, "longer": 5}
    for name, frames in lengths.items():
        write_clip(str(inputs / f"{name}.mp4"), synthetic_pan(frames=frames)[1], tone_hz=None)
    os.link(os.path.join(setup["inputs"], "city.png"), inputs / "city.png")
    graph = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "placeholder.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "LEDiffSaveEXRSequence", "inputs": {
            "images": ["2", 0], "filename_prefix": "seq/shot", "fps": ["2", 2], "start_frame": 1001,
            "precision": "half", "compression": "zip", "colorspace": "Linear Rec.709 (sRGB)"}},
    }
    (workflow := tmp_path / "clips.json").write_text(json.dumps(graph))
    output = tmp_path / "out"
    result = run(batch_command({**setup, "inputs": str(inputs), "workflow": str(workflow)}, output))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "batch: 2 done, 0 already complete, 0 failed" in result.stdout
    assert sorted(os.listdir(output)) == sorted(lengths)
    for name, frames in lengths.items():
        folder = output / name / "seq" / "shot_00001"
        assert sorted(os.listdir(folder)) == [f"shot.{1001 + i}.exr" for i in range(frames)]
