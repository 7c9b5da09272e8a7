"""The evaluation: linear HDR references -> simulated camera photos -> every method (each ``--workflow``,
a batch job on the shared runner, and the baselines) on the same photos -> full-reference HDR
metrics -> one report (report.py: table, plot, protocol card).

Layout of ``--output``:
  ldr/<name>.png                 the simulated photos (every method's inputs)
  reference/<name>.exr           the references as scored (cropped/downscaled)
  <method>/<name>/...            a workflow's outputs per photo (a batch output folder), one folder per
                                 ``--workflow NAME=FILE`` (``lediff/`` for a FILE without a name)
  baselines/<method>/<name>.exr  the baselines' reconstructions
  report/                        results.csv, summary.csv, results.md, results.png, run.json: published together

Methods: ``--workflow NAME=FILE`` (repeatable) names each workflow; a FILE without ``NAME=`` is the
method ``lediff`` (the only name an evaluation had before), and no ``--workflow`` at all is the
shipped photo_to_hdr as ``lediff``. The workflows run one after the other, each in its own
embedded ComfyUI executor (its models load once, on its first photo, and no method reuses another's
loaded models, so their seconds compare). A method that fails (on some photos or all: a missing
model, a node ComfyUI lacks, no EXR saved, an output of another size or with NaN) is reported in
the table, the summary and run.json, and the others go on; the exit status is then 1.

With ``--clip`` the references are the frames of one shot (a folder of HDR frames, or a pan across
an equirect HDRI, ``pan:FILE``): one camera (exposure, curve) films the whole shot, every frame is
scored as above, and the warping error of each method's frames (Lai et al. 2018, on log2
luminance, along the DIS flow of the LDR photos; docs/batch.md) is added as the image ``clip``.
``--clip`` may also be an SDR video file: its frames are the photos (no simulated camera, no HDR
reference), so only the warping errors are scored, for the workflows and the baselines that need
no camera.

Intermediate files are reused when present (an interrupted evaluation resumes; a method's photos
made by another workflow under the same name are refused before anything runs). The report is one
folder, filled under a hidden staging name and renamed into place in one step (``write_new_folder``):
it appears whole or not at all, so results never stand without the run.json that says how they were
made, and it is written once (a finished evaluation is never overwritten). Inputs are checked
(workflows, their names, references, ComfyUI) before any folder is created.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import sys
import time
from importlib import metadata

import numpy as np

from lediff_core.io.exr import read_exr, write_exr
from lediff_core.io.publish import write_new_file
from lediff_core.io.readers import EXTENSIONS as HDR_EXTENSIONS
from lediff_core.io.readers import read_linear_image
from lediff_core.qa.baselines import BASELINES, CAMERA_BASELINES
from lediff_core.qa.camera import capture, crop_to_multiple, downscale, sample_camera

from .batch import MANIFEST, BatchConfig, _describe, sha256_file
from .ray_pool import execute
from .report import REPORT, write_report
from .workflow import VIDEO_EXTENSIONS, load_workflow_file, workflow_hash

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORKFLOW = os.path.join(REPO, "workflows", "photo_to_hdr.json")
METHOD = "lediff"  # the method of a --workflow FILE without NAME=, and of the default workflow
SCALING = "align"  # compute_metric's scaling unless --scaling says
METHOD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
TAKEN = ("ldr", "reference", "baselines", REPORT, *BASELINES)  # folders of --output, and the baselines' names
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


@dataclasses.dataclass(frozen=True)
class Method:
    """One ``--workflow``: its name (the folder of its outputs, its rows in the report) and file."""

    name: str
    workflow: str  # absolute path
    sha256: str  # of the workflow's canonical JSON (workflow.workflow_hash), as its batch items record it


def parse_methods(specs: list[str] | None) -> list[Method]:
    """The methods of ``--workflow [NAME=]FILE`` (repeatable), checked before anything is created: each
    file readable as a workflow, each name a folder name of its own. A spec whose part before the
    first ``=`` is no method name (or that names an existing file) is a FILE without a name: the
    method ``lediff``. No ``--workflow``: the shipped photo_to_hdr as ``lediff``."""
    methods = []
    for spec in specs or [DEFAULT_WORKFLOW]:
        name, sep, path = spec.partition("=")
        if not sep or not METHOD_NAME.fullmatch(name) or os.path.lexists(spec):
            name, path = METHOD, spec
        if name.lower() in {t.lower() for t in TAKEN}:
            raise SystemExit(f"--workflow {spec}: {name!r} is taken (the folders of --output and the baselines are "
                             f"{', '.join(TAKEN)}): name the method otherwise, e.g. --workflow {name}_mine={path}")
        clash = [m for m in methods if m.name.lower() == name.lower()]
        if clash:
            raise SystemExit(f"--workflow {spec}: two workflows are named {name!r} ({clash[0].workflow} and {path}): "
                             "name each one, e.g. --workflow steps50=FILE --workflow steps20=FILE2 (letters, digits, "
                             "_ . + -)")
        try:
            workflow = load_workflow_file(path)
        except (OSError, ValueError) as e:
            detail = e if isinstance(e, ValueError) else f"{e.strerror or e}: {path}"
            raise SystemExit(f"--workflow {spec}: {detail} (NAME=FILE names a method; NAME is letters, digits, "
                             "_ . + -)") from None
        methods.append(Method(name, os.path.abspath(path), workflow_hash(workflow)))
    return methods


def check_resumable(output: str, methods: list[Method]) -> None:
    """Refuse, before anything runs, to reuse a method's finished photos that another workflow made
    (an interrupted evaluation resumed with another FILE under the same NAME)."""
    for method in methods:
        folder = os.path.join(output, method.name)
        if not os.path.isdir(folder):
            continue
        for key in sorted(os.listdir(folder)):
            manifest = os.path.join(folder, key, MANIFEST)
            if not os.path.isfile(manifest):
                continue
            with open(manifest) as f:
                made_by = json.load(f).get("workflow_sha256")
            if made_by != method.sha256:
                raise SystemExit(f"{os.path.join(folder, key)} was made by another workflow (sha256 "
                                 f"{str(made_by)[:12]}), not {method.workflow} (sha256 {method.sha256[:12]}): "
                                 f"give this method another name (--workflow NEWNAME={method.workflow}) or use "
                                 "a new --output")


def run_method(method: Method, output: str, records: list[dict], args) -> dict[str, str]:
    """Run one workflow on every photo (a batch job, resumable); returns the photos it failed on
    (name -> reason). A workflow that cannot start (no loader node, a node type ComfyUI lacks, Ray
    workers that fail) fails on every photo; only a missing Ray stops the evaluation."""
    config = BatchConfig(workflow=method.workflow, inputs=os.path.join(output, "ldr"),
                         output=os.path.join(output, method.name), comfyui=args.comfyui,
                         base_directory=args.base_directory, input_node=args.input_node, threads=args.threads)
    os.makedirs(config.output, exist_ok=True)
    try:
        outcomes = execute(config, args.ray, args.workers)
    except Exception as e:  # the method's failure, not the evaluation's (SystemExit and interrupts go through)
        return {r["name"]: f"the workflow could not run: {_describe(e)}" for r in records}
    failed = {o.item.key: o.message for o in outcomes if not o.ok}
    for r in records:  # a loader that takes no PNG (Load EXR, Load Video) leaves the photos out of the batch
        if r["name"] not in failed and not os.path.isfile(os.path.join(config.output, r["name"], MANIFEST)):
            failed[r["name"]] = ("the workflow did not take the photo: its loader does not read PNG photos; the "
                                 "evaluation gives each photo to a Load Image (name it with --input-node ID when "
                                 "there are several)")
    return failed


def method_result(output: str, method: str, key: str) -> str:
    """The first EXR a workflow saved for one photo (from the batch item's manifest)."""
    folder = os.path.join(output, method, key)
    with open(os.path.join(folder, MANIFEST)) as f:
        exrs = [p for p in json.load(f)["outputs"] if p.lower().endswith(".exr")]
    if not exrs:
        raise RuntimeError(f"the workflow saved no EXR for {key}: it needs a LEDiff Save EXR node")
    return os.path.join(folder, exrs[0])


def lediff_result(output: str, key: str) -> str:
    """The first EXR the method ``lediff`` saved for one photo."""
    return method_result(output, METHOD, key)


def workflow_results(output: str, methods: list[Method], records: list[dict],
                     failed: dict[str, dict[str, str]]) -> tuple[dict, dict]:
    """({method: {photo: its EXR}}, {method: {photo: seconds}}) of the photos each workflow did; a
    photo without an EXR joins ``failed``."""
    tests, seconds = {}, {}
    for method in methods:
        tests[method.name], seconds[method.name] = {}, {}
        for r in records:
            if r["name"] in failed[method.name]:
                continue
            try:
                tests[method.name][r["name"]] = method_result(output, method.name, r["name"])
            except RuntimeError as e:
                failed[method.name][r["name"]] = str(e)
                continue
            with open(os.path.join(output, method.name, r["name"], MANIFEST)) as f:
                seconds[method.name][r["name"]] = json.load(f)["seconds"]
    return tests, seconds


def baseline_methods(records: list[dict]) -> list[str]:
    """The baselines these photos can have: those that need the camera only where it is known (an
    SDR video's is not)."""
    known = all(r["camera"] is not None for r in records)
    return [m for m in BASELINES if known or m not in CAMERA_BASELINES]


def baselines(output: str, records: list[dict]) -> tuple[dict, dict]:
    """Every baseline on every photo (computed each time, written once); returns, as
    workflow_results, {baseline: {photo: its EXR}} and {baseline: {photo: seconds of the function}}."""
    from lediff_core.qa.camera import Camera

    tests, seconds = {}, {}
    for method in baseline_methods(records):
        fn = BASELINES[method]
        os.makedirs(os.path.join(output, "baselines", method), exist_ok=True)
        tests[method], seconds[method] = {}, {}
        for r in records:
            ldr = _load_png(os.path.join(output, "ldr", f"{r['name']}.png"))
            start = time.perf_counter()
            hdr = fn(ldr, Camera(**r["camera"]) if r["camera"] else None)
            seconds[method][r["name"]] = round(time.perf_counter() - start, 4)
            path = os.path.join(output, "baselines", method, f"{r['name']}.exr")
            _write_once(path, lambda p, hdr=hdr: write_exr(p, hdr, precision="float"),
                        lambda p, hdr=hdr: np.array_equal(read_exr(p).rgb, hdr))
            tests[method][r["name"]] = path
    return tests, seconds


def score(output: str, records: list[dict], metrics: list[str], tests: dict[str, dict[str, str]],
          failed: dict[str, dict[str, str]], scaling: str = SCALING, regions=("image",)) -> list[dict]:
    """Per-image rows ``{image, method, region, metric, score, seconds}`` of every method in ``tests``
    ({method: {photo: EXR}}), one per region of ``regions`` (qa.metrics.REGIONS: the highlights and
    shadows come from the photo in ldr/; a photo without such pixels has no row for that region; a
    no-reference metric scores the image only). PU21-PIQE scales a method's images as one set (the
    mean of their 99.9th percentiles). A method's photo that cannot be scored (another size than
    the reference, NaN or Inf, nothing to align) has no rows and joins ``failed`` with the reason."""
    from lediff_core.qa.metrics import NO_REFERENCE, compute_metric_regions, piqe_scale

    scored_records = [r for r in records if r["reference"] is not None]  # an SDR video's frames: no reference
    factors = {}
    if set(metrics) & set(NO_REFERENCE):
        for method, paths in tests.items():
            images = [read_exr(paths[r["name"]]).rgb for r in scored_records if r["name"] in paths]
            factors[method] = piqe_scale(images) if images else None
    rows = []
    for r in scored_records:
        reference = read_exr(os.path.join(output, "reference", f"{r['name']}.exr")).rgb
        ldr = _load_png(os.path.join(output, "ldr", f"{r['name']}.png")) if set(regions) - {"image"} else None
        for method, paths in tests.items():
            if r["name"] not in paths:
                continue
            scored = []
            try:
                test = read_exr(paths[r["name"]]).rgb
                if test.shape != reference.shape:
                    raise ValueError(f"it gave {test.shape[1]}x{test.shape[0]} for {r['name']}, the reference is "
                                     f"{reference.shape[1]}x{reference.shape[0]}: the workflow must keep the "
                                     "photo's size")
                for metric in metrics:
                    start = time.perf_counter()
                    results = compute_metric_regions(test, reference, metric, ldr, scaling=scaling, regions=regions,
                                                     piqe_factor=factors.get(method))
                    seconds = round(time.perf_counter() - start, 3)
                    scored += [{"image": r["name"], "method": method, "region": region, "metric": metric,
                                "score": result.score, "seconds": seconds} for region, result in results.items()
                               if region == "image" or not np.isnan(result.score)]
            except ValueError as e:
                failed.setdefault(method, {})[r["name"]] = f"not scored: {e}"
                continue
            rows += scored
    return rows


CLIP = "clip"  # the image name of the rows that score a whole clip
CLIP_METRICS = ("warping_error", "warping_error_clipped")  # lower is better, in stops²
CLIP_FPS = 24.0  # the frame rate a pan or a folder of frames is shown at, for the video metrics


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


def score_clip(output: str, records: list[dict], tests: dict[str, dict[str, str]], failed: dict[str, dict[str, str]],
               clip_threshold: float = 0.99, metrics=(), scaling: str = SCALING) -> list[dict]:
    """Warping error of the frames of every method in ``tests`` that has them all (and of the references
    themselves) along the flow of the LDR photos, with the forward-backward visibility test; the
    second score in the photos' clipped pixels. With references, ``cvvdp``/``fvvdp`` in ``metrics``
    also score each method's frames as one video (``cvvdp_video``, ``fvvdp_video``, at CLIP_FPS). A
    method whose frames cannot be scored joins ``failed`` (image ``clip``)."""
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
    methods.update({m: [paths[r["name"]] for r in records] for m, paths in tests.items()
                    if all(r["name"] in paths for r in records)})
    video = [m for m in metrics if m in VIDEO_METRICS] if "reference" in methods else []
    references = np.stack([read_exr(p).rgb for p in methods["reference"]]) if video else None
    rows = []
    for method, paths in methods.items():
        start = time.perf_counter()
        try:
            frames = np.stack([read_exr(p).rgb for p in paths])
            result = warping_error(frames, flow, valid=valid, region=region)
            seconds = round(time.perf_counter() - start, 3)
            rows += [{"image": CLIP, "method": method, "region": "image", "metric": "warping_error",
                      "score": result["overall"], "seconds": seconds},
                     {"image": CLIP, "method": method, "region": "image", "metric": "warping_error_clipped",
                      "score": result["region"], "seconds": seconds}]
            for metric in video if method != "reference" else ():
                start = time.perf_counter()
                got = compute_clip_metric(frames, references, metric, CLIP_FPS, scaling)
                rows.append({"image": CLIP, "method": method, "region": "image", "metric": f"{metric}_video",
                             "score": got.score, "seconds": round(time.perf_counter() - start, 3)})
        except ValueError as e:  # frames of another size, NaN
            failed.setdefault(method, {})[CLIP] = f"not scored: {e}"
    return rows


def versions() -> dict:
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("torch", "numpy", "scipy", "OpenEXR", "cvvdp", "pyfvvdp", "pypiqe", "flip-evaluator", "ray", "Pillow",
                 "matplotlib"):
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


def protocol(args, metrics: list[str], scaling: str, regions: list[str], clip_info: dict | None) -> dict:
    """The protocol card: what it takes to reproduce the table (run.json's ``protocol``, results.md's
    Protocol section): scaling, display model, regions, cameras, metrics, interval, speed, versions."""
    from lediff_core.qa import metrics as qa
    from lediff_core.qa.camera import A_MEAN, A_STD, CLIP_SHARE_RANGE, N_MEAN, N_STD
    from lediff_core.qa.pu21 import PU21_L_MAX, PU21_L_MIN

    from .report import INTERVAL, SPEED

    video = bool(clip_info and clip_info["source"] == "video")
    share = (f"{args.clip_share:g}" if args.clip_share is not None
             else f"uniform {CLIP_SHARE_RANGE[0]:.0%}-{CLIP_SHARE_RANGE[1]:.0%} per photo")
    cameras = {"seed": args.seed, "model": "none: the frames of an SDR video are the photos" if video else
               f"HDRCNN sigmoid (1+a)E^n/(E^n+a), n~N({N_MEAN},{N_STD}), a~N({A_MEAN},{A_STD}), 8-bit; "
               "each photo's exposure and curve: run.json references[].camera",
               "clip_share": None if video else share, "jpeg_quality": args.jpeg, "downscale": args.downscale,
               "crop": "centre, to a multiple of 8 pixels", "one_camera_per_clip": bool(clip_info)}
    frame = [{"name": k, "higher_is_better": qa.HIGHER_IS_BETTER[k], "unit": qa.UNITS[k]} for k in metrics]
    clip = [{"name": k, "higher_is_better": False, "unit": "stops²", "clip": True} for k in CLIP_METRICS] \
        if clip_info else []
    clip += [{"name": f"{k}_video", "higher_is_better": True, "unit": qa.UNITS[k], "clip": True,
              "fps": CLIP_FPS} for k in metrics if clip_info and k in qa.VIDEO_METRICS]
    defined = {"image": "every pixel",
               "highlights": f"pixels of the photo with a channel >= {qa.HIGHLIGHT_THRESHOLD} (clipped), grown by "
                             f"{qa.REGION_DILATION} px",
               "shadows": f"pixels of the photo with every channel <= {qa.SHADOW_THRESHOLD} (crushed), grown by "
                          f"{qa.REGION_DILATION} px"}
    return {
        "scaling": {"name": scaling, "defined_in": "lediff_core/qa/metrics.py (compute_metric)",
                    **({"reference_percentile_at_peak": qa.ALIGN_PERCENTILE} if scaling in ("align", "crf") else {}),
                    **({"crf_correction": "after align: SI-HDR's CRF correction (Hanji et al. 2022), a cubic of PQ "
                        "luminance (unregularised) and of u'v' chroma (lambda 0.01), lediff_core/qa/crf.py"}
                       if scaling == "crf" else {})},
        "display": {"peak_cd_m2": qa.DISPLAY_PEAK_NITS, "pu21_variant": "banding_glare",
                    "pu21_range_cd_m2": [PU21_L_MIN, PU21_L_MAX], "cvvdp_display": qa.CVVDP_DISPLAY,
                    "pu21_piqe_scale": "mean 99.9th percentile luminance of a method's images at 1000 cd/m2"},
        "regions": {g: defined[g] for g in regions}, "cameras": cameras, "metrics": frame + clip,
        "interval": INTERVAL, "speed": SPEED,
        "versions": {**versions(), "comfyui": comfyui_version(args.comfyui), "lediff_hdr": pack_version()},
    }


def method_info(kind: str, failed: dict[str, str], seconds: dict[str, float], records: list[dict],
                scored: set[str]) -> dict:
    """A method's entry in run.json's ``methods``: status ``ok``, ``partial`` (failed on some images)
    or ``failed`` (scored on none), the reason, the failures and seconds per photo, seconds per megapixel."""
    from .report import median_seconds_per_megapixel

    status = "ok" if not failed else ("partial" if scored else "failed")
    reasons = list(dict.fromkeys(failed.values()))
    reason = "" if not failed else (reasons[0] if len(reasons) == 1 else f"{reasons[0]} (and {len(reasons) - 1} more)")
    if status == "partial":
        reason = f"failed on {len(failed)} of the images: {reason}"
    sizes = {r["name"]: r["size"] for r in records}
    return {"kind": kind, "status": status, "reason": reason, "failed": failed, "seconds": seconds,
            "seconds_per_megapixel": median_seconds_per_megapixel(seconds, sizes)}


def lediff_model_files(base_directory: str | None) -> dict[str, int]:
    """The LEDiff model files under ``BASE/models/lediff`` and their sizes."""
    found = {}
    if base_directory:
        lediff_dir = os.path.join(base_directory, "models", "lediff")
        for d, _, fs in os.walk(lediff_dir):
            for f in fs:
                if f.endswith((".safetensors", ".bin", ".pth")):
                    found[os.path.relpath(os.path.join(d, f), lediff_dir)] = os.path.getsize(os.path.join(d, f))
    return found


def check_arguments(args) -> tuple[list[str], str, tuple[str, ...]]:
    """--metrics, --scaling and --regions, refused before anything is created when unknown."""
    from lediff_core.qa.metrics import METRICS, REGIONS, SCALINGS

    unknown = [k for k in args.metrics or () if k not in METRICS]
    if unknown:
        raise SystemExit(f"--metrics {' '.join(unknown)}: no such metric; choose from {', '.join(METRICS)}")
    scaling = getattr(args, "scaling", None) or SCALING
    if scaling not in SCALINGS:
        raise SystemExit(f"--scaling {scaling}: no such scaling; choose from {', '.join(SCALINGS)}")
    regions = tuple(dict.fromkeys(getattr(args, "regions", None) or ("image",)))
    unknown = [g for g in regions if g not in REGIONS]
    if unknown:
        raise SystemExit(f"--regions {' '.join(unknown)}: no such region; choose from {', '.join(REGIONS)}")
    return list(args.metrics or METRICS), scaling, regions


def check_libraries(metrics: list[str]) -> None:
    """Refuses, before anything is created or any workflow runs, metrics whose optional library is not
    installed (otherwise the run would end without a report after every workflow had run)."""
    from lediff_core.qa.metrics import INSTALL_HINTS, missing_libraries

    missing = missing_libraries(metrics)
    if missing:
        hints = dict.fromkeys(INSTALL_HINTS[k] for k in missing)
        rest = [k for k in metrics if k not in missing]
        raise SystemExit(
            f"metrics {', '.join(missing)} need libraries that are not installed "
            f"({'; '.join(f'{k}: {v}' for k, v in missing.items())}): install them with {' or '.join(hints)}, "
            + (f"or leave them out with --metrics {' '.join(rest)}" if rest else "or choose other --metrics"))


def evaluate(args) -> int:
    from .host import default_comfyui

    metrics, scaling, regions = check_arguments(args)
    output = os.path.abspath(args.output)
    if os.path.lexists(os.path.join(output, REPORT)):
        raise SystemExit(f"{output} already holds a finished evaluation ({REPORT}/): choose a new --output")
    methods = parse_methods(args.workflow)
    comfyui = args.comfyui or default_comfyui()
    if not os.path.isfile(os.path.join(comfyui, "main.py")):  # every method would fail the same way
        raise SystemExit(f"no ComfyUI at {comfyui} (no main.py there): pass --comfyui DIR with the folder of your "
                         "ComfyUI install")
    check_resumable(output, methods)
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
    check_libraries(metrics)
    if clip:
        records = prepare(clip, output, args.seed, args.clip_share, args.jpeg, factor, frames=frames)
    else:
        records = prepare(args.references, output, args.seed, args.clip_share, args.jpeg, args.downscale)
    failed = {}
    for number, method in enumerate(methods, 1):
        print(f"evaluate: method {method.name} ({number} of {len(methods)}): {method.workflow}", file=sys.stderr)
        failed[method.name] = run_method(method, output, records, args)
    tests, seconds = workflow_results(output, methods, records, failed)
    baseline_tests, baseline_seconds = baselines(output, records)
    tests, seconds = {**tests, **baseline_tests}, {**seconds, **baseline_seconds}
    rows = score(output, records, metrics, tests, failed, scaling, regions)
    if clip:
        rows += score_clip(output, records, tests, failed, metrics=metrics, scaling=scaling)
    kinds = {**{m.name: "workflow" for m in methods}, **{m: "baseline" for m in baseline_tests},
             **({"reference": "reference"} if any(r["method"] == "reference" for r in rows) else {})}
    infos = {name: method_info(kind, failed.get(name, {}), seconds.get(name, {}), records,
                               {r["image"] for r in rows if r["method"] == name}) for name, kind in kinds.items()}
    for m in methods:
        infos[m.name].update(workflow=m.workflow, workflow_sha256=m.sha256,
                             workflow_file_sha256=sha256_file(m.workflow))
    provenance = {
        "command": ["python", "-m", "lediff_runner", *sys.argv[1:]],
        "protocol": protocol(args, metrics, scaling, regions, clip_info),
        "methods": infos, "references": records, "clip": clip_info,
        "failed": {name: info["failed"] for name, info in infos.items() if info["failed"]},
        "lediff_model_files": lediff_model_files(args.base_directory), "ray": args.ray,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = write_report(output, rows, records, provenance)
    print(text)
    for name, photos in provenance["failed"].items():
        for key, message in photos.items():
            print(f"  FAILED {name} on {key}: {message}", file=sys.stderr)
    return 1 if provenance["failed"] else 0
