"""Export: a decoder RUN and a denoiser RUN -> one model folder in the official LEDiff download layout.

What the nodes (Load HDR VAE, Load Bracket Denoiser) and ``lediff_core.model.weights`` read::

    OUT/unet/config.json + diffusion_pytorch_model.safetensors   the trained bracket denoiser (8 in-channels)
    OUT/vae/config.json  + diffusion_pytorch_model.safetensors   MODEL's frozen SD encoder + the trained decoder
    OUT/vae/merge_model.pth                                      the trained fusion (plain tensors: weights_only)
    OUT/scheduler/scheduler_config.json                          DDIM, as the official release ships
    OUT/model_index.json, text_encoder/, tokenizer/              (the denoiser MODEL's text parts, when it has them;
        SDXL: also text_encoder_2/, tokenizer_2/; from a single-file checkpoint: its encoders converted, saved by
        transformers, with the run's --tokenizer)
    OUT/lediff_train.json                                        provenance: both runs' configs, steps, data

SDXL denoisers (``lediff_core.model.backbones.identify`` of the trained UNet's config) export the
same layout: the UNet config keeps SDXL's fields (``addition_embed_type`` "text_time", the
projection and time-embedding widths) and must translate to ComfyUI's SDXL UNet
(``ldm_unet_config``), both text encoders and tokenizers are copied and named in
``model_index.json`` (``StableDiffusionXLPipeline`` when MODEL has none). The scheduler stays DDIM
with MODEL's training schedule, as the official LEDiff downloads ship it, even though SDXL pipelines
ship EulerDiscrete: the schedule (betas) is the same, and the loaders read neither.

The denoiser was trained on latents of one SD encoder; the exported VAE must decode that same
latent space, so both runs' MODELs must hold the same encoder (checked tensor by tensor). OUT is
filled in a hidden staging folder and published in one rename that refuses an existing folder: an
export never overwrites and never leaves a partial folder behind.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil

import torch
from safetensors.torch import save_file

from lediff_core.io.publish import write_new_folder
from lediff_core.model.backbones import LEDIFF_IN_CHANNELS, SD15, SDXL, identify
from lediff_core.model.fit import meta_model
from lediff_core.model.hdr_vae import HDRVAE
from lediff_core.model.unet_config import UNetConfigError, ldm_unet_config
from lediff_core.model.weights import (
    FUSION_NAME,
    WEIGHT_NAMES,
    WeightError,
    check_keys,
    load_state_dict,
    read_header,
    read_json,
)

from . import models
from .engine import TrainingError, latest_checkpoint
from .run_folder import read_trainer_json

__all__ = ["ExportError", "PROVENANCE_NAME", "FORMAT", "export", "add_arguments", "run"]

FORMAT = "lediff-train-export/1"
PROVENANCE_NAME = "lediff_train.json"
WEIGHTS_NAME = WEIGHT_NAMES[0]  # diffusion_pytorch_model.safetensors
DECODER_PREFIXES = ("decoder.", "post_quant_conv.")
ENCODER_PREFIXES = ("encoder.", "quant_conv.")
# vae/config.json fields that describe how diffusers saved the file, not the network or its latents
_VAE_META_FIELDS = {"_diffusers_version", "_name_or_path", "_commit_hash", "sample_size", "force_upcast"}
# SD 1.x's training schedule (what DDPM training used), as a DDIMScheduler: the official release's scheduler
DDIM_SCHEDULER = {
    "_class_name": "DDIMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}
# the fields of a MODEL's scheduler config that the trainer's noise schedule takes (models.noise_schedule)
_SCHEDULE_FIELDS = (*models.SD_SCHEDULE, "trained_betas")
# the text parts per backbone, and their classes for model_index.json (the diffusers half of a backbone)
TEXT_PARTS = models.TEXT_PARTS
TEXT_CLASSES = {"text_encoder": "CLIPTextModel", "tokenizer": "CLIPTokenizer",
                "text_encoder_2": "CLIPTextModelWithProjection", "tokenizer_2": "CLIPTokenizer"}
PIPELINES = {SD15.name: "StableDiffusionPipeline", SDXL.name: "StableDiffusionXLPipeline"}


class ExportError(ValueError):
    """RUN folders that cannot be exported as asked; the message names the problem and the fix."""


def _read_run(run: str, stage: str, option: str) -> dict:
    """RUN's config, newest intact checkpoint and step, checked to be a run of ``stage``."""
    if not os.path.isdir(run):
        raise ExportError(f"{option} {run!r} is not a folder: pass a RUN folder written by "
                          f"`python -m lediff_train {stage}`")
    config = _json(os.path.join(run, "config.json"), f"{option} {run!r} is not a training RUN folder")
    got = config.get("stage")
    if got != stage:
        other = {"decoder": "--decoder", "denoiser": "--denoiser"}.get(got)
        hint = f" (it is a {got} run: pass it as {other}; are the two swapped?)" if other else ""
        raise ExportError(f"{option} {run!r} is not a {stage} run: its config.json has stage={got!r}{hint}")
    if not config.get("model"):
        raise ExportError(f"{run!r}/config.json names no MODEL folder ('model'); the RUN folder is damaged")
    try:  # the newest intact step-N/ folder (not the `latest` pointer alone), its weights/ verified
        checkpoint = latest_checkpoint(run, only=("weights",))
    except TrainingError as e:
        raise ExportError(f"{option} {run!r}: {e}") from e
    step = read_trainer_json(checkpoint)["step"]  # (read and checked by latest_checkpoint)
    try:  # the MODEL the run was trained from, read once
        model = models.read_model(config["model"])
    except models.ModelError as e:
        raise ExportError(f"cannot read MODEL {config['model']!r} the {stage} run was trained from ({e}); restore "
                          "the MODEL at that path") from e
    return {"run": os.path.abspath(run), "config": config, "checkpoint": checkpoint, "step": step, "model": model}


