"""Absurd model configs through the nodes in a genuine ComfyUI (issue 25, class 2): a config.json asking
for block_out_channels [4096]*4 or layers_per_block 1000 beside small weights is refused by name (the
config's path, the key, the fix) before any model is built, and the refusal allocates nothing big
(measured in a child process, support/attacks.py). The core's and the recipe's refusals:
tests/core/model/test_config_fit.py, tests/train/test_config_fit.py."""

from __future__ import annotations

import os

from support.attacks import ATTACKS, GROWTH_LIMIT, MB, MEASURE, assert_names_the_config, in_child

HOST_CHILD = MEASURE + r"""
sys.path.insert(0, "tests")
from support.comfy_harness import ComfyHost
host = ComfyHost.start()
import folder_paths  # ComfyUI's, importable once the host is up
host.use_folders(sys.argv[2])
folder_paths.add_model_folder_path("lediff", sys.argv[2])
graphs = {
    "unet": lambda name: {"1": {"class_type": "LEDiffLoadDenoiser", "inputs": {"model_name": name}},
                          "2": {"class_type": "ModelSave", "inputs": {"model": ["1", 0], "filename_prefix": "x"}}},
    "vae": lambda name: {"1": {"class_type": "LEDiffLoadHDRVAE", "inputs": {"model_name": name}},
                         "2": {"class_type": "VAESave", "inputs": {"vae": ["1", 1], "filename_prefix": "x"}}},
}
for part, name in zip(sys.argv[3::2], sys.argv[4::2]):
    measured(lambda: host.run(graphs[part](name)), int(sys.argv[1]))
"""


# ------------------------------------------------------------------ absurd configs beside small weights


def test_the_nodes_refuse_an_absurd_config_by_name_before_building_in_a_genuine_comfyui(attacks):
    root, folders = attacks
    args = [x for (part, *_), folder in zip(ATTACKS, folders, strict=True) for x in (part, os.path.basename(folder))]
    results = in_child(HOST_CHILD, str(root), *args)
    for (part, setting, _, weights), folder, result in zip(ATTACKS, folders, results, strict=True):
        assert result["error"] == "GraphError", result
        assert "lediff.ConfigMismatchError" in result["message"], result["message"][:600]
        assert_names_the_config(result["message"], folder, part, setting, weights)
        assert result["grew"] < GROWTH_LIMIT, (setting, result["grew"] / MB)


# ------------------------------------------------------------------ lying safetensors headers


# ------------------------------------------------------------------ pickled weights larger than their file


