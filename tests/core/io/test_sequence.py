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



# --- missing frames: holes in the span filled by a policy ----------------------------------------------------

ON_DISK = [3, 4, 7, 8, 10, 13]  # holes 5-6, 9 (equidistant from 8 and 10), 11-12


def plate(frame, alpha=False):
    """The pixels the test writes for ``frame``: random, different in every frame and channel."""
    rng = np.random.default_rng(frame)
    return rng.uniform(-0.5, 3000.0, (5, 7, 4 if alpha else 3)).astype(np.float32)


def write_plates(folder, numbers=ON_DISK, alpha=False):
    from support.exr_files import write_exr

    for n in numbers:
        write_exr(os.path.join(folder, f"plate.{n:04d}.exr"), {"RGBA" if alpha else "RGB": plate(n, alpha)})


def load(folder, missing, start=0, count=0, step=1):
    from lediff_core.io.sequence import describe_filled, read_exr_sequence, resolve_sequence, select_frames

    frames = select_frames(resolve_sequence(str(folder), "."), start, count, step, missing)
    loaded = read_exr_sequence(frames, root=str(folder))
    return loaded, describe_filled(frames, missing, step)


# each span's frame numbers, and per policy the file (frame number) each one holds; None = black
SPANS = {
    "middle": ({}, [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], {
        "hold": [3, 4, 4, 4, 7, 8, 8, 10, 10, 10, 13],
        "nearest": [3, 4, 4, 7, 7, 8, 8, 10, 10, 13, 13],
        "black": [3, 4, None, None, 7, 8, None, 10, None, None, 13]},
        "filled 5-6, 9, 11-12 ({})"),
    # start lands in the hole: the frame before the span fills it under hold (it is the previous frame)
    "start": ({"start": 2, "count": 4}, [5, 6, 7, 8], {
        "hold": [4, 4, 7, 8], "nearest": [4, 7, 7, 8], "black": [None, None, 7, 8]},
        "filled 5-6 ({})"),
    # count ends in the hole: nearest reaches past the span for frame 6
    "end": ({"count": 4}, [3, 4, 5, 6], {
        "hold": [3, 4, 4, 4], "nearest": [3, 4, 4, 7], "black": [3, 4, None, None]},
        "filled 5-6 ({})"),
    # off the step: frames 4, 8 and 10 lie between the ones loaded and are what hold and nearest find
    "step": ({"step": 2}, [3, 5, 7, 9, 11, 13], {
        "hold": [3, 4, 7, 8, 10, 13], "nearest": [3, 4, 7, 8, 10, 13], "black": [3, None, 7, None, None, 13]},
        "filled 5, 9-11x2 ({})"),
}


@pytest.mark.parametrize("span", list(SPANS))
@pytest.mark.parametrize("missing", ["hold", "nearest", "black"])
def test_each_policy_fills_the_holes_with_the_frames_on_disk(tmp_path, span, missing):
    inputs, numbers, sources, line = SPANS[span]
    write_plates(tmp_path)
    loaded, filled = load(tmp_path, missing, **inputs)
    assert loaded.frames == numbers
    assert filled == line.format(missing)
    expected = np.stack([np.zeros((5, 7, 3), np.float32) if s is None else plate(s) for s in sources[missing]])
    assert np.array_equal(loaded.rgb.numpy(), expected)
    assert np.array_equal(loaded.alpha.numpy(), np.ones((len(numbers), 5, 7), np.float32))  # no alpha: opaque


def test_black_is_zero_in_every_channel_alpha_too(tmp_path):
    write_plates(tmp_path, [1, 3], alpha=True)
    loaded, filled = load(tmp_path, "black")
    assert filled == "filled 2 (black)"
    assert np.array_equal(loaded.rgb.numpy(), np.stack([plate(1, True)[..., :3], np.zeros((5, 7, 3)),
                                                         plate(3, True)[..., :3]]))
    assert np.array_equal(loaded.alpha.numpy(), np.stack([plate(1, True)[..., 3], np.zeros((5, 7)),
                                                           plate(3, True)[..., 3]]))
    loaded, _ = load(tmp_path, "hold")
    assert np.array_equal(loaded.alpha[1].numpy(), plate(1, True)[..., 3])  # hold copies the alpha too


