"""Optical flow and the warping error on a real pan (the city HDRI, lediff_core.qa.clips, a camera
LDR of it): seconds per frame pair and the flow's error against the exact motion, for

1. ours: ``lediff_core.video.flow.optical_flow`` (DIS MEDIUM refined to full resolution, from the
   float frames: grayscale and 8-bit conversion included);
2. the baseline: OpenCV's DIS MEDIUM preset as it comes (finest scale 1: half resolution), called
   directly on the same 8-bit grayscale frames;

and the seconds of ``flow_with_visibility`` (both directions and the occlusion test) and of
``warping_error`` for the same pair.

  bash scripts/bench.sh bench_flow [--size 768x384] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics

import cv2
import numpy as np
import torch

from benchmarks.bench_common import paired_ratio, timed, timed_rounds
from lediff_core.qa.temporal import warping_error
from lediff_core.video.flow import _gray8, flow_with_visibility, optical_flow
from support.clips import synthetic_pan


def endpoint_error(flow: np.ndarray, truth: np.ndarray, margin: int = 16) -> float:
    inner = (slice(None), slice(margin, -margin), slice(margin, -margin))
    return float(np.median(np.linalg.norm(flow[inner] - truth[inner], axis=-1)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="768x384", help="frame size WxH (default 768x384)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    hdr, ldr, truth, _ = synthetic_pan(frames=2, size=(w, h), step_px=3, factor=1)
    frames = torch.from_numpy(ldr)
    gray = _gray8(frames)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def baseline():
        return dis.calc(gray[1], gray[0], None)

    ours_rounds, base_rounds = timed_rounds([lambda: optical_flow(frames), baseline], args.repeat)
    ours_flow, base_flow = optical_flow(frames).numpy(), baseline()[None]
    flow, valid = flow_with_visibility(frames)
    vis_s, err_s = timed([lambda: flow_with_visibility(frames),
                          lambda: warping_error(hdr, flow, valid=valid)], args.repeat)
    print(f"pan of the city HDRI, {w}x{h}, 3 px a frame, {cv2.getNumThreads()} OpenCV threads, "
          f"median of {args.repeat}")
    print("| flow | s / pair | endpoint error (px, median) |")
    print("|---|---|---|")
    print(f"| ours (DIS MEDIUM, full resolution) | {statistics.median(ours_rounds):.4f} | "
          f"{endpoint_error(ours_flow, truth):.4f} |")
    print(f"| baseline (DIS MEDIUM preset, half resolution) | {statistics.median(base_rounds):.4f} | "
          f"{endpoint_error(base_flow, truth):.4f} |")
    print(f"ours / baseline time: {paired_ratio(ours_rounds, base_rounds):.2f}")
    print(f"flow_with_visibility (both directions + occlusion test): {vis_s:.4f} s; warping_error: {err_s:.4f} s; "
          f"{100 * float(valid.float().mean()):.1f} % of pixels visible")


if __name__ == "__main__":
    main()
