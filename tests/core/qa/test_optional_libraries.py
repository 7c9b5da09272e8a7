"""The metric module imports none of flip-evaluator, cvvdp, pyfvvdp, pypiqe until asked (lediff_core.qa.metrics)."""

from __future__ import annotations

import subprocess
import sys

from support.common import REPO


def test_pack_imports_without_the_metric_libraries():
    """The metric module imports none of the optional libraries until asked; PU21 (and the crf
    scaling, the regions) work without."""
    code = (
        "import sys\n"
        "for m in ('pycvvdp', 'flip_evaluator', 'pyfvvdp', 'pypiqe'): sys.modules[m] = None\n"
        "import numpy as np\n"
        "from lediff_core.qa.metrics import compute_metric\n"
        "a = np.ones((16, 16, 3), np.float32)\n"
        "print(compute_metric(a, a, 'pu21_ssim').score)\n"
        "g = np.linspace(0.05, 3, 16 * 16 * 3, dtype=np.float32).reshape(16, 16, 3)\n"
        "print(compute_metric(g, g, 'pu21_psnr', 'crf').score > 80, compute_metric(a, a, 'pu21_psnr', 'crf').score)\n"
        "try:\n    compute_metric(a, a, 'pu21_piqe')\nexcept ImportError as e:\n    print(e)\n"
        "try:\n    compute_metric(a, a, 'hdr_flip')\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0] == "1.0" and lines[1].startswith("True ")
    assert "pip install --no-deps -r requirements-metrics.txt" in lines[2]
    assert "pip install flip-evaluator" in out.stdout

