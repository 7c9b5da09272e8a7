#!/usr/bin/env python
"""Make the README's picture, docs/images/exposure_strip.jpg: a real HDR through the pack's own nodes.

    .dev/venv/bin/python scripts/make_readme_image.py [--hdri tests/data/hdri/sunset.exr]

Runs Load EXR -> Exposure Strip in an embedded genuine ComfyUI (lediff_runner's host, --cpu without
a GPU) on a CC0 HDRI from tests/data/hdri/ and writes the strip the node shows as a JPEG. It is a
real HDR, not a LEDiff result: no LEDiff weights may be redistributed or downloaded here, and the
tests' random-weight models make noise. Replace it with a strip of a LEDiff output (HDR Decode ->
Exposure Strip) once real weights are at hand; docs/images/README.md says which it is. The
existing picture is replaced (a source we maintain, like the workflows' thumbnails).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)

from lediff_runner.host import EmbeddedComfyUI  # noqa: E402

OUT = os.path.join(ROOT, "docs", "images", "exposure_strip.jpg")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hdri", default=os.path.join(ROOT, "tests", "data", "hdri", "sunset.exr"))
    parser.add_argument("--ev", default="-6,2,2", help="ev_min,ev_max,ev_step (default: -6,2,2)")
    parser.add_argument("--panel-width", type=int, default=320)
    args = parser.parse_args(argv)
    ev_min, ev_max, ev_step = (float(v) for v in args.ev.split(","))

    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = os.path.join(tmp, "input"), os.path.join(tmp, "output")
        os.makedirs(inputs)
        os.makedirs(outputs)
        shutil.copy(args.hdri, os.path.join(inputs, "hdri.exr"))
        host = EmbeddedComfyUI(custom_nodes=False, cached=False)
        host.set_folders(input_dir=inputs, output_dir=outputs)
        graph = {
            "load": {"class_type": "LEDiffLoadEXR", "inputs": {"image": "hdri.exr", "layer": ""}},
            "strip": {"class_type": "LEDiffExposureStrip",
                      "inputs": {"image": ["load", 0], "ev_min": ev_min, "ev_max": ev_max, "ev_step": ev_step,
                                 "panel_width": args.panel_width}},
        }
        shown = host.run(graph)["strip"]["images"][0]
        png = os.path.join(host.temp_dir, shown["subfolder"], shown["filename"])
        os.makedirs(os.path.dirname(OUT), exist_ok=True)
        # a maintained source file, replaced in one step: never left half-written
        partial = OUT + ".partial"
        Image.open(png).convert("RGB").save(partial, format="JPEG", quality=88, optimize=True)
        os.replace(partial, OUT)
        host.close()
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
