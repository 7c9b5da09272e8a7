"""The evaluation: linear HDR references -> simulated camera photos -> the workflow (a batch job on
the shared runner) and the baselines -> four full-reference HDR metrics -> CSV, Markdown, plot and
a record of everything used.

Layout of ``--output``:
  ldr/<name>.png                 the simulated photos (the workflow's inputs)
  reference/<name>.exr           the references as scored (cropped/downscaled)
  lediff/<name>/...              the workflow's outputs per photo (a batch output folder)
  baselines/<method>/<name>.exr  the baselines' reconstructions
  report/                        results.csv, results.md, results.png, run.json: published together

With ``--clip`` the references are the frames of one shot (a folder of HDR frames, or a pan across
an equirect HDRI, ``pan:FILE``): one camera (exposure, curve) films the whole shot, every frame is
scored as above, and the warping error of each method's frames (Lai et al. 2018, on log2
luminance, along the DIS flow of the LDR photos; docs/batch.md) is added as the image ``clip``.
``--clip`` may also be an SDR video file: its frames are the photos (no simulated camera, no HDR
reference), so only the warping errors are scored, for LEDiff and the baselines that need no camera.

Intermediate files are reused when present (an interrupted evaluation resumes). The report is one
folder, filled under a hidden staging name and renamed into place in one step (``write_new_folder``):
it appears whole or not at all, so results never stand without the run.json that says how they were
made, and it is written once (a finished evaluation is never overwritten). Inputs are checked
(workflow, references) before any folder is created.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
import time
from importlib import metadata

import numpy as np

from lediff_core.io.exr import read_exr, write_exr
from lediff_core.io.publish import write_new_file, write_new_folder
from lediff_core.io.readers import EXTENSIONS as HDR_EXTENSIONS
from lediff_core.io.readers import read_linear_image
from lediff_core.qa.baselines import BASELINES, CAMERA_BASELINES
from lediff_core.qa.camera import capture, crop_to_multiple, downscale, sample_camera

from .batch import MANIFEST, BatchConfig, sha256_file
from .ray_pool import execute
from .workflow import VIDEO_EXTENSIONS, load_workflow_file, workflow_hash

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORKFLOW = os.path.join(REPO, "workflows", "photo_to_hdr.json")
METHOD = "lediff"
REPORT = "report"  # the folder of the report files (results.csv, .md, .png, run.json), published together
DEFAULT_CLIP_FRAMES = 8  # of a pan or a video file
PAN_FACTOR = 4  # a pan's frames are crops of the panorama this many times larger, unless --downscale says


def _rng(seed: int, index: int) -> np.random.Generator:
    # one stream per reference: a reference's camera does not depend on the others
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def reference_files(references: str) -> list[str]:
    names = sorted(f for f in os.listdir(references) if f.lower().endswith(HDR_EXTENSIONS))
    if not names:
        raise FileNotFoundError(f"{references}: no {'/'.join(HDR_EXTENSIONS)} files")
    return [os.path.join(references, n) for n in names]


def prepare(references: str, output: str, seed: int, clip_share: float | None, jpeg: int | None,
            factor: int, frames: list[tuple[str, np.ndarray]] | None = None) -> list[dict]:
    """Simulated photos and scored references for every reference file; returns one record each.
    With ``frames`` (the (source file, HDR frame) pairs of one clip, already cut) the references
    are those frames and one camera, drawn on the first frame, films them all; frames that are
    8-bit photos already (an SDR video's) are the photos, without camera or reference."""
    paths = reference_files(references) if frames is None else [p for p, _ in frames]
    for sub in ("ldr", "reference"):
        os.makedirs(os.path.join(output, sub), exist_ok=True)
    records, shot_camera = [], None
    for index, path in enumerate(paths):
        key = os.path.splitext(os.path.basename(path))[0] if frames is None else f"frame_{index:04d}"
        hdr = camera = None
        if frames is None:
            hdr = crop_to_multiple(downscale(np.maximum(read_linear_image(path).rgb, 0.0), factor), 8)
            camera = sample_camera(hdr, _rng(seed, index), clip_share, jpeg)
        elif frames[index][1].dtype != np.uint8:
            hdr = frames[index][1]
            shot_camera = shot_camera or sample_camera(hdr, _rng(seed, 0), clip_share, jpeg)
            camera = shot_camera
        ldr = frames[index][1] if hdr is None else capture(hdr, camera)  # an SDR video's frame is the photo
        _write_once(os.path.join(output, "ldr", f"{key}.png"), lambda p, ldr=ldr: _save_png(p, ldr),
                    lambda p, ldr=ldr: np.array_equal(_load_png(p), ldr))
        if hdr is not None:
            _write_once(os.path.join(output, "reference", f"{key}.exr"),
                        lambda p, hdr=hdr: write_exr(p, hdr, precision="float"),
                        lambda p, hdr=hdr: np.array_equal(read_exr(p).rgb, hdr))
        records.append({"name": key, "reference": os.path.abspath(path) if hdr is not None else None,
                        "reference_sha256": sha256_file(path) if hdr is not None and os.path.isfile(path) else None,
                        "size": [int(ldr.shape[1]), int(ldr.shape[0])],
                        "camera": camera.as_dict() if camera is not None else None,
                        "clipped_share_8bit": float(np.mean(ldr.max(axis=-1) == 255))})
    return records


def _save_png(path, ldr):
    from PIL import Image

    Image.fromarray(ldr).save(path, format="PNG")


def _load_png(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _write_once(path, write, same) -> None:
    """Write a new file, or check that an existing one (an interrupted run's) holds the same data."""
    if os.path.exists(path):
        if not same(path):
            raise FileExistsError(f"{path} exists with different content (another seed or camera setting?): "
                                  "use a new --output")
        return
    write_new_file(path, write)


def lediff_result(output: str, key: str) -> str:
    """The first EXR the workflow saved for one photo (from the batch item's manifest)."""
    folder = os.path.join(output, "lediff", key)
    with open(os.path.join(folder, MANIFEST)) as f:
        exrs = [p for p in json.load(f)["outputs"] if p.lower().endswith(".exr")]
    if not exrs:
        raise RuntimeError(f"the workflow saved no EXR for {key}: it needs a LEDiff Save EXR node")
    return os.path.join(folder, exrs[0])


def baseline_methods(records: list[dict]) -> list[str]:
    """The baselines these photos can have: those that need the camera only where it is known (an
    SDR video's is not)."""
    known = all(r["camera"] is not None for r in records)
    return [m for m in BASELINES if known or m not in CAMERA_BASELINES]


def baselines(output: str, records: list[dict]) -> None:
    from lediff_core.qa.camera import Camera

    for method in baseline_methods(records):
        fn = BASELINES[method]
        os.makedirs(os.path.join(output, "baselines", method), exist_ok=True)
        for r in records:
            ldr = _load_png(os.path.join(output, "ldr", f"{r['name']}.png"))
            hdr = fn(ldr, Camera(**r["camera"]) if r["camera"] else None)
            _write_once(os.path.join(output, "baselines", method, f"{r['name']}.exr"),
                        lambda p, hdr=hdr: write_exr(p, hdr, precision="float"),
                        lambda p, hdr=hdr: np.array_equal(read_exr(p).rgb, hdr))


def score(output: str, records: list[dict], metrics: list[str], failed: set[str], scaling: str = "align",
          regions=("image",)) -> list[dict]:
    """One row per image, method, metric and region (``qa.metrics.region_key``: ``pu21_psnr`` for
    the whole image, ``pu21_psnr@highlights`` ...; the regions come from the photo in ldr/)."""
    from lediff_core.qa.metrics import NO_REFERENCE, compute_metric_regions, piqe_scale, region_key

    scored = [r for r in records if r["reference"] is not None]  # an SDR video's frames: nothing to compare with
    tests = {r["name"]: {**({} if r["name"] in failed else {METHOD: lediff_result(output, r["name"])}),
                         **{m: os.path.join(output, "baselines", m, f"{r['name']}.exr") for m in BASELINES}}
             for r in scored}
    # PU21-PIQE scales a method's images as one set (the mean of their 99.9th percentiles)
    factors = {}
    if set(metrics) & set(NO_REFERENCE):
        for method in dict.fromkeys(m for t in tests.values() for m in t):
            factors[method] = piqe_scale([read_exr(t[method]).rgb for t in tests.values() if method in t])
    rows = []
    for r in scored:
        reference = read_exr(os.path.join(output, "reference", f"{r['name']}.exr")).rgb
        ldr = _load_png(os.path.join(output, "ldr", f"{r['name']}.png")) if set(regions) - {"image"} else None
        for method, path in tests[r["name"]].items():
            test = read_exr(path).rgb
            if test.shape != reference.shape:
                raise ValueError(f"{method} gave {test.shape[1]}x{test.shape[0]} for {r['name']}, the reference "
                                 f"is {reference.shape[1]}x{reference.shape[0]}: the workflow must keep the "
                                 "photo's size")
            for metric in metrics:
                start = time.perf_counter()
                results = compute_metric_regions(test, reference, metric, ldr, scaling=scaling, regions=regions,
                                                 piqe_factor=factors.get(method))
                seconds = round(time.perf_counter() - start, 3)
                rows += [{"image": r["name"], "method": method, "metric": region_key(metric, region),
                          "score": result.score, "seconds": seconds} for region, result in results.items()]
    return rows


CLIP = "clip"  # the image name of the rows that score a whole clip
CLIP_METRICS = ("warping_error", "warping_error_clipped", "cvvdp_video", "fvvdp_video")
CLIP_FPS = 24.0  # the frame rate a pan or a folder of frames is shown at, for the video metrics
LOWER_IS_BETTER = {"warping_error", "warping_error_clipped"}


def load_clip(spec: str, factor: int, frames: int | None, size: tuple[int, int], step: int,
              start: int = 0, stride: int = 1) -> tuple[list, dict]:
    """The (source file, frame) pairs of ``--clip``: ``pan:FILE`` pans across the equirect HDRI
    FILE (lediff_core.qa.clips.equirect_pan: ``frames`` frames of ``size``, ``step`` pixels a frame,
    each a crop ``factor`` times larger, box-downscaled); a folder holds one linear HDR frame per
    file, in name order (downscaled by ``factor``, cut to a multiple of 8; the first ``frames``);
    an SDR video file gives 8-bit frames (``frames`` of them, default 8, from ``start`` every
    ``stride``; box-downscaled by ``factor`` in code values, as a video scaler does, and cut to a
    multiple of 8)."""
    from lediff_core.io.video import read_sdr_frames
    from lediff_core.qa.clips import equirect_pan

    if spec.lower().endswith(VIDEO_EXTENSIONS):
        ldr, rate = read_sdr_frames(spec, start, frames or DEFAULT_CLIP_FRAMES, stride)
        out = [crop_to_multiple(np.round(downscale(f.astype(np.float32), factor)).astype(np.uint8), 8) for f in ldr]
        return [(spec, f) for f in out], {
            "source": "video", "file": os.path.abspath(spec), "file_sha256": sha256_file(spec), "fps": float(rate),
            "start": start, "stride": stride, "frames": len(out), "size": [out[0].shape[1], out[0].shape[0]],
            "factor": factor}
    if start or stride != 1:
        raise ValueError(f"--clip {spec}: --clip-start and --clip-stride pick frames of a video file")

    if spec.startswith("pan:"):
        path = spec[4:]
        if not os.path.lexists(path):  # a FIFO or a folder is refused by name when read (access.check_readable)
            raise FileNotFoundError(f"--clip {spec}: no such file (pan:FILE pans across an equirect HDRI)")
        hdr, _ = equirect_pan(read_linear_image(path).rgb, frames or DEFAULT_CLIP_FRAMES, size, step, factor)
        return [(path, f) for f in hdr], {"source": "pan", "panorama": os.path.abspath(path),
                                         "frames": len(hdr), "size": list(size), "step_px": step, "factor": factor}
    if not os.path.isdir(spec):
        raise FileNotFoundError(f"--clip {spec}: neither a folder of HDR frames, a video file "
                                f"({'/'.join(VIDEO_EXTENSIONS)}) nor pan:FILE")
    paths = reference_files(spec)[:frames]
    out = [(p, crop_to_multiple(downscale(np.maximum(read_linear_image(p).rgb, 0.0), factor), 8)) for p in paths]
    if len({f.shape for _, f in out}) != 1:
        raise ValueError(f"--clip {spec}: the frames differ in size; a clip's frames must all have one size")
    return out, {"source": "frames", "folder": os.path.abspath(spec), "frames": len(out), "factor": factor}


def score_clip(output: str, records: list[dict], failed: set[str], clip_threshold: float = 0.99,
               metrics=(), scaling: str = "align") -> list[dict]:
    """Warping error of every method's frames (and of the references themselves) along the flow of the
    LDR photos, with the forward-backward visibility test; the second score in the photos' clipped pixels.
    With references, ``cvvdp``/``fvvdp`` in ``metrics`` also score each method's frames as one video
    (``<metric>_video``, at CLIP_FPS)."""
    import torch

    from lediff_core.qa.metrics import VIDEO_METRICS, compute_clip_metric
    from lediff_core.qa.temporal import warping_error
    from lediff_core.video.flow import flow_with_visibility

    ldr = np.stack([_load_png(os.path.join(output, "ldr", f"{r['name']}.png")) for r in records]) / np.float32(255)
    flow, valid = flow_with_visibility(torch.from_numpy(ldr.astype(np.float32)))
    region = torch.from_numpy((ldr >= clip_threshold).any(-1))
    methods = {}
    if all(r["reference"] is not None for r in records):
        methods["reference"] = [os.path.join(output, "reference", f"{r['name']}.exr") for r in records]
    if not failed:
        methods[METHOD] = [lediff_result(output, r["name"]) for r in records]
    methods.update({m: [os.path.join(output, "baselines", m, f"{r['name']}.exr") for r in records]
                    for m in baseline_methods(records)})
    rows = []
    for method, paths in methods.items():
        start = time.perf_counter()
        frames = np.stack([read_exr(p).rgb for p in paths])
        result = warping_error(frames, flow, valid=valid, region=region)
        seconds = round(time.perf_counter() - start, 3)
        rows += [{"image": CLIP, "method": method, "metric": "warping_error", "score": result["overall"],
                  "seconds": seconds},
                 {"image": CLIP, "method": method, "metric": "warping_error_clipped", "score": result["region"],
                  "seconds": seconds}]
        for metric in (m for m in VIDEO_METRICS if m in metrics and "reference" in methods and method != "reference"):
            start = time.perf_counter()
            references = np.stack([read_exr(p).rgb for p in methods["reference"]])
            video = compute_clip_metric(frames, references, metric, CLIP_FPS, scaling)
            rows.append({"image": CLIP, "method": method, "metric": f"{metric}_video", "score": video.score,
                         "seconds": round(time.perf_counter() - start, 3)})
    return rows


def summary(rows: list[dict], metrics: list[str]) -> tuple[list[str], dict]:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    means = {}
    for m in methods:
        for k in metrics:
            values = [r["score"] for r in rows if r["method"] == m and r["metric"] == k]
            if values:
                means[(m, k)] = float(np.mean(values))
    return methods, means


def markdown(rows, metrics, records, provenance) -> str:
    from lediff_core.qa import metrics as qa

    better = {**getattr(qa, "HIGHER_IS_BETTER", {}), **{k: False for k in LOWER_IS_BETTER}}
    clip_metrics = [k for k in CLIP_METRICS if any(r["metric"] == k for r in rows)]
    frame_metrics, metrics = metrics, [*metrics, *clip_metrics]
    methods, means = summary(rows, metrics)
    head = [f"{k} ({'higher' if better.get(k, True) else 'lower'} is better)" for k in metrics]
    what = f"a clip of {len(records)} frames" if provenance.get("clip") else f"{len(records)} references"
    lines = [f"# Evaluation: {what}, seed {provenance['seed']}", "",
             f"Mean over images; scaling `{provenance['scaling']}`. "
             f"Workflow `{os.path.basename(provenance['workflow'])}` "
             f"(sha256 {provenance['workflow_sha256'][:12]}).", "",
             "| method | " + " | ".join(head) + " |", "|---|" + "---:|" * len(metrics)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(f"{means[(m, k)]:.4f}" if (m, k) in means else "–"
                                             for k in metrics) + " |")
    if clip_metrics:
        floor = ("; `reference` is the references' own (the flow's floor)" if "reference" in methods
                 else "; an SDR video has no HDR reference, so no frame is scored against one")
        lines += ["", f"{', '.join(clip_metrics)}: stops² of log2 luminance between each frame and the previous one "
                  f"warped along the DIS flow of the LDR photos (Lai et al. 2018), over the whole clip{floor}."]
    if frame_metrics:
        lines += ["", "Per image:", "", "| image | method | " + " | ".join(frame_metrics) + " |",
                  "|---|---|" + "---:|" * len(frame_metrics)]
    for r in records:  # an SDR video's frames have no rows of their own
        for m in methods:
            vals = {x["metric"]: x["score"] for x in rows if x["image"] == r["name"] and x["method"] == m}
            if vals:
                lines.append(f"| {r['name']} | {m} | " + " | ".join(f"{vals[k]:.4f}" for k in frame_metrics) + " |")
    if provenance["failed"]:
        lines += ["", "Workflow failed on: " + ", ".join(provenance["failed"])]
    return "\n".join(lines) + "\n"


def plot(path: str, rows, metrics) -> None:
    """The figure of the means and per-image scores as a PNG at ``path`` (in the report's staging folder)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [*metrics, *(k for k in CLIP_METRICS if any(r["metric"] == k for r in rows))]
    methods, means = summary(rows, metrics)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2), squeeze=False)
    for ax, k in zip(axes[0], metrics, strict=True):
        per_image = [[r["score"] for r in rows if r["method"] == m and r["metric"] == k] for m in methods]
        ax.bar(range(len(methods)), [means.get((m, k), np.nan) for m in methods], color="#4c72b0")
        for i, values in enumerate(per_image):
            ax.plot([i] * len(values), values, "k.", markersize=4)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(k, fontsize=9)
    fig.suptitle("mean (bars) and per image (dots)", fontsize=9)
    try:
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=110)
    finally:
        plt.close(fig)


def versions() -> dict:
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("torch", "numpy", "OpenEXR", "cvvdp", "flip-evaluator", "ray", "Pillow", "matplotlib"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def comfyui_version(comfyui: str | None) -> str | None:
    from .host import default_comfyui

    path = os.path.join(comfyui or default_comfyui(), "comfyui_version.py")
    if os.path.isfile(path):
        for line in open(path):
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    return None


def pack_version() -> str | None:
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["version"]


def evaluate(args) -> int:
    from lediff_core.qa.metrics import METRICS

    metrics = args.metrics or list(METRICS)
    output = os.path.abspath(args.output)
    if os.path.lexists(os.path.join(output, REPORT)):
        raise SystemExit(f"{output} already holds a finished evaluation ({REPORT}/): choose a new --output")
    workflow_path = os.path.abspath(args.workflow or DEFAULT_WORKFLOW)
    workflow = load_workflow_file(workflow_path)
    clip = getattr(args, "clip", None)
    if not clip:
        reference_files(args.references)  # no reference is refused before any folder is made
    clip_info = None
    if clip:
        factor = PAN_FACTOR if clip.startswith("pan:") and args.downscale == 1 else args.downscale
        frames, clip_info = load_clip(clip, factor, args.clip_frames, args.clip_size, args.clip_step,
                                      args.clip_start, args.clip_stride)
        if clip_info["source"] == "video":
            given = [flag for flag, value in (("--clip-share", args.clip_share), ("--jpeg", args.jpeg),
                                              ("--metrics", args.metrics)) if value is not None]
            if given:
                raise SystemExit(f"--clip {clip} is a video: its frames are the photos, there is no simulated "
                                 f"camera or HDR reference, so {', '.join(given)} cannot apply; leave them out")
            metrics = []
        records = prepare(clip, output, args.seed, args.clip_share, args.jpeg, factor, frames=frames)
    else:
        records = prepare(args.references, output, args.seed, args.clip_share, args.jpeg, args.downscale)
    config = BatchConfig(workflow=workflow_path, inputs=os.path.join(output, "ldr"),
                         output=os.path.join(output, "lediff"), comfyui=args.comfyui,
                         base_directory=args.base_directory, input_node=args.input_node, threads=args.threads)
    os.makedirs(config.output, exist_ok=True)
    outcomes = execute(config, args.ray, args.workers)
    failed = {o.item.key: o.message for o in outcomes if not o.ok}
    baselines(output, records)
    scaling = getattr(args, "scaling", None) or "align"
    regions = tuple(getattr(args, "regions", None) or ("image",))
    rows = score(output, records, metrics, set(failed), scaling, regions)
    if clip:
        rows += score_clip(output, records, set(failed), metrics=metrics, scaling=scaling)
    if regions != ("image",):  # the report's columns: every region of every metric, side by side
        from lediff_core.qa.metrics import NO_REFERENCE, region_key

        metrics = [region_key(m, g) for m in metrics for g in regions if g == "image" or m not in NO_REFERENCE]
    model_files = {}
    if args.base_directory:
        lediff_dir = os.path.join(args.base_directory, "models", "lediff")
        for d, _, fs in os.walk(lediff_dir):
            for f in fs:
                if f.endswith((".safetensors", ".bin", ".pth")):
                    p = os.path.join(d, f)
                    model_files[os.path.relpath(p, lediff_dir)] = os.path.getsize(p)
    provenance = {
        "command": ["python", "-m", "lediff_runner", *sys.argv[1:]], "seed": args.seed,
        "camera": {"clip_share": args.clip_share if args.clip_share is not None else "uniform 5-15 %",
                   "jpeg_quality": args.jpeg, "downscale": args.downscale, "model": "sigmoid (1+a)E^n/(E^n+a), "
                   "n~N(0.9,0.1), a~N(0.6,0.1), 8-bit"},
        "workflow": workflow_path, "workflow_sha256": workflow_hash(workflow),
        "workflow_file_sha256": sha256_file(workflow_path), "metrics": metrics, "scaling": scaling,
        "baselines": list(BASELINES), "references": records, "failed": failed, "clip": clip_info,
        "versions": {**versions(), "comfyui": comfyui_version(args.comfyui), "lediff_hdr": pack_version()},
        "lediff_model_files": model_files, "ray": args.ray, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = write_report(output, rows, metrics, records, provenance)
    print(text)
    for key, message in failed.items():
        print(f"  FAILED {key}: {message}", file=sys.stderr)
    return 1 if failed else 0


def write_report(output: str, rows: list[dict], metrics: list[str], records: list[dict], provenance: dict) -> str:
    """Publish ``OUTPUT/report/`` (results.csv, results.md, results.png, run.json) whole or not at
    all; returns the Markdown table.

    The files are written into a hidden staging folder beside it, which is renamed into place in
    one step that never replaces an existing folder, with the umask's permissions
    (``publish.write_new_folder``). A failure while writing any of them (a full disk at the figure)
    removes the staging folder and publishes nothing: the error says what failed and that running
    the same command again, with the intermediates reused, writes the report.
    """
    path = os.path.join(output, REPORT)
    text = markdown(rows, metrics, records, provenance)

    def write_csv(p):
        with open(p, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["image", "method", "metric", "score", "seconds"])
            writer.writeheader()
            writer.writerows(rows)

    writers = {"results.csv": write_csv, "results.md": lambda p: _write_text(p, text),
               "results.png": lambda p: plot(p, rows, metrics),
               "run.json": lambda p: _write_text(p, json.dumps(provenance, indent=1, default=str))}
    writing = None

    def fill(staging):
        nonlocal writing
        for writing, write in writers.items():
            write(os.path.join(staging, writing))
        writing = None

    try:
        write_new_folder(path, fill)
    except FileExistsError:
        raise SystemExit(f"{path} appeared while this evaluation ran (another run finished it): kept it, "
                         "discarded this report; choose a new --output to keep both") from None
    except OSError as e:
        what = f"{REPORT}/{writing}" if writing else f"{REPORT}/"
        raise SystemExit(f"could not write {what} in {output} ({e.strerror or e}); nothing of the report was "
                         f"published ({REPORT}/ holds {', '.join(writers)}, all together). Free space there "
                         "(or make it writable) and run the same command again: the photos, the workflow's "
                         "outputs and the baselines are reused") from e
    return text


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
