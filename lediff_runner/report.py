"""The evaluation's report: every method (each ``--workflow``, the baselines, a clip's references) as
rows of one table and one figure, per region and metric, with the mean over images, its 95 %
interval and seconds per megapixel; the protocol card that says how the numbers were made; and the
report folder, published whole or not at all.

Everything here is generic over (method, region, metric). A per-image row is ``{"image", "method",
"region", "metric", "score", "seconds"}`` (a row without ``"region"`` is the whole image, more keys
go to results.csv as extra columns); the methods, in order, with their kind, status and speed come
from ``provenance["methods"]``, the metrics (name, direction, unit) from the protocol card
(``provenance["protocol"]["metrics"]``), the regions from the rows. The report is made from
run.json's content and the rows alone, so what it shows is what run.json records.

The interval is the two-sided 95 % confidence interval of the mean over images by Student's t with
n - 1 degrees of freedom: mean +/- t(0.975, n - 1) s / sqrt(n), s the sample standard deviation
(ddof 1); a single image (or a clip's one score) has none. Seconds per megapixel is the median over
photos of a method's seconds for a photo divided by its megapixels (the median leaves out the
first photo of a workflow, which also loads its models, from three photos on).
"""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np

from lediff_core.io.publish import write_new_folder

REPORT = "report"  # the folder of the report files, published together
WHOLE = "image"  # the region of a row that scores the whole image (lediff_core.qa.metrics.REGIONS[0])
LEVEL = 0.95
ROW_FIELDS = ("image", "method", "region", "metric", "score", "seconds")
SUMMARY_FIELDS = ("method", "kind", "status", "region", "metric", "images", "mean", "ci95_low", "ci95_high",
                  "seconds_per_megapixel", "reason")
REASON_IN_TABLE = 160  # characters of a failure's reason in the Markdown table (all of it in summary.csv)
INTERVAL = ("mean ± half-width of the two-sided 95 % confidence interval of the mean over images: Student's t "
            "with n − 1 degrees of freedom, t(0.975, n − 1) · s / √n, s the sample standard deviation; none "
            "from a single image")
SPEED = ("seconds per megapixel (s/MP): median over photos of a method's seconds for a photo divided by its "
         "megapixels; a workflow's seconds are its batch item's (batch_item.json: the graph's run in the "
         "embedded ComfyUI, its first photo also loading its models, which the median leaves out from three "
         "photos on), a baseline's its function's")


def region_of(row: dict) -> str:
    return row.get("region", WHOLE)


