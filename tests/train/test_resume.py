"""Exact resume in every crash window (lediff_train.engine, lediff_train.run_folder): a REAL run is
killed (SIGKILL, as a crash or the out-of-memory killer does) at a chosen instant through the
engine's test seam (LEDIFF_TRAIN_TEST_KILL_AT), then ``--resume`` must reach, bit for bit, what the
uninterrupted run reached; and a damaged newest checkpoint is named by file, moved aside, and the
run continues from the one before it to the same result.

Stage 1 on tiny models, two steps: two optimizers (the discriminator's from the second step), EMA, a
checkpoint every step; the killed runs keep one, so step 2 prunes step-1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from lediff_train import cli, engine, run_folder
from lediff_train import export as ex
from support.common import REPO
from support.train_models import prepared_lediff_data

STEPS = 2
OPTIONS = ["--steps", str(STEPS), "--batch-size", "1", "--lpips-weight", "0", "--gan-start", "1", "--lr", "1e-3",
           "--ema", "0.5", "--checkpoint-every", "1", "--keep-checkpoints", "0", "--report-to", "csv",
           "--validate-every", "0"]
KEEP_ONE = ["--keep-checkpoints", "1"]  # (may change on --resume)


def argv(setup, out, *extra):
    return ["decoder", "--data", setup["data"], "--model", setup["model"], "--out", str(out), *OPTIONS, *extra]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The inputs, and the uninterrupted run every case is compared with."""
    root = tmp_path_factory.mktemp("train_resume")
    setup = {"root": root, **prepared_lediff_data(root)}
    straight = root / "straight"
    assert cli.main(argv(setup, straight)) == 0
    setup["straight"] = str(straight)
    setup["final"] = snapshot(os.path.join(straight, "checkpoints", f"step-{STEPS}"))
    return setup


def snapshot(checkpoint) -> dict:
    """Every tensor and number a checkpoint holds: modules, both optimizers' state, EMA, exported weights."""
    out = {}
    for folder, _, names in os.walk(checkpoint):
        for name in names:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, checkpoint)
            if name.endswith(".safetensors"):
                out[rel] = load_file(path)
            elif name.endswith(".pt"):
                out[rel] = torch.load(path, weights_only=True)
    assert {"state", "weights"} <= {r.split(os.sep)[0] for r in out} and any("optimizer-" in r for r in out)
    return out


