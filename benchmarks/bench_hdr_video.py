"""Save HDR Video benchmark: the node's time against a plain PyAV encode of the same signal, and
peak memory of a long clip against a short one.

    bash scripts/bench.sh bench_hdr_video [--repeat N] [--frames N] [--size WIDTHxHEIGHT]
                                          [--codecs hevc,prores_4444,...] [--no-memory]

Clip: 128x72 frames (``--size`` for the timing part) of a moving HDR gradient (up to 3.5x reference white), float32 RGB.
The host runs on the GPU when torch sees one (ComfyUI's device, where the node converts the
frames), else on the CPU; the first line names the device.
(1) Per codec (PQ, quality 18; HEVC in mp4, ProRes in mov), seconds, median over interleaved
    rounds; node/raw is the median of each round's ratio (the two timed back to back):
  raw   - PyAV alone: the frames' planes in the codec's pix_fmt computed beforehand (not timed),
          the same stream and codec options (``lediff_core.io.video.add_video_stream``), encoded
          and muxed to a file: the floor any saver of this signal pays
  node  - LEDiffSaveHDRVideo's execute on the IMAGE tensor: checks, the first pass (counts,
          MaxCLL/MaxFALL), per-frame colour conversion, curve and Y'CbCr, the encode, workflow
          tags, numbering, temp file + link, UI listing
  convert - the node's per-frame conversion alone (``ycbcr_frame`` on the device, planes back on
          the CPU), milliseconds a frame
  Target: node / raw <= 1.15 for each codec.
  CPU accounting (process CPU time over one more run of each, all threads): how many CPUs the
  encoder keeps busy on its own, the node's extra CPU milliseconds a frame, and the floor those
  put under node/raw on this machine's CPUs, max(1, (raw CPU + extra) / CPUs / raw wall): where
  the encoder already fills the CPUs, each millisecond of the node's arithmetic adds to the wall.
(2) (hevc only; ``--no-memory`` skips it) Memory of a subprocess that builds a 30- or a 300-frame
    batch and encodes it with ``write_video``: resident size before the encode (imports and the
    batch) and the peak during it (Linux VmHWM, reset just before): what the encode adds must not grow with the clip.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from benchmarks.bench_common import paired_ratio, timed_rounds  # noqa: E402
from lediff_core.io import video  # noqa: E402
from support.comfy_harness import COMFY_ROOT, ComfyHost  # noqa: E402

TARGET = 1.15
H, W = 72, 128


def clip(n: int, w: int = W, h: int = H) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
    t = np.arange(n).reshape(n, 1, 1) / 24
    lum = np.exp2(-5 + 6.8 * ((xx + 0.1 * t) % 1)) * (1 - 0.1 * np.sin(6 * yy + 3 * t) ** 2)
    col = np.stack([0.8 + 0.2 * np.sin(3 * yy + t), 0.7 + 0.1 * xx + 0 * t, 0.5 + 0.3 * yy + 0 * t], -1)
    return (lum[..., None] * col).astype(np.float32)


def cpu_and_wall(fn) -> tuple[float, float]:
    """Process CPU seconds (every thread, user + system) and wall seconds of one call."""
    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    c, t = cpu(), time.perf_counter()
    fn()
    return cpu() - c, time.perf_counter() - t


def raw_encode(path: str, planes: list[np.ndarray], settings: video.VideoSettings, report) -> None:
    import av

    from lediff_core.io.scheduling import ordinary_scheduling

    # as write_video does: libsvtav1 would otherwise run the baseline at real-time priority
    with ordinary_scheduling(), av.open(path, mode="w", format=video.CONTAINERS[settings.container]) as out:
        stream = video.add_video_stream(out, settings, report)
        for i, p in enumerate(planes):
            out.mux(stream.encode(video.video_frame(p, settings, i, report.rate)))
        out.mux(stream.encode(None))


# the delivery HEVC and the grading masters (av1 with --codecs)
MEASURED = ("hevc", "hevc_444_10", "hevc_444_12", "prores_4444", "prores_4444xq")


MEMORY = r"""
import sys
from benchmarks.bench_hdr_video import clip
from lediff_core.io.video import VideoSettings, write_video, ycbcr_frame
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
n, path = int(sys.argv[1]), sys.argv[2]
frames = clip(n)
ycbcr_frame(frames[0], VideoSettings())  # imports and tables, before the measurement
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # Linux: reset the peak resident size (VmHWM) to the current one
before = status("VmRSS:")
write_video(path, frames, VideoSettings(codec=sys.argv[3]))
print(before, status("VmHWM:"), frames.nbytes)
"""


def peak_memory(n: int, codec: str, folder: str) -> tuple[float, float, float]:
    """(resident MB before the encode, with the batch; peak resident MB during it; batch MB) of a
    subprocess encoding an ``n``-frame clip."""
    out = subprocess.run([sys.executable, "-c", MEMORY, str(n), os.path.join(folder, f"m{n}_{codec}.mp4"), codec],
                         cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests")])})
    before, peak, batch = out.stdout.split()[-3:]
    return int(before) / 1024, int(peak) / 1024, int(batch) / 2**20


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default=f"{W}x{H}", help="frame size of the timing part, WIDTHxHEIGHT")
    parser.add_argument("--codecs", default=",".join(MEASURED), help="comma-separated codecs to time")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory part")
    opts = parser.parse_args()
    width, height = (int(v) for v in opts.size.split("x"))
    codecs = opts.codecs.split(",")

    frames = clip(opts.frames, width, height)
    images = torch.from_numpy(frames)
    work = tempfile.mkdtemp(prefix="lediff_bench_video_")
    # a real ComfyUI on the GPU where there is one (the node converts on ComfyUI's device)
    host = ComfyHost(COMFY_ROOT, cpu=not torch.cuda.is_available(), custom_nodes=False, cached=False)
    host.use_folders(work)
    import comfy.model_management as mm

    device = mm.get_torch_device()
    __import__("logging").getLogger("lediff").setLevel("WARNING")
    hidden = {"hidden_inputs": {"PROMPT": {"1": {"class_type": "LEDiffSaveHDRVideo", "inputs": {}}},
                                "EXTRA_PNGINFO": {"workflow": {"nodes": []}}}}
    saver = host.node_class("LEDiffSaveHDRVideo").PREPARE_CLASS_CLONE(hidden)
    import av

    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"device {device}{gpu}, {len(os.sched_getaffinity(0))} CPUs; clip {opts.frames} frames {width}x{height}, "
          f"torch threads {torch.get_num_threads()}, PyAV {av.__version__}")
    print(f"\n{'codec':13} {'rounds':>6} {'raw s':>7} {'node s':>7} {'node/raw':>8} {'convert ms/f':>12}")
    worst = 0.0
    cpus = len(os.sched_getaffinity(0))
    accounting = []
    counter = iter(range(10**6))
    for codec in codecs:
        container = video.CODEC_SPECS[codec].containers[0]
        settings = video.VideoSettings(codec=codec, container=container)
        report = video.analyse(frames, settings, device)
        planes = [video.ycbcr_frame(f, settings, device) for f in frames]
        start = time.perf_counter()
        with video.one_torch_thread(device):  # as in the node: one converter for the clip
            convert = video.FrameConverter(settings, device)
            for f in images:
                video.ycbcr_frame(f, settings, device, convert)
        convert_ms = 1000 * (time.perf_counter() - start) / opts.frames

        def raw(settings=settings, report=report, planes=planes, container=container):
            raw_encode(os.path.join(work, f"raw_{next(counter)}.{container}"), planes, settings, report)

        def node(codec=codec, container=container):
            saver.execute(images, f"bench/{codec}", 24.0, codec, "pq", container, video.DEFAULT_QUALITY,
                          1.0, 1000.0)

        raws, nodes = timed_rounds([raw, node], opts.repeat)
        ratio = paired_ratio(nodes, raws)
        worst = max(worst, ratio)
        print(f"{codec:13} {opts.repeat:6} {statistics.median(raws):7.3f} {statistics.median(nodes):7.3f} "
              f"{ratio:8.3f} {convert_ms:12.1f}")
        (raw_cpu, raw_wall), (node_cpu, _) = cpu_and_wall(raw), cpu_and_wall(node)
        extra = (node_cpu - raw_cpu) / opts.frames
        floor = max(1.0, (raw_cpu + extra * opts.frames) / cpus / raw_wall)
        accounting.append(f"{codec:13} {raw_cpu / raw_wall:12.2f} {1000 * extra:14.1f} {floor:15.2f}")
    print(f"target node/raw <= {TARGET} for each codec: worst {worst:.3f} -> "
          f"{'OK' if worst <= TARGET else 'MISSED'}")
    print(f"\n{'codec':13} {'encoder CPUs':>12} {'node extra ms/f':>14} {'floor on ' + str(cpus) + ' CPUs':>15}")
    print("\n".join(accounting))

    if opts.no_memory:
        return
    print(f"\n{'codec':6} {'frames':>6} {'batch MB':>9} {'RSS before':>11} {'peak RSS':>9} {'encode adds':>12}")
    for codec in ("hevc",):
        for n in (30, 300):
            before, peak, batch = peak_memory(n, codec, work)
            print(f"{codec:6} {n:6} {batch:9.1f} {before:11.1f} {peak:9.1f} {peak - before:12.1f}")

if __name__ == "__main__":
    main()
