"""Finding and loading LEDiff weights in the official layout, strictly.

An official download, as extracted, is a diffusers folder::

    <name>/unet/config.json + diffusion_pytorch_model.safetensors (or .bin)   8-channel bracket denoiser
    <name>/vae/config.json  + diffusion_pytorch_model.safetensors (or .bin)   SD encoder + HDR decoder
    <name>/vae/merge_model.pth                                               exposure fusion (torch state dict)
    (model_index.json, scheduler/, text_encoder/, tokenizer/ may or may not be there; unused)

``python -m lediff_core.model.convert`` turns such a folder into single ``.safetensors`` files whose
metadata carries the config (see ``SINGLE_FILE_KINDS``); both forms load here. Pickled files load
with ``weights_only=True``: a file that would execute code is refused, never run.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from .. import LEDiffError
from ..io.access import FileAccessError, check_readable
from .backbones import SDXL

WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
FUSION_NAME = "merge_model.pth"
FORMAT_KEY = "lediff_format"
KIND_KEY = "lediff_kind"
CONFIG_KEY = "lediff_config"
SINGLE_FILE_KINDS = ("denoiser", "hdr_vae")
FUSION_PREFIX = "fusion."  # fusion weights inside a single-file HDR VAE


class WeightError(LEDiffError, ValueError):
    """Weights that cannot be loaded as asked; the message names the file and the fix."""


# The safetensors library's own ceiling on a header (it refuses larger ones): a header is a JSON table
# of names, dtypes, shapes and offsets, a few hundred kilobytes for the largest checkpoints.
MAX_HEADER_BYTES = 100_000_000


def read_header(path: str) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """({tensor name: shape}, metadata) from a .safetensors header alone (8-byte length + JSON; no
    tensor is read), refusing by name a header that lies about the file.

    The length is checked here against the file's size before anything is read. The safetensors
    library (tests/core/model/test_config_fit.py checks it of the installed version) then refuses, before
    allocating, offsets outside the file, tensors whose dtype x shape is not their byte span, gaps,
    overlaps and trailing bytes, and shapes whose size overflows: its message is kept, with the file."""
    fix = "the file is truncated, damaged or not a safetensors file: re-download it"
    try:
        size = check_readable(path).st_size  # a FIFO would hang the read
        with open(path, "rb") as f:
            head = f.read(8)
    except (OSError, FileAccessError) as e:
        raise WeightError(f"cannot read {path!r} ({e})") from e
    if len(head) < 8:
        raise WeightError(f"{path!r} is {size} bytes, shorter than a safetensors header's length field: {fix}")
    length = int.from_bytes(head, "little")
    if length > size - 8 or length > MAX_HEADER_BYTES:
        limit = "the file's" if length > size - 8 else "the safetensors limit of"
        raise WeightError(f"{path!r} claims a {length}-byte header, beyond {limit} "
                          f"{min(size - 8, MAX_HEADER_BYTES)} bytes: {fix}")
    try:
        with safe_open(path, framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}, f.metadata() or {}
    except Exception as e:
        raise WeightError(f"{path!r} has an invalid safetensors header ({e}): {fix}") from e


# What torch.save wrote before PyTorch 1.6 (``_use_new_zipfile_serialization=False`` still writes it):
# a pickle (protocol 2) of the magic number 0x1950a86a20f9469cfc6c, then the object and its storages.
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def is_legacy_torch_file(path: str) -> bool:
    """Whether ``path`` starts like torch.save's legacy (pre-1.6, non-zip) format."""
    with open(path, "rb") as f:
        return f.read(len(LEGACY_TORCH_MAGIC)) == LEGACY_TORCH_MAGIC


