"""A test-only custom node, loaded into the genuine host by tests/nodes/test_degenerate_inputs.py: it
makes the IMAGE, MASK and LATENT that an unlucky upstream node hands on (a crop outside the picture
gives 0x0, a filter that keeps nothing an empty batch, an overflowing decode NaN/Inf) from a shape
written as text, so every LEDiff node can be fed them through ComfyUI's own executor."""

import torch


class DegenerateTensor:
    CATEGORY = "testing"
    FUNCTION = "make"
    RETURN_TYPES = ("IMAGE", "MASK", "LATENT")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "shape": ("STRING", {"default": "1,16,16,3"}),
            "fill": (["random", "nan", "inf"],),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
        }}

    def make(self, shape, fill, seed):
        dims = [int(s) for s in shape.split(",")]
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(dims, generator=g) * 4  # a little HDR: values up to 4
        if fill != "random":
            flat = x.view(-1)
            flat[::7] = float("nan") if fill == "nan" else float("inf")
        mask = x[..., :1].sum(-1).clamp(0, 1)  # [B, H, W] (empty when C is 0)
        return x, mask, {"samples": x}


NODE_CLASS_MAPPINGS = {"LEDiffTestDegenerateTensor": DegenerateTensor}
