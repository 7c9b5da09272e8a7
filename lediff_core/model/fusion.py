"""LEDiff's latent exposure fusion module.

Each bracket latent C_i gets per-channel, per-pixel logits w_i = conv(C_i) from one depthwise 1x1
convolution shared by all brackets; a softmax over the brackets turns them into weights and the
fused latent is sum_i W_i * C_i. The official release fuses (darkest, middle, brightest) latents in
the *scaled* latent space (x scaling_factor); the module works for any number of brackets.
"""

from __future__ import annotations

import torch
from torch import nn

from .weights import check_keys


class ExposureFusion(nn.Module):
    def __init__(self, channels: int = 4):
        super().__init__()
        self.weight_conv = nn.Conv2d(channels, channels, kernel_size=1, groups=channels, bias=True)
        # the paper's initialisation: zero weights and equal biases give a plain average
        nn.init.zeros_(self.weight_conv.weight)
        nn.init.constant_(self.weight_conv.bias, 1 / 3)

    def load_weights(self, state_dict: dict, source: str = "") -> None:
        check_keys(self.state_dict().keys(), state_dict.keys(), f"fusion weights {source}".strip(),
                   f"expected {sorted(self.state_dict())} (LEDiff's merge_model.pth)")
        for key, value in self.state_dict().items():
            if state_dict[key].shape != value.shape:
                raise ValueError(f"fusion weight {key}: shape {list(state_dict[key].shape)}, "
                                 f"expected {list(value.shape)}")
        self.load_state_dict(state_dict)

    def forward(self, latents: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse scaled latents [B, C, h, w] (darkest first); returns (fused, weights [N, B, C, h, w])."""
        stacked = torch.stack(latents)
        n = stacked.shape[0]
        logits = self.weight_conv(stacked.flatten(0, 1)).unflatten(0, (n, -1))
        weights = torch.softmax(logits, dim=0)
        return (weights * stacked).sum(dim=0), weights
