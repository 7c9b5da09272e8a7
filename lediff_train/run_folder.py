"""A training RUN folder's checkpoints: which one is the newest intact one, and keeping that true
whatever instant the run is killed at.

``RUN/checkpoints/step-N/`` is filled under a hidden staging name and renamed whole
(``publish.write_new_folder``); its ``trainer.json`` is written last and carries a manifest, the size
and SHA-256 of every other file in the folder. A checkpoint is *intact* when its trainer.json reads
and every file it lists has that size and hash. The folders are the truth: the newest intact
``step-N/`` (by N) is what ``--resume`` continues from and what ``export`` exports. ``checkpoints/latest``
("step-N") is moved after each checkpoint for people and scripts, but nothing trusts it alone: a run
killed between a checkpoint's rename and the pointer's move leaves a complete ``step-N/`` that the
scan finds (``--resume`` says so and moves the pointer).

Every crash window of the writers here leaves the folders in a state the scan reads right:

- during a step, or while a checkpoint is written: only a hidden ``.step-N.<random>.tmp`` staging
  folder, removed at the next start (``publish.remove_temporaries``);
- between the rename and the pointer's move: a complete ``step-N/`` newer than ``latest``;
- during pruning: an old checkpoint is first renamed to a hidden ``.tmp`` name, then deleted, so a
  ``step-N/`` is either whole or gone;
- damage after the fact (a truncated or edited file, a disk that lost the last writes): the manifest
  no longer matches; ``--resume`` names the file, moves that checkpoint aside as
  ``step-N.damaged`` and continues from the newest intact one, redoing the steps exactly; ``export``
  refuses, naming the file and the fix.

Every file of a checkpoint (and the pointer) is checked to be a regular file before it is opened
(``lediff_core.io.access.check_readable``): a FIFO or device under a checkpoint's file name is
reported by name like any other damage, never opened (opening a FIFO waits forever).

Checkpoints written before the manifest existed (a trainer.json without ``files``) are accepted as
they are; a damaged file in one is reported when it is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal

from lediff_core.io.access import FileAccessError, check_readable
from lediff_core.io.publish import rename_new, replace_text_file

CHECKPOINTS = "checkpoints"
LATEST = "latest"
TRAINER = "trainer.json"
MANIFEST_KEY = "files"
DAMAGED_SUFFIX = ".damaged"
_STEP = re.compile(r"step-(\d+)")

# The test seam: LEDIFF_TRAIN_TEST_KILL_AT="POINT@STEP" makes the run SIGKILL itself at POINT when it
# is at STEP (tests/train/test_resume.py kills real runs in each crash window). Unset in real use.
KILL_ENV = "LEDIFF_TRAIN_TEST_KILL_AT"


class TrainingError(RuntimeError):
    """A run that cannot start or go on; the message names the problem and the fix."""


class CheckpointError(TrainingError):
    """A RUN folder without a usable checkpoint; the message names the file and the fix."""


def kill_point(name: str, step: int) -> None:
    """Die here, as a crash or ``kill -9`` would, when ``KILL_ENV`` names this point and step (tests)."""
    if os.environ.get(KILL_ENV) == f"{name}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def step_folders(run: str) -> list[tuple[int, str]]:
    """(N, path) of every ``step-N`` folder of RUN, newest first."""
    ckpts = os.path.join(run, CHECKPOINTS)
    try:
        names = os.listdir(ckpts)
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), os.path.join(ckpts, n)) for n in names
             if (m := _STEP.fullmatch(n)) and os.path.isdir(os.path.join(ckpts, n))]
    return sorted(found, reverse=True)


def _sha256(path: str, sync: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 23):
            digest.update(chunk)
        if sync:  # on disk before the folder is renamed into place (a power cut, not only a kill)
            os.fsync(f.fileno())
    return digest.hexdigest()


def write_trainer_json(folder: str, trainer: dict) -> None:
    """Write ``folder``'s trainer.json last, with the manifest of every other file in it (relative
    path -> size, SHA-256); each file is synced to disk on the way."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            if rel != TRAINER:
                files[rel] = {"size": os.path.getsize(path), "sha256": _sha256(path, sync=True)}
    with open(os.path.join(folder, TRAINER), "w", encoding="utf-8") as f:
        json.dump({**trainer, MANIFEST_KEY: dict(sorted(files.items()))}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def read_trainer_json(folder: str) -> dict:
    """trainer.json of a checkpoint folder; CheckpointError naming the file when it is missing or damaged."""
    path = os.path.join(folder, TRAINER)
    try:
        check_readable(path, name=TRAINER)
        with open(path, encoding="utf-8") as f:
            trainer = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{TRAINER} is missing") from None
    except FileAccessError as e:
        raise CheckpointError(str(e)) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{TRAINER} is truncated or damaged (not valid JSON: {e})") from None
    if not isinstance(trainer, dict) or not isinstance(trainer.get("step"), int):
        raise CheckpointError(f"{TRAINER} is damaged (no step number)")
    return trainer


def checkpoint_problem(folder: str, only: tuple[str, ...] = ()) -> str | None:
    """What is wrong with a checkpoint folder (naming the file), or None when it is intact.

    ``only``: check just the manifest's files under these sub-folders (``("weights",)``: what export
    reads); every file by default. The files are read whole (SHA-256): about a second per GB.
    """
    try:
        trainer = read_trainer_json(folder)
    except CheckpointError as e:
        return str(e)
    files = trainer.get(MANIFEST_KEY)
    if files is None:
        return None  # written before manifests existed
    for rel, want in files.items():
        if only and rel.split("/")[0] not in only:
            continue
        path = os.path.join(folder, *rel.split("/"))
        try:
            size = check_readable(path, name=rel).st_size
        except FileAccessError as e:
            return str(e)
        except OSError:
            return f"{rel} is missing"
        if size != want["size"]:
            return (f"{rel} is {size} bytes, {TRAINER}'s manifest says {want['size']} "
                    f"({'truncated' if size < want['size'] else 'damaged'})")
        if _sha256(path) != want["sha256"]:
            return f"{rel} is damaged (its SHA-256 differs from {TRAINER}'s manifest)"
    return None


def newest_checkpoint(run: str, only: tuple[str, ...] = ()) -> tuple[str | None, list[tuple[str, str]]]:
    """(path of RUN's newest intact checkpoint or None, [(path, problem)] of the damaged ones newer
    than it, newest first)."""
    damaged = []
    for _, path in step_folders(run):
        problem = checkpoint_problem(path, only)
        if problem is None:
            return path, damaged
        damaged.append((path, problem))
    return None, damaged


def pointer(run: str) -> str | None:
    """The checkpoint ``checkpoints/latest`` names, or None."""
    path = os.path.join(run, CHECKPOINTS, LATEST)
    try:
        check_readable(path)  # a FIFO there is no pointer (and is replaced by the next write_pointer)
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except (FileNotFoundError, FileAccessError, UnicodeDecodeError):
        return None


def write_pointer(run: str, name: str) -> None:
    """Move ``checkpoints/latest`` to ``name`` in one step (``publish.replace_text_file``: replacing
    our own pointer is the point; a failed write leaves the old one)."""
    replace_text_file(os.path.join(run, CHECKPOINTS, LATEST), name + "\n")


def damaged_message(run: str, damaged: list[tuple[str, str]]) -> str:
    return "; ".join(f"{os.path.join(run, CHECKPOINTS, os.path.basename(p), '')}: {problem}" for p, problem in damaged)


def latest_checkpoint(run: str, only: tuple[str, ...] = ()) -> str:
    """Absolute path of RUN's newest checkpoint, for readers (export): CheckpointError when there is
    none, or when a newer one is damaged (naming the file and the fix) rather than an older one."""
    run = os.path.abspath(run)
    path, damaged = newest_checkpoint(run, only)
    if damaged:
        fallback = f"step-{read_trainer_json(path)['step']}" if path else "step 0"
        raise CheckpointError(
            f"the run's newest checkpoint is damaged ({damaged_message(run, damaged)}): resume the run with "
            f"--resume (it continues from {fallback} and writes the checkpoint again, bit for bit), or delete that "
            "folder to use the one before it")
    if path is None:
        raise CheckpointError(f"{run!r} has no checkpoint yet (no {CHECKPOINTS}/step-N folder): is it a run folder "
                              "of python -m lediff_train decoder/denoiser, and did it save a checkpoint?")
    return path


def resume_from(run: str, log) -> str | None:
    """Pick the checkpoint ``--resume`` continues from, and make the folder say so (main process only).

    The newest intact ``step-N/``; newer damaged ones are reported by file and moved aside as
    ``step-N.damaged`` (the run writes them again); ``latest`` is moved to the one chosen. None when
    the run has no checkpoint yet (it was stopped before its first): the run starts from step 0,
    which gives the same result as an uninterrupted run. CheckpointError when every checkpoint is
    damaged: starting over silently would throw away the run's work.
    """
    path, damaged = newest_checkpoint(run)
    if damaged and path is None:
        raise CheckpointError(
            f"--resume: no intact checkpoint in {run!r} ({damaged_message(run, damaged)}). Restore those files (from a "
            f"backup), or delete the damaged step-N folders to start the run over from step 0 with --resume")
    if path is not None:
        name = os.path.basename(path)
        for bad, problem in damaged:
            aside = _move_aside(bad)
            log(f"--resume: checkpoint {os.path.basename(bad)} is damaged: {problem}. Continuing from {name} "
                f"instead (the lost steps are trained again, exactly); the damaged folder is kept as "
                f"{os.path.basename(aside)}: delete it once you no longer need it")
        named = pointer(run)
        if not damaged and named != name:
            log(f"--resume: {CHECKPOINTS}/{LATEST} names {named or 'nothing'}, but {name} is complete (the run was "
                f"stopped before moving the pointer): continuing from {name}")
        if named != name:
            write_pointer(run, name)
    else:
        log(f"--resume: {run!r} has no checkpoint yet (stopped before its first): starting from step 0")
    return path


def _move_aside(path: str) -> str:
    """Rename a damaged checkpoint folder to ``step-N.damaged`` (or ``.damaged-2``, ...), never replacing."""
    base, k = path + DAMAGED_SUFFIX, 1
    while True:
        aside = base if k == 1 else f"{base}-{k}"
        try:
            rename_new(path, aside)  # refuses an existing name atomically (a plain rename replaces an empty folder)
            return aside
        except FileExistsError:
            k += 1


def prune(run: str, keep: int, step: int) -> None:
    """Delete all but the ``keep`` newest ``step-N`` folders (0 = keep all). Each is renamed to a hidden
    ``.tmp`` name before it is deleted, so a kill mid-way leaves no half-deleted checkpoint (the
    hidden folder goes at the next start)."""
    if keep <= 0:
        return
    for _, path in step_folders(run)[keep:]:
        doomed = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
        rename_new(path, doomed)
        kill_point("pruning", step)
        shutil.rmtree(doomed, ignore_errors=True)
