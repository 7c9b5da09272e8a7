"""What the real frontend shows when a LEDiff node fails: the execution error reads as the short
type and then the problem (not the pack's folder path), in headless Chromium against a genuine
ComfyUI server. The case: an SD checkpoint dropped into models/lediff/ and picked in Load Bracket
Denoiser. Screenshots are saved under test-artifacts/browser/FRONTEND/."""

from __future__ import annotations

import os

import torch
from safetensors.torch import save_file

from support.frontends import ARTIFACTS, load_api_graph, open_frontend

CHECKPOINT = "sd15_in_the_wrong_folder.safetensors"
EXPECTED = (f"lediff.WeightError: '{CHECKPOINT}' is a Stable Diffusion checkpoint, not a LEDiff model: "
            "it belongs in models/checkpoints/ (Load Checkpoint)")


def test_a_failing_node_shows_the_short_type_and_the_problem_first(browser_server, frontend):
    folder = os.path.join(browser_server.base, "models", "lediff")
    os.makedirs(folder, exist_ok=True)
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
               "first_stage_model.encoder.conv_in.weight": torch.zeros(8, 3, 3, 3)},
              os.path.join(folder, CHECKPOINT))
    graph = {"1": {"class_type": "LEDiffLoadDenoiser", "inputs": {"model_name": CHECKPOINT}},
             "2": {"class_type": "ModelSave", "inputs": {"model": ["1", 0], "filename_prefix": "never"}}}
    artifacts = os.path.join(ARTIFACTS, frontend.id)
    os.makedirs(artifacts, exist_ok=True)
    with open_frontend(browser_server, frontend) as (page, _):
        load_api_graph(page, graph, "error", "classic")
        entry = browser_server.queue_in_page(page)
        assert entry["status"]["status_str"] == "error"
        (error,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
        assert error["exception_type"] == "lediff.WeightError"
        # the toast names the node; its details open the error panel with the report
        page.get_by_role("button", name="View details").click()
        page.wait_for_function("() => document.body.innerText.includes('Exception Message')", timeout=30000)
        page.screenshot(path=os.path.join(artifacts, "error_panel.png"))
        text = " ".join(page.locator("body").inner_text().split())
        report = text[text.index("Exception Type"):text.index("Stack Trace")]
        assert "Exception Type:** lediff.WeightError - **Exception Message:** " + EXPECTED in report, report
        assert browser_server.base not in report  # no folder path ahead of the problem
