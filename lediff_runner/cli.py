"""``python -m lediff_runner {batch,evaluate}``: a workflow over a folder of inputs, or the evaluation
of photo-to-HDR workflows against HDR references, in an embedded ComfyUI or on Ray.

Run it from the pack's folder (where ``lediff_runner/`` is), as ``python -m lediff_train``.
"""

from __future__ import annotations

import argparse
import os

from .batch import BatchConfig, Pair, plan_batch, report
from .workflow import load_workflow_file

BATCH = """Run a ComfyUI workflow once per input file, in an embedded (in-process) ComfyUI or on Ray.

  python -m lediff_runner batch --workflow workflows/photo_to_hdr.json --inputs photos/ --output hdr/
  python -m lediff_runner batch ... --ray              # a local Ray cluster (one worker per GPU / --workers)
  python -m lediff_runner batch ... --ray HOST:6379    # join an existing Ray cluster
  python -m lediff_runner batch --workflow workflows/hdr_depth_of_field.json --inputs photos/ \\
      --pair 4=depths/ --output dof/                     # photos/NAME.png with depths/NAME.png

Each input's outputs go to OUTPUT/<input name>/ (with batch_item.json, written last); existing
items are skipped, so running the same command again does only what is missing. Exit status 1
when any item failed (the failures are listed at the end). See docs/batch.md.
"""

EVALUATE = """Evaluate photo-to-HDR workflows against HDR references with a simulated camera.

  python -m lediff_runner evaluate --references refs/ --output eval/ --seed 0
  python -m lediff_runner evaluate --references refs/ --output eval/ --workflow my_photo_to_hdr.json --ray
  python -m lediff_runner evaluate --references refs/ --output eval/ \\
      --workflow steps50=workflows/photo_to_hdr.json --workflow steps20=photo_to_hdr_20_steps.json
  python -m lediff_runner evaluate --clip pan:tests/data/hdri/city.exr --output eval-clip/ --clip-frames 8
  python -m lediff_runner evaluate --clip frames/ --output eval-clip/      # a folder of HDR frames
  python -m lediff_runner evaluate --clip shot.mp4 --output eval-shot/ --clip-frames 24 --downscale 4

Each reference (.exr/.hdr) becomes an 8-bit photo (seeded random camera: exposure so that a share
of pixels clips, a sigmoid response curve, optional JPEG); every workflow (--workflow NAME=FILE,
repeatable; a FILE without NAME= is the method "lediff"; default: the shipped photo_to_hdr) runs on
the same photos as a batch job, next to the baselines (the inverse camera curve, Banterle 2006's
inverse Reinhard, plain sRGB decoding); every result is scored with PU21-PSNR, PU21-SSIM, HDR-FLIP,
ColorVideoVDP and FovVideoVDP against its reference and PU21-PIQE on its own. A method that fails is
reported, the others go on (exit status 1). With --clip
the references are the frames of one shot, filmed by one camera, and each method's frames also get
the warping error (temporal flicker; Lai et al. 2018) along the optical flow of the photos. An SDR
video file as --clip gives the photos itself: only the warping error is scored (there is no HDR
reference), for the workflows and the camera-free baselines. Writes the report: one table and one
plot with every method and baseline as rows (mean and 95 % interval over images per region and
metric, seconds per megapixel), results.csv, summary.csv, results.md, results.png and run.json (the
protocol card: scaling, display model, regions, cameras, metrics, versions; workflow hashes), as
one folder --output/report/ that appears whole or not at all. See docs/batch.md.
"""


def add_host_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--comfyui", default=None, help="ComfyUI's folder (with main.py); default: "
                        "$LEDIFF_COMFYUI, the ComfyUI this pack is installed in, or .dev/ComfyUI")
    parser.add_argument("--base-directory", default=None, help="ComfyUI's --base-directory: models/, "
                        "custom_nodes/ and user/ below it (inputs and outputs are the batch's own)")


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=_at_least_one, default=1, metavar="N",
                        help="torch CPU threads per worker, in-process and on Ray alike (default 1; a CPU-only "
                        "Ray cluster then reserves N CPUs per worker). CPU results depend on the thread count, "
                        "so the same N gives bit-identical outputs wherever an item runs; on a GPU it only "
                        "affects the little work done on the CPU")


