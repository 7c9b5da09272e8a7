"""Command-line plumbing shared by scripts/batch.py and scripts/evaluate.py."""

from __future__ import annotations

import argparse
import os

from .batch import BatchConfig, Outcome, report, run_local
from .workflow import load_workflow_file


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


def execute(config: BatchConfig, ray: str | None, workers: int | None, progress: bool = True) -> list[Outcome]:
    if ray is None:
        return run_local(config, progress=progress)
    from .ray_pool import import_ray, is_loopback, run_ray

    import_ray(local=ray == "local" or is_loopback(ray))  # a clear message before anything starts when Ray is missing
    return run_ray(config, None if ray == "local" else ray, workers, progress=progress)


def run_batch(args) -> int:
    # refused before ComfyUI starts and before anything is created: no empty --output is left behind
    # (the output folder appears with the first item that runs)
    if not os.path.isdir(args.inputs):
        raise SystemExit(f"--inputs {args.inputs}: no such folder; give the folder that holds the inputs")
    load_workflow_file(args.workflow)
    config = BatchConfig(workflow=args.workflow, inputs=args.inputs, output=args.output, comfyui=args.comfyui,
                         base_directory=args.base_directory, input_node=args.input_node, threads=args.threads)
    return report(execute(config, args.ray, args.workers))