def _json(path: str, what: str) -> dict:
    try:
        return read_json(path)
    except WeightError as e:
        raise ExportError(f"{what}: {e}") from e


def _weights(path: str, what: str) -> dict[str, torch.Tensor]:
    try:
        return load_state_dict(path)
    except WeightError as e:
        raise ExportError(f"{what}: {e}. Resume the run to write a new checkpoint") from e


def _model_vae(model: models.ModelFolder) -> tuple[dict, dict]:
    """(vae config, state dict) of a MODEL: loaded strictly, keys in today's diffusers names (older
    files' attention names renamed, as the trainer's decoder names them), float32."""
    try:
        return model.vae_config, model.load_vae().state_dict()
    except (WeightError, models.ModelError, ValueError) as e:
        raise ExportError(f"cannot read the VAE of MODEL {model.path!r} the run was trained from ({e}); restore the "
                          "MODEL folder at that path") from e


def _encoder(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if k.startswith(ENCODER_PREFIXES)}


def _check_same_vae(decoder: dict, denoiser: dict, dec_config: dict, dec_sd: dict) -> None:
    """The denoiser's latents must be the decoder's latents: same VAE config, same encoder tensors."""
    if os.path.realpath(decoder["model"].path) == os.path.realpath(denoiser["model"].path):
        return
    den_config, den_sd = _model_vae(denoiser["model"])
    # a field written as null in one file and left out of the other means the same (diffusers' default)
    fields = sorted(k for k in set(dec_config) | set(den_config)
                    if k not in _VAE_META_FIELDS and dec_config.get(k) != den_config.get(k))
    if fields:
        raise ExportError(f"the two runs use different VAEs ({', '.join(fields)} differ between "
                          f"{decoder['model'].path!r} and {denoiser['model'].path!r}): the denoiser's latents must be "
                          "the decoder's latents; train both stages from MODELs with the same SD encoder")
    mine, theirs = _encoder(dec_sd), _encoder(den_sd)
    differ = sorted(k for k in set(mine) | set(theirs)
                    if k not in mine or k not in theirs or mine[k].shape != theirs[k].shape
                    or not torch.equal(mine[k].float(), theirs[k].float()))
    if differ:
        raise ExportError(f"the two runs use different VAE encoders ({len(differ)} tensor(s) differ, e.g. "
                          f"{differ[0]}) in {decoder['model'].path!r} and {denoiser['model'].path!r}: the denoiser's "
                          "latents must be the decoder's latents; train both stages from MODELs with the same SD "
                          "encoder")


def _merged_vae(decoder: dict, model_sd: dict) -> dict:
    """MODEL's VAE state dict with the decoder.* and post_quant_conv.* tensors the run trained."""
    path = os.path.join(decoder["checkpoint"], "weights", "vae_decoder.safetensors")
    trained = _weights(path, f"decoder run {decoder['run']!r}")
    own = [k for k in model_sd if k.startswith(DECODER_PREFIXES)]
    check_keys(own, trained.keys(), f"trained decoder {path!r} against MODEL {decoder['model']!r}",
               "The run must hold every decoder.* and post_quant_conv.* tensor of its MODEL's VAE, and only "
               "those: was it trained from this MODEL?", error=ExportError)
    for k in own:
        if trained[k].shape != model_sd[k].shape:
            raise ExportError(f"trained decoder {path!r}: {k} has shape {list(trained[k].shape)}, MODEL "
                              f"{decoder['model']!r} has {list(model_sd[k].shape)}: was it trained from this MODEL?")
    return {k: (trained[k] if k in trained else v).contiguous() for k, v in model_sd.items()}


