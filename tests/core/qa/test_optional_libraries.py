"""The metric module imports neither flip-evaluator nor cvvdp until asked (lediff_core.qa.metrics)."""

from __future__ import annotations

import subprocess
import sys

from support.common import REPO


def test_pack_imports_without_the_metric_libraries():
    """The metric module imports neither flip-evaluator nor cvvdp until asked; PU21 works without."""
    code = (
        "import sys; sys.modules['pycvvdp'] = None; sys.modules['flip_evaluator'] = None\n"
        "import numpy as np\n"
        "from lediff_core.qa.metrics import compute_metric\n"
        "a = np.ones((16, 16, 3), np.float32)\n"
        "print(compute_metric(a, a, 'pu21_ssim').score)\n"
        "try:\n    compute_metric(a, a, 'hdr_flip')\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[0] == "1.0"
    assert "pip install flip-evaluator" in out.stdout