def check_torch_file(path: str) -> None:
    """Refuse, by name and before ``torch.load``, a torch file whose loading is not bounded by the
    file's size: anything but a torch.save zip (PyTorch 1.6+), i.e. the legacy format (its reader
    allocates each storage at the size the pickle claims) or no torch file at all, and a zip that
    unpacks to more than its own size (torch.save stores its entries uncompressed; PyTorch's reader
    would inflate deflated ones, a 200 KB file to 200 MB)."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        unpacked = None
    if unpacked is None:
        legacy = is_legacy_torch_file(path)
        what = ("is a legacy PyTorch file (the format torch.save wrote before PyTorch 1.6)" if legacy
                else "is not a PyTorch file (neither a torch.save zip nor the legacy format)")
        resave = (f"python -c \"import torch; torch.save(torch.load({path!r}, weights_only=True), 'resaved.pth')\"")
        raise WeightError(
            f"{path!r} {what}: its loader allocates what the file claims, not what it holds, so it is refused "
            f"before loading. Fix: re-save trusted weights with a current torch.save ({resave}, then put "
            "resaved.pth in its place) or convert them to .safetensors; or re-download the file"
            + ("" if legacy else "; a damaged or truncated download reads like this too"))
    size = os.path.getsize(path)
    if unpacked > size:
        raise WeightError(f"{path!r} unpacks to {unpacked} bytes from a {size}-byte file (torch.save stores its "
                          "entries uncompressed): a compressed archive is refused before loading; re-download the "
                          "file, or convert trusted weights to .safetensors")


def _check_views(sd: dict[str, torch.Tensor], path: str) -> None:
    """No tensor may claim more elements than its stored bytes hold (a stride-0 "expanded" tensor
    from a 1 KB file can claim 10^10 elements, which loading it into a model would allocate)."""
    for key, t in sd.items():
        if t.numel() * t.element_size() > t.untyped_storage().nbytes():
            raise WeightError(f"{path!r}: tensor {key!r} claims {list(t.shape)} ({t.numel() * t.element_size()} "
                              f"bytes) over {t.untyped_storage().nbytes()} stored bytes (a broadcast view): "
                              "re-download the file")


def load_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} dict from .safetensors, or from .bin/.pth/.pt with weights_only=True,
    holding no more than the file's bytes (``read_header``, ``check_torch_file``, ``_check_views``)."""
    try:
        check_readable(path)
    except FileNotFoundError:
        raise WeightError(f"weight file {path!r} does not exist") from None
    except FileAccessError as e:
        raise WeightError(str(e)) from None
    if path.endswith(".safetensors"):
        read_header(path)
        try:
            return load_file(path, device="cpu")
        except Exception as e:
            raise WeightError(f"cannot read {path!r} as safetensors ({e}); re-download the file") from e
    check_torch_file(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightError(
            f"refusing to load {path!r}: it is not a plain tensor file and loading it would run code "
            f"from the pickle ({str(e).splitlines()[0]}). Use the official download, or convert trusted "
            "weights to .safetensors"
        ) from e
    except Exception as e:
        raise WeightError(f"cannot read {path!r} as a torch weight file ({e}); re-download it") from e
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightError(f"{path!r} does not hold a flat state dict of tensors")
    _check_views(sd, path)
    return sd


def read_json(path: str) -> dict:
    try:
        check_readable(path)  # a FIFO would hang the read
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise WeightError(f"missing {path!r}: the folder is incomplete; re-extract the download") from None
    except (OSError, ValueError) as e:
        raise WeightError(f"cannot read {path!r} as JSON ({e})") from e
    if not isinstance(data, dict):
        raise WeightError(f"{path!r} is not a JSON object")
    return data


def _weights_in(folder: str) -> str:
    for name in WEIGHT_NAMES:
        path = os.path.join(folder, name)
        if os.path.exists(path):  # not a regular file (a FIFO...): refused by name when loaded
            return path
    raise WeightError(f"{folder!r} has no {' or '.join(WEIGHT_NAMES)}; re-extract the download")


LAYOUT = ("LEDiff's models are folders with unet/ and vae/ (an official download, put in models/lediff/ as "
          "extracted) or single files made from such a folder by `python -m lediff_core.model.convert`")


def _downloads_in(root: str, depth: int = 2) -> list[str]:
    """Folders below ``root`` (relative, at most ``depth`` levels down) that look like an official
    download: they hold both unet/ and vae/."""
    found = []
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        rel = os.path.relpath(dirpath, root)
        level = 0 if rel == "." else rel.count(os.sep) + 1
        if level and {"unet", "vae"} <= set(dirnames):
            found.append(rel.replace(os.sep, "/"))
            dirnames[:] = []
        elif level >= depth:
            dirnames[:] = []
    return sorted(found)


def _subfolder(root: str, name: str) -> str:
    path = os.path.join(root, name)
    if os.path.isdir(path):
        return path
    folder = os.path.basename(os.path.normpath(root))
    downloads = _downloads_in(root)
    if downloads:
        inside = listing([f"{folder}/{d}" for d in downloads])
        raise WeightError(f"{folder!r} holds LEDiff models instead of being one (no {name}/ folder of its own): "
                          f"pick {inside} in the loader's list")
    files = sorted(f for f in os.listdir(root) if f.endswith(".safetensors"))
    hint = f"; it holds {listing(files)}: pick the file to see what it is" if files else ""
    raise WeightError(f"{folder!r} is not a LEDiff model: it has no {name}/ folder ({root}). {LAYOUT}{hint}")


# Patterns in the tensor names of the files people drop into models/lediff/ by mistake, read from
# the safetensors header alone (no tensor is loaded): what each file is and where it belongs.
LORA_MARKS = ("lora_up", "lora_down", "lora_A", "lora_B", "lora.up", "lora.down", "hada_w", "lokr_w")
CHECKPOINT_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "conditioner.")
UNET_FIRST_CONV = ("conv_in.weight", "input_blocks.0.0.weight")  # diffusers, original (ldm) layout
TEXT_ENCODER_PREFIXES = ("text_model.", "transformer.text_model.", "encoder.block.", "shared.weight")


