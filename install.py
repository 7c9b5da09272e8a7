#!/usr/bin/env python
"""Installs OpenCV for the pack's optical flow, unless this Python already has one.

ComfyUI-Manager runs a custom node's install.py after its requirements.txt, with ComfyUI's Python.
OpenCV ships as four distributions that all provide the same ``cv2`` module (opencv-python,
opencv-python-headless, opencv-contrib-python, opencv-contrib-python-headless); installing a
second one beside another breaks both, and many ComfyUI installs carry one already. So OpenCV is
not in requirements.txt: this script installs ``opencv-python-headless`` (no GUI libraries) with
pip into the running interpreter only when none of the four is installed, and otherwise says
which one the pack will use.

  python install.py            # install if needed
  python install.py --dry-run  # print the decision only
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys

DISTRIBUTIONS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
DEFAULT = "opencv-python-headless"


def installed_opencv() -> list[tuple[str, str]]:
    """(name, version) of every OpenCV distribution this interpreter's path has."""
    found = []
    for name in DISTRIBUTIONS:
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print what would be done, install nothing")
    args = parser.parse_args(argv)
    found = installed_opencv()
    if found:
        names = ", ".join(f"{n} {v}" for n, v in found)
        print(f"[lediff-hdr] OpenCV: using the installed {names}; installing nothing")
        if len(found) > 1:
            print("[lediff-hdr] WARNING: more than one OpenCV distribution is installed; they overwrite each "
                  "other's cv2 module: uninstall all but one (pip uninstall NAME)")
        return 0
    command = [sys.executable, "-m", "pip", "install", DEFAULT]
    if args.dry_run:
        print(f"[lediff-hdr] OpenCV: none installed; would install {DEFAULT}: {' '.join(command)}")
        return 0
    print(f"[lediff-hdr] OpenCV: none installed; installing {DEFAULT}")
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
