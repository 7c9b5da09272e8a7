"""What validation measures on held-out crops, shared by both stages.

LEDiff's HDR has an arbitrary global scale, so every comparison removes it first: in log space a
global scale is an offset, and ``aligned_log_l1`` subtracts the median log ratio (the L1-optimal
offset) per image before averaging |difference|. PU21-PSNR and HDR-FLIP come from
``lediff_core.qa.metrics`` (which aligns the scale its own way), the exposure strip from
``lediff_core.qa.exposure``.
"""

from __future__ import annotations

import numpy as np
import torch

from lediff_core.qa.exposure import exposure_strip
from lediff_core.qa.metrics import compute_metric

STRIP_EVS = (-4.0, -2.0, 0.0, 2.0)


def aligned_log_l1(pred_log: torch.Tensor, target_log: torch.Tensor) -> torch.Tensor:
    """Per-sample mean |pred - target - median(pred - target)| of [B, 3, H, W] natural-log HDR."""
    d = (pred_log.float() - target_log.float()).flatten(1)
    return (d - d.median(dim=1, keepdim=True).values).abs().mean(dim=1)


def hdr_scores(pred_log: torch.Tensor, target_log: torch.Tensor, metrics=("pu21_psnr", "hdr_flip")) -> dict:
    """Mean PU21-PSNR / HDR-FLIP over the batch (linear HDR = exp of the log images)."""
    totals = {m: 0.0 for m in metrics}
    for p, t in zip(pred_log.float(), target_log.float(), strict=True):
        test = torch.exp(p).movedim(0, -1).cpu().numpy().astype(np.float32)
        ref = torch.exp(t).movedim(0, -1).cpu().numpy().astype(np.float32)
        for m in metrics:
            totals[m] += compute_metric(test, ref, m).score
    return {m: v / len(pred_log) for m, v in totals.items()}


def strip_pair(pred_log: torch.Tensor, target_log: torch.Tensor, panel_width: int = 128) -> np.ndarray:
    """uint8 image: the prediction's exposure strip (scale aligned to the target) above the target's."""
    d = (pred_log.float() - target_log.float()).flatten()
    aligned = pred_log.float() - d.median()
    rows = [exposure_strip(torch.exp(x).movedim(0, -1), list(STRIP_EVS), panel_width=panel_width)
            for x in (aligned, target_log.float())]
    return (torch.cat(rows, dim=0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def validation_indices(n: int, count: int) -> list[int]:
    """The same held-out samples at every validation (evenly spread)."""
    count = min(count, n)
    return sorted({int(round(i * (n - 1) / max(count - 1, 1))) for i in range(count)}) if count else []


def hdr_validation(pred_log: torch.Tensor, target_log: torch.Tensor, step: int, logger) -> dict:
    """What both stages log of held-out HDR: the scale-free log L1, PU21-PSNR and HDR-FLIP (means),
    and the first crop's exposure strip as an image."""
    logs = {"val/log_l1_aligned": aligned_log_l1(pred_log, target_log).mean().item()}
    logs.update({f"val/{k}": v for k, v in hdr_scores(pred_log, target_log).items()})
    logger.image(step, "val/exposure_strip", strip_pair(pred_log[0], target_log[0]))
    return logs