def _input_channels(f, key: str) -> int | None:
    shape = f.get_slice(key).get_shape()
    return shape[1] if len(shape) == 4 else None


def identify_foreign_file(f, name: str) -> str:
    """What a .safetensors file without LEDiff metadata holds (``f``: an open ``safe_open`` handle),
    as an error message that starts with the problem and names where the file belongs."""
    keys = list(f.keys())
    if any(mark in k for k in keys for mark in LORA_MARKS):
        return (f"{name!r} is a LoRA, not a LEDiff model: it belongs in models/loras/ (Load LoRA applies it "
                f"to a MODEL). {LAYOUT}")
    if any(k.startswith(CHECKPOINT_PREFIXES) for k in keys):
        family = f" ({SDXL.label})" if any(k.startswith("conditioner.embedders.1.") for k in keys) else ""
        return (f"{name!r} is a Stable Diffusion checkpoint{family}, not a LEDiff model: it belongs in "
                f"models/checkpoints/ (Load Checkpoint). {LAYOUT}")
    first = next((k for k in UNET_FIRST_CONV if k in keys), None)
    if first is not None and any(k.startswith(("time_embedding.", "time_embed.")) for k in keys):
        if _input_channels(f, first) == 8:
            return (f"{name!r} is an 8-channel UNet alone, like the weights in a LEDiff download's unet/ folder: "
                    "the loaders need the whole download folder (unet/ with its config.json, and vae/ with "
                    "merge_model.pth): put that folder in models/lediff/ and pick it")
        return (f"{name!r} is a diffusion model (UNet) alone, not a LEDiff model: it belongs in "
                f"models/diffusion_models/ (Load Diffusion Model). {LAYOUT}")
    if "encoder.conv_in.weight" in keys and "decoder.conv_in.weight" in keys:
        return (f"{name!r} is a VAE alone, not a LEDiff model: an ordinary VAE belongs in models/vae/ (Load VAE); "
                "if it is the weights in a LEDiff download's vae/ folder, the loaders need the whole download "
                "folder (vae/ with its config.json and merge_model.pth, and unet/): put that folder in "
                "models/lediff/ and pick it")
    if any(k.startswith(TEXT_ENCODER_PREFIXES) for k in keys):
        return (f"{name!r} is a text encoder, not a LEDiff model: it belongs in models/text_encoders/ "
                f"(Load CLIP). {LAYOUT}")
    return (f"{name!r} is not a LEDiff model: it has no LEDiff metadata ({KIND_KEY}/{CONFIG_KEY}) and its "
            f"{len(keys)} tensors ({listing(keys, 3)}) are no checkpoint, UNet, VAE, text encoder or LoRA "
            f"layout known here. {LAYOUT}")


