"""Convert an official LEDiff download (a diffusers folder) into single-file .safetensors models.

    python -m lediff_core.model.convert models/lediff/LEDiff_highlight [--out DIR] [--name NAME]

writes ``NAME_denoiser.safetensors`` (the 8-channel UNet) and ``NAME_hdr_vae.safetensors`` (VAE +
fusion weights under ``fusion.``), each with its config.json in the file's metadata, so that the
loaders need nothing else. Existing files are never overwritten; .bin/.pth inputs are read with
``weights_only=True``. Half precision (``--half``) halves the size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

from ..io.publish import write_new_file
from .fit import check_settings, shapes_of
from .unet_config import unet_mismatches
from .vae import check_vae_fits
from .weights import (
    CONFIG_KEY,
    FORMAT_KEY,
    FUSION_PREFIX,
    KIND_KEY,
    config_name,
    load_denoiser,
    load_hdr_vae,
    weights_name,
)


def _save(path: str, tensors: dict, kind: str, config: dict, half: bool) -> None:
    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    metadata = {FORMAT_KEY: "1", KIND_KEY: kind, CONFIG_KEY: json.dumps(config)}
    write_new_file(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def convert(folder: str, out_dir: str | None = None, name: str | None = None, half: bool = False) -> list[str]:
    """Convert ``folder``; returns the paths written."""
    folder = os.path.abspath(folder)
    out_dir = out_dir or os.path.dirname(folder)
    name = name or os.path.basename(folder)
    unet_config, unet_sd = load_denoiser(folder)
    vae_config, vae_sd, fusion_sd = load_hdr_vae(folder)
    # a config that does not fit its weights is refused here, not carried into the single file
    check_settings(unet_mismatches(unet_config, shapes_of(unet_sd)), config_name(folder, "unet"),
                   weights_name(folder, "unet"))
    check_vae_fits(vae_config, shapes_of(vae_sd), config_name(folder, "vae"), weights_name(folder, "vae"))
    written = []
    for kind, tensors, config in (
        ("denoiser", unet_sd, unet_config),
        ("hdr_vae", {**vae_sd, **{FUSION_PREFIX + k: v for k, v in fusion_sd.items()}}, vae_config),
    ):
        path = os.path.join(out_dir, f"{name}_{kind}.safetensors")
        _save(path, tensors, kind, config, half)
        written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lediff_core.model.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="an official LEDiff download folder (with unet/ and vae/)")
    parser.add_argument("--out", help="output folder (default: beside the input folder)")
    parser.add_argument("--name", help="output name prefix (default: the folder's name)")
    parser.add_argument("--half", action="store_true", help="store float16 weights")
    args = parser.parse_args(argv)
    try:
        for path in convert(args.folder, args.out, args.name, args.half):
            print(path)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
