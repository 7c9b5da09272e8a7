"""lediff_core.model.vae against diffusers' AutoencoderKL (installed as a test-only reference).

Both models get the same random weights through our loader, so these tests check the key layout
and the arithmetic at once. Every parameter is re-randomised because diffusers initialises some
layers to zero, which would hide wrongly wired branches.
"""

from __future__ import annotations

import diffusers  # test-only reference (requirements-dev.txt): a missing install fails, never skips
import pytest
import torch
import torch.nn.functional as F

from lediff_core.model.vae import AutoencoderKL, Upsample2D, VAEConfigError, WeightKeyError, parse_vae_config
from support.tiny_models import randomise

TOL = 1e-5


def _config(channels, layers=1, groups=8, **extra):
    return {
        "block_out_channels": list(channels),
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "layers_per_block": layers,
        "norm_num_groups": groups,
        "latent_channels": 4,
        **extra,
    }


def _pair(config: dict, seed: int = 0):
    ref = diffusers.AutoencoderKL(**config).eval()
    # GroupNorm scales near 1 keep activations O(1), so a 1e-5 tolerance is a tight check.
    randomise(ref, seed, norm_scale=0.1)
    ours = AutoencoderKL(dict(ref.config)).eval()
    ours.load_weights(ref.state_dict(), source="reference")
    return ref, ours


CONFIGS = {
    "2 blocks, groups 8": _config([32, 64], layers=1, groups=8),
    "4 blocks, 2 layers, groups 16": _config([32, 64, 64, 64], layers=2, groups=16),
    "3 blocks, groups 32, no mid attention": _config([32, 64, 64], groups=32, mid_block_add_attention=False),
    "no quant convs, odd channel counts": _config(
        [32, 64], groups=32, in_channels=6, out_channels=5, latent_channels=3,
        use_quant_conv=False, use_post_quant_conv=False,
    ),
}


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def pair(request):
    return _pair(CONFIGS[request.param])


def test_state_dict_layout_is_diffusers(pair):
    ref, ours = pair
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert sorted(our_sd) == sorted(ref_sd)
    assert {k: v.shape for k, v in our_sd.items()} == {k: v.shape for k, v in ref_sd.items()}
    for key, value in ref_sd.items():
        assert torch.equal(our_sd[key], value), key