def read_single_file_header(path: str) -> tuple[str, dict]:
    """(kind, config) from the metadata of a converted single-file .safetensors; any other file is
    an error saying what it is and where it belongs (``identify_foreign_file``)."""
    _, meta = read_header(path)
    kind = meta.get(KIND_KEY)
    if kind not in SINGLE_FILE_KINDS or CONFIG_KEY not in meta:
        try:
            with safe_open(path, framework="pt") as f:
                message = identify_foreign_file(f, os.path.basename(path))
        except Exception as e:
            raise WeightError(f"cannot read {path!r} as safetensors ({e})") from e
        raise WeightError(message)
    try:
        config = json.loads(meta[CONFIG_KEY])
    except ValueError as e:
        raise WeightError(f"{config_name(path, kind)} is not JSON ({e}): re-convert the model") from e
    if not isinstance(config, dict):
        raise WeightError(f"{config_name(path, kind)} is not a JSON object: re-convert the model")
    return kind, config


def config_name(path: str, part: str) -> str:
    """Where the config of a model's ``part`` (unet/vae, or a single file's kind) is, for messages:
    the folder's ``<part>/config.json``, or the single file's metadata."""
    if os.path.isfile(path):
        return f"the config in {path!r} (its {CONFIG_KEY} metadata, from the download's config.json)"
    return repr(os.path.join(path, part, "config.json"))


def weights_name(path: str, part: str) -> str:
    """Where the weights of a model's ``part`` are, for messages (``config_name``'s counterpart)."""
    if os.path.isfile(path):
        return repr(path)
    folder = os.path.join(path, part)
    return repr(next((os.path.join(folder, n) for n in WEIGHT_NAMES if os.path.isfile(os.path.join(folder, n))),
                     folder))


def _single_file(path: str, want: str) -> tuple[dict, dict]:
    kind, config = read_single_file_header(path)
    if kind != want:
        raise WeightError(f"{path!r} holds a LEDiff {kind}, not a {want}: pick it in the other loader")
    return config, load_state_dict(path)


def load_denoiser(path: str) -> tuple[dict, dict]:
    """(unet config.json, diffusers UNet state dict) from an official folder or a single file."""
    if os.path.isfile(path):
        return _single_file(path, "denoiser")
    unet = _subfolder(path, "unet")
    return read_json(os.path.join(unet, "config.json")), load_state_dict(_weights_in(unet))


def load_hdr_vae(path: str) -> tuple[dict, dict, dict]:
    """(vae config.json, diffusers VAE state dict, fusion state dict) from a folder or single file."""
    if os.path.isfile(path):
        config, sd = _single_file(path, "hdr_vae")
        fusion = {k[len(FUSION_PREFIX):]: sd.pop(k) for k in list(sd) if k.startswith(FUSION_PREFIX)}
        return config, sd, fusion
    vae = _subfolder(path, "vae")
    fusion_path = os.path.join(vae, FUSION_NAME)
    if not os.path.isfile(fusion_path):
        raise WeightError(f"{vae!r} has no {FUSION_NAME} (the exposure fusion weights); re-extract the download")
    config = read_json(os.path.join(vae, "config.json"))
    return config, load_state_dict(_weights_in(vae)), load_state_dict(fusion_path)