def _unet(denoiser: dict) -> tuple[dict, str]:
    """(config, weight file) of the trained UNet, checked against what the nodes build."""
    from diffusers import UNet2DConditionModel

    weights = os.path.join(denoiser["checkpoint"], "weights")
    config = _json(os.path.join(weights, "unet_config.json"), f"denoiser run {denoiser['run']!r}")
    if config.get("in_channels") != LEDIFF_IN_CHANNELS:
        raise ExportError(f"denoiser run {denoiser['run']!r}: its UNet has in_channels={config.get('in_channels')!r}, "
                          f"a LEDiff bracket denoiser has {LEDIFF_IN_CHANNELS}; the RUN is not a LEDiff denoiser run")
    try:
        ldm_unet_config(config)
    except UNetConfigError as e:
        raise ExportError(f"denoiser run {denoiser['run']!r}: the nodes cannot build its UNet ({e})") from e
    path = os.path.join(weights, "unet.safetensors")
    try:  # the header alone; then the model on the meta device (shapes only, no memory), bounded
        shapes = {k: list(v) for k, v in read_header(path)[0].items()}
        planned = meta_model(lambda: UNet2DConditionModel.from_config(config), len(shapes),
                             repr(os.path.join(weights, "unet_config.json")), repr(path))
    except WeightError as e:
        raise ExportError(f"denoiser run {denoiser['run']!r}: {e}; resume the run to write a new checkpoint") from e
    expected = {k: list(v.shape) for k, v in planned.state_dict().items()}
    check_keys(expected, shapes, f"trained UNet {path!r} against its unet_config.json", error=ExportError)
    bad = [k for k in expected if expected[k] != shapes[k]]
    if bad:
        raise ExportError(f"trained UNet {path!r}: {bad[0]} has shape {shapes[bad[0]]}, its config gives "
                          f"{expected[bad[0]]}")
    return {"_class_name": "UNet2DConditionModel", **config}, path


def _scheduler(model: models.ModelFolder) -> tuple[dict, str]:
    """DDIM with the schedule the denoiser was trained on (its MODEL's), or SD's when MODEL has none."""
    if model.schedule_from is None:
        return dict(DDIM_SCHEDULER), "standard SD 1.x schedule"
    return {**DDIM_SCHEDULER, **{k: model.schedule[k] for k in _SCHEDULE_FIELDS if k in model.schedule}}, \
        model.schedule_from


def _model_index(model: models.ModelFolder, parts: list[str], family: str = SD15.name) -> dict:
    """The denoiser MODEL's model_index.json (or SD1.5's / SDXL's), naming only the parts OUT holds."""
    path = os.path.join(model.path, "model_index.json")
    own = model.single is None and os.path.lexists(path)  # (a FIFO there is refused by name: read_json)
    index = _json(path, f"MODEL {model.path!r}") if own else {"_class_name": PIPELINES[family]}
    classes = {"unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
               "scheduler": ["diffusers", "DDIMScheduler"]}
    for key, value in list(index.items()):
        if isinstance(value, list) and not key.startswith("_") and key not in parts:
            index[key] = [None, None]  # diffusers' mark of an absent component (e.g. the safety checker)
    index.update(classes)
    for part, cls in TEXT_CLASSES.items():
        if part in parts and (not isinstance(index.get(part), list) or None in index[part]):
            index[part] = ["transformers", cls]
    return index


