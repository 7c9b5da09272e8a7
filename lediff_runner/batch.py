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

An item may carry *partners*: with ``--pair ID=FOLDER`` the loader node ID gets, for each input,
the file of FOLDER named after it (``Pair``; a depth map per photo for hdr_depth_of_field's second
Load Image). Pairing is all or nothing: an input without exactly one partner refuses the whole
batch before anything runs (``pair_items``), naming every such input.
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

from .workflow import (
    LOADERS,
    find_loader,
    find_paired,
    is_ui_format,
    load_workflow_file,
    node_types,
    with_inputs,
    workflow_hash,
)

MANIFEST = "batch_item.json"
WORK_DIR = ".lediff_batch"
PID_FILE = ".worker_pid"
STEM = "{stem}"


@dataclasses.dataclass(frozen=True)
class Item:
    key: str  # the output folder's name (the input's name without extension, unless that is ambiguous)
    path: str  # absolute path of the input file
    partners: tuple[tuple[str, str], ...] = ()  # (loader node id, absolute path of its file) per --pair


@dataclasses.dataclass(frozen=True)
class Pair:
    """``--pair ID=FOLDER``: loader node ID gets, for each input ``name.ext``, the file ``name.*`` of
    FOLDER (any extension that loader reads). ``ID=FOLDER/PATTERN`` with ``{stem}`` in PATTERN names
    the partner otherwise: ``depths/{stem}_depth`` pairs ``city.png`` with ``depths/city_depth.*``."""

    node: str
    folder: str
    pattern: str = STEM  # the partner's name without its extension; {stem} is the input's

    @classmethod
    def parse(cls, text: str) -> Pair:
        node, sep, where = text.partition("=")
        node, where = node.strip(), where.strip()
        if not sep or not node or not where:
            raise ValueError(f"{text!r}: expected ID=FOLDER (e.g. 4=depths/), the loader node's id and the "
                             "folder of its files, one per input")
        folder, pattern = os.path.split(where) if STEM in os.path.basename(where) else (where, STEM)
        if STEM in folder or pattern.count(STEM) != 1 or pattern.replace(STEM, "").count("{"):
            raise ValueError(f"{text!r}: {{stem}} may appear once, in the file name (ID=FOLDER/{{stem}}_depth), "
                             "and no other {...}")
        return cls(node, folder or ".", pattern)

    def name_for(self, stem: str) -> str:
        return self.pattern.replace(STEM, stem)

    def __str__(self) -> str:
        return f"{self.node}={os.path.join(self.folder, self.pattern) if self.pattern != STEM else self.folder}"


@dataclasses.dataclass
class BatchConfig:
    workflow: str  # UI- or API-format JSON file
    inputs: str
    output: str
    comfyui: str | None = None
    base_directory: str | None = None
    input_node: str | None = None
    pairs: tuple[Pair, ...] = ()  # --pair: loaders fed a partner file per item
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
    names = _listing(inputs)
    accepted = [f for f in names if f.lower().endswith(extensions)]
    stems = [os.path.splitext(f)[0] for f in accepted]
    items = [Item(stem if stems.count(stem) == 1 else f.replace(".", "_"), os.path.abspath(os.path.join(inputs, f)))
             for f, stem in zip(accepted, stems, strict=True)]
    return items, [f for f in names if f not in accepted]


def _listing(folder: str) -> list[str]:
    """A folder's candidate files: every top-level entry but folders and hidden names."""
    return sorted(f for f in os.listdir(folder) if not f.startswith(".") and not os.path.isdir(os.path.join(folder, f)))


def pair_items(items: list[Item], pairs: tuple[Pair, ...], extensions: dict[str, tuple[str, ...]],
               inputs: str) -> list[Item]:
    """The items with their partners, one file per ``pairs`` entry each (``extensions``: {node id:
    the extensions its loader reads}). Partners are matched by exact name (case matters; the
    extension's case does not); a folder's files that match no input are ignored. Raises ValueError
    naming every input without a partner and every input with several, before anything runs:
    a batch is all or nothing."""
    problems = []
    for pair in pairs:
        if not os.path.isdir(pair.folder):
            problems.append(f"--pair {pair}: no such folder; give the folder that holds the loader's files")
        elif os.path.isdir(inputs) and os.path.samefile(pair.folder, inputs):
            problems.append(f"--pair {pair}: is --inputs itself, where every image is an input of its own; "
                            "keep the partner files in a folder of their own")
    if problems:
        raise ValueError("\n".join(problems))
    listings = {pair.folder: _listing(pair.folder) for pair in pairs}
    paired, missing, several = [], [], []
    for item in items:
        name = os.path.basename(item.path)
        stem = os.path.splitext(name)[0]
        partners = []
        for pair in pairs:
            want, kinds = pair.name_for(stem), extensions[pair.node]
            found = [f for f in listings[pair.folder] if os.path.splitext(f)[0] == want and f.lower().endswith(kinds)]
            if len(found) == 1:
                partners.append((pair.node, os.path.abspath(os.path.join(pair.folder, found[0]))))
            elif not found:
                missing.append(f"  {name}: no {os.path.join(pair.folder, want)}.* ({' '.join(kinds)}) "
                               f"for node {pair.node}")
            else:
                several.append(f"  {name}: {' and '.join(os.path.join(pair.folder, f) for f in found)} "
                               f"for node {pair.node}: keep one")
        paired.append(dataclasses.replace(item, partners=tuple(partners)))
    if missing or several:
        counts = ", ".join(filter(None, (missing and f"{len(missing)} missing",
                                         several and f"{len(several)} ambiguous")))
        raise ValueError(f"--pair: {counts} partner file(s) for the {len(items)} input(s); nothing was run:\n"
                         + "\n".join(missing + several) + "\nEach input name.ext needs exactly one partner named "
                         "after it in every --pair folder: add the missing files, remove the extra ones, or move "
                         "those inputs out of --inputs, then run the command again.")
    return paired


