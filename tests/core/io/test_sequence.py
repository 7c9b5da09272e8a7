"""EXR sequences in the core (lediff_core.io.sequence): frame rates as exact rationals, a sequence folder
that never replaces an existing one, nothing published when writing stops part-way, and memory that
does not grow with the clip."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest

from support.exr_files import (
    hdr_frames,
    listing,
)


def test_frames_per_second_rationals():
    from lediff_core.io.sequence import SequenceError, frames_per_second

    expected = {23.976: (24000, 1001), 23.98: (24000, 1001), 29.97: (30000, 1001), 59.94: (60000, 1001),
                47.952: (48000, 1001), 119.88: (120000, 1001), 24: (24, 1), 25.0: (25, 1), 30: (30, 1),
                60: (60, 1), 12.5: (25, 2), 7.5: (15, 2)}
    for fps, (n, d) in expected.items():
        assert frames_per_second(fps) == Fraction(n, d), fps
    assert abs(float(frames_per_second(14.285714)) - 14.285714) < 1e-6
    for bad in (0, -24, float("nan"), float("inf")):
        with pytest.raises(SequenceError, match="positive"):
            frames_per_second(bad)


def test_existing_folder_is_never_replaced_the_next_number_is_taken(tmp_path):
    from lediff_core.io.sequence import save_exr_sequence

    # an empty folder (which a plain POSIX rename would silently replace) and a full one
    (tmp_path / "clip_00001").mkdir()
    (tmp_path / "clip_00002").mkdir()
    (tmp_path / "clip_00002" / "keep.txt").write_text("mine")
    frames = hdr_frames(2, h=4, w=6)
    folder, counter, files, _ = save_exr_sequence(
        str(tmp_path), lambda n: f"clip_{n:05}", 1, "clip", ((f, None) for f in frames), precision="float")
    assert (folder, counter) == ("clip_00003", 3)
    assert files == ["clip.1001.exr", "clip.1002.exr"]
    assert listing(tmp_path) == ["clip_00001", "clip_00002", "clip_00003"]
    assert listing(tmp_path / "clip_00001") == [] and (tmp_path / "clip_00002" / "keep.txt").read_text() == "mine"


def test_an_interrupt_mid_clip_publishes_nothing(tmp_path):
    from lediff_core.io.sequence import save_exr_sequence

    class Interrupted(BaseException):  # like ComfyUI's InterruptProcessingException's base
        pass

    def on_frame(i):
        if i == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        save_exr_sequence(str(tmp_path), lambda n: f"clip_{n:05}", 1, "clip",
                          ((f, None) for f in hdr_frames(4, h=4, w=6)), on_frame=on_frame)
    assert listing(tmp_path) == []


def test_writing_streams_memory_does_not_grow_with_the_clip(tmp_path):
    import tracemalloc

    from lediff_core.io.sequence import save_exr_sequence

    def peak(n):
        def frames():  # each frame made on demand, as the node hands out views of its batch
            for i in range(n):
                yield np.full((256, 256, 3), 1.0 + i, np.float32), None

        tracemalloc.start()
        save_exr_sequence(str(tmp_path), lambda k, n=n: f"clip{n}_{k:05}", 1, "clip", frames(), precision="float",
                          compression="zip")
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    frame_bytes = 256 * 256 * 3 * 4
    short, long = peak(2), peak(24)
    assert long < short + frame_bytes, (short, long)  # 22 more frames cost less than one more frame
    assert len(os.listdir(tmp_path / "clip24_00001")) == 24

