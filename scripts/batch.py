#!/usr/bin/env python
"""Run a ComfyUI workflow once per input file, in an embedded (in-process) ComfyUI or on Ray.

  python scripts/batch.py --workflow workflows/photo_to_hdr.json --inputs photos/ --output hdr/
  python scripts/batch.py ... --ray              # a local Ray cluster (one worker per GPU / --workers)
  python scripts/batch.py ... --ray HOST:6379    # join an existing Ray cluster

Each input's outputs go to OUTPUT/<input name>/ (with batch_item.json, written last); existing
items are skipped, so running the same command again does only what is missing. Exit status 1
when any item failed (the failures are listed at the end). See docs/batch.md.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lediff_runner.cli import add_host_arguments, add_ray_argument, add_threads_argument, run_batch  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflow", required=True, help="UI- or API-format workflow JSON")
    parser.add_argument("--inputs", required=True, help="folder of inputs: images (Load Image) or .exr/.hdr "
                        "(LEDiff Load EXR), whichever the workflow's loader takes")
    parser.add_argument("--output", required=True, help="folder for the results, one sub-folder per input")
    parser.add_argument("--input-node", default=None, help="id of the loader node that receives each input "
                        "(default: the workflow's only Load Image / Load EXR node)")
    add_host_arguments(parser)
    add_threads_argument(parser)
    add_ray_argument(parser)
    parser.add_argument("--workers", type=int, default=None, help="Ray workers on CPU machines (default: "
                        "the cluster's CPUs); with GPUs, one worker per GPU (at most this many)")
    args = parser.parse_args(argv)
    return run_batch(args)


if __name__ == "__main__":
    sys.exit(main())
