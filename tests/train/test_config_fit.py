"""Absurd model configs and lying weight headers against the training recipe's model reader (issue 25,
class 2): refused by name before anything is built or read into memory, measured in a child process."""

from __future__ import annotations

import pytest

from lediff_core.model.fit import ConfigMismatchError
from support.attacks import ATTACKS, GROWTH_LIMIT, LIES, MB, MEASURE, assert_names_the_config, attacked_folder, in_child

TRAIN_CHILD = MEASURE + r"""
from diffusers import UNet2DConditionModel  # imported before measuring: the reads are measured, not imports
from lediff_train import models
from lediff_core.model.weights import load_state_dict
readers = {"unet": lambda p: models.read_model(p).load_unet(), "vae": lambda p: models.read_model(p).load_vae(),
           "weights": load_state_dict}
for reader, path in zip(sys.argv[2::2], sys.argv[3::2]):
    measured(lambda: readers[reader](path), int(sys.argv[1]))
"""






def test_the_recipe_refuses_an_absurd_config_by_name_before_building(attacks):
    _, folders = attacks
    args = [x for (part, *_), folder in zip(ATTACKS, folders, strict=True) for x in (part, folder)]
    for (part, setting, _, weights), folder, result in zip(ATTACKS, folders, in_child(TRAIN_CHILD, *args), strict=True):
        assert result["error"] == "ConfigMismatchError", result
        assert_names_the_config(result["message"], folder, part, setting, weights)
        assert result["grew"] < GROWTH_LIMIT, (setting, result["grew"] / MB)


def test_a_config_that_differs_in_any_parameter_is_refused_with_the_tensor(tmp_path):
    """What no sizing setting shows (linear vs 1x1-conv projections) is found by the meta build."""
    from lediff_train import models

    folder = attacked_folder(tmp_path, "unet", "use_linear_projection", True)
    with pytest.raises(ConfigMismatchError, match=r"unet/config.json' does not match the weights.*proj_in.weight: "
                       r"the config gives \[32, 32\], the weights hold \[32, 32, 1, 1\]"):
        models.read_model(folder).load_unet()


def test_lying_headers_allocate_nothing_big(lies):
    args = [x for name in LIES for x in ("weights", lies[name])]
    for name, result in zip(LIES, in_child(TRAIN_CHILD, *args), strict=True):
        assert result["error"] == "WeightError", (name, result)
        assert result["grew"] < 50 * MB, (name, result["grew"] / MB)


def test_a_lying_checkpoint_header_is_refused_by_the_recipe(lies):
    from lediff_train import checkpoint

    with pytest.raises(checkpoint.CheckpointError, match=r"claims a 1000000-byte header.*expected a Stable Diffusion"):
        checkpoint.shapes(lies["length beyond the file"])