def mean_interval(values, level: float = LEVEL) -> tuple[float, float | None, float | None]:
    """(mean, low, high): the mean of ``values`` and the two-sided ``level`` confidence interval of
    the mean by Student's t with n - 1 degrees of freedom; (mean, None, None) for one value."""
    from scipy.stats import t

    x = np.asarray(values, np.float64)
    mean = float(x.mean())
    if x.size < 2:
        return mean, None, None
    half = float(t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def median_seconds_per_megapixel(seconds: dict[str, float], sizes: dict[str, list[int]]) -> float | None:
    """Median over photos of seconds / megapixels (``sizes``: image name -> [width, height])."""
    per_mp = [s / (sizes[k][0] * sizes[k][1] / 1e6) for k, s in seconds.items() if k in sizes]
    return float(np.median(per_mp)) if per_mp else None


def columns(rows: list[dict], metrics: list[str]) -> list[tuple[str, str]]:
    """The (region, metric) pairs the rows hold: regions in order of first appearance (the whole image
    first), metrics in ``metrics``' order."""
    regions = list(dict.fromkeys([WHOLE, *(region_of(r) for r in rows)]))
    held = {(region_of(r), r["metric"]) for r in rows}
    return [(g, k) for g in regions for k in metrics if (g, k) in held]


def method_order(rows: list[dict], methods: dict) -> list[str]:
    return list(dict.fromkeys([*methods, *(r["method"] for r in rows)]))


def summarize(rows: list[dict], provenance: dict) -> list[dict]:
    """One record per (method, region, metric): images scored, mean and 95 % interval, the method's
    kind, status, reason and seconds per megapixel (a failed method's records have no numbers)."""
    methods = provenance["methods"]
    metrics = [m["name"] for m in provenance["protocol"]["metrics"]]
    out = []
    for method in method_order(rows, methods):
        info = methods.get(method, {})
        for region, metric in columns(rows, metrics):
            values = [r["score"] for r in rows if r["method"] == method and region_of(r) == region
                      and r["metric"] == metric]
            mean, low, high = mean_interval(values) if values else (None, None, None)
            out.append({"method": method, "kind": info.get("kind", ""), "status": info.get("status", "ok"),
                        "region": region, "metric": metric, "images": len(values), "mean": mean,
                        "ci95_low": low, "ci95_high": high,
                        "seconds_per_megapixel": info.get("seconds_per_megapixel"),
                        "reason": info.get("reason", "")})
    return out


def _cell(text: str, limit: int | None = None) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _estimate(record: dict, scored: int) -> str:
    """The cell: mean ± half-width, with its image count when fewer than the row's ``scored`` (a region
    that some photos lack: a photo without crushed pixels has no shadows score)."""
    if record["mean"] is None:
        return "–"
    cell = _number(record["mean"])
    if record["ci95_low"] is not None:
        cell += f" ± {_number((record['ci95_high'] - record['ci95_low']) / 2)}"
    return cell if record["images"] >= scored else f"{cell} (n={record['images']})"


def _status(info: dict) -> str:
    status = info.get("status", "ok")
    if status == "ok":
        return info.get("kind", "ok")
    return f"{status}: {_cell(info.get('reason', ''), REASON_IN_TABLE)}"


def _header(region: str, metric: dict) -> str:
    where = metric["name"] if region == WHOLE else f"{metric['name']}, {region}"
    return f"{where} ({'higher' if metric['higher_is_better'] else 'lower'} is better)"


def _speed(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _card_value(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k} {_card_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_card_value(v) for v in value)
    return f"`{value}`" if isinstance(value, str) and " " not in value else str(value)


def markdown(rows: list[dict], records: list[dict], provenance: dict) -> str:
    protocol, methods = provenance["protocol"], provenance["methods"]
    metric_info = {m["name"]: m for m in protocol["metrics"]}
    cols = columns(rows, list(metric_info))
    summary = {(s["method"], s["region"], s["metric"]): s for s in summarize(rows, provenance)}
    order = method_order(rows, methods)
    what = f"a clip of {len(records)} frames" if provenance.get("clip") else f"{len(records)} references"
    lines = [f"# Evaluation: {what}, seed {protocol['cameras']['seed']}", "",
             "Every method on the same photos. A cell: the mean over images ± the half-width of its 95 % "
             "interval (Student's t), and (n=K) where fewer images than the row's have a score (a region some photos "
             "lack); `images`: those a method was scored on; s/MP: seconds per megapixel "
             "(see Protocol).", "",
             "| method | status | images | s/MP | " + " | ".join(_header(g, metric_info[k]) for g, k in cols) + " |",
             "|---|---|---:|---:|" + "---:|" * len(cols)]
    for m in order:
        info = methods.get(m, {})
        scored = max((summary[(m, g, k)]["images"] for g, k in cols), default=0)
        lines.append(f"| {m} | {_status(info)} | {scored} | {_speed(info.get('seconds_per_megapixel'))} | "
                     + " | ".join(_estimate(summary[(m, g, k)], 0 if metric_info[k].get("clip") else scored)
                                  for g, k in cols) + " |")
    clip_metrics = [k for k in metric_info if metric_info[k].get("clip") and metric_info[k]["unit"] == "stops²"
                    and any(r["metric"] == k for r in rows)]
    if clip_metrics:
        floor = ("; `reference` is the references' own (the flow's floor)" if "reference" in order
                 else "; an SDR video has no HDR reference, so no frame is scored against one")
        lines += ["", f"{', '.join(clip_metrics)}: stops² of log2 luminance between each frame and the previous one "
                  f"warped along the DIS flow of the LDR photos (Lai et al. 2018), over the whole clip{floor}."]
    failures = [(m, info) for m, info in methods.items() if info.get("failed")]
    if failures:
        lines += ["", "## Failures", ""]
        for m, info in failures:
            for msg in dict.fromkeys(info["failed"].values()):
                images = [k for k, v in info["failed"].items() if v == msg]
                lines.append(f"- `{m}` failed on {', '.join(images)}: {_cell(msg)}")
    lines += ["", "## Protocol", ""]
    lines += [f"- **{key}**: {_card_value(value)}" for key, value in protocol.items() if key != "metrics"]
    lines.append("- **metrics**: " + ", ".join(
        f"`{m['name']}` ({'higher' if m['higher_is_better'] else 'lower'} is better"
        + (f", {m['unit']})" if m.get("unit") else ")") for m in protocol["metrics"]))
    for m in order:
        info = methods.get(m, {})
        if info.get("workflow"):
            lines.append(f"- **method `{m}`**: workflow `{info['workflow']}` (sha256 {info['workflow_sha256'][:12]})")
    frame_cols = [(g, k) for g, k in cols if not metric_info[k].get("clip")]
    frame_metrics = list(dict.fromkeys(k for _, k in frame_cols))
    if frame_metrics:
        lines += ["", "## Per image", "", "| image | method | region | " + " | ".join(frame_metrics) + " |",
                  "|---|---|---|" + "---:|" * len(frame_metrics)]
    for r in records:  # an SDR video's frames have no rows of their own
        for m in order:
            for region in dict.fromkeys(g for g, _ in frame_cols):
                vals = {x["metric"]: x["score"] for x in rows
                        if x["image"] == r["name"] and x["method"] == m and region_of(x) == region}
                if vals:
                    lines.append(f"| {r['name']} | {m} | {region} | "
                                 + " | ".join(_number(vals.get(k)) for k in frame_metrics) + " |")
    return "\n".join(lines) + "\n"


def plot(path: str, rows: list[dict], provenance: dict) -> None:
    """One figure: a panel per (region, metric), every method a row (bar: the mean, whisker: the 95 %
    interval, dots: the images; a failed method is labelled), and a panel of seconds per megapixel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = provenance["methods"]
    metric_info = {m["name"]: m for m in provenance["protocol"]["metrics"]}
    cols = columns(rows, list(metric_info))
    summary = {(s["method"], s["region"], s["metric"]): s for s in summarize(rows, provenance)}
    order = method_order(rows, methods)
    regions = list(dict.fromkeys(g for g, _ in cols)) or [WHOLE]
    metrics = list(dict.fromkeys(k for _, k in cols))
    ncols, height = len(metrics) + 1, 0.9 + 0.28 * len(order)
    fig, axes = plt.subplots(len(regions), ncols, figsize=(3.2 * ncols, height * len(regions)), squeeze=False)
    y = np.arange(len(order))
    for i, region in enumerate(regions):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            if (region, metric) not in cols:
                ax.set_visible(False)
                continue
            for n, m in enumerate(order):
                s = summary[(m, region, metric)]
                if s["mean"] is None:
                    if s["status"] == "failed":
                        ax.text(0.02, n, "failed", transform=ax.get_yaxis_transform(), va="center", fontsize=7,
                                color="#b03030")
                    continue
                err = None if s["ci95_low"] is None else [[s["mean"] - s["ci95_low"]], [s["ci95_high"] - s["mean"]]]
                ax.barh(n, s["mean"], xerr=err, color="#4c72b0", ecolor="#333333", capsize=2, height=0.6)
                values = [r["score"] for r in rows if r["method"] == m and region_of(r) == region
                          and r["metric"] == metric]
                ax.plot(values, [n] * len(values), "k.", markersize=3)
            ax.set_yticks(y, order if j == 0 else [""] * len(order), fontsize=7)
            ax.invert_yaxis()
            ax.tick_params(axis="x", labelsize=7)
            ax.set_title(_header(region, metric_info[metric]), fontsize=8)
        ax = axes[i][-1]
        if i:
            ax.set_visible(False)
            continue
        speeds = [methods.get(m, {}).get("seconds_per_megapixel") for m in order]
        ax.barh(y, [np.nan if v is None else v for v in speeds], color="#55a868", height=0.6)
        ax.set_yticks(y, [""] * len(order))
        ax.invert_yaxis()
        if any(v for v in speeds):
            ax.set_xscale("log")
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title("seconds per megapixel (lower is faster)", fontsize=8)
    fig.suptitle("mean (bars), 95 % interval (whiskers) and images (dots)", fontsize=9)
    try:
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=110)
    finally:
        plt.close(fig)


def write_report(output: str, rows: list[dict], records: list[dict], provenance: dict) -> str:
    """Publish ``OUTPUT/report/`` (results.csv, summary.csv, results.md, results.png, run.json) whole
    or not at all; returns the Markdown table.

    The files are written into a hidden staging folder beside it, which is renamed into place in
    one step that never replaces an existing folder, with the umask's permissions
    (``publish.write_new_folder``). A failure while writing any of them (a full disk at the figure)
    removes the staging folder and publishes nothing: the error says what failed and that running
    the same command again, with the intermediates reused, writes the report.
    """
    path = os.path.join(output, REPORT)
    rows = [{**r, "region": region_of(r)} for r in rows]
    text = markdown(rows, records, provenance)
    fields = list(dict.fromkeys([*ROW_FIELDS, *(k for r in rows for k in r)]))

    def write_csv(p, fieldnames, records):
        with open(p, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(records)

    writers = {"results.csv": lambda p: write_csv(p, fields, rows),
               "summary.csv": lambda p: write_csv(p, SUMMARY_FIELDS, summarize(rows, provenance)),
               "results.md": lambda p: _write_text(p, text),
               "results.png": lambda p: plot(p, rows, provenance),
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
                         "(or make it writable) and run the same command again: the photos, the workflows' "
                         "outputs and the baselines are reused") from e
    return text


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
