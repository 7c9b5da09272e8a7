"""Save HDR Image benchmark: each format's node time against the raw imagecodecs encode of the
same pixels, timed in the same run, and file sizes next to Save EXR's default (half, zip).

    bash scripts/bench.sh bench_save_hdr_image [--repeat N]

Image: a real CC0 HDRI (tests/data/hdri/city.exr) upsampled to 2048x1024, float32 RGB.
Rows (seconds, median over interleaved rounds: at least N, and for a fast encoder as many as
take MIN_RAW_SECONDS of raw encodes; node/raw is the median of each round's ratio, the two timed
back to back, because this shared 2-core host's speed drifts by up to 1.5x for seconds at a time):
  raw   - imagecodecs' encoder alone on the pixels already in the encoder's input form (half RGBA
          for ultrahdr, 10-bit BT.2100 codes for AVIF, float32 for JPEG XL), same options, plus
          writing the bytes to a file: the floor any saver of this format pays; for the masters the
          pack writes itself (PNG, TIFF, Radiance), the format's encoder on the linear input
  node  - LEDiffSaveHDRImage's execute on the IMAGE tensor: checks, colour conversion and transfer
          curve, the encode, the workflow Exif, numbering, temp file + link, UI listing
Target: node / raw <= 1.15 for every format.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import tempfile
import time

import imagecodecs
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from benchmarks.bench_common import paired_ratio, timed, timed_rounds  # noqa: E402
from lediff_core.io.display import FORMAT_NAMES, FORMATS, Settings, encoder_threads  # noqa: E402
from lediff_core.io.display.avif import TRANSFER_HLG, TRANSFER_PQ, avif_options, encode_signal  # noqa: E402
from lediff_core.io.display.jxl import jxl_options  # noqa: E402
from lediff_core.io.display.ultrahdr import MAX_BOOST, SDR_WHITE_NITS  # noqa: E402
from lediff_core.io.exr import read_exr  # noqa: E402
from support.comfy_harness import ComfyHost  # noqa: E402

TARGET = 1.15
MIN_RAW_SECONDS = 30.0  # per format: one round's ratio varies by +-10 % here, so take many


def raw_encoder(fmt: str, rgb: np.ndarray, settings: Settings):
    """(prepared input, encode function) of the plain imagecodecs call the node makes."""
    if fmt == "ultrahdr":
        from imagecodecs import ULTRAHDR

        rgba = np.ones((*rgb.shape[:2], 4), np.float16)
        rgba[..., :3] = np.clip(rgb, 0, MAX_BOOST)
        return lambda: imagecodecs.ultrahdr_encode(
            rgba, level=settings.quality, gamut=ULTRAHDR.CG.BT_709, transfer=ULTRAHDR.CT.LINEAR,
            nits=SDR_WHITE_NITS * 2.0 ** settings.headroom_stops)
    if fmt.startswith("avif"):
        transfer = TRANSFER_PQ if fmt == "avif_pq" else TRANSFER_HLG
        codes = encode_signal(rgb, settings, transfer).codes
        return lambda: imagecodecs.avif_encode(codes, **avif_options(transfer, settings.quality))
    if fmt == "jxl_linear":
        return lambda: imagecodecs.jpegxl_encode(rgb, **jxl_options(settings.quality))
    # the masters the pack writes itself (PNG, TIFF, Radiance): their encoder on the linear input
    return lambda: FORMATS[fmt].encode(rgb, settings, None).data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=11,
                        help="at least this many rounds per format; more while they would take "
                        "under MIN_RAW_SECONDS of raw encodes")
    opts = parser.parse_args()

    src = read_exr(os.path.join(ROOT, "tests", "data", "hdri", "city.exr")).rgb.clip(0, None)
    rgb = np.ascontiguousarray(src.repeat(2, axis=0).repeat(2, axis=1))  # 2048x1024
    rgb = np.ascontiguousarray(rgb / np.median(rgb) * 0.18, dtype=np.float32)  # mid grey at 0.18
    images = torch.from_numpy(rgb)[None]
    print(f"image {rgb.shape[1]}x{rgb.shape[0]}, peak {rgb.max():.0f}x reference white, "
          f"torch threads {torch.get_num_threads()}, encoder threads {encoder_threads()}, "
          f"imagecodecs {imagecodecs.__version__}")

    work = tempfile.mkdtemp(prefix="lediff_bench_")
    host = ComfyHost.start()
    host.use_folders(work)
    logging_off = __import__("logging").getLogger("lediff")
    logging_off.setLevel("WARNING")
    hidden = {"hidden_inputs": {"PROMPT": {"1": {"class_type": "LEDiffSaveHDRImage", "inputs": {}}},
                                "EXTRA_PNGINFO": {"workflow": {"nodes": []}}}}
    saver = host.node_class("LEDiffSaveHDRImage").PREPARE_CLASS_CLONE(hidden)
    exr = host.node_class("LEDiffSaveEXR").PREPARE_CLASS_CLONE(hidden)
    settings = Settings()
    counter = iter(range(10**6))

    def exr_default():
        exr.execute(images, "bench/exr", "half", "zip", "linear", "none")

    (t_exr,) = timed([exr_default], opts.repeat)
    folder = os.path.join(work, "output", "bench")
    exr_size = os.path.getsize(os.path.join(folder, sorted(f for f in os.listdir(folder) if f.startswith("exr"))[-1]))
    print(f"\n{'format':11} {'rounds':>6} {'raw s':>7} {'node s':>7} {'node/raw':>8} {'size MB':>8} {'vs EXR':>7}")
    print(f"{'EXR half zip':11} {opts.repeat:6} {'':7} {t_exr:7.3f} {'':8} {exr_size / 1e6:8.2f} {1:7.2f}")
    worst = 0.0
    for fmt in FORMAT_NAMES:
        encode = raw_encoder(fmt, rgb, settings)

        def raw(encode=encode, fmt=fmt):
            data = encode()
            with open(os.path.join(work, f"raw_{next(counter)}_{fmt}"), "wb") as f:
                f.write(data)

        def node(fmt=fmt):
            saver.execute(images, f"bench/{fmt}", fmt, settings.reference_white, settings.quality,
                          settings.headroom_stops, settings.mastering_peak)

        start = time.perf_counter()
        raw()
        rounds = max(opts.repeat, math.ceil(MIN_RAW_SECONDS / (time.perf_counter() - start)))
        raws, nodes = timed_rounds([raw, node], rounds)
        ratio = paired_ratio(nodes, raws)
        size = os.path.getsize(os.path.join(folder, sorted(f for f in os.listdir(folder) if f.startswith(fmt))[-1]))
        worst = max(worst, ratio)
        print(f"{fmt:11} {rounds:6} {statistics.median(raws):7.3f} {statistics.median(nodes):7.3f} {ratio:8.3f} "
              f"{size / 1e6:8.2f} {size / exr_size:7.2f}")
    print(f"target node/raw <= {TARGET} for every format: worst {worst:.3f} -> "
          f"{'MET' if worst <= TARGET else 'MISSED'}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