def test_nothing_missing_nothing_filled(tmp_path):
    write_plates(tmp_path, [1, 2, 3])
    for missing in ("error", "black", "hold", "nearest"):
        loaded, filled = load(tmp_path, missing)
        assert filled is None and loaded.frames == [1, 2, 3]
        assert np.array_equal(loaded.rgb.numpy(), np.stack([plate(n) for n in (1, 2, 3)]))


def test_error_is_the_default_and_its_message_is_unchanged(tmp_path):
    from lediff_core.io.sequence import SequenceError, resolve_sequence, select_frames

    write_plates(tmp_path / "shot")
    sequence = resolve_sequence(str(tmp_path), "shot")
    expected = (f"frame 5 (plate.0005.exr) is missing from plate.####.exr in {str(tmp_path / 'shot')!r}, between "
                "plate.0004.exr and plate.0007.exr; restore the frame, or set start/count to load around the gap")
    for call in (lambda: select_frames(sequence), lambda: select_frames(sequence, missing="error")):
        with pytest.raises(SequenceError) as e:
            call()
        assert str(e.value) == expected
    assert [f.frame for f in select_frames(sequence, count=2)] == [3, 4]  # around the gap is fine


@pytest.mark.parametrize("missing", ["error", "black", "hold", "nearest"])
def test_a_span_of_holes_only_is_an_error_under_every_policy(tmp_path, missing):
    from lediff_core.io.sequence import SequenceError, resolve_sequence, select_frames

    write_plates(tmp_path, [1, 10])
    with pytest.raises(SequenceError) as e:
        select_frames(resolve_sequence(str(tmp_path), "."), start=1, count=3, missing=missing)
    message = str(e.value)
    if missing == "error":
        assert message.startswith("frame 2 (plate.0002.exr) is missing"), message
    else:
        assert "none of the frames asked for (2-4) exists" in message and "frames found: 1, 10" in message, message
        assert "set start/count/step" in message, message


@pytest.mark.parametrize("missing", ["error", "black", "hold", "nearest"])
def test_a_damaged_frame_is_an_error_under_every_policy(tmp_path, missing):
    from lediff_core.io.sequence import SequenceError

    write_plates(tmp_path, [1, 2, 3, 5])
    path = tmp_path / "plate.0002.exr"
    path.write_bytes(path.read_bytes()[:200])  # cut short, as an interrupted copy leaves it
    with pytest.raises(SequenceError) as e:
        load(tmp_path, missing, count=3)  # frames 1-3: no hole, frame 2 damaged
    assert str(e.value).startswith("frame 2 (plate.0002.exr) cannot be read: "), str(e.value)


@pytest.mark.parametrize("missing", ["hold", "nearest"])
def test_a_damaged_frame_read_to_fill_a_hole_is_an_error_naming_both(tmp_path, missing):
    from lediff_core.io.sequence import SequenceError

    write_plates(tmp_path, [1, 2, 4])
    path = tmp_path / "plate.0002.exr"
    path.write_bytes(path.read_bytes()[:200])
    # start 2: frames 3-4; frame 2 lies before the span and is read only to fill frame 3 (nearest: the
    # tie between 2 and 4 goes to 2)
    with pytest.raises(SequenceError) as e:
        load(tmp_path, missing, start=2)
    assert str(e.value).startswith("frame 2 (plate.0002.exr) cannot be read, read to fill missing frame 3: ")
    loaded, filled = load(tmp_path, "black", start=2)  # black reads no other frame
    assert filled == "filled 3 (black)" and np.array_equal(loaded.rgb[1].numpy(), plate(4))


def test_an_unknown_policy_names_the_choices(tmp_path):
    from lediff_core.io.sequence import SequenceError, resolve_sequence, select_frames

    write_plates(tmp_path, [1, 2])
    with pytest.raises(SequenceError, match="'freeze' is not one of error, black, hold, nearest"):
        select_frames(resolve_sequence(str(tmp_path), "."), missing="freeze")


def test_frame_ranges_compress_runs():
    from lediff_core.io.sequence import frame_ranges

    assert frame_ranges([12, 13, 14, 20]) == "12-14, 20"
    assert frame_ranges([1, 3, 4, 5, 9]) == "1, 3-5, 9"
    assert frame_ranges([5, 7, 9, 13], step=2) == "5-9x2, 13"
    assert frame_ranges([]) == ""