def export(decoder_run: str, denoiser_run: str, out: str, log=print) -> str:
    """Write OUT (a new folder) from a decoder RUN and a denoiser RUN; returns OUT's absolute path.

    Raises FileExistsError when OUT exists (nothing is touched) and ExportError for RUN folders that
    cannot make a loadable model (swapped runs, different VAEs, damaged or mismatched weights)."""
    out = os.path.abspath(out)
    if os.path.lexists(out):
        raise FileExistsError(f"{out!r} already exists: export never overwrites; pass a new --out folder")
    decoder = _read_run(decoder_run, "decoder", "--decoder")
    denoiser = _read_run(denoiser_run, "denoiser", "--denoiser")
    log(f"export: decoder {decoder['run']} ({os.path.basename(decoder['checkpoint'])}), "
        f"denoiser {denoiser['run']} ({os.path.basename(denoiser['checkpoint'])})")

    vae_config, model_sd = _model_vae(decoder["model"])
    _check_same_vae(decoder, denoiser, vae_config, model_sd)
    vae_sd = _merged_vae(decoder, model_sd)
    del model_sd
    fusion_path = os.path.join(decoder["checkpoint"], "weights", "fusion.safetensors")
    fusion = {k: v.contiguous() for k, v in _weights(fusion_path, f"decoder run {decoder['run']!r}").items()}
    try:  # exactly what Load HDR VAE does with the folder, strictly
        HDRVAE(vae_config, vae_sd, fusion, source=decoder["run"])
    except (ValueError, RuntimeError) as e:
        raise ExportError(f"the exported VAE would not load: {e}") from e
    unet_config, unet_file = _unet(denoiser)
    family = identify(unet_config, "unet").name  # _unet checked that it is one
    scheduler, scheduler_from = _scheduler(denoiser["model"])
    # the text encoders that encoded the denoiser's captions: --text-model's, else its MODEL's
    den_model, text_model = denoiser["model"], denoiser["config"].get("text_model")
    try:
        source, present = (models.read_text_model(os.path.abspath(text_model)) if text_model
                           else (den_model.single or den_model.path, den_model.text_parts))
        text_from = source if isinstance(source, str) else source.path
        text_encoder = None
        if not isinstance(source, str):  # a single-file checkpoint: its encoders converted, --tokenizer's tokenizer
            text_encoder = models.CaptionEncoder(source, family, denoiser["config"].get("tokenizer"))
    except (models.ModelError, OSError, ValueError) as e:
        raise ExportError(f"cannot read the text encoders the denoiser run used ({text_model or den_model.path!r}: "
                          f"{e}); restore that file and the run's --tokenizer folder") from e
    text_parts = [p for p in TEXT_PARTS[family] if p in present]
    try:  # what fill() copies: a FIFO there would block the copy forever
        for part in text_parts if text_encoder is None else ():
            models.check_files(os.path.join(text_from, part), f"the text part {part}/")
    except models.ModelError as e:
        raise ExportError(f"cannot copy the text encoders the denoiser run used: {e}") from e
    if family == SDXL.name and text_parts and len(text_parts) != len(SDXL.text_parts):
        raise ExportError(f"{text_from!r} holds {', '.join(text_parts)} but not all of "
                          f"{', '.join(SDXL.text_parts)}: an SDXL denoiser's captions need both text encoders "
                          "and tokenizers; restore that folder")

    def fill(staging: str) -> None:
        for sub in ("unet", "vae", "scheduler"):
            os.mkdir(os.path.join(staging, sub))
        _write_json(os.path.join(staging, "unet", "config.json"), unet_config)
        shutil.copyfile(unet_file, os.path.join(staging, "unet", WEIGHTS_NAME))
        _write_json(os.path.join(staging, "vae", "config.json"), vae_config)
        save_file(vae_sd, os.path.join(staging, "vae", WEIGHTS_NAME), metadata={"format": "pt"})
        torch.save(fusion, os.path.join(staging, "vae", FUSION_NAME))
        _write_json(os.path.join(staging, "scheduler", "scheduler_config.json"), scheduler)
        if text_encoder is not None:
            text_encoder.save(staging)
        else:
            for part in text_parts:
                shutil.copytree(os.path.join(text_from, part), os.path.join(staging, part))
        _write_json(os.path.join(staging, "model_index.json"),
                    _model_index(denoiser["model"], ["unet", "vae", "scheduler", *text_parts], family))
        _write_json(os.path.join(staging, PROVENANCE_NAME), {
            "format": FORMAT,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "direction": denoiser["config"].get("direction"), "backbone": family,
            "vae_from": decoder["model"].path, "text_from": text_from if text_parts else None,
            "scheduler_from": scheduler_from,
            **{stage: {"run": r["run"], "checkpoint": os.path.basename(r["checkpoint"]), "step": r["step"],
                       "model": r["model"].path, "data": r["config"].get("data"),
                       "data_fingerprint": r["config"].get("data_fingerprint"), "config": r["config"]}
               for stage, r in (("decoder", decoder), ("denoiser", denoiser))},
        })

    os.makedirs(os.path.dirname(out), exist_ok=True)
    try:
        write_new_folder(out, fill)
    except FileExistsError:
        raise FileExistsError(f"{out!r} appeared while exporting: export never overwrites; pass a new --out "
                              "folder") from None
    log(f"export: wrote {out} ({denoiser['config'].get('direction') or 'denoiser'} model, official LEDiff layout)")
    return out


def _write_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--decoder", required=True, metavar="RUN", help="a stage-1 RUN folder (fusion + HDR decoder)")
    parser.add_argument("--denoiser", required=True, metavar="RUN",
                        help="a stage-2 RUN folder (highlight or shadow bracket denoiser)")
    parser.add_argument("--out", required=True, metavar="FOLDER",
                        help="the new model folder (official LEDiff layout; never overwritten), e.g. "
                             "ComfyUI/models/lediff/My_highlight")


def run(args: argparse.Namespace) -> None:
    export(args.decoder, args.denoiser, args.out)