def plan_batch(config: BatchConfig) -> list[Item]:
    """The batch's items with their partners, from the workflow file alone (before ComfyUI starts):
    the loader of the inputs and the paired loaders checked, every input paired. Raises ValueError
    naming what is wrong (nothing has run or been created then)."""
    types = node_types(load_workflow_file(config.workflow))
    nodes = tuple(pair.node for pair in config.pairs)
    paired = find_paired(types, nodes)
    _, _, extensions = find_loader(types, config.input_node, nodes)
    items, _ = plan_items(config.inputs, extensions)
    return pair_items(items, config.pairs, {node: kinds for node, (_, kinds) in paired.items()}, config.inputs)


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
            types, paired = node_types(self.prompt), tuple(pair.node for pair in config.pairs)
            self.paired = find_paired(types, paired)
            self.loader, self.loader_input, self.extensions = find_loader(types, config.input_node, paired)
        except BaseException:  # a workflow that cannot run here: the host's private temp folder goes too
            self.host.close()
            raise
        self.workflow_sha256 = workflow_hash(self.workflow)
        self.host.set_folders(input_dir=config.inputs)

    def run(self, item: Item, token: str, attempt: int = 1) -> dict:
        """Run one item and publish its folder; returns its manifest. Raises on failure (the
        staging folder is then left for the caller to discard)."""
        check_readable(item.path, name=os.path.basename(item.path))  # a FIFO: refused by name, unopened
        for _, partner in item.partners:
            check_readable(partner, name=partner)
        # a link in --inputs is the operator's choice: the graph reads its target, from the target's
        # own folder (the loaders refuse links that leave their input folder)
        source = os.path.realpath(item.path)
        files = {self.loader: source, **{node: os.path.realpath(path) for node, path in item.partners}}
        root = os.path.commonpath([os.path.dirname(f) for f in files.values()])
        output = os.path.abspath(self.config.output)
        stage = staging_dir(output, item.key, token)
        os.makedirs(stage)
        with open(os.path.join(stage, PID_FILE), "w") as f:
            f.write(str(os.getpid()))
        start = time.perf_counter()
        self.host.set_folders(input_dir=root, output_dir=stage)
        prompt = self.item_prompt(files, root, os.path.dirname(source))
        ui = self.host.run(prompt, {"workflow": self.workflow} if is_ui_format(self.workflow) else None)
        os.unlink(os.path.join(stage, PID_FILE))
        files = sorted(os.path.relpath(os.path.join(d, f), stage) for d, _, fs in os.walk(stage) for f in fs)
        if not files:
            raise RuntimeError("the workflow saved no file: add a save node (e.g. LEDiff Save EXR) to it")
        manifest = {
            "input": os.path.basename(item.path), "input_sha256": sha256_file(item.path),
            **({"paired_inputs": {node: {"input": path, "input_sha256": sha256_file(path)}
                                  for node, path in item.partners}} if item.partners else {}),
            "workflow": os.path.abspath(self.config.workflow), "workflow_sha256": self.workflow_sha256,
            "outputs": files, "ui": ui, "seconds": round(time.perf_counter() - start, 3),
            "attempt": attempt, "worker": f"{socket.gethostname()}:{os.getpid()}",
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        with open(os.path.join(stage, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=1, default=str)
        publish(stage, os.path.join(output, item.key))
        return manifest

    def item_prompt(self, files: dict[str, str], root: str, home: str) -> dict:
        """The graph for one item: each fed loader (``files``: {node id: real path}) given its file
        relative to ``root``, ComfyUI's input folder for the item (the deepest folder holding them
        all: the loaders only read inside it). The other loaders keep their fixed file, read from the
        input's own folder ``home`` as without partners."""
        names = {self.loader: self.loader_input, **{node: name for node, (name, _) in self.paired.items()}}
        values = {node: {names[node]: os.path.relpath(path, root)} for node, path in files.items()}
        for node_id, node in self.prompt.items():
            name = LOADERS.get(node["class_type"], (None,))[0]
            value = node["inputs"].get(name)
            if root == home or node_id in files or not isinstance(value, str) or value.endswith(("[output]", "[temp]")):
                continue
            annotation = " [input]" if value.endswith(" [input]") else ""
            fixed = os.path.join(home, value.removesuffix(annotation))
            values[node_id] = {name: os.path.relpath(fixed, root) + annotation}
        return with_inputs(self.prompt, values)

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
            items = plan_batch(config)
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