def assert_identical(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_finished_like_straight(setup, run, kept):
    """The run holds exactly what the uninterrupted run holds: the ``kept`` newest checkpoints, intact,
    the pointer on the last, the same bits."""
    ckpts = os.path.join(run, "checkpoints")
    names = [f"step-{s}" for s in range(STEPS - kept + 1, STEPS + 1)]
    assert sorted(os.listdir(ckpts)) == ["latest", *names]
    assert run_folder.pointer(run) == f"step-{STEPS}"
    assert engine.latest_checkpoint(run) == os.path.join(ckpts, f"step-{STEPS}")
    for name in names:
        assert run_folder.checkpoint_problem(os.path.join(ckpts, name)) is None
    assert_identical(snapshot(os.path.join(ckpts, f"step-{STEPS}")), setup["final"])


def killed_run(setup, out, point: str, step: int):
    """Start the run in its own process and let it SIGKILL itself at ``point`` of ``step``."""
    # (the threads as in this process: float sums are grouped by the thread count, so it must match)
    env = {**os.environ, "PYTHONPATH": REPO, run_folder.KILL_ENV: f"{point}@{step}"}
    done = subprocess.run([sys.executable, "-m", "lediff_train", *argv(setup, out, *KEEP_ONE)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


# (point, step, what the folder holds after the kill, what --resume says)
# (point, step, what --resume says); what each leaves on disk is asserted below
WINDOWS = [
    ("step", 1, "has no checkpoint yet (stopped before its first): starting from step 0"),  # mid-step
    ("checkpoint-staged", 2, None),  # step-2 written under its staging name, not renamed
    ("checkpoint-renamed", 2, "checkpoints/latest names step-1, but step-2 is complete"),
    ("pruning", 2, None),  # step-1 renamed for deletion, not yet deleted
]


@pytest.mark.parametrize("point,step,says", WINDOWS, ids=[f"{p}@{s}" for p, s, _ in WINDOWS])
def test_a_run_killed_at_any_instant_resumes_to_the_uninterrupted_result(setup, tmp_path, capsys, point, step, says):
    run = str(tmp_path / "run")
    killed_run(setup, run, point, step)
    ckpts = os.path.join(run, "checkpoints")
    left = sorted(os.listdir(ckpts))
    hidden = [n for n in left if n.startswith(".step-")]
    if point == "step":
        assert left == []
    elif point == "checkpoint-staged":
        assert hidden and "step-2" not in left and run_folder.pointer(run) == "step-1"
    elif point == "checkpoint-renamed":
        assert "step-2" in left and run_folder.pointer(run) == "step-1"
        # what export reads: the complete step-2, not the pointer's step-1
        assert engine.latest_checkpoint(run, only=("weights",)) == os.path.join(ckpts, "step-2")
    else:  # pruning
        assert hidden and "step-1" not in left and run_folder.pointer(run) == "step-2"
    capsys.readouterr()

    assert cli.main([*argv(setup, run, *KEEP_ONE), "--resume"]) == 0
    printed = capsys.readouterr()
    if says:
        assert says in printed.out + printed.err
    assert_finished_like_straight(setup, run, kept=1)
    # every step logged once, as in the uninterrupted run (the killed run's later rows were dropped)
    with open(os.path.join(run, "logs", "metrics.csv")) as f:
        steps = [int(line.split(",")[0]) for line in f]
    with open(os.path.join(setup["straight"], "logs", "metrics.csv")) as f:
        assert steps == [int(line.split(",")[0]) for line in f]


def copy_of_straight(setup, dest):
    """The uninterrupted run's folder as if it had been written at ``dest`` (a run records its --out)."""
    shutil.copytree(setup["straight"], dest)
    config = json.loads((dest / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps({**config, "out": str(dest)}))
    return dest


DAMAGE = ["state/model-hdr_decoder.safetensors", "state/optimizer-discriminator.pt", "trainer.json"]


@pytest.mark.parametrize("damaged", DAMAGE)
def test_a_damaged_newest_checkpoint_is_named_and_resume_falls_back_to_the_one_before(setup, tmp_path, capsys,
                                                                                      damaged):
    run = copy_of_straight(setup, tmp_path / "run")
    path = run / "checkpoints" / f"step-{STEPS}" / damaged
    assert path.is_file(), sorted(os.listdir(path.parent))
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)

    # export refuses rather than exporting older weights, naming the file and the fix (a damaged
    # state/ file does not touch what export reads)
    if damaged == "trainer.json":
        with pytest.raises(ex.ExportError, match=rf"step-{STEPS}.*trainer.json is truncated.*--resume"):
            ex.export(str(run), str(tmp_path / "no-denoiser"), str(tmp_path / "out"))
    else:
        assert engine.latest_checkpoint(str(run), only=("weights",)).endswith(f"step-{STEPS}")
        with pytest.raises(engine.TrainingError, match=rf"{damaged.split('/')[-1]} is \d+ bytes.*truncated"):
            engine.latest_checkpoint(str(run))

    assert cli.main([*argv(setup, run), "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint step-{STEPS} is damaged: {damaged}" in out, out
    assert f"Continuing from step-{STEPS - 1} instead" in out and f"kept as step-{STEPS}.damaged" in out
    shutil.rmtree(run / "checkpoints" / f"step-{STEPS}.damaged")
    assert_finished_like_straight(setup, str(run), kept=STEPS)


def test_a_run_whose_every_checkpoint_is_damaged_is_refused_with_the_files_and_the_fix(setup, tmp_path, capsys):
    run = copy_of_straight(setup, tmp_path / "run")
    for step in (1, 2):
        (run / "checkpoints" / f"step-{step}" / "trainer.json").write_text('{"step": ')
    before = sorted(os.listdir(run / "checkpoints"))
    assert cli.main([*argv(setup, run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "no intact checkpoint" in err and "step-1" in err and "step-2" in err and "trainer.json is truncated" in err
    assert "delete the damaged step-N folders to start the run over" in err
    assert sorted(os.listdir(run / "checkpoints")) == before  # nothing moved or deleted


def test_a_legacy_format_optimizer_state_is_refused_by_name_before_torch_load(setup, tmp_path, capsys):
    """A checkpoint from before manifests (nothing to compare its files with) whose optimizer state is
    in torch's legacy format, which torch.load reads at whatever sizes its pickle claims: --resume
    refuses the file by name, with the fix, instead of loading it."""
    run = copy_of_straight(setup, tmp_path / "run")
    newest = run / "checkpoints" / f"step-{STEPS}"
    trainer = json.loads((newest / run_folder.TRAINER).read_text())
    del trainer[run_folder.MANIFEST_KEY]
    (newest / run_folder.TRAINER).write_text(json.dumps(trainer))
    optimizer = newest / "state" / "optimizer-discriminator.pt"
    torch.save(torch.load(optimizer, weights_only=True), optimizer, _use_new_zipfile_serialization=False)
    assert cli.main([*argv(setup, run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "optimizer-discriminator.pt' is a legacy PyTorch file (the format torch.save wrote before PyTorch 1.6)" \
        in err, err
    assert "re-save trusted weights with a current torch.save" in err and "the checkpoint is damaged" in err, err


def two_processes(setup, out, *extra, kill: str | None = None):
    """The run as two processes (torchrun, gloo on CPU, one thread each); ``kill``: the test seam's
    POINT@STEP, at which every process that reaches it SIGKILLs itself."""
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    env.pop(run_folder.KILL_ENV, None)
    if kill:
        env[run_folder.KILL_ENV] = kill
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "lediff_train", *argv(setup, out, *extra)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def test_two_processes_killed_mid_step_resume_to_the_uninterrupted_two_process_result(setup, tmp_path):
    straight = two_processes(setup, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    run = tmp_path / "run"
    killed = two_processes(setup, run, kill="step@2")
    assert killed.returncode != 0 and sorted(os.listdir(run / "checkpoints")) == ["latest", "step-1"], \
        killed.stderr[-3000:]
    resumed = two_processes(setup, run, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "config.json").read_text())["processes"] == 2
    final = os.path.join(run, "checkpoints", f"step-{STEPS}")
    assert run_folder.checkpoint_problem(final) is None
    assert_identical(snapshot(final), snapshot(tmp_path / "straight" / "checkpoints" / f"step-{STEPS}"))
