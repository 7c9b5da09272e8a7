"""HDR metric benchmark: seconds per 1024x512 pair for each metric, with ratios against the
library (or reference implementation) called directly on the same arrays in the same run.

    .dev/venv/bin/python benchmarks/bench_metrics.py [--repeat N] [--metrics pu21_psnr,hdr_flip,...]

Pair: a real CC0 HDRI (tests/data/hdri/courtyard.exr, 1024x512) as reference and a noisy copy at
another exposure as test. Rows (median of N runs, seconds; the ratio is the median of the
rounds' ratios, each round timing both back to back):
  ours      - lediff_core.qa.metrics.compute_metric(test, ref, metric) with scaling=align
              (alignment + display mapping + the metric + its map)
  baseline  - the same metric called directly on the already display-mapped arrays:
              pu21_psnr: pycvvdp's PU21 encoder + PSNR in torch; pu21_ssim: PU21 + skimage's
              structural_similarity; hdr_flip: flip_evaluator.evaluate; cvvdp: pycvvdp.cvvdp.predict;
              fvvdp: pyfvvdp.fvvdp.predict; pu21_piqe: pypiqe.piqe on the PU21-encoded array
              (encoded beforehand, outside the timing)
  crf       - the CRF correction (lediff_core.qa.crf.crf_correct: fit + apply) on the display-mapped
              arrays, against the straightforward implementation from the published description
              (tests/support/crf_reference.py: numpy's lstsq on the explicit design matrices)
The ratio ours / baseline is the pack's overhead (target <= 1.2 for the library metrics).
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np
import OpenEXR
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from benchmarks.bench_common import paired_ratio, timed_rounds  # noqa: E402
from lediff_core.qa import metrics as qm  # noqa: E402
from lediff_core.qa.pu21 import pu21_encode  # noqa: E402


def load_pair():
    with OpenEXR.File(os.path.join(ROOT, "tests", "data", "hdri", "courtyard.exr")) as f:
        ref = np.maximum(np.asarray(f.channels()["RGB"].pixels, dtype=np.float32), 0)
    rng = np.random.default_rng(0)
    test = (ref * 2.5 * (1 + 0.05 * rng.standard_normal(ref.shape))).clip(0).astype(np.float32)
    return test, ref


def baselines(t, r):
    """Direct library calls on display-mapped float32 arrays."""
    from pycvvdp.utils import PU

    pu = PU(type="banding_glare")
    tt, rr = torch.from_numpy(t), torch.from_numpy(r)

    def psnr():
        d = pu.encode(tt) - pu.encode(rr)
        return 20 * torch.log10(256 / torch.sqrt((d**2).mean()))

    def ssim():
        from skimage.metrics import structural_similarity

        w = np.asarray([0.2126, 0.7152, 0.0722])
        return structural_similarity(pu21_encode(t @ w), pu21_encode(r @ w), data_range=256,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)

    def flip():
        import flip_evaluator

        return flip_evaluator.evaluate(r, t, "HDR", applyMagma=False)

    cv = {}

    def cvvdp():
        import pycvvdp

        if "m" not in cv:  # constructed once, like compute_metric's cache
            cv["m"] = pycvvdp.cvvdp(display_name=qm.CVVDP_DISPLAY, heatmap="raw", quiet=True,
                                    device=torch.device("cpu"))
        with torch.no_grad():
            return cv["m"].predict(tt, rr, dim_order="HWC")

    def fvvdp():
        import pyfvvdp

        if "f" not in cv:
            cv["f"] = pyfvvdp.fvvdp(display_name=qm.FVVDP_DISPLAY, heatmap="raw", quiet=True,
                                    device=torch.device("cpu"))
        with torch.no_grad():
            return cv["f"].predict(tt, rr, dim_order="HWC")

    import pypiqe

    encoded = qm.pu21_piqe_input(t, qm.piqe_scale(t))

    def crf():
        from support.crf_reference import reference_crf

        return reference_crf(t.astype(np.float64), r.astype(np.float64))

    return {"pu21_psnr": psnr, "pu21_ssim": ssim, "hdr_flip": flip, "cvvdp": cvvdp, "fvvdp": fvvdp,
            "pu21_piqe": lambda: pypiqe.piqe(encoded), "crf": crf}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--metrics", default=",".join([*qm.METRICS, "crf"]), help="metrics, and crf for the CRF "
                    "correction alone")
    args = ap.parse_args()
    test, ref = load_pair()
    t, r, _ = qm.to_display(test, ref, "align")
    t, r = t.astype(np.float32), r.astype(np.float32)
    base = baselines(t, r)
    print(f"pair {ref.shape[1]}x{ref.shape[0]}, torch threads {torch.get_num_threads()}, repeat {args.repeat}")
    print(f"{'metric':<10} {'ours s':>9} {'baseline s':>11} {'ratio':>6}")
    for metric in args.metrics.split(","):
        if metric == "crf":
            from lediff_core.qa.crf import crf_correct

            ours = lambda: crf_correct(t, r)  # noqa: E731
        else:
            ours = lambda m=metric: qm.compute_metric(test, ref, m)  # noqa: E731
        ours(), base[metric]()  # warm-up: imports, cvvdp's set-up
        t_ours, t_base = timed_rounds([ours, base[metric]], args.repeat)
        ratio = paired_ratio(t_ours, t_base)  # per round, back to back: a shared machine's slow phases cancel
        print(f"{metric:<10} {statistics.median(t_ours):>9.3f} {statistics.median(t_base):>11.3f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
