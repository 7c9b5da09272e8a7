"""Load HDR VAE and Load Bracket Denoiser: official LEDiff downloads (or converted single files)
from models/lediff/."""

from __future__ import annotations

from comfy_api.latest import io

from ...lediff_core.model.backbones import BACKBONES
from ...lediff_core.model.hdr_vae import HDRVAE
from ...lediff_core.model.weights import config_name, load_denoiser, load_hdr_vae, weights_name
from .hdr import HDR_VAE
from .runtime import HDRVAEModel, build_comfy_vae, build_denoiser, model_names, model_path

MODEL_TOOLTIP = ("A folder in models/lediff/ (an official LEDiff download as extracted) or a single "
                 ".safetensors made by `python -m lediff_core.model.convert`.")


class LoadHDRVAE(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffLoadHDRVAE",
            display_name="Load HDR VAE",
            category="LEDiff/loaders",
            description="Loads LEDiff's VAE (SD encoder + HDR decoder) and its exposure fusion module, for "
                        "SD1.5 or SDXL LEDiff models (the backbone follows vae/config.json's scaling_factor: "
                        f"{', '.join(f'{b.scaling_factor} {b.label}' for b in BACKBONES)}).",
            inputs=[io.Combo.Input("model_name", options=model_names(), tooltip=MODEL_TOOLTIP)],
            outputs=[
                HDR_VAE.Output("hdr_vae", tooltip="HDR decoder and fusion module (float32; no encoder: "
                               "encode photos with the vae output), for Latent Exposure Fusion and HDR Decode. "
                               "An SDXL HDR VAE never computes in float16 (SDXL's VAE overflows it)."),
                io.Vae.Output("vae", tooltip="The same weights as a standard VAE: VAE Encode photos with "
                              "it. Its latents carry their backbone: a bracket node refuses them before "
                              "sampling if its denoiser is of the other one. (Its decoder is the HDR decoder: "
                              "VAE Decode shows a log-encoded view.)"),
            ],
        )

    @classmethod
    def execute(cls, model_name) -> io.NodeOutput:
        path = model_path(model_name)
        config, vae_sd, fusion_sd = load_hdr_vae(path)
        core = HDRVAE(config, vae_sd, fusion_sd, source=model_name, config_name=config_name(path, "vae"),
                      weights_name=weights_name(path, "vae"))
        return io.NodeOutput(HDRVAEModel(core, model_name), build_comfy_vae(config, vae_sd, model_name))


class LoadDenoiser(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffLoadDenoiser",
            display_name="Load Bracket Denoiser",
            category="LEDiff/loaders",
            description="Loads LEDiff's 8-channel bracket denoiser (Highlight or Shadow model) as a MODEL: "
                        "SD1.5 or SDXL, read from unet/config.json.",
            inputs=[io.Combo.Input("model_name", options=model_names(), tooltip=MODEL_TOOLTIP)],
            outputs=[io.Model.Output("model", tooltip="For Highlight Bracket / Shadow Bracket; model patch "
                                     "and LoRA nodes apply to it like to any MODEL.")],
        )

    @classmethod
    def execute(cls, model_name) -> io.NodeOutput:
        path = model_path(model_name)
        config, sd = load_denoiser(path)
        return io.NodeOutput(build_denoiser(config, sd, model_name, config_name(path, "unet"),
                                            weights_name(path, "unet")))


NODES = [LoadHDRVAE, LoadDenoiser]
