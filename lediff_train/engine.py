"""The training loop both stages share: accelerate for devices, mixed precision, gradient
accumulation and distribution; deterministic data order; atomic checkpoints; exact resume; logs.

Determinism, which makes ``--resume`` exact and N processes equal one: nothing random comes from a
global generator. Sample ``p`` (counted over the whole run, across processes and accumulation) is
data item ``perm_e[p mod n]`` with ``perm_e`` a permutation seeded by (seed, epoch e = p div n), and
everything random about it (noise, timestep, caption dropout) is drawn from a generator seeded by
(seed, p). A step's global batch is ``batch_size x processes x accumulation`` consecutive samples;
each process takes its own slice, and DDP's gradient average over equal slices is the gradient of
the combined batch's mean loss.

Checkpoints are our own format (not ``accelerator.save_state``, whose loader unpickles with
``weights_only=False``): ``RUN/checkpoints/step-N/`` holds ``state/`` (the trainable modules as
safetensors, each optimizer's state dict loaded back with ``weights_only=True``, the EMA),
``weights/`` (what ``export`` reads: EMA weights when ``--ema``) and ``trainer.json`` (written last,
with the size and SHA-256 of every other file). It is filled under a hidden staging name and renamed
whole; ``checkpoints/latest`` is moved afterwards. ``--resume`` continues from the newest intact
checkpoint folder, not from the pointer alone, so a run killed at any instant resumes to the result
of an uninterrupted run (``lediff_train.run_folder`` has the crash windows).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lediff_core.io.access import FileAccessError, check_readable
from lediff_core.io.publish import remove_temporaries, replace_file, replace_text_file, write_new_folder
from lediff_core.model.weights import check_torch_file

from . import run_folder
from .run_folder import CHECKPOINTS, TrainingError, kill_point, latest_checkpoint

__all__ = ["TrainingError", "Trainer", "latest_checkpoint", "add_common_arguments"]

CONFIG_NAME = "config.json"
# arguments that may change when a run is resumed (how long and how it reports, not what it learns)
RESUMABLE = {"steps", "resume", "checkpoint_every", "validate_every", "report_to", "keep_checkpoints", "val_samples"}


def add_common_arguments(parser: argparse.ArgumentParser, *, steps: int, lr: float, batch_size: int) -> None:
    """Flags both stages share; the defaults passed in are the stage's (the paper's where known)."""
    parser.add_argument("--data", required=True, help="prepared data folder (python -m lediff_train prepare)")
    parser.add_argument("--model", required=True,
                        help="official LEDiff folder (fine-tune), or an SD1.5 or SDXL diffusers folder or single-file "
                             "checkpoint (.safetensors, as in ComfyUI's models/checkpoints/; start fresh)")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, config, logs); refused if it exists "
                                                      "unless --resume")
    parser.add_argument("--steps", type=int, default=steps, help=f"the run's total optimizer steps (default {steps})")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"samples per process and micro-step (default {batch_size})")
    parser.add_argument("--lr", type=float, default=lr, help=f"Adam learning rate, constant (default {lr:g})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-steps accumulated per optimizer step")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default=None,
                        help="default: accelerate's config (accelerate config), else no")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations (less memory)")
    parser.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                        help="keep an exponential moving average of the weights (e.g. 0.9999; 0 = off); exported")
    parser.add_argument("--adam8bit", action="store_true", help="bitsandbytes' 8-bit Adam (pip install bitsandbytes)")
    parser.add_argument("--checkpoint-every", type=int, default=5000, help="steps between checkpoints")
    parser.add_argument("--keep-checkpoints", type=int, default=3, help="newest checkpoints kept (0 = all)")
    parser.add_argument("--validate-every", type=int, default=5000, help="steps between validations (0 = never)")
    parser.add_argument("--val-samples", type=int, default=4, help="held-out samples per validation")
    # (not --log: torchrun would take that for an abbreviation of its own --log-dir)
    parser.add_argument("--report-to", choices=("auto", "tensorboard", "csv"), default="auto",
                        help="auto: TensorBoard when installed, else CSV (RUN/logs/)")
    parser.add_argument("--resume", action="store_true", help="continue RUN from its latest checkpoint up to --steps")


# ----------------------------------------------------------------------------------------------
# data order and per-sample randomness


def sample_positions(step: int, micro: int, accum: int, batch: int, rank: int, world: int) -> list[int]:
    """Run-wide positions of the samples process ``rank`` trains on at ``step``, micro-step ``micro``."""
    start = ((step * accum + micro) * world + rank) * batch
    return list(range(start, start + batch))


def data_indices(positions: list[int], n: int, seed: int) -> list[int]:
    """Data item for each position: one seeded permutation of the data per epoch."""
    perms: dict[int, np.ndarray] = {}
    out = []
    for p in positions:
        epoch = p // n
        if epoch not in perms:
            perms[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        out.append(int(perms[epoch][p % n]))
    return out


def sample_generators(seed: int, positions: list[int]) -> list[torch.Generator]:
    """One CPU generator per sample, seeded by (seed, position): independent of device and process."""
    return [torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 1, p]).generate_state(1)[0]))
            for p in positions]


# ----------------------------------------------------------------------------------------------
# EMA, logs, checkpoints


class EMA:
    """Exponential moving average of a set of named parameters (kept in float32 on their device)."""

    def __init__(self, named_params: dict[str, torch.nn.Parameter], decay: float):
        self.decay = decay
        self.params = named_params
        self.shadow = {k: p.detach().float().clone() for k, p in named_params.items()}

    @torch.no_grad()
    def update(self) -> None:
        for k, p in self.params.items():
            self.shadow[k].lerp_(p.detach().float(), 1 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.contiguous() for k, v in self.shadow.items()}

    def load_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) ^ set(sd)
        if missing:
            raise TrainingError(f"the checkpoint's EMA does not match the model ({sorted(missing)[:5]}); resume "
                                "with the same --ema setting the run started with")
        for k, v in sd.items():
            self.shadow[k].copy_(v)


class Logger:
    """Scalars and images to TensorBoard (RUN/logs/) or, without it, RUN/logs/metrics.csv; images also
    as PNG files under RUN/validation/.

    ``resumed_at``: the step a resumed run continues from; what a killed run logged after it (steps
    it trains again) is dropped, so every step is logged once: TensorBoard purges those events
    (``purge_step``), metrics.csv is rewritten without them (and without a line cut short)."""

    def __init__(self, run: str, kind: str, enabled: bool, resumed_at: int | None = None):
        self.run, self.enabled, self.writer, self.csv = run, enabled, None, None
        if not enabled:
            return
        os.makedirs(os.path.join(run, "logs"), exist_ok=True)
        if kind in ("auto", "tensorboard"):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                if kind == "tensorboard":
                    raise TrainingError("--report-to tensorboard: TensorBoard is not installed (pip install "
                                        "-r requirements-train.txt), or use --report-to csv") from None
            else:
                purge = None if resumed_at is None else resumed_at + 1
                self.writer = SummaryWriter(os.path.join(run, "logs"), purge_step=purge)
                return
        path = os.path.join(run, "logs", "metrics.csv")
        if os.path.lexists(path):
            _check_own_file(path, "the run's log")
            if resumed_at is not None:
                _drop_rows_after(path, resumed_at)
        self.csv = open(path, "a", newline="")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            if self.writer is not None:
                self.writer.add_scalar(name, value, step)
            else:
                csv.writer(self.csv).writerow([step, name, f"{value:.9g}"])
        if self.csv is not None:
            self.csv.flush()

    def image(self, step: int, name: str, image: np.ndarray) -> None:
        """``image``: uint8 HxWx3."""
        if not self.enabled:
            return
        from PIL import Image

        folder = os.path.join(self.run, "validation", f"step-{step}")
        os.makedirs(folder, exist_ok=True)
        # whole or not at all; a resumed run that validates this step again writes the same picture
        replace_file(os.path.join(folder, name.replace("/", "_") + ".png"),
                     lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))
        if self.writer is not None:
            self.writer.add_image(name, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.csv is not None:
            self.csv.close()


LAUNCH_FIX = ("start N processes with `accelerate launch --multi_gpu --num_processes N -m lediff_train ...` (GPUs "
              "or CPU) or `torchrun --nproc_per_node N -m lediff_train ...`; one process with "
              "`python -m lediff_train ...`")


def check_launch(env) -> None:
    """Refuse a launch that asked for several processes but started this one alone.

    ``accelerate launch`` picks its launcher before the script runs: with ``--multi_gpu``, more than
    one visible GPU, FSDP or DeepSpeed it starts N processes through torch.distributed.run (which sets
    WORLD_SIZE); otherwise (no GPU, one GPU, ``--cpu``) its simple launcher starts ONE process, whatever
    ``--num_processes``, and only adds MASTER_ADDR/MASTER_PORT when N > 1 or several machines were
    asked for (accelerate 1.x, ``commands/launch.py``: ``simple_launcher``). Its mark,
    ACCELERATE_USE_CPU, is set by that launcher alone. That process would train alone as if it were
    the whole run."""
    if "ACCELERATE_USE_CPU" in env and "MASTER_ADDR" in env and "WORLD_SIZE" not in env:
        raise TrainingError(
            "accelerate launch was asked for several processes (--num_processes, --num_machines or its config) but "
            "started this one alone: without --multi_gpu it uses its one-process launcher unless it sees more than "
            f"one GPU (always on CPU). Nothing was written; {LAUNCH_FIX} (if you meant one process under accelerate, "
            "unset MASTER_ADDR)"
        )


def _has_accelerator() -> bool:
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(xpu is not None and xpu.is_available())


def _check_own_file(path: str, what: str) -> None:
    """A file of the run folder must be a regular file before it is opened (links followed: the
    folder is the user's); a FIFO would block the run forever. TrainingError naming it otherwise."""
    try:
        check_readable(path)
    except FileAccessError as e:
        raise TrainingError(f"{what}: {e}") from None


def _drop_rows_after(path: str, step: int) -> None:
    """Rewrite metrics.csv (step, name, value rows) without the rows of steps after ``step`` and
    without a last line a kill cut short."""

    def write(tmp: str) -> None:
        with open(path, encoding="utf-8", newline="") as src, open(tmp, "w", encoding="utf-8", newline="") as dst:
            for line in src:
                head = line.split(",", 1)[0]
                if line.endswith("\n") and head.isdigit() and int(head) <= step:
                    dst.write(line)

    replace_file(path, write)


# ----------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    """Runs one stage (``lediff_train.decoder.DecoderStage`` or ``lediff_train.denoiser.DenoiserStage``).

    A stage is built as ``stage_factory(args, model, data, accelerator)``, ``model`` being the MODEL
    read once (``lediff_train.models.ModelFolder``, already checked to have encoded ``data``).
    It provides: ``modules`` (name -> trainable nn.Module), ``optimizer_params()`` (optimizer
    name -> (module names, Adam betas)), ``loss(modules, batch, generators, step) -> (loss, logs)``,
    ``export_weights(modules) -> {file name: state dict or JSON-able dict}`` and
    ``validate(modules, data, step, logger) -> logs``.
    """

    def __init__(self, args: argparse.Namespace, stage_factory, stage_name: str):
        from accelerate import Accelerator

        from .data import LatentData
        from .models import read_model

        self.args = args
        for name in ("steps", "batch_size", "grad_accum", "checkpoint_every"):
            if getattr(args, name) < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be at least 1")
        kwargs = {"gradient_accumulation_steps": args.grad_accum}
        if args.mixed_precision is not None:
            kwargs["mixed_precision"] = args.mixed_precision
        check_launch(os.environ)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not _has_accelerator():
            kwargs["cpu"] = True  # accelerate only sets up gloo for torchrun's processes when told it is on CPU
        self.acc = Accelerator(**kwargs)
        if self.acc.num_processes != world:
            raise TrainingError(f"launched as {world} processes, but accelerate set up {self.acc.num_processes}: "
                                f"each would train alone; {LAUNCH_FIX}")
        self.run_dir = os.path.abspath(args.out)
        self.train_data = LatentData(args.data, "train")
        self.val_data = None
        if args.validate_every:
            try:
                self.val_data = LatentData(args.data, "val")
            except ValueError as e:
                raise TrainingError(f"{e}; or train without validation: --validate-every 0") from None
        self.model = read_model(args.model)
        self.model.check_data(args.data, self.train_data)
        config = {"stage": stage_name, **{k: v for k, v in vars(args).items() if k != "command"},
                  "model": self.model.path, "data": os.path.abspath(args.data), "out": self.run_dir,
                  "data_fingerprint": self.train_data.fingerprint(),
                  "processes": self.acc.num_processes, "mixed_precision_used": self.acc.mixed_precision}
        self.config = config
        self._check_run_folder(config)
        torch.manual_seed(args.seed)  # freshly initialised modules (the discriminator) are the same in every run
        self.stage = stage_factory(args, self.model, self.train_data, self.acc)
        self._build_optimizers()
        self.ema = None
        if args.ema:
            if not 0 < args.ema < 1:
                raise TrainingError("--ema DECAY must be between 0 and 1 (e.g. 0.9999), or 0 for off")
            self.ema = EMA({f"{m}.{k}": p for m, mod in self.stage.modules.items()
                            for k, p in mod.named_parameters() if p.requires_grad}, args.ema)
        self._write_run_folder(config)  # only once everything could be built: a failed start leaves nothing
        self.acc.print(f"{stage_name}: {self.acc.num_processes} process(es), {self.acc.distributed_type.value} on "
                       f"{self.acc.device.type}; global batch {args.batch_size} x {self.acc.num_processes} x "
                       f"{args.grad_accum} = {args.batch_size * self.acc.num_processes * args.grad_accum}")
        names = list(self.stage.modules)
        prepared = self.acc.prepare(*[self.stage.modules[n] for n in names], *self.optimizers.values())
        self.models = dict(zip(names, prepared[:len(names)], strict=True))
        self.optimizers = dict(zip(self.optimizers, prepared[len(names):], strict=True))
        self.checkpoint = None  # the checkpoint folder the run is at
        self.step = self._load_latest() if args.resume else 0
        self.logger = Logger(self.run_dir, args.report_to, self.acc.is_main_process,
                             resumed_at=self.step if args.resume else None)

    # -- set-up ---------------------------------------------------------------------------------

    def _check_run_folder(self, config: dict) -> None:
        path = os.path.join(self.run_dir, CONFIG_NAME)
        if self.args.resume:
            if not os.path.lexists(path):
                raise TrainingError(f"--resume: {self.run_dir!r} is not a run folder (no {CONFIG_NAME}); start "
                                    "it without --resume")
            _check_own_file(path, "--resume")
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            changed = sorted(k for k in set(saved) | set(config)
                             if k not in RESUMABLE and saved.get(k) != config.get(k))
            if changed:
                detail = ", ".join(f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in changed)
                raise TrainingError(f"--resume: {self.run_dir!r} was started with other settings ({detail}); "
                                    "resume with the same ones, or start a new run folder")
        elif os.path.lexists(self.run_dir):
            raise TrainingError(f"{self.run_dir!r} exists: pass --resume to continue that run, or choose a new --out")

    def _write_run_folder(self, config: dict) -> None:
        path = os.path.join(self.run_dir, CONFIG_NAME)
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            os.makedirs(os.path.join(self.run_dir, CHECKPOINTS), exist_ok=True)
            # what a killed run left: staging folders, temporary files, a checkpoint being pruned
            remove_temporaries(self.run_dir)
            remove_temporaries(os.path.join(self.run_dir, CHECKPOINTS))
            replace_text_file(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
        self.acc.wait_for_everyone()

    def _build_optimizers(self) -> None:
        args = self.args
        if args.adam8bit:
            try:
                import bitsandbytes as bnb
            except ImportError:
                raise TrainingError("--adam8bit needs bitsandbytes (pip install bitsandbytes, CUDA only); "
                                    "or leave the flag off for torch's Adam") from None
            adam = bnb.optim.Adam8bit
        else:
            adam = torch.optim.Adam
        self.optimizers = {}
        for name, (module_names, betas) in self.stage.optimizer_params().items():
            params = [p for m in module_names for p in self.stage.modules[m].parameters() if p.requires_grad]
            self.optimizers[name] = adam(params, lr=args.lr, betas=betas)

    # -- checkpoints ----------------------------------------------------------------------------

    def _unwrapped(self) -> dict[str, torch.nn.Module]:
        return {n: self.acc.unwrap_model(m) for n, m in self.models.items()}

    def _export_modules(self) -> dict[str, torch.nn.Module]:
        """The modules as export sees them: a copy holding the EMA weights when EMA is on."""
        modules = self._unwrapped()
        if self.ema is None:
            return modules
        import copy

        out = {}
        for n, m in modules.items():
            m = copy.deepcopy(m)
            with torch.no_grad():
                for k, p in m.named_parameters():
                    if f"{n}.{k}" in self.ema.shadow:
                        p.copy_(self.ema.shadow[f"{n}.{k}"])
            out[n] = m
        return out

    def save_checkpoint(self) -> str:
        step, ckpts = self.step, os.path.join(self.run_dir, CHECKPOINTS)
        final = os.path.join(ckpts, f"step-{step}")
        self.acc.wait_for_everyone()
        # on every process: under FSDP / DeepSpeed ZeRO-3 accelerate gathers the full weights here
        states = {name: self.acc.get_state_dict(module) for name, module in self.models.items()}
        if self.acc.is_main_process:
            if not os.path.isdir(final):  # (resume moved every newer, damaged one aside)
                write_new_folder(final, lambda staging: self._write_checkpoint(staging, states))
            kill_point("checkpoint-renamed", step)
            run_folder.write_pointer(self.run_dir, f"step-{step}")
            run_folder.prune(self.run_dir, self.args.keep_checkpoints, step)
        self.acc.wait_for_everyone()
        self.checkpoint = final
        return final

    def _write_checkpoint(self, staging: str, states: dict) -> None:
        step = self.step
        os.makedirs(os.path.join(staging, "state"))
        os.makedirs(os.path.join(staging, "weights"))
        for name, state in states.items():
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()},
                      os.path.join(staging, "state", f"model-{name}.safetensors"))
        for name, opt in self.optimizers.items():
            torch.save(opt.state_dict(), os.path.join(staging, "state", f"optimizer-{name}.pt"))
        if self.ema is not None:
            save_file({k: v.cpu() for k, v in self.ema.state_dict().items()},
                      os.path.join(staging, "state", "ema.safetensors"))
        for fname, content in self.stage.export_weights(self._export_modules()).items():
            path = os.path.join(staging, "weights", fname)
            if fname.endswith(".json"):
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(content, f, indent=2, sort_keys=True)
            else:
                save_file({k: v.detach().float().cpu().contiguous() for k, v in content.items()}, path)
        kill_point("checkpoint-staged", step)  # (trainer.json goes last: a folder without it is no checkpoint)
        run_folder.write_trainer_json(staging, {
            "step": step, "stage": self.config["stage"],
            "samples": step * self.args.batch_size * self.acc.num_processes * self.args.grad_accum})

    def _load_latest(self) -> int:
        """Load the checkpoint --resume continues from (the main process picks it and tells the others);
        the step it was at, 0 when the run was stopped before its first checkpoint."""
        from accelerate.utils import broadcast_object_list

        chosen = [None, None]  # (path, error)
        if self.acc.is_main_process:
            try:
                chosen[0] = run_folder.resume_from(self.run_dir, self.acc.print)
            except TrainingError as e:
                chosen[1] = str(e)
            else:  # what a run killed before pruning left undone
                run_folder.prune(self.run_dir, self.args.keep_checkpoints, -1)
        broadcast_object_list(chosen)
        path, error = chosen
        if error:
            raise TrainingError(error)
        if path is None:
            return 0
        self.checkpoint = path
        step = run_folder.read_trainer_json(path)["step"]
        # Everything is read to the CPU and copied onto the modules' devices by their load_state_dict
        # (the optimizers move their state to each parameter's device, keeping Adam's step on the CPU,
        # where a fresh one has it). Not map_location=accelerator.device: with several CPU processes
        # that is "cpu:0", which torch.load cannot restore to.
        for name, module in self._unwrapped().items():
            module.load_state_dict(_read(path, f"state/model-{name}.safetensors", load_file), strict=True)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(_read(path, f"state/optimizer-{name}.pt", _load_torch))
        if self.ema is not None:
            if not os.path.lexists(os.path.join(path, "state", "ema.safetensors")):
                raise TrainingError(f"--ema: the checkpoint {path!r} has no EMA (the run started without --ema)")
            self.ema.load_state_dict(_read(path, "state/ema.safetensors", load_file))
        return step

    # -- the loop -------------------------------------------------------------------------------

    def _batch(self, positions: list[int]) -> dict:
        indices = data_indices(positions, len(self.train_data), self.args.seed)
        batch = self.train_data.get(indices)
        return {k: v.to(self.acc.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _check_finite(self, loss: torch.Tensor) -> None:
        bad = self.acc.gather(torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=self.acc.device))
        if bad.sum() > 0:
            last = os.path.basename(self.checkpoint) if self.checkpoint else "none yet"
            raise TrainingError(
                f"the loss became {loss.item()} at step {self.step + 1}; stopped without saving, the last good "
                f"checkpoint ({last}) is kept. Lower --lr, use --mixed-precision bf16 rather than fp16, or check "
                "the data; then continue with --resume"
            )

    def validate(self) -> None:
        if self.val_data is None or len(self.val_data) == 0:
            return
        if self.acc.is_main_process:
            modules = self._unwrapped()
            for m in modules.values():
                m.eval()
            with torch.no_grad(), self.acc.autocast():
                logs = self.stage.validate(modules, self.val_data, self.step, self.logger)
            for m in modules.values():
                m.train()
            self.logger.scalars(self.step, logs)
        self.acc.wait_for_everyone()

    def train(self) -> str:
        """Train up to --steps; returns the final checkpoint's path."""
        from tqdm.auto import tqdm

        args, acc = self.args, self.acc
        if self.step >= args.steps:
            acc.print(f"{self.run_dir}: already at step {self.step} of {args.steps}; nothing to do")
            return self.checkpoint
        bar = tqdm(total=args.steps, initial=self.step, disable=not acc.is_main_process, unit="step",
                   desc=self.config["stage"], dynamic_ncols=True)
        saved_at = None
        started, start_step = time.perf_counter(), self.step
        try:
            while self.step < args.steps:
                logs: dict[str, float] = {}
                for micro in range(args.grad_accum):
                    positions = sample_positions(self.step, micro, args.grad_accum, args.batch_size,
                                                 acc.process_index, acc.num_processes)
                    batch = self._batch(positions)
                    with acc.accumulate(*self.models.values()):
                        loss, micro_logs = self.stage.loss(self.models, batch, sample_generators(args.seed, positions),
                                                           self.step)
                        self._check_finite(loss)
                        acc.backward(loss)
                        kill_point("step", self.step + 1)
                        for opt in self.optimizers.values():
                            opt.step()
                            opt.zero_grad(set_to_none=True)
                    for k, v in micro_logs.items():
                        logs[k] = logs.get(k, 0.0) + v / args.grad_accum
                self.step += 1
                if self.ema is not None:
                    self.ema.update()
                rate = (self.step - start_step) / max(time.perf_counter() - started, 1e-9)
                self.logger.scalars(self.step, {**logs, "train/steps_per_s": rate})
                bar.set_postfix(loss=f"{logs.get('train/loss', math.nan):.4g}", refresh=False)
                bar.update(1)
                if args.validate_every and self.step % args.validate_every == 0:
                    self.validate()
                if self.step % args.checkpoint_every == 0 or self.step == args.steps:
                    self.save_checkpoint()
                    saved_at = self.step
        finally:
            bar.close()
            self.logger.close()
        if saved_at != self.step:
            self.save_checkpoint()
        return self.checkpoint


def _load_torch(path: str) -> dict:
    """A torch.save file of this recipe (an optimizer's state), bounded by its size before torch.load
    (``check_torch_file``: a legacy-format or compressed file is refused by name), read to the CPU."""
    check_torch_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _read(checkpoint: str, rel: str, load):
    """``load(path)`` of a checkpoint's file; a file that does not read (a checkpoint written before
    manifests, damaged since) is named with the fix."""
    path = os.path.join(checkpoint, *rel.split("/"))
    try:
        check_readable(path)  # a FIFO is refused by name, not opened (which would wait forever)
        return load(path)
    except Exception as e:
        raise TrainingError(f"--resume: cannot read {path} ({type(e).__name__}: {e}); the checkpoint is damaged: "
                            f"move {os.path.basename(checkpoint)}/ out of {os.path.dirname(checkpoint)} to resume from "
                            "the one before it") from e
