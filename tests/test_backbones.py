"""One record per backbone: each backbone's facts are written once (``lediff_core.model.backbones``),
its ComfyUI classes once (``nodes.model.backbones``), and one function per side answers "which
backbone is this?" (``identify`` for diffusers configs, ``model_backbone`` for ComfyUI MODELs).

The records are checked against independent sources: ComfyUI's own latent formats and model
configs (the scale it applies in sampling, the channels, the ADM input) and diffusers' AutoencoderKL
default (the scale of a VAE config that leaves it out)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import lediff_fixtures as fx
import pytest

from lediff_core.model.backbones import BACKBONES, LEDIFF_IN_CHANNELS, SD15, SDXL, UNetConfigError, identify, label
from lediff_testing import REPO

ROOT = Path(REPO)
PRODUCT = ("lediff_core", "nodes", "lediff_train", "lediff_runner")
BACKBONE_MODULES = {"lediff_core/model/backbones.py", "nodes/model/backbones.py"}


def product_files() -> list[Path]:
    return [ROOT / "__init__.py", *(p for d in PRODUCT for p in sorted((ROOT / d).rglob("*.py")))]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("backbone", BACKBONES, ids=lambda b: b.name)
def test_each_scaling_factor_is_written_in_one_product_module(backbone):
    literal = repr(backbone.scaling_factor)
    holders = [rel(p) for p in product_files() if literal in p.read_text()]
    assert holders == ["lediff_core/model/backbones.py"], holders


def test_one_function_per_side_answers_which_backbone():
    """The only product functions that return a Backbone are the two detectors; ComfyUI's model
    tables are imported by the ComfyUI half alone."""
    detectors, comfy_tables = [], set()
    for path in product_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
                if "Backbone" in ast.unparse(node.returns).replace("ComfyBackbone", ""):
                    detectors.append((rel(path), node.name))
            if isinstance(node, ast.Import):
                if any(a.name in ("comfy.latent_formats", "comfy.model_base", "comfy.supported_models")
                       for a in node.names):
                    comfy_tables.add(rel(path))
    assert sorted(detectors) == [("lediff_core/model/backbones.py", "identify"),
                                 ("nodes/model/backbones.py", "model_backbone")]
    assert comfy_tables == {"nodes/model/backbones.py"}


def test_identify_reads_configs():
    assert identify(fx.UNET_CONFIG, "unet") is SD15 and identify(fx.SDXL_UNET_CONFIG, "unet") is SDXL
    assert identify(fx.VAE_CONFIG, "vae") is SD15 and identify(fx.SDXL_VAE_CONFIG, "vae") is SDXL
    # the VAE scale is matched, not the UNet's settings (and the other way round)
    assert identify({**fx.SDXL_UNET_CONFIG, "scaling_factor": SD15.scaling_factor}, "unet") is SDXL
    assert identify({**fx.VAE_CONFIG, "addition_embed_type": "text_time"}, "vae") is SD15
    assert identify({**fx.VAE_CONFIG, "scaling_factor": SDXL.scaling_factor + 1e-7}, "vae") is SDXL
    assert identify({**fx.VAE_CONFIG, "scaling_factor": SDXL.scaling_factor + 1e-4}, "vae") is None
    with pytest.raises(UNetConfigError, match="neither an SD1.x UNet"):
        identify({**fx.UNET_CONFIG, "addition_embed_type": "text_time"}, "unet")
    with pytest.raises(ValueError, match="part must be one of"):
        identify(fx.UNET_CONFIG, "text_encoder")


def test_records():
    assert [b.name for b in BACKBONES] == ["sd15", "sdxl"] and len({b.label for b in BACKBONES}) == 2
    assert label("sdxl") == "SDXL" and label("flux") == "flux" and label(None) is None
    for b in BACKBONES:
        assert 2 * b.latent_channels == LEDIFF_IN_CHANNELS  # noisy latent + condition latent
        assert b.text_parts[:2] == ("text_encoder", "tokenizer")
        assert (b.addition_embed_type is None) == (b.time_ids == 0)
    assert SD15.float16_safe and not SDXL.float16_safe


def test_sd15_scale_is_diffusers_default():
    """A vae/config.json without scaling_factor is SD1.x's: diffusers' AutoencoderKL default."""
    from diffusers import AutoencoderKL

    default = inspect.signature(AutoencoderKL.__init__).parameters["scaling_factor"].default
    assert default == SD15.scaling_factor
    assert identify({k: v for k, v in fx.VAE_CONFIG.items() if k != "scaling_factor"}, "vae") is SD15


def test_comfyui_half_agrees_with_comfyui(comfy):
    """Each record against ComfyUI's own tables: the latent format's scale and channels, the 8-channel
    model config's latent format, input channels and ADM input (SDXL: pooled CLIP-G text, 1280 wide,
    plus the size/crop ids)."""
    pack = comfy.pack_module("nodes.model.backbones")
    core = comfy.pack_module("lediff_core.model.backbones")
    assert [c.backbone.name for c in pack.COMFY_BACKBONES] == ["sdxl", "sd15"]
    for c in pack.COMFY_BACKBONES:
        b = c.backbone
        fmt = c.latent_format()
        assert fmt.scale_factor == b.scaling_factor and fmt.latent_channels == b.latent_channels
        assert c.model_config.latent_format is c.latent_format
        unet = c.model_config.unet_config
        assert unet["in_channels"] == core.LEDIFF_IN_CHANNELS
        if b.time_ids:
            assert unet["adm_in_channels"] - b.time_ids * b.time_embed_dim == 1280
        else:
            assert unet["adm_in_channels"] is None
