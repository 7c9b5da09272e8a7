"""The samples of a DATA folder written by ``prepare``, read lazily shard by shard.

Only ``prepare.json`` is read up front; tensors are sliced out of the memory-mapped safetensors
shards when asked for, so a data set far larger than RAM trains fine. Samples are ordered by shard
name, then view.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
from collections import OrderedDict

import torch
from safetensors import safe_open

from lediff_core.io.access import FileAccessError, check_readable

from .prepare import FORMAT, MANIFEST, SHARDS

LATENTS = ("c_minus", "c0", "c_plus")


class DataError(ValueError):
    """A DATA folder that cannot be trained on; the message says how to fix it."""


def _check_file(path: str, fix: str) -> None:
    """A DATA file must be a regular file (links followed) before anything opens it: a FIFO under a
    shard's name would block the run forever. DataError naming it and ``fix`` otherwise."""
    try:
        check_readable(path)
    except FileAccessError as e:
        raise DataError(f"{e}; or {fix}") from None


class LatentData:
    """The ``split`` ("train" or "val") of the DATA folder ``folder``."""

    def __init__(self, folder: str, split: str = "train", open_shards: int = 16):
        if split not in ("train", "val"):
            raise DataError(f"split must be 'train' or 'val', got {split!r}")
        self.folder = os.path.abspath(folder)
        self.split = split
        manifest_path = os.path.join(self.folder, MANIFEST)
        if not os.path.isdir(self.folder):
            raise DataError(f"DATA folder {self.folder!r} does not exist: make it with "
                            f"`python -m lediff_train prepare --hdr DIR --model MODEL --out {folder}`")
        if not os.path.lexists(manifest_path):
            raise DataError(f"{self.folder!r} has no {MANIFEST}: it is not a prepare output; make it with "
                            "`python -m lediff_train prepare` (or finish it with the same command and --resume)")
        _check_file(manifest_path, "rerun prepare into a new folder")
        with open(manifest_path, "rb") as f:
            self._manifest_bytes = f.read()
        try:
            self.manifest = json.loads(self._manifest_bytes)
        except ValueError as e:
            raise DataError(f"{manifest_path} is not valid JSON ({e}); rerun prepare into a new folder") from e
        if self.manifest.get("format") != FORMAT:
            raise DataError(f"{manifest_path} has format {self.manifest.get('format')!r}, expected {FORMAT!r}; "
                            "rerun prepare with this version")
        if not self.manifest.get("complete") or "shards" not in self.manifest:
            raise DataError(f"prepare did not finish writing {self.folder!r}: rerun the same prepare command "
                            "with --resume to complete it")
        self.shards = [s for s in self.manifest["shards"] if s["split"] == split]
        self._starts = []
        total = 0
        for s in self.shards:
            path = os.path.join(self.folder, SHARDS, s["name"])
            if not os.path.lexists(path):
                raise DataError(f"shard {path!r} listed in {MANIFEST} is missing: rerun the same prepare "
                                "command with --resume to rewrite it")
            _check_file(path, "delete it and rerun the same prepare command with --resume to rewrite it")
            self._starts.append(total)
            total += s["views"]
        self._len = total
        if total == 0:
            hint = ("prepare with --val-fraction > 0 and at least two usable source images" if split == "val"
                    else "add usable HDR images (see the skipped counts in prepare.json)")
            raise DataError(f"the {split!r} split of {self.folder!r} has no samples: {hint}")
        self._open_limit = max(1, int(open_shards))
        self._handles: OrderedDict = OrderedDict()
        self._meta: dict[str, dict] = {}

    # --- what the trainer needs to know about the data
    @property
    def scaling_factor(self) -> float:
        return float(self.manifest["model"]["scaling_factor"])

    @property
    def model_path(self) -> str:
        return self.manifest["model"]["path"]

    def fingerprint(self) -> str:
        """sha256 over prepare.json and every shard's name and size (cheap; changes when the data does)."""
        h = hashlib.sha256(self._manifest_bytes)
        for name in sorted(os.listdir(os.path.join(self.folder, SHARDS))):
            if name.endswith(".safetensors"):
                size = os.path.getsize(os.path.join(self.folder, SHARDS, name))
                h.update(f"\0{name}\0{size}".encode())
        return h.hexdigest()

    def __len__(self) -> int:
        return self._len

    # --- reading
    def locate(self, index: int) -> tuple[dict, int]:
        """(shard entry of prepare.json, view within it) of sample ``index``."""
        if not -self._len <= index < self._len:
            raise IndexError(f"sample {index} out of range: the {self.split!r} split has {self._len} samples")
        index %= self._len
        k = bisect.bisect_right(self._starts, index) - 1
        return self.shards[k], index - self._starts[k]

    def _handle(self, name: str):
        handle = self._handles.get(name)
        if handle is None:
            handle = safe_open(os.path.join(self.folder, SHARDS, name), framework="pt")
            self._handles[name] = handle
            if len(self._handles) > self._open_limit:
                self._handles.popitem(last=False)
        else:
            self._handles.move_to_end(name)
        return handle

    def metadata(self, index: int) -> dict:
        """{"source", "caption", "split", "view": that view's record (exposures, camera, geometry)}."""
        shard, view = self.locate(index)
        meta = self._shard_meta(shard["name"])
        return {"source": meta["source"], "caption": meta["caption"], "split": meta["split"],
                "view": meta["views"][view]}

    def _shard_meta(self, name: str) -> dict:
        if name not in self._meta:
            self._meta[name] = json.loads(self._handle(name).metadata()["lediff_train"])
        return self._meta[name]

    def get(self, indices) -> dict:
        """A batch: c_minus/c0/c_plus float32 [B, C, h, w], log_hdr float32 [B, 3, H, W], caption list."""
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("get() needs at least one sample index")
        parts: dict[str, list] = {k: [] for k in (*LATENTS, "log_hdr")}
        captions = []
        for i in indices:
            shard, view = self.locate(i)
            handle = self._handle(shard["name"])
            for key in parts:
                parts[key].append(handle.get_slice(key)[view:view + 1])
            captions.append(self._shard_meta(shard["name"])["caption"])
        batch = {k: torch.cat([t.float() for t in v]) for k, v in parts.items()}  # float16 targets: cast first
        batch["caption"] = captions
        return batch

    def __getitem__(self, index: int) -> dict:
        """One sample (no batch dimension), for torch DataLoaders."""
        batch = self.get([index])
        return {k: (v[0] if isinstance(v, torch.Tensor) else v[0]) for k, v in batch.items()}

    def __getstate__(self):  # open file handles do not cross process boundaries
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        return state
