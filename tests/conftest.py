"""Shared fixtures. Core tests need only torch/numpy/OpenEXR; host tests run a genuine ComfyUI
in-process (see support/comfy_harness.py), built by scripts/setup.sh. Nothing here imports ComfyUI
before a host fixture asks for it: tests/core runs where ComfyUI cannot be imported."""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest

from support.attacks import ATTACKS, LIES, attacked_folder
from support.common import REPO, real_time_threads, require_tool
from support.permissions import UMASKS, process_umask


@pytest.fixture(autouse=True)
def no_thread_left_real_time():
    """Fails a test after which a thread of the test process runs under a real-time policy, and puts
    it back to the ordinary one: SVT-AV1 (Save HDR Video's av1) left the test process at SCHED_FIFO
    99 when run as root, which starved the browser tests' Chromium and server until CI gave up
    (lediff_core/io/scheduling.py)."""
    yield
    left = real_time_threads()
    for tid, _ in left:
        with contextlib.suppress(ProcessLookupError):  # a thread that has ended since
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
    assert not left, f"threads left under a real-time scheduling policy: {left}"


@pytest.fixture(scope="session")
def comfy():
    """A genuine ComfyUI loaded in-process with this pack (session-wide: import costs ~10 s)."""
    from support.comfy_harness import ComfyHost

    host = ComfyHost.start()
    yield host
    host.close()


@pytest.fixture
def host(comfy, tmp_path):
    """The in-process ComfyUI with fresh input/output/temp folders for one test."""
    comfy.use_folders(tmp_path)
    return comfy


@pytest.fixture(scope="session")
def models(comfy, tmp_path_factory):
    """The fixture LEDiff model (official layout) and a CLIP-L, registered in ComfyUI's model
    folders once per session; returns their paths (see graphs.register_fixture_models)."""
    from support.graphs import register_fixture_models

    return register_fixture_models(str(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="session")
def sdxl_folder(comfy, models):
    """A tiny SDXL LEDiff model (SDXL's UNet architecture and VAE scale, official layout) in the session's
    models/lediff, under the name support.graphs.SDXL_MODEL."""
    from support import tiny_models as fx
    from support.graphs import SDXL_MODEL

    return fx.write_official_folder(models["lediff"], SDXL_MODEL, unet_config=fx.SDXL_UNET_CONFIG,
                                    vae_config=fx.SDXL_VAE_CONFIG, seed=40)


@pytest.fixture(scope="session")
def workflow_models(comfy, tmp_path_factory):
    """Stand-in models under the file names the example workflows use (small random weights in the
    official layouts) in a models/ folder. The checkpoint is built with ComfyUI's own model classes,
    hence the in-process host.

    any_model_to_hdr's SDXL checkpoint is the same small SD1.5-architecture checkpoint under the SDXL
    file name. A tiny SDXL is impossible: ComfyUI recognises SDXL only with model_channels 320,
    transformer depths [0, 0, 2, 2, 10, 10], a 2048-wide context and 2816 ADM inputs, and builds the
    CLIP-G text encoder from a fixed config whatever the file holds; the smallest such checkpoint
    has 1.1 billion parameters (2.2 GB, minutes per run on a CPU). That workflow only uses the
    checkpoint's decoded IMAGE, which any model makes, so the route under test is the same.
    sdxl_text_to_hdr gets it too (its CLIP gives 768-wide text embeddings and a 768-wide pooled
    output, the widths the tiny SDXL LEDiff denoisers of tiny_models.SDXL_UNET_CONFIG take), with
    tiny SDXL LEDiff folders (SDXL's UNet architecture and VAE scale) under the documented SDXL names."""
    import os

    from workflow_specs import CHECKPOINT, HIGHLIGHT, SDXL_CHECKPOINT, SDXL_HIGHLIGHT, SDXL_SHADOW, SHADOW

    from support import tiny_models as fx

    root = tmp_path_factory.mktemp("workflow_models")
    os.makedirs(root / "models" / "checkpoints")
    fx.write_sd15_checkpoint(str(root / "models" / "checkpoints" / CHECKPOINT))
    os.link(root / "models" / "checkpoints" / CHECKPOINT, root / "models" / "checkpoints" / SDXL_CHECKPOINT)
    fx.write_official_folder(str(root / "models" / "lediff"), HIGHLIGHT, seed=0)
    fx.write_official_folder(str(root / "models" / "lediff"), SHADOW, seed=10)
    for name, seed in ((SDXL_HIGHLIGHT, 20), (SDXL_SHADOW, 30)):
        fx.write_official_folder(str(root / "models" / "lediff"), name, seed=seed, unet_config=fx.SDXL_UNET_CONFIG,
                                 vae_config=fx.SDXL_VAE_CONFIG)
    return root


@pytest.fixture(scope="module")
def exr_rgba(tmp_path_factory):
    """The C++ helper, built against Debian's OpenEXR (set-up installs g++ and libopenexr-dev)."""
    gxx, pkgconfig = require_tool("g++"), require_tool("pkg-config")
    flags = subprocess.run([pkgconfig, "--cflags", "--libs", "OpenEXR"], capture_output=True, text=True)
    if flags.returncode:
        pytest.fail("Debian's libopenexr-dev is missing: run scripts/setup.sh")
    exe = str(tmp_path_factory.mktemp("tool") / "exr_rgba")
    src = os.path.join(REPO, "tests", "support", "tools", "exr_rgba.cpp")
    subprocess.run([gxx, "-O1", "-std=c++17", src, "-o", exe, *flags.stdout.split()], check=True)
    return exe


# the attacks of support/attacks.py as files, for the core, training and host tests of issue 25
@pytest.fixture(scope="module")
def attacks(tmp_path_factory):
    root = tmp_path_factory.mktemp("lediff")
    return root, [attacked_folder(root, part, setting, value, f"{part}_{setting}_{i}")
                  for i, (part, setting, value, _) in enumerate(ATTACKS)]


@pytest.fixture(scope="module")
def lies(tmp_path_factory):
    root = tmp_path_factory.mktemp("lies")
    paths = {}
    for i, (name, (data, _)) in enumerate(LIES.items()):
        paths[name] = str(root / f"lie{i}.safetensors")
        open(paths[name], "wb").write(data)
    return paths


@pytest.fixture(params=UMASKS, ids=lambda m: f"umask{m:03o}")
def umask(request):
    """The process umask for one test (process-wide: restored afterwards, whatever happens)."""
    with process_umask(request.param) as mask:
        yield mask
