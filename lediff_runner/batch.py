"""Running one workflow over a folder of inputs, in-process or on a Ray cluster.

Each input is an *item*. An item's outputs are written into a private staging folder
``OUTPUT/.lediff_batch/staging/<key>.<attempt token>/`` (ComfyUI's output directory while the item
runs), together with a manifest ``batch_item.json``; then the staging folder is renamed to
``OUTPUT/<key>/`` in one step. So:

- an item is complete exactly when ``OUTPUT/<key>/batch_item.json`` exists (the rename is atomic
  on one file system), and a second run skips it (resume);
- a crashed or killed attempt leaves nothing under ``OUTPUT/<key>/`` (only its staging folder,
  which the driver removes), so no partial file is ever published;
- an existing ``OUTPUT/<key>/`` is never replaced: the rename refuses an existing name, and the
  attempt's files are discarded instead (no duplicates when two attempts race);
- the published files and folders have the permissions an ordinary ``open()`` / ``mkdir()`` gets
  under the process umask, whatever a saver created them with (``lediff_core.io.publish``);
- an input that is not a regular file (a FIFO, a device, a dangling link) fails as an item that names
  it, before anything opens it; the other items run. A symbolic link in ``--inputs`` is the
  operator's choice and is followed: the item's graph reads the file it points to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import sys
import time
import traceback
import uuid

from lediff_core.io.access import check_readable
from lediff_core.io.publish import publish_folder

from .workflow import find_loader, is_ui_format, load_workflow_file, with_input, workflow_hash

MANIFEST = "batch_item.json"
WORK_DIR = ".lediff_batch"
PID_FILE = ".worker_pid"


@dataclasses.dataclass(frozen=True)
class Item:
    key: str  # the output folder's name (the input's name without extension, unless that is ambiguous)
    path: str  # absolute path of the input file


@dataclasses.dataclass
class BatchConfig:
    workflow: str  # UI- or API-format JSON file
    inputs: str
    output: str
    comfyui: str | None = None
    base_directory: str | None = None
    input_node: str | None = None
    cpu: bool | None = None  # None: ComfyUI's defaults on a GPU machine, --cpu without one
    threads: int = 1  # torch's CPU threads per worker, in-process and on Ray alike (same bits in both)


@dataclasses.dataclass
class Outcome:
    item: Item
    ok: bool
    message: str = ""
    seconds: float = 0.0
    skipped: bool = False


def sha256_file(path: str) -> str:
    check_readable(path)  # a FIFO would block the hash forever
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan_items(inputs: str, extensions: tuple[str, ...]) -> tuple[list[Item], list[str]]:
    """The input files a loader accepts (sorted, top level of ``inputs``), each with a unique key;
    returns (items, names of the files left out). Every entry but folders and hidden names is a
    candidate: a FIFO under an image's name becomes an item that fails naming it (``ItemRunner.run``),
    not one silently left out."""
    if not os.path.isdir(inputs):
        raise FileNotFoundError(f"--inputs {inputs}: no such folder")
    names = sorted(f for f in os.listdir(inputs)
                   if not f.startswith(".") and not os.path.isdir(os.path.join(inputs, f)))
    accepted = [f for f in names if f.lower().endswith(extensions)]
    stems = [os.path.splitext(f)[0] for f in accepted]
    items = [Item(stem if stems.count(stem) == 1 else f.replace(".", "_"), os.path.abspath(os.path.join(inputs, f)))
             for f, stem in zip(accepted, stems, strict=True)]
    return items, [f for f in names if f not in accepted]


def item_state(output: str, key: str) -> str:
    """'done', 'todo', or 'blocked' (OUTPUT/key exists but is not a completed item)."""
    folder = os.path.join(output, key)
    if os.path.isfile(os.path.join(folder, MANIFEST)):
        return "done"
    return "blocked" if os.path.lexists(folder) else "todo"


def staging_dir(output: str, key: str, token: str) -> str:
    return os.path.join(output, WORK_DIR, "staging", f"{key}.{token}")


def discard_attempt(output: str, key: str, token: str) -> None:
    shutil.rmtree(staging_dir(output, key, token), ignore_errors=True)


def cleanup_work_dir(output: str) -> None:
    """Remove the work folder when nothing of a live attempt remains in it."""
    for sub in ("staging", ""):
        try:
            os.rmdir(os.path.join(output, WORK_DIR, sub))
        except OSError:
            pass


class ItemRunner:
    """Runs items of one workflow in an embedded ComfyUI (one per process: a worker)."""

    def __init__(self, config: BatchConfig):
        from .host import EmbeddedComfyUI

        self.config = config
        # CPU results depend on how reductions are split between threads: the same count in every
        # worker, in-process or on Ray, gives bit-identical outputs
        import torch

        torch.set_num_threads(config.threads)
        self.workflow = load_workflow_file(config.workflow)
        self.host = EmbeddedComfyUI(config.comfyui, config.base_directory, config.cpu)
        try:
            self.prompt = self.host.to_api(self.workflow)
            self.loader, self.loader_input, self.extensions = find_loader(self.prompt, config.input_node)
        except BaseException:  # a workflow that cannot run here: the host's private temp folder goes too
            self.host.close()
            raise
        self.workflow_sha256 = workflow_hash(self.workflow)
        self.host.set_folders(input_dir=config.inputs)

    def run(self, item: Item, token: str, attempt: int = 1) -> dict:
        """Run one item and publish its folder; returns its manifest. Raises on failure (the
        staging folder is then left for the caller to discard)."""
        check_readable(item.path, name=os.path.basename(item.path))  # a FIFO: refused by name, unopened
        # a link in --inputs is the operator's choice: the graph reads its target, from the target's
        # own folder (the loaders refuse links that leave their input folder)
        source = os.path.realpath(item.path)
        output = os.path.abspath(self.config.output)
        stage = staging_dir(output, item.key, token)
        os.makedirs(stage)
        with open(os.path.join(stage, PID_FILE), "w") as f:
            f.write(str(os.getpid()))
        start = time.perf_counter()
        self.host.set_folders(input_dir=os.path.dirname(source), output_dir=stage)
        prompt = with_input(self.prompt, self.loader, self.loader_input, os.path.basename(source))
        ui = self.host.run(prompt, {"workflow": self.workflow} if is_ui_format(self.workflow) else None)
        os.unlink(os.path.join(stage, PID_FILE))
        files = sorted(os.path.relpath(os.path.join(d, f), stage) for d, _, fs in os.walk(stage) for f in fs)
        if not files:
            raise RuntimeError("the workflow saved no file: add a save node (e.g. LEDiff Save EXR) to it")
        manifest = {
            "input": os.path.basename(item.path), "input_sha256": sha256_file(item.path),
            "workflow": os.path.abspath(self.config.workflow), "workflow_sha256": self.workflow_sha256,
            "outputs": files, "ui": ui, "seconds": round(time.perf_counter() - start, 3),
            "attempt": attempt, "worker": f"{socket.gethostname()}:{os.getpid()}",
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        with open(os.path.join(stage, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=1, default=str)
        publish(stage, os.path.join(output, item.key))
        return manifest

    def close(self) -> None:
        self.host.close()


def publish(stage: str, final: str) -> None:
    """Rename the staging folder to its final name, never replacing an existing folder; its files
    and folders get the umask's modes first (``publish.publish_folder``), whatever the workflow's
    savers created them with."""
    try:
        publish_folder(stage, final)
    except FileExistsError:
        raise FileExistsError(f"{final} already exists (another run finished this item): kept it, "
                              "discarded this attempt") from None
    except OSError as e:
        raise FileExistsError(f"{final}: could not publish ({e}); discarded this attempt") from e


def _progress(total: int, initial: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="item", desc="batch", file=sys.stderr, dynamic_ncols=True)


def pending(config: BatchConfig, items: list[Item]) -> tuple[list[Item], list[Outcome]]:
    """Items still to do, and outcomes for those that are done (skipped) or blocked."""
    todo, settled = [], []
    for item in items:
        state = item_state(config.output, item.key)
        if state == "todo":
            todo.append(item)
        elif state == "done":
            settled.append(Outcome(item, True, "already complete", skipped=True))
        else:
            settled.append(Outcome(item, False, f"{os.path.join(config.output, item.key)} exists but is not a "
                                   "completed batch item: move it away to run this input"))
    return todo, settled


def run_local(config: BatchConfig, items: list[Item] | None = None, runner: ItemRunner | None = None,
              progress: bool = True) -> list[Outcome]:
    """Every pending item, one after the other, in this process's embedded ComfyUI."""
    own = runner is None
    runner = runner or ItemRunner(config)
    try:
        if items is None:
            items, _ = plan_items(config.inputs, runner.extensions)
        todo, outcomes = pending(config, items)
        bar = _progress(len(items), len(items) - len(todo)) if progress else None
        for item in todo:
            token = uuid.uuid4().hex[:12]
            start = time.perf_counter()
            try:
                runner.run(item, token)
                outcomes.append(Outcome(item, True, seconds=time.perf_counter() - start))
            except Exception as e:  # one failing item must not stop the batch
                discard_attempt(config.output, item.key, token)
                outcomes.append(Outcome(item, False, _describe(e), time.perf_counter() - start))
            if bar:
                bar.update(1)
        if bar:
            bar.close()
        cleanup_work_dir(config.output)
        return outcomes
    finally:
        if own:
            runner.close()


def _describe(e: BaseException) -> str:
    from .host import GraphError

    text = f"{type(e).__name__}: {e.brief if isinstance(e, GraphError) else e}"
    if os.environ.get("LEDIFF_BATCH_TRACEBACK"):
        text += "\n" + "".join(traceback.format_exception(e))
    return text


def report(outcomes: list[Outcome], stream=sys.stdout) -> int:
    """Print a summary (failures listed) and return the exit status: 1 when any item failed."""
    done = sum(o.ok and not o.skipped for o in outcomes)
    skipped = sum(o.skipped for o in outcomes)
    failed = [o for o in outcomes if not o.ok]
    print(f"batch: {done} done, {skipped} already complete, {len(failed)} failed", file=stream)
    for o in failed:
        print(f"  FAILED {os.path.basename(o.item.path)}: {o.message}", file=stream)
    return 1 if failed else 0