def test_encode_matches_diffusers_mode(pair):
    ref, ours = pair
    x = torch.rand(2, ours.config["in_channels"], 48, 80, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        expected = ref.encode(x).latent_dist.mode()
        got = ours.encode(x)
    f = ours.downscale_factor
    assert got.shape == (2, ours.config["latent_channels"], 48 // f, 80 // f)
    assert expected.std() > 0.05  # not a vacuous comparison
    assert (got - expected).abs().max() <= TOL


@pytest.mark.parametrize("size", [(6, 10), (5, 7)], ids=["6x10", "odd 5x7 tile"])
def test_decode_matches_diffusers(pair, size):
    ref, ours = pair
    z = torch.randn(2, ours.config["latent_channels"], *size, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = ref.decode(z).sample
        got = ours.decode(z)
    f = ours.downscale_factor
    assert got.shape == (2, ours.config["out_channels"], size[0] * f, size[1] * f)
    assert expected.std() > 0.05
    assert (got - expected).abs().max() <= TOL


def test_decoder_is_usable_on_its_own(pair):
    _, ours = pair
    z = torch.randn(1, ours.config["latent_channels"], 4, 6, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        h = z if ours.post_quant_conv is None else ours.post_quant_conv(z)
        assert torch.equal(ours.decoder(h), ours.decode(z))


def test_decode_with_autograd_matches_and_backpropagates():
    # The forward adds and activates in place; that must stay correct when autograd records it.
    ref, ours = _pair(CONFIGS["2 blocks, groups 8"])
    z = torch.randn(1, 4, 6, 8, generator=torch.Generator().manual_seed(4), requires_grad=True)
    out = ours.decode(z)
    out.square().sum().backward()
    z_ref = z.detach().clone().requires_grad_(True)
    ref.decode(z_ref).sample.square().sum().backward()
    assert (z.grad - z_ref.grad).abs().max() <= 1e-4 * z_ref.grad.abs().max()
    assert ours.decoder.up_blocks[0].upsamplers[0].conv.weight.grad is not None


@pytest.mark.parametrize("shape", [(1, 8, 3, 5), (3, 16, 6, 4)])
def test_upsampler_equals_nearest_then_conv(shape):
    torch.manual_seed(5)
    up = Upsample2D(shape[1]).double()
    x = torch.randn(shape, dtype=torch.float64)
    upsampled = F.interpolate(x, scale_factor=2.0, mode="nearest")
    expected = F.conv2d(upsampled, up.conv.weight, up.conv.bias, padding=1)
    got = up(x)
    assert got.shape == expected.shape and got.is_contiguous()
    assert (got - expected).abs().max() <= 1e-12


def test_decode_does_not_clamp():
    ref, ours = _pair(CONFIGS["2 blocks, groups 8"])
    state = ref.state_dict()
    state["decoder.conv_out.weight"] = state["decoder.conv_out.weight"] * 100
    ref.load_state_dict(state)
    ours.load_weights(state)
    z = torch.randn(1, 4, 6, 8, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        got, expected = ours.decode(z), ref.decode(z).sample
    assert got.max() > 2 and got.min() < -2
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


# ----------------------------------------------------------------------------------------------------------
# Loading


DEPRECATED = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def _deprecated_names(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        for new, old in DEPRECATED.items():
            key = key.replace(f".attentions.0.{new}.", f".attentions.0.{old}.")
        out[key] = value
    return out


def test_deprecated_attention_names_load_identically():
    ref, ours = _pair(CONFIGS["2 blocks, groups 8"])
    old = _deprecated_names(ref.state_dict())
    assert "encoder.mid_block.attentions.0.proj_attn.bias" in old
    assert "decoder.mid_block.attentions.0.query.weight" in old
    assert not any(".to_q." in k for k in old)
    fresh = AutoencoderKL(ours.config)
    fresh.load_weights(old)
    for key, value in ours.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_old_and_new_attention_names_together_are_refused():
    ref, ours = _pair(CONFIGS["2 blocks, groups 8"])
    state = ref.state_dict()
    state["decoder.mid_block.attentions.0.query.weight"] = state["decoder.mid_block.attentions.0.to_q.weight"]
    with pytest.raises(WeightKeyError, match=r"decoder\.mid_block\.attentions\.0\.query\.weight"):
        ours.load_weights(state)


def test_missing_key_is_named_and_model_left_untouched():
    ref, ours = _pair(CONFIGS["2 blocks, groups 8"])
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    state = {k: torch.zeros_like(v) for k, v in ref.state_dict().items()}
    del state["decoder.conv_out.bias"]
    with pytest.raises(WeightKeyError) as err:
        ours.load_weights(state, source="vae/diffusion_pytorch_model.safetensors")
    message = str(err.value)
    assert "1 missing key(s): decoder.conv_out.bias" in message
    assert "vae/diffusion_pytorch_model.safetensors" in message
    assert "unexpected" not in message
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in before.items())


def test_unexpected_key_is_named():
    ref, ours = _pair(CONFIGS["2 blocks, groups 8"])
    state = ref.state_dict()
    state["decoder.conv_extra.weight"] = torch.zeros(3)
    with pytest.raises(WeightKeyError, match=r"1 unexpected key\(s\): decoder\.conv_extra\.weight"):
        ours.load_weights(state)


def test_many_missing_keys_are_counted_and_truncated():
    _, ours = _pair(CONFIGS["2 blocks, groups 8"])
    total = len(ours.state_dict())
    with pytest.raises(WeightKeyError) as err:
        ours.load_weights({})
    message = str(err.value)
    assert f"{total} missing key(s)" in message
    assert f"({total - 10} more)" in message
    assert "encoder.conv_in.weight" in message


def test_ldm_format_checkpoint_gets_a_hint():
    _, ours = _pair(CONFIGS["2 blocks, groups 8"])
    state = {"first_stage_model.encoder.down.0.block.0.norm1.weight": torch.zeros(32)}
    with pytest.raises(WeightKeyError, match="original Stable Diffusion"):
        ours.load_weights(state)


def test_prefixed_keys_get_a_hint():
    ref, ours = _pair(CONFIGS["2 blocks, groups 8"])
    state = {f"vae.{k}": v for k, v in ref.state_dict().items()}
    with pytest.raises(WeightKeyError, match="Every key starts with 'vae'"):
        ours.load_weights(state)


def test_wrong_shape_names_key_and_both_shapes():
    ref, ours = _pair(CONFIGS["2 blocks, groups 8"])
    state = ref.state_dict()
    state["decoder.conv_in.weight"] = torch.zeros(64, 4, 1, 1)
    expected = r"decoder\.conv_in\.weight: file \[64, 4, 1, 1\] vs model \[64, 4, 3, 3\]"
    with pytest.raises(WeightKeyError, match=expected):
        ours.load_weights(state)


def test_weights_are_converted_to_the_model_dtype():
    ref, ours = _pair(CONFIGS["2 blocks, groups 8"])
    state = {k: v.double() for k, v in ref.state_dict().items()}
    fresh = AutoencoderKL(ours.config)
    fresh.load_weights(state)
    for key, value in fresh.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, ref.state_dict()[key]), key


def test_encode_refuses_sizes_that_do_not_divide():
    _, ours = _pair(CONFIGS["4 blocks, 2 layers, groups 16"])
    with pytest.raises(ValueError, match="multiples of 8"):
        ours.encode(torch.zeros(1, 3, 48, 84))
    with pytest.raises(ValueError, match=r"expects \[B, 4, H, W\]"):
        ours.decode(torch.zeros(1, 3, 6, 6))


# ----------------------------------------------------------------------------------------------------------
# Config parsing


SD15_VAE_CONFIG = {  # vae/config.json of the Stable Diffusion 1.5 diffusers folder
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}


def test_sd15_config_parses_with_diffusers_defaults():
    cfg = parse_vae_config(SD15_VAE_CONFIG)
    assert cfg["block_out_channels"] == (128, 256, 512, 512)
    assert cfg["scaling_factor"] == 0.18215
    assert cfg["shift_factor"] is None
    assert cfg["mid_block_add_attention"] and cfg["use_quant_conv"] and cfg["use_post_quant_conv"]
    assert "sample_size" not in cfg and "_class_name" not in cfg
    assert parse_vae_config(cfg) == cfg


def test_explicit_values_are_kept():
    cfg = parse_vae_config({
        **SD15_VAE_CONFIG, "scaling_factor": 0.13025, "shift_factor": 0, "force_upcast": False,
        "mid_block_add_attention": False, "latents_mean": None,
    })
    assert cfg["scaling_factor"] == 0.13025 and cfg["shift_factor"] == 0.0
    assert cfg["mid_block_add_attention"] is False
    model = AutoencoderKL(_config([32, 64], scaling_factor=0.5))
    assert model.scaling_factor == 0.5 and model.config["scaling_factor"] == 0.5


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"act_fn": "gelu"}, "act_fn"),
        ({"down_block_types": ["DownEncoderBlock2D"] * 3 + ["KDownEncoderBlock2D"]}, "down_block_types[3]"),
        ({"up_block_types": ["UpDecoderBlock2D"] * 3}, "up_block_types"),
        ({"shift_factor": 0.1159}, "shift_factor"),
        ({"latents_mean": [0.0] * 4}, "latents_mean"),
        ({"norm_num_groups": 24}, "block_out_channels[0]"),
        ({"layers_per_block": 0}, "layers_per_block"),
        ({"latent_channels": 4.0}, "latent_channels"),
        ({"block_out_channels": []}, "block_out_channels"),
        ({"use_quant_conv": "yes"}, "use_quant_conv"),
        ({"scaling_factor": -1}, "scaling_factor"),
        ({"_class_name": "AutoencoderTiny"}, "_class_name"),
        ({"temporal_compression_ratio": 4}, "temporal_compression_ratio"),
    ],
)
def test_unsupported_configs_are_refused(change, field):
    with pytest.raises(VAEConfigError) as err:
        parse_vae_config({**SD15_VAE_CONFIG, **change})
    assert field in str(err.value)
    with pytest.raises(VAEConfigError):
        AutoencoderKL({**SD15_VAE_CONFIG, **change})


def test_non_dict_config_is_refused():
    with pytest.raises(VAEConfigError, match="must be a dict"):
        parse_vae_config(["block_out_channels"])
