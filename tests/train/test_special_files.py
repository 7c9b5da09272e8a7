"""Training data preparation and special files (issue 25): a FIFO among the HDR inputs is listed as
unreadable by name, and a FIFO caption file is refused."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lediff_core.io.exr import write_exr as write_float_exr
from support.fifos import promptly


def test_prepare_lists_a_fifo_as_unreadable_by_name_and_refuses_a_fifo_caption_file(tmp_path):
    from lediff_train import prepare as prep
    from support.train_models import write_lediff_model

    model = write_lediff_model(str(tmp_path / "model"))
    hdr = tmp_path / "hdr"
    hdr.mkdir()
    write_float_exr(str(hdr / "good.exr"), np.random.default_rng(2).uniform(0.01, 50, (80, 80, 3)).astype(np.float32),
                    precision="float")
    fifo = str(hdr / "pipe.exr")
    os.mkfifo(fifo)
    lines = []
    manifest = promptly(lambda: prep.prepare(str(hdr), model, str(tmp_path / "DATA"), size=64, views=1,
                                             device="cpu", log=lines.append), fifo)
    (entry,) = manifest["unreadable"]
    assert entry["file"] == "pipe.exr" and "is a FIFO (named pipe), not a regular file" in entry["reason"], entry
    assert any("pipe.exr: unreadable, skipped" in line for line in lines)

    captions = str(tmp_path / "captions.jsonl")
    os.mkfifo(captions)
    with pytest.raises(prep.PrepareError, match="--captions: .* is a FIFO"):
        promptly(lambda: prep.prepare(str(hdr), model, str(tmp_path / "DATA2"), size=64, views=1, device="cpu",
                                      captions=captions, log=lines.append), fifo, captions)