def add_ray_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="run on Ray: alone, a local cluster; with ADDRESS (host:port or ray://...), "
                        "join that cluster")


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workflow", required=True, help="UI- or API-format workflow JSON")
    parser.add_argument("--inputs", required=True, help="folder of inputs: images (Load Image) or .exr/.hdr "
                        "(LEDiff Load EXR), whichever the workflow's loader takes")
    parser.add_argument("--output", required=True, help="folder for the results, one sub-folder per input")
    parser.add_argument("--input-node", default=None, help="id of the loader node that receives each input "
                        "(default: the workflow's only Load Image / Load EXR / Load Video node not named by --pair)")
    parser.add_argument("--pair", action="append", type=_pair, default=[], metavar="ID=FOLDER",
                        help="feed loader node ID, for each input NAME.EXT, the file NAME.* of FOLDER (one per "
                        "input; ID=FOLDER/{stem}_depth for FOLDER/NAME_depth.*), e.g. a depth map per photo; "
                        "repeatable, one per loader. An input without exactly one such file refuses the whole "
                        "batch before anything runs")
    add_host_arguments(parser)
    add_threads_argument(parser)
    add_ray_argument(parser)
    parser.add_argument("--workers", type=int, default=None, help="Ray workers on CPU machines (default: "
                        "the cluster's CPUs); with GPUs, one worker per GPU (at most this many)")


def _pair(text: str) -> Pair:
    try:
        return Pair.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 128x96") from None
    if w < 8 or h < 8 or w % 8 or h % 8:
        raise argparse.ArgumentTypeError(f"{text}: width and height must be multiples of 8 (the SD VAE's latent)")
    return w, h


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--references", help="folder of linear HDR references (.exr/.hdr)")
    source.add_argument("--clip", help="one shot instead: a folder of linear HDR frames (name order), "
                        "pan:FILE to pan across the equirect HDRI FILE, or an SDR video file (its frames are "
                        "the photos; warping error only); adds the warping error")
    parser.add_argument("--output", required=True, help="folder for photos, results and the report (new)")
    parser.add_argument("--workflow", action="append", default=None, metavar="[NAME=]FILE",
                        help="a method: a UI- or API-format workflow whose Load Image node receives the photo, "
                        "named NAME (letters, digits, _ . + -; its folder in --output and its rows in the report). "
                        "Repeat for several methods, all on the same photos; a FILE without NAME= is the method "
                        "'lediff' (default: the shipped workflows/photo_to_hdr.json as 'lediff')")
    parser.add_argument("--input-node", default=None, help="id of the node that receives the photo, when a "
                        "workflow has several loaders (the same id in every --workflow)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated cameras (default 0)")
    parser.add_argument("--clip-share", type=float, default=None, help="share of pixels the exposure clips "
                        "(default: drawn per image from 5-15 %%, as HDRCNN)")
    parser.add_argument("--jpeg", type=int, default=None, metavar="QUALITY", help="JPEG-compress the photos")
    parser.add_argument("--downscale", type=int, default=1, help="box-downscale references by this factor first")
    parser.add_argument("--metrics", nargs="+", default=None, help="subset of the metrics (default: all; "
                        "lediff_core.qa.metrics.METRICS)")
    parser.add_argument("--scaling", choices=("align", "absolute", "crf"), default=None,
                        help="how results and references become cd/m^2 before "
                        "scoring: align (default), absolute or crf (align, then the SI-HDR CRF correction); "
                        "docs/nodes.md, HDR Metrics")
    parser.add_argument("--regions", nargs="+", choices=("image", "highlights", "shadows"), default=None,
                        help="score each full-reference metric over these regions of the photo, side by side: "
                        "image, highlights (clipped pixels), shadows (crushed pixels) (default: image)")
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


def run_evaluate(args) -> int:
    from .evaluate import evaluate

    return evaluate(args)


def run_batch(args) -> int:
    # refused before ComfyUI starts and before anything is created: no empty --output is left behind
    # (the output folder appears with the first item that runs)
    if not os.path.isdir(args.inputs):
        raise SystemExit(f"--inputs {args.inputs}: no such folder; give the folder that holds the inputs")
    load_workflow_file(args.workflow)
    config = BatchConfig(workflow=args.workflow, inputs=args.inputs, output=args.output, comfyui=args.comfyui,
                         base_directory=args.base_directory, input_node=args.input_node, pairs=tuple(args.pair),
                         threads=args.threads)
    try:  # the loaders and every --pair partner, checked from the workflow file alone
        items = plan_batch(config)
    except ValueError as e:
        raise SystemExit(f"batch refused: {e}") from None
    from .ray_pool import execute

    return report(execute(config, args.ray, args.workers, items=items))


# name: (what it does, its --help text, the function adding its options, the function running it)
COMMANDS = {
    "batch": ("run a workflow once per input file (OUTPUT/<input name>/, resumable; in-process or on Ray)",
              BATCH, add_batch_arguments, run_batch),
    "evaluate": ("score photo-to-HDR workflows (one or several) and baselines against HDR references",
                 EVALUATE, add_evaluate_arguments, run_evaluate),
}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m lediff_runner", epilog="See docs/batch.md.",
                                 description="Run workflows in an embedded ComfyUI: a batch over a folder of "
                                 "inputs, or an evaluation against HDR references.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, (help_text, description, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(p)
        p.set_defaults(run=run)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)
