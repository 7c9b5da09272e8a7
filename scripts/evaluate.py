#!/usr/bin/env python
"""Evaluate a photo-to-HDR workflow against HDR references with a simulated camera.

  python scripts/evaluate.py --references refs/ --output eval/ --seed 0
  python scripts/evaluate.py --references refs/ --output eval/ --workflow my_photo_to_hdr.json --ray

Each reference (.exr/.hdr) becomes an 8-bit photo (seeded random camera: exposure so that a share
of pixels clips, a sigmoid response curve, optional JPEG); the workflow (default: the shipped
photo_to_hdr) runs on every photo as a batch job, next to the baselines (the inverse camera curve,
Banterle 2006's inverse Reinhard, plain sRGB decoding); every result is scored with PU21-PSNR,
PU21-SSIM, HDR-FLIP and ColorVideoVDP. Writes results.csv, results.md, results.png and run.json
(seeds, cameras, versions, workflow hash) into --output. See docs/batch.md.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lediff_runner.cli import add_host_arguments, add_ray_argument, add_threads_argument  # noqa: E402
from lediff_runner.evaluate import DEFAULT_WORKFLOW, evaluate  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--references", required=True, help="folder of linear HDR references (.exr/.hdr)")
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
    add_host_arguments(parser)
    add_threads_argument(parser)
    add_ray_argument(parser)
    parser.add_argument("--workers", type=int, default=None, help="Ray workers on CPU machines")
    return evaluate(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
