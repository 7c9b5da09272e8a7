"""``python -m lediff_train {prepare,decoder,denoiser,export}``: one subcommand per step of the recipe.

Every subcommand runs the same under ``accelerate launch`` (one or many GPUs, several nodes through
accelerate's config; DDP by default, FSDP/DeepSpeed through that config) and ``torchrun``.
"""

from __future__ import annotations

import argparse
import sys

STEPS = {
    "prepare": ("prepare", "HDR images -> simulated brackets -> cached latents (run once per MODEL)"),
    "decoder": ("decoder", "stage 1: train the exposure fusion and the HDR decoder"),
    "denoiser": ("denoiser", "stage 2: train a highlight or shadow bracket denoiser"),
    "export": ("export", "write the official LEDiff layout that the nodes load"),
}


def parser() -> argparse.ArgumentParser:
    import importlib

    ap = argparse.ArgumentParser(prog="python -m lediff_train", description=__doc__.splitlines()[0],
                                 epilog="See docs/training.md.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="{" + ",".join(STEPS) + "}")
    for name, (module, help_text) in STEPS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(module=f"lediff_train.{module}")
        importlib.import_module(f"lediff_train.{module}").add_arguments(p)
    return ap


def main(argv=None) -> int:
    import importlib

    from .engine import TrainingError
    from .losses import LPIPSUnavailable
    from .models import ModelError

    args = parser().parse_args(argv)
    module = importlib.import_module(args.module)
    del args.module
    try:
        module.run(args)
    except (TrainingError, ModelError, LPIPSUnavailable, ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"lediff_train {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0
