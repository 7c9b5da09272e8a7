"""``python -m lediff_train prepare``: HDR files -> random views -> simulated brackets -> cached
latents (C-, C0, C+) and log-HDR targets, one shard per source image (layout: docs/training.md).

Each source gets its own random generator, seeded from the run's seed and the file's relative path,
so its views do not depend on which other files are there; shards are published atomically, so an
interrupted run resumes (``--resume``) by skipping the shards already written. The latents are the
frozen SD encoder's posterior mode (``AutoencoderKL.encode``) times the VAE's scaling factor, of the
8-bit brackets mapped to [-1, 1] exactly as SD's VAE sees a photo. The encoder always runs in
float32 (SDXL's VAE overflows in float16), with MODEL's own scaling factor.

The crop size defaults to the resolution MODEL's backbone was trained at: 512 for SD1.5, 1024 for
SDXL (``DEFAULT_SIZES``, from ``lediff_core.model.backbones``; the backbone read from MODEL's
``unet/config.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import posixpath
import stat
import zlib

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lediff_core.io.access import FileAccessError, check_readable
from lediff_core.io.publish import is_temporary, remove_temporaries, replace_text_file, write_new_file
from lediff_core.io.readers import EXTENSIONS, read_linear_image
from lediff_core.model.backbones import BACKBONES
from lediff_core.model.vae import AutoencoderKL
from lediff_core.model.weights import WeightError

from . import brackets as br
from .models import ModelError, ModelFolder, read_model

FORMAT = "lediff-train-data/1"
MANIFEST = "prepare.json"
SHARDS = "shards"
META_KEY = "lediff_train"
LOG_EPS = 1e-5  # the decoder's target is ln(H + 1e-5) (LEDIFF.md)
SKIP_REASONS = ("unreadable", "too_small", "black", "clipped", "non_finite")
DEFAULT_SIZES = {b.name: b.training_size for b in BACKBONES}  # the backbones' training resolutions
_SIZES_TEXT = ", ".join(f"{b.training_size} for {b.label}" for b in BACKBONES)  # "512 for SD1.5, ..."


class PrepareError(ValueError):
    """Bad arguments or inputs for prepare; the message says what to change."""


# ----------------------------------------------------------------------------------------- inputs
def dataset_files(hdr_dir: str, keep) -> list[str]:
    """Relative paths ('/'-separated, sorted) of the files under ``hdr_dir`` whose name ``keep(name)``
    accepts, following symbolic links to folders and files wherever they point (the data set is the
    user's choice, as a MODEL is), each file listed once.

    A folder reached twice (a link loop, a link to a folder of the data set or to a folder another
    link already reached) is walked once: at its own place in the data set, else through the first
    link in sorted order. A file reached twice (a file link beside its target, two links to one
    file) is listed once, the same way. Anything that is not a regular file (a FIFO, a device, a
    dangling link) is listed by its name, to be reported when read."""
    seen: set[str] = set()  # real paths of the folders walked
    candidates: list[tuple[int, str, tuple[int, int] | None]] = []  # (through a link, rel, identity)
    linked: list[str] = []

    def walk(top: str, through_link: bool) -> None:
        for dirpath, dirnames, filenames in os.walk(top, followlinks=through_link):
            real = os.path.realpath(dirpath)
            if real in seen:  # (only a followed link gets here twice)
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames.sort()
            if not through_link:  # links to folders wait until the data set's own folders are known
                linked.extend(os.path.join(dirpath, d) for d in dirnames if os.path.islink(os.path.join(dirpath, d)))
            dirnames[:] = [d for d in dirnames if os.path.realpath(os.path.join(dirpath, d)) not in seen]
            for name in filenames:
                if not keep(name):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                    identity = (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None
                except OSError:
                    identity = None
                rel = os.path.relpath(path, hdr_dir).replace(os.sep, "/")
                candidates.append((int(through_link or os.path.islink(path)), rel, identity))

    walk(hdr_dir, False)
    for link in sorted(linked):
        walk(link, True)
    listed, found = set(), []
    for _, rel, identity in sorted(candidates):
        if identity is None or identity not in listed:
            listed.add(identity)
            found.append(rel)
    return sorted(found)


def list_hdr_files(hdr_dir: str) -> list[str]:
    """Relative paths ('/'-separated) of every HDR file under ``hdr_dir``, sorted (hidden names left
    out; links followed, each file once: ``dataset_files``). Anything under an HDR file's name is
    listed, so a FIFO, a device or a dangling link is reported by name as unreadable when read (the
    readers refuse it before opening it, ``lediff_core.io.access``), not silently dropped."""
    if not os.path.isdir(hdr_dir):
        raise PrepareError(f"--hdr {hdr_dir!r} is not a folder; pass the folder holding the .exr/.hdr files")
    return dataset_files(hdr_dir, lambda name: name.lower().endswith(EXTENSIONS) and not name.startswith("."))


def read_captions(hdr_dir: str, files: list[str], captions: str | None) -> tuple[dict[str, str], list[str]]:
    """{relpath: caption} from ``<image>.txt`` sidecars and a captions.jsonl (``captions``, or
    ``hdr_dir/captions.jsonl`` when present; its lines win over sidecars), and the captions whose
    image is not among ``files`` (a warning, not an error)."""
    known = set(files)
    result: dict[str, str] = {}
    orphans: list[str] = []
    for rel in files:
        sidecar = os.path.join(hdr_dir, os.path.splitext(rel)[0] + ".txt")
        if os.path.lexists(sidecar):
            _check_text_file(sidecar, "caption sidecar")
            with open(sidecar, encoding="utf-8") as f:
                result[rel] = f.read().strip()
    stems = {os.path.splitext(rel)[0] for rel in files}
    orphans.extend(rel for rel in dataset_files(hdr_dir, lambda name: name.endswith(".txt"))
                   if os.path.splitext(rel)[0] not in stems)
    if captions is None and os.path.lexists(os.path.join(hdr_dir, "captions.jsonl")):
        captions = os.path.join(hdr_dir, "captions.jsonl")
    if captions is not None:
        if not os.path.lexists(captions):
            raise PrepareError(f"--captions {captions!r} does not exist")
        _check_text_file(captions, "--captions")
        seen: dict[str, int] = {}
        with open(captions, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    rel, text = entry["file"], entry["caption"]
                except (ValueError, KeyError, TypeError) as e:
                    raise PrepareError(f"{captions}:{number}: expected a JSON object "
                                       f'{{"file": relative path, "caption": text}} ({e!r})') from None
                if not isinstance(rel, str) or not isinstance(text, str):
                    raise PrepareError(f"{captions}:{number}: 'file' and 'caption' must be strings")
                rel = posixpath.normpath(rel.replace("\\", "/"))
                if rel in seen:
                    raise PrepareError(f"{captions}:{number}: a second caption for {rel!r} (first on line "
                                       f"{seen[rel]}); keep one")
                seen[rel] = number
                if rel in known:
                    result[rel] = text.strip()
                else:
                    orphans.append(rel)
    return result, sorted(orphans)


def _check_text_file(path: str, what: str) -> None:
    """A caption file must be a regular file, checked before it is opened (a FIFO would block)."""
    try:
        check_readable(path)
    except (FileAccessError, OSError) as e:
        raise PrepareError(f"{what}: {e}") from None


def split_sources(files: list[str], val_fraction: float, seed: int) -> dict[str, str]:
    """{relpath: "train" | "val"}: ``round(val_fraction * n)`` sources (at least 1 when n >= 2 and
    val_fraction > 0, at most n - 1) chosen by a seeded hash of their paths, so a source's split
    only depends on the seed, its path and the number of sources."""
    n = len(files)
    n_val = 0
    if n >= 2 and val_fraction > 0:
        n_val = min(n - 1, max(1, round(val_fraction * n)))
    order = sorted(files, key=lambda rel: hashlib.sha256(f"{seed}:{rel}".encode()).hexdigest())
    val = set(order[:n_val])
    return {rel: "val" if rel in val else "train" for rel in files}


def source_rng(seed: int, rel: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(rel.encode("utf-8"))])


# ------------------------------------------------------------------------------------------ model
def read_model_arg(model: str) -> ModelFolder:
    """--model read once (``lediff_train.models.read_model``), its errors as PrepareError."""
    try:
        return read_model(model)
    except ModelError as e:
        raise PrepareError(f"--model {model!r}: {e}") from e


def load_encoder(model: ModelFolder, device=None) -> AutoencoderKL:
    """MODEL's VAE (``ModelFolder.load_vae``: strict) in float32, eval, frozen, on ``device``.
    Works for official LEDiff folders and plain SD folders (no merge_model.pth needed)."""
    try:
        vae = model.load_vae()
    except (ModelError, WeightError) as e:
        raise PrepareError(f"--model {model.path!r}: {e}") from e
    if vae.config["in_channels"] != 3:
        raise PrepareError(f"--model {model.path!r}: its VAE takes {vae.config['in_channels']} input channels, "
                           "not RGB; pass an SD-family VAE")
    return vae.to(device=device, dtype=torch.float32).eval().requires_grad_(False)


def default_size(model: ModelFolder) -> int:
    """The crop size for MODEL's backbone (``DEFAULT_SIZES``)."""
    return DEFAULT_SIZES[model.backbone]


@torch.no_grad()
def encode_brackets(vae: AutoencoderKL, images: list[np.ndarray], batch_size: int = 4) -> torch.Tensor:
    """Scaled latents [N, C, h, w] float32 (CPU) of uint8 [H, W, 3] images: x / 127.5 - 1, posterior
    mode, x scaling_factor."""
    out = []
    for i in range(0, len(images), batch_size):
        batch = np.stack(images[i:i + batch_size]).astype(np.float32)
        x = torch.from_numpy(batch).permute(0, 3, 1, 2) / 127.5 - 1.0
        out.append((vae.encode(x) * vae.scaling_factor).float().cpu())
    return torch.cat(out)


def default_device():
    from accelerate import PartialState

    state = PartialState()
    if state.num_processes > 1:
        raise PrepareError("prepare runs in one process: start it with plain `python -m lediff_train prepare`, "
                           "not accelerate launch / torchrun")
    return state.device


# ----------------------------------------------------------------------------------------- shards
def shard_name(index: int) -> str:
    return f"{index:05d}.safetensors"


def read_shard_meta(path: str) -> dict:
    """The JSON metadata of a shard; raises when the file is missing or damaged, or is not a regular
    file (a FIFO is refused by name, not opened)."""
    check_readable(path)
    with safe_open(path, framework="pt") as f:
        meta = json.loads((f.metadata() or {})[META_KEY])
        views = f.get_slice("c0").get_shape()[0]
    if views != len(meta["views"]):
        raise ValueError(f"{path}: {views} latents but {len(meta['views'])} views in its metadata")
    return meta


def process_source(path: str, rel: str, *, size: int, views: int, seed: int, ev_step: float | None,
                   jpeg: int | None) -> tuple[list[dict], dict]:
    """(views [{"hdr": float32 view, "brackets": [3 uint8], "info": dict}], skipped counts) of one
    source. Raises on read errors (the caller lists the file)."""
    image = read_linear_image(path).rgb
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    height, width = image.shape[:2]
    if not br.is_panorama(height, width) and (height < size or width < size):
        skipped["too_small"] = 1
        return [], skipped
    rng = source_rng(seed, rel)
    kept = []
    for index in range(views):
        hdr, geometry = br.random_view(image, size, rng)
        problem = br.view_problem(hdr, ev_step)
        if problem is not None:
            skipped[problem] += 1
            continue
        images, info = br.simulate_brackets(hdr, rng, ev_step=ev_step, jpeg=jpeg)
        kept.append({"hdr": hdr, "brackets": images, "info": {**info, "index": index, "view": geometry}})
    return kept, skipped


def shard_tensors(vae: AutoencoderKL, kept: list[dict], batch_size: int) -> dict[str, torch.Tensor]:
    v = len(kept)
    images = [view["brackets"][k] for k in range(3) for view in kept]  # all C-, then all C0, all C+
    latents = encode_brackets(vae, images, batch_size)
    tensors = {name: latents[k * v:(k + 1) * v].contiguous() for k, name in enumerate(("c_minus", "c0", "c_plus"))}
    logs = []
    for view in kept:
        # ln is undefined below 0: tiny negative values (lossy EXR codecs) count as black
        scaled = np.maximum(view["hdr"].astype(np.float64), 0.0) * (2.0 ** view["info"]["exposures"][1])
        logs.append(np.log(scaled + LOG_EPS).transpose(2, 0, 1))
    tensors["log_hdr"] = torch.from_numpy(np.ascontiguousarray(np.stack(logs), dtype=np.float16))
    return tensors


# --------------------------------------------------------------------------------------- manifest
def _write_manifest(out: str, manifest: dict) -> None:
    replace_text_file(os.path.join(out, MANIFEST), json.dumps(manifest, indent=2))


def _parse_ev_step(ev_step) -> float | None:
    if ev_step is None or (isinstance(ev_step, str) and ev_step.strip().lower() == "auto"):
        return None
    try:
        value = float(ev_step)
    except (TypeError, ValueError):
        raise PrepareError(f"--ev-step must be 'auto' or a positive number of stops, got {ev_step!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise PrepareError(f"--ev-step must be 'auto' or a positive number of stops, got {ev_step!r}")
    return value


def _check_args(size, views, jpeg, val_fraction, batch_size) -> None:
    if not isinstance(size, int) or size < 8 or size % 8:
        raise PrepareError(f"--size must be a positive multiple of 8 (the VAE's downscale), got {size!r}")
    if not isinstance(views, int) or views < 1:
        raise PrepareError(f"--views must be at least 1, got {views!r}")
    if jpeg is not None and not (isinstance(jpeg, int) and 1 <= jpeg <= 100):
        raise PrepareError(f"--jpeg must be a JPEG quality 1..100 (or left out for lossless), got {jpeg!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise PrepareError(f"--val-fraction must be in [0, 1), got {val_fraction!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise PrepareError(f"batch size must be at least 1, got {batch_size!r}")


def _check_out(out: str, args: dict, resume: bool) -> None:
    """OUT must be new, or (``resume``) a prepare output of the same ``args``; PrepareError otherwise."""
    # (a temporary file a killed prepare left does not make OUT a prepare output)
    existing = os.path.isdir(out) and any(not is_temporary(n) for n in os.listdir(out))
    if os.path.exists(out) and not os.path.isdir(out):
        raise PrepareError(f"--out {out!r} exists and is not a folder; choose a new folder name")
    if existing and not resume:
        raise PrepareError(f"--out {out!r} already exists and is not empty; choose a new folder, or pass "
                           "--resume to complete an interrupted prepare with the same arguments")
    if existing:
        manifest_path = os.path.join(out, MANIFEST)
        if not os.path.lexists(manifest_path):
            raise PrepareError(f"cannot resume {out!r}: it has no {MANIFEST}, so it is not a prepare output; "
                               "choose a new --out folder")
        try:
            check_readable(manifest_path)  # a FIFO is refused by name, not opened
            with open(manifest_path, encoding="utf-8") as f:
                recorded = json.load(f)["args"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PrepareError(f"cannot resume {out!r}: {manifest_path} is unreadable ({e}); start a new --out") from e
        changed = sorted(k for k in set(args) | set(recorded) if recorded.get(k) != args.get(k))
        if changed:
            detail = ", ".join(f"{k}: {recorded.get(k)!r} -> {args.get(k)!r}" for k in changed)
            raise PrepareError(f"cannot resume {out!r} with different arguments ({detail}); rerun with the "
                               "recorded arguments, or prepare into a new --out folder")


# -------------------------------------------------------------------------------------------- run
def prepare(hdr_dir: str, model: str, out: str, size: int | None = None, views: int = 4, seed: int = 0,
            ev_step="auto", jpeg: int | None = None, val_fraction: float = 0.05, captions: str | None = None,
            device=None, batch_size: int = 4, resume: bool = False, log=print) -> dict:
    """Build (or with ``resume``, complete) the DATA folder ``out``; returns the manifest written
    to ``out/prepare.json``. ``size`` None: MODEL's backbone's (``default_size``)."""
    step = _parse_ev_step(ev_step)
    hdr_dir, out = os.path.abspath(hdr_dir), os.path.abspath(out)
    model = read_model_arg(model)
    if size is None:
        size = default_size(model)
    _check_args(size, views, jpeg, val_fraction, batch_size)
    captions = None if captions is None else os.path.abspath(captions)
    args = {"hdr": hdr_dir, "model": model.path, "size": size, "views": views, "seed": int(seed),
            "ev_step": "auto" if step is None else step, "jpeg": jpeg, "val_fraction": float(val_fraction),
            "captions": captions, "batch_size": batch_size}

    _check_out(out, args, resume)

    files = list_hdr_files(hdr_dir)
    if not files:
        raise PrepareError(f"no HDR files ({', '.join(EXTENSIONS)}) under {hdr_dir!r}")
    texts, orphans = read_captions(hdr_dir, files, captions)
    if orphans:
        log(f"warning: {len(orphans)} caption(s) name images that are not among the HDR files, ignored: "
            + ", ".join(orphans[:10]) + (" ..." if len(orphans) > 10 else ""))
    splits = split_sources(files, val_fraction, seed)
    device = default_device() if device is None else torch.device(device)
    vae = load_encoder(model, device)

    manifest = {"format": FORMAT, "args": args,
                "model": {"path": model.path, "scaling_factor": vae.scaling_factor,
                          "latent_channels": vae.latent_channels, "downscale": vae.downscale_factor},
                "sources": len(files), "complete": False}
    # the manifest before anything else in OUT: a prepare killed at any instant leaves OUT empty or
    # resumable (a folder holding only shards/ would be refused as "not a prepare output")
    os.makedirs(out, exist_ok=True)
    remove_temporaries(out)
    _write_manifest(out, manifest)
    shard_dir = os.path.join(out, SHARDS)
    os.makedirs(shard_dir, exist_ok=True)
    remove_temporaries(shard_dir)  # shards a killed prepare was writing

    skipped = dict.fromkeys(SKIP_REASONS, 0)
    unreadable, shards = [], []
    for index, rel in enumerate(files):
        name = shard_name(index)
        shard_path = os.path.join(shard_dir, name)
        if os.path.lexists(shard_path):
            try:
                meta = read_shard_meta(shard_path)
            except Exception as e:  # a damaged shard is redone
                log(f"[{index + 1}/{len(files)}] {rel}: shard {name} is unreadable ({e}); redoing it")
                os.unlink(shard_path)
            else:
                if meta.get("source") != rel:
                    raise PrepareError(
                        f"cannot resume {out!r}: shard {name} holds {meta.get('source')!r}, but source {index} is "
                        f"now {rel!r}; the files under --hdr changed since the first run. Restore them, or "
                        "prepare into a new --out folder")
                for k, v in meta.get("skipped", {}).items():
                    skipped[k] = skipped.get(k, 0) + v
                shards.append({"name": name, "source": rel, "split": meta["split"], "views": len(meta["views"])})
                log(f"[{index + 1}/{len(files)}] {rel}: shard {name} already written")
                continue
        try:
            kept, counts = process_source(os.path.join(hdr_dir, rel), rel, size=size, views=views, seed=seed,
                                          ev_step=step, jpeg=jpeg)
        except Exception as e:  # any reader failure: list the file and carry on
            reason = f"{type(e).__name__}: {e}"
            unreadable.append({"file": rel, "reason": reason})
            skipped["unreadable"] += 1
            log(f"[{index + 1}/{len(files)}] {rel}: unreadable, skipped ({reason})")
            continue
        for k, v in counts.items():
            skipped[k] += v
        if not kept:
            log(f"[{index + 1}/{len(files)}] {rel}: no usable view ({_counts(counts)}), no shard")
            continue
        meta = {"source": rel, "caption": texts.get(rel, ""), "split": splits[rel], "size": size,
                "skipped": counts, "views": [view["info"] for view in kept]}
        tensors = shard_tensors(vae, kept, batch_size)
        write_new_file(shard_path, lambda tmp, t=tensors, m=meta: save_file(t, tmp, metadata={META_KEY: json.dumps(m)}))
        shards.append({"name": name, "source": rel, "split": splits[rel], "views": len(kept)})
        log(f"[{index + 1}/{len(files)}] {rel}: {len(kept)} view(s) -> {name}"
            + (f" (skipped {_counts(counts)})" if any(counts.values()) else ""))

    samples = {split: sum(s["views"] for s in shards if s["split"] == split) for split in ("train", "val")}
    manifest.update({"samples": samples, "skipped": skipped, "unreadable": unreadable,
                     "captions_without_image": orphans, "shards": shards, "complete": True})
    _write_manifest(out, manifest)
    log(f"prepared {out}: {samples['train']} train / {samples['val']} val samples from {len(shards)} of "
        f"{len(files)} sources; skipped {_counts(skipped) or 'nothing'}")
    return manifest


def _counts(counts: dict) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v)


# -------------------------------------------------------------------------------------------- CLI
def _ev_step_arg(text: str):
    try:
        return _parse_ev_step(text)
    except PrepareError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``prepare`` subcommand's flags."""
    parser.add_argument("--hdr", required=True, help="folder of HDR images (.exr/.hdr/.pic, searched recursively)")
    parser.add_argument("--model", required=True, help="MODEL whose VAE encodes the brackets (official LEDiff "
                        "download, SD1.5 / SDXL diffusers folder, or single-file SD1.5 / SDXL checkpoint .safetensors)")
    parser.add_argument("--out", required=True, help="new DATA folder to write (refused if it exists, unless --resume)")
    parser.add_argument("--size", type=int, default=None, help="side of the square views/crops in pixels (default: "
                        f"MODEL's backbone's resolution, {_SIZES_TEXT})")
    parser.add_argument("--views", type=int, default=4, help="random views per source image (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--ev-step", type=_ev_step_arg, default=None, metavar="auto|STOPS",
                        help="'auto' (default): the HDR-FLIP rule's exposures per view; a number: brackets that "
                        "many stops either side of the rule's middle exposure")
    parser.add_argument("--jpeg", type=int, default=None, metavar="Q", help="JPEG-compress the brackets at quality Q")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="share of source images held out for "
                        "validation (default 0.05; at least one when there are two or more)")
    parser.add_argument("--captions", default=None, metavar="FILE.jsonl", help='captions, one JSON line '
                        '{"file": relative path, "caption": text} each (default: HDR/captions.jsonl when present; '
                        "<image>.txt sidecars are read too)")
    parser.add_argument("--batch-size", type=int, default=4, help="brackets encoded per VAE call (default 4)")
    parser.add_argument("--device", default=None, help="torch device for the encoder (default: accelerate's choice)")
    parser.add_argument("--resume", action="store_true", help="complete an interrupted prepare of --out")


def run(args: argparse.Namespace) -> dict:
    """Run ``prepare`` from parsed CLI arguments; returns the manifest."""
    return prepare(args.hdr, args.model, args.out, size=args.size, views=args.views, seed=args.seed,
                   ev_step="auto" if args.ev_step is None else args.ev_step, jpeg=args.jpeg,
                   val_fraction=args.val_fraction, captions=args.captions, device=args.device,
                   batch_size=args.batch_size, resume=args.resume)
