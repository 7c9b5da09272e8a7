"""Writes opencv_float32_planes.npz: the planes and first-pass numbers of Save HDR Video's conversion as of
commit 221f78b (OpenCV float32 arithmetic), kept to compare the torch conversion with. Run from the
repository root with PYTHONPATH=. at that commit."""
import dataclasses
import json

import numpy as np

from lediff_core.io.video import VideoSettings, analyse, ycbcr_frame

rng = np.random.default_rng(2027)
h, w = 64, 96
frame = (np.exp2(rng.uniform(-20, 6, (h, w, 3))) * rng.choice([1, 1, 1, 1, -0.02], (h, w, 3))).astype(np.float32)
frame[0, :8] = [[0, 0, 0], [1, 1, 1], [-0.0, 0, 0], [1e6, 1e6, 1e6], [1e-40, 0, 0], [0.5, 0.5, 0.5],
                [3.5, 0.1, 0.2], [-1, -1, -1]]
SETTINGS = {
    "hevc_pq_w1.7": VideoSettings(codec="hevc", transfer="pq", reference_white=1.7),
    "hevc_hlg": VideoSettings(codec="hevc", transfer="hlg"),
    "hevc_444_10_pq_peak4000": VideoSettings(codec="hevc_444_10", transfer="pq", mastering_peak=4000.0),
    "hevc_444_12_pq": VideoSettings(codec="hevc_444_12", transfer="pq"),
    "hevc_444_12_hlg_w0.5": VideoSettings(codec="hevc_444_12", transfer="hlg", reference_white=0.5),
    "prores_4444_pq_peak10000": VideoSettings(codec="prores_4444", container="mov", transfer="pq",
                                              mastering_peak=10000.0),
}
out = {"frame": frame,
       "settings": json.dumps({name: dataclasses.asdict(s) for name, s in SETTINGS.items()})}
for name, s in SETTINGS.items():
    for p, plane in zip(("y", "cb", "cr"), ycbcr_frame(frame, s), strict=True):
        out[f"{name}/{p}"] = plane
    r = analyse(frame[None], s)
    out[f"{name}/report"] = np.array([r.over, r.negative, r.max_cll or 0, r.max_fall or 0])
np.savez_compressed("tests/data/video_codes/opencv_float32_planes.npz", **out)
