#!/usr/bin/env python
"""Evaluate a photo-to-HDR workflow against HDR references with a simulated camera.

  python scripts/evaluate.py --references refs/ --output eval/ --seed 0
  python scripts/evaluate.py --references refs/ --output eval/ --workflow my_photo_to_hdr.json --ray
  python scripts/evaluate.py --clip pan:tests/data/hdri/city.exr --output eval-clip/ --clip-frames 8
  python scripts/evaluate.py --clip frames/ --output eval-clip/      # a folder of HDR frames
  python scripts/evaluate.py --clip shot.mp4 --output eval-shot/ --clip-frames 24 --downscale 4

Each reference (.exr/.hdr) becomes an 8-bit photo (seeded random camera: exposure so that a share
of pixels clips, a sigmoid response curve, optional JPEG); the workflow (default: the shipped
photo_to_hdr) runs on every photo as a batch job, next to the baselines (the inverse camera curve,
Banterle 2006's inverse Reinhard, plain sRGB decoding); every result is scored with PU21-PSNR,
PU21-SSIM, HDR-FLIP and ColorVideoVDP. With --clip the references are the frames of one shot, filmed
by one camera, and each method's frames also get the warping error (temporal flicker; Lai et al.
2018) along the optical flow of the photos. An SDR video file as --clip gives the photos itself:
only the warping error is scored (there is no HDR reference), for LEDiff and the camera-free
baselines. Writes the report, results.csv, results.md, results.png and run.json (seeds, cameras,
versions, workflow hash), as one folder --output/report/ that appears whole or not at all. See
docs/batch.md.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lediff_runner.cli import add_host_arguments, add_ray_argument, add_threads_argument  # noqa: E402
from lediff_runner.evaluate import DEFAULT_WORKFLOW, evaluate  # noqa: E402


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 128x96") from None
    if w < 8 or h < 8 or w % 8 or h % 8:
        raise argparse.ArgumentTypeError(f"{text}: width and height must be multiples of 8 (the SD VAE's latent)")
    return w, h


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--references", help="folder of linear HDR references (.exr/.hdr)")
    source.add_argument("--clip", help="one shot instead: a folder of linear HDR frames (name order), "
                        "pan:FILE to pan across the equirect HDRI FILE, or an SDR video file (its frames are "
                        "the photos; warping error only); adds the warping error")
    parser.add_argument("--output", required=True, help="folder for photos, results and the report (new)")
    parser.add_argument("--workflow", default=None, help="UI- or API-format workflow whose Load Image node "
                        f"receives the photo (default: {os.path.relpath(DEFAULT_WORKFLOW)})")
    parser.add_argument("--input-node", default=None, help="id of the node that receives the photo, when the "
                        "workflow has several loaders")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated cameras (default 0)")
    parser.add_argument("--clip-share", type=float, default=None, help="share of pixels the exposure clips "
                        "(default: drawn per image from 5-15 %%, as HDRCNN)")
    parser.add_argument("--jpeg", type=int, default=None, metavar="QUALITY", help="JPEG-compress the photos")
    parser.add_argument("--downscale", type=int, default=1, help="box-downscale references by this factor first")
    parser.add_argument("--metrics", nargs="+", default=None, help="subset of the four metrics (default: all)")
    parser.add_argument("--clip-frames", type=int, default=None, help="frames of the clip (default: 8 for a pan "
                        "or a video, every frame of a folder)")
    parser.add_argument("--clip-start", type=int, default=0, help="a video's first frame (default 0)")
    parser.add_argument("--clip-stride", type=int, default=1, help="take every Nth frame of a video (default 1)")
    parser.add_argument("--clip-size", type=_size, default=(128, 96), metavar="WxH", help="a pan's frame size "
                        "(default 128x96; a multiple of 8)")
    parser.add_argument("--clip-step", type=int, default=2, help="a pan's motion in pixels a frame (default 2)")
    add_host_arguments(parser)
    add_threads_argument(parser)
    add_ray_argument(parser)
    parser.add_argument("--workers", type=int, default=None, help="Ray workers on CPU machines")
    return evaluate(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
