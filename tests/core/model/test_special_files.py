"""Special files inside a model folder (issue 25): the weights module opens each file of a folder after
checking it, so a FIFO in place of a config or weights file is refused by name instead of blocking the
loader."""

from __future__ import annotations

import os

import pytest

from support import tiny_models as fx
from support.fifos import promptly


@pytest.mark.parametrize("part", ["unet/config.json", "vae/diffusion_pytorch_model.safetensors"])
def test_a_fifo_inside_a_model_folder_is_refused_by_name(tmp_path, part):
    """The files inside a model folder are opened by the weights module: a FIFO there (a config or
    weights file replaced by a pipe) is refused by name instead of blocking the loader."""
    from lediff_core.model.weights import WeightError, load_denoiser, load_hdr_vae

    folder = fx.write_official_folder(str(tmp_path), "LEDiff_piped", seed=61)
    fifo = os.path.join(folder, part)
    os.unlink(fifo)
    os.mkfifo(fifo)
    with pytest.raises(WeightError, match=r"is a FIFO \(named pipe\), not a regular file"):
        promptly(lambda: (load_denoiser if part.startswith("unet") else load_hdr_vae)(folder), fifo)