def listing(items: list[str], shown: int = 10) -> str:
    """The first ``shown`` items, and how many more there are."""
    return ", ".join(items[:shown]) + (f", ... ({len(items) - shown} more)" if len(items) > shown else "")


def check_keys(expected, got, what: str, fix: str = "", error: type[ValueError] = WeightError) -> None:
    """Raise ``error`` listing missing and unexpected keys unless the two key sets are equal (in the
    order the callers give them: a model's own order reads best)."""
    expected, got = list(expected), list(got)
    expected_set, got_set = set(expected), set(got)
    missing = [k for k in expected if k not in got_set]
    unexpected = [k for k in got if k not in expected_set]
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {listing(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {listing(unexpected)}")
    raise error(f"{what}: {'; '.join(parts)}. {fix}".strip())


def list_models(base_folders: list[str]) -> list[str]:
    """Names (relative paths) of candidate models under the given base folders: every top-level
    folder, deeper folders holding unet/ or vae/, and every .safetensors file. Links are followed (a
    download kept on another disk, as ComfyUI's own model lists follow them); hidden names are not
    listed (a converter's or an export's unfinished ``.NAME.<hex>.tmp`` staging folder or file)."""
    names = set()
    for base in base_folders:
        if not os.path.isdir(base):
            continue
        for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, base)
            depth = 0 if rel == "." else rel.count(os.sep) + 1
            if depth == 1 or (depth > 1 and ("unet" in dirnames or "vae" in dirnames)):
                names.add(rel.replace(os.sep, "/"))
            if "unet" in dirnames or "vae" in dirnames or depth >= 3:
                dirnames[:] = []  # don't list the model's own subfolders
            for f in filenames:
                if (f.endswith(".safetensors") and not f.startswith(".")
                        and not (set(rel.split(os.sep)) & {"unet", "vae"})):
                    names.add(os.path.join(rel, f).replace(os.sep, "/").removeprefix("./"))
    return sorted(names)


def resolve_model(base_folders: list[str], name: str) -> str:
    """Path of a model listed by ``list_models``: ``name`` joined to the first base folder that has
    it. ComfyUI's rule for model folders (``folder_paths.get_full_path``): the *name* must stay inside
    the folder (no absolute path, no ``..``), while links placed in the folder are followed wherever
    they lead (a download kept on another disk is the administrator's choice). A file must be a
    regular file (a FIFO under a model's name is refused by name, before anything opens it)."""
    parts = name.replace("\\", "/").split("/") if isinstance(name, str) else [".."]
    if not name or "\0" in name or os.path.isabs(name) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise WeightError(f"model name {name!r} must be a name from the loader's list, relative to models/lediff/ "
                          "(no '..', no absolute path)")
    parts = [p for p in parts if p not in ("", ".")]
    if any(p.startswith(".") for p in parts):
        raise WeightError(f"model {name!r} is hidden (a '.' name: an unfinished conversion or export): wait "
                          "for it to finish, or pick a model from the loader's list")
    rel = os.path.join(*parts or ["."])
    for base in base_folders:
        path = os.path.join(os.path.abspath(base), rel)
        if os.path.exists(path):
            if not os.path.isdir(path):
                try:
                    check_readable(path, name=name)
                except FileAccessError as e:
                    raise WeightError(f"model {e}") from None
            return path
        if os.path.islink(path):
            raise WeightError(f"model {name!r} in {base!r} is a symbolic link to something that does not exist "
                              "(a disk not mounted?): mount it or fix the link")
    raise WeightError(f"no model {name!r} in {base_folders}; put the download in models/lediff/")
