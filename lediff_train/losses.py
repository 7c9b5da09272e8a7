"""Stage 1 losses: the fusion module and HDR decoder trained jointly in log space.

LEDiff's paper trains the decoder output against ``log(H + 1e-5)`` with L1 + perceptual + GAN, and its
shipped LPIPS head points to the taming-transformers / LDM ``LPIPSWithDiscriminator``: LPIPS, a
PatchGAN discriminator with the hinge loss, the adaptive GAN weight (Esser et al. 2021, eq. 7) and a
delayed discriminator start. This is our own implementation of that published method.

Defaults: ``lpips_weight`` 1.0 (LDM's perceptual_weight), ``gan_weight`` 0.5 and ``gan_start`` 50001
(LDM's autoencoder configs: disc_weight 0.5, disc_start 50001). LEDiff's own loss weights and
discriminator start are unknown (docs/LEDIFF.md "Training recipe"); these are the published LDM values.

The trainer calls, per step (``loss = Stage1Loss(...)``, ``out``/``target`` log HDR [B,3,H,W])::

    g_loss, g_logs = loss.generator_loss(out, target, step, last_layer=decoder_conv_out.weight)
    backward(g_loss); generator optimiser step
    if loss.gan_active(step):
        d_loss, d_logs = loss.discriminator_loss(out.detach(), target, step)
        backward(d_loss); discriminator optimiser step
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lediff_core.model.weights import WeightError, check_torch_file, is_legacy_torch_file

DEFAULT_LPIPS_WEIGHT = 1.0
DEFAULT_GAN_WEIGHT = 0.5
DEFAULT_GAN_START = 50001
DEFAULT_MAX_ADAPTIVE_WEIGHT = 1e4

# torchvision's IMAGENET1K_V1 weights for the two LPIPS trunks we offer: (torchvision builder, URL).
# torchvision caches a download under torch.hub.get_dir()/checkpoints/<the URL's file name>.
LPIPS_BACKBONES = {
    "alex": ("alexnet", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16", "https://download.pytorch.org/models/vgg16-397923af.pth"),
}


class LPIPSUnavailable(RuntimeError):
    """The perceptual loss cannot be built (package or weights missing); the message names the fix."""


class LPIPSWeightsMissing(LPIPSUnavailable):
    """The LPIPS trunk's pretrained torchvision weights are not in torch's cache (we never download)."""


def _check_net(net: str) -> None:
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"LPIPS net {net!r} is not supported: choose one of {sorted(LPIPS_BACKBONES)}")


def lpips_backbone_file(net: str = "alex", hub_dir: str | Path | None = None) -> Path:
    """Where torchvision keeps the LPIPS trunk's weights: ``<hub_dir>/checkpoints/<file>``.

    ``hub_dir`` defaults to ``torch.hub.get_dir()``, read at call time (it follows ``$TORCH_HOME``).
    """
    _check_net(net)
    hub = Path(hub_dir) if hub_dir is not None else Path(torch.hub.get_dir())
    return hub / "checkpoints" / LPIPS_BACKBONES[net][1].rsplit("/", 1)[-1]


def check_lpips_weights(net: str = "alex", hub_dir: str | Path | None = None) -> Path:
    """Return the trunk's weight file, or raise :class:`LPIPSWeightsMissing` saying how to get it.

    Cheap (no import of lpips/torchvision): the trainer can call it before loading anything else.
    """
    path = lpips_backbone_file(net, hub_dir)
    if path.is_file():
        return path
    builder, url = LPIPS_BACKBONES[net]
    raise LPIPSWeightsMissing(
        f"The perceptual loss (LPIPS, net={net!r}) needs torchvision's pretrained {builder} weights, which "
        f"are not in torch's cache, and training never downloads them.\n"
        f"  missing file: {path}\n"
        f"  torchvision fetches it from: {url}\n"
        f"Fix: on a machine with network access run\n"
        f"    python -c \"import torchvision; torchvision.models.{builder}(weights='IMAGENET1K_V1')\"\n"
        f"  (or download the URL above) and copy {path.name} into {path.parent}/ here "
        f"(torch.hub.get_dir()/checkpoints; set TORCH_HOME to use another cache folder);\n"
        f"  or train without the perceptual loss: --lpips-weight 0"
    )


def _check_file(path: Path, what: str, legacy_from: str | None) -> None:
    """Refuse, before torch.load, a file whose loading its size does not bound (``check_torch_file``),
    except the legacy-format files the loss is built from: the heads inside the lpips package (``legacy_from``
    ``"package"``: its v0.1 weights are pre-1.6 files, as trusted as its code) and torchvision's trunk
    downloads (``"torchvision"``: its older files are legacy too), accepted only when their SHA-256
    starts with the hash in their name, as torchvision's own ``check_hash`` requires."""
    if legacy_from is not None and is_legacy_torch_file(str(path)):
        if legacy_from == "package":
            return
        match = re.search(r"-([0-9a-f]{8,})\.", path.name)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if match and digest.hexdigest().startswith(match.group(1)):
            return
        raise LPIPSUnavailable(
            f"the {what} weights {path} are a legacy-format PyTorch file but not torchvision's download (their "
            f"SHA-256 does not start with the {match.group(1) if match else '(no hash)'} in the name), so they "
            "are not loaded: delete the file and fetch it again, or train without the perceptual loss: "
            "--lpips-weight 0")
    try:
        check_torch_file(str(path))
    except WeightError as exc:
        raise LPIPSUnavailable(f"cannot read the {what} weights: {exc}; or train without the perceptual loss: "
                               "--lpips-weight 0") from None


def _load_weights(path: Path, what: str, legacy_from: str | None = None) -> dict[str, torch.Tensor]:
    try:
        _check_file(path, what, legacy_from)
    except OSError as exc:
        raise LPIPSUnavailable(f"cannot read the {what} weights {path}: {exc}") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated download, a foreign file
        raise LPIPSUnavailable(
            f"cannot read the {what} weights {path}: {exc}. Delete the file and fetch it again, "
            f"or train without the perceptual loss: --lpips-weight 0"
        ) from exc
    if not isinstance(state, dict):
        raise LPIPSUnavailable(f"{path} is not a state dict ({type(state).__name__}); delete it and fetch it again")
    return state


class PerceptualLoss(nn.Module):
    """LPIPS (Zhang et al. 2018) between two log-HDR images, frozen and always in eval mode.

    Built from the ``lpips`` package's network with its linear heads (shipped in the lpips wheel,
    v0.1) and the torchvision trunk from torch's cache, both loaded strictly with
    ``weights_only=True``; a missing trunk raises :class:`LPIPSWeightsMissing` before anything can
    download (lpips itself would call torchvision, which downloads silently).

    Input mapping: LPIPS expects images in [-1, 1], but log HDR ``ln(2^E0 H + 1e-5)`` spans about
    [-11.5, +5] (the 1e-5 floor up to highlights several stops over the middle exposure; the median
    sits near -1.7 for a 7-stop scene). We feed ``tanh(x / squash_scale)`` (default 4): nearly linear
    (slope 1/4) over the mid-tones, it brings everything into (-1, 1) smoothly, so highlights keep a
    gradient where a clamp would give none, and the meaningless 1e-5 noise floor is compressed most.
    """

    def __init__(self, net: str = "alex", hub_dir: str | Path | None = None, squash_scale: float = 4.0):
        super().__init__()
        trunk_path = check_lpips_weights(net, hub_dir)
        if not (squash_scale > 0 and math.isfinite(squash_scale)):
            raise ValueError(f"squash_scale must be a positive number, got {squash_scale!r}")
        try:
            import lpips
        except ImportError as exc:
            raise LPIPSUnavailable(
                "the perceptual loss needs the lpips package: pip install -r requirements-train.txt, "
                "or train without it: --lpips-weight 0"
            ) from exc
        # pnet_rand: torchvision builds the trunk with random weights (no download); pretrained=False:
        # lpips loads nothing (its own load is strict=False). We load both parts strictly below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's "pretrained is deprecated" from inside lpips
            model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
        heads_path = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
        trunk = _load_weights(trunk_path, "LPIPS trunk", legacy_from="torchvision")
        heads = _load_weights(heads_path, "LPIPS head", legacy_from="package")
        model.load_state_dict(self._state(model, trunk, trunk_path, heads, heads_path), strict=True)
        model.requires_grad_(False)
        model.eval()
        self.net_name = net
        self.squash_scale = float(squash_scale)
        self.lpips = model

    @staticmethod
    def _state(model: nn.Module, trunk: dict, trunk_path: Path, heads: dict, heads_path: Path) -> dict:
        """Every key of lpips' network taken from a file (the scaling constants excepted)."""
        state = {}
        for key, current in model.state_dict().items():
            parts = key.split(".")
            if parts[0] == "scaling_layer":  # fixed ImageNet shift/scale constants, no weights
                state[key] = current
                continue
            if parts[0] == "net":  # net.slice<k>.<features index>.<param>: torchvision's features.<index>
                source, path = trunk, trunk_path
                src = ".".join(["features", *parts[2:]])
            elif parts[0] == "lins":  # lins.<k> is the same module as lin<k>
                source, path = heads, heads_path
                src = ".".join([f"lin{parts[1]}", *parts[2:]])
            else:
                source, path, src = heads, heads_path, key
            value = source.get(src)
            if value is None or tuple(value.shape) != tuple(current.shape):
                found = "missing" if value is None else f"shape {tuple(value.shape)}"
                raise LPIPSUnavailable(
                    f"{path} does not hold the expected {src} {tuple(current.shape)} ({found}): it is not the "
                    f"{model.pnet_type} weights LPIPS needs; delete it and fetch it again"
                )
            state[key] = value
        return state

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.lpips.eval()  # the heads hold dropout: never active, the loss is a fixed metric
        return self

    def squash(self, log_hdr: torch.Tensor) -> torch.Tensor:
        return torch.tanh(log_hdr / self.squash_scale)

    def forward(self, out_log: torch.Tensor, target_log: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """LPIPS distance, ``reduction`` "mean" (a scalar) or "none" (one value per sample, [B])."""
        if out_log.shape != target_log.shape or out_log.ndim != 4 or out_log.shape[1] != 3:
            raise ValueError(f"LPIPS compares two log-HDR batches [B,3,H,W] of one shape, got "
                             f"{tuple(out_log.shape)} and {tuple(target_log.shape)}")
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        dist = self.lpips(self.squash(out_log), self.squash(target_log)).flatten()
        return dist.mean() if reduction == "mean" else dist


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (pix2pix / taming ``NLayerDiscriminator`` architecture).

    4x4 convolutions: one stride-2 conv (no norm), ``n_layers - 1`` stride-2 convs and one stride-1
    conv with normalisation, each followed by LeakyReLU(0.2), then a stride-1 conv to one logit per
    patch. Channels ``ndf * min(2^i, 8)``. For ``n_layers`` 3 each logit sees a 70x70 patch and an
    ``H x W`` input gives ``(H/8 - 2) x (W/8 - 2)`` logits.

    Normalisation: GroupNorm (32 groups, fewer when the channels do not divide) or "none" instead of
    the original BatchNorm. Without batch statistics a sample's logits do not depend on the rest of
    its batch, so two processes with half the batch each compute exactly what one process computes
    on the combined batch (DDP does not synchronise BatchNorm statistics), and real and fake images
    can share one forward pass.

    Input: log HDR times ``input_scale`` (default 1/4), a fixed affine map that keeps the usual
    [-11.5, +5] range O(1) for the N(0, 0.02) init without saturating anything: the discriminator
    sees the highlights, which LEDiff hallucinates, at full resolution in log space.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "group",
                 input_scale: float = 0.25):
        super().__init__()
        if n_layers < 1 or ndf < 1 or in_channels < 1:
            raise ValueError(f"PatchDiscriminator needs n_layers, ndf, in_channels >= 1, got "
                             f"{n_layers}, {ndf}, {in_channels}")
        if norm not in ("group", "none"):
            raise ValueError(f"norm must be 'group' or 'none' (no batch statistics), got {norm!r}")
        self.input_scale = float(input_scale)
        self.n_layers = n_layers

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            if norm == "none":
                return [nn.Conv2d(cin, cout, 4, stride, 1), nn.LeakyReLU(0.2)]
            return [nn.Conv2d(cin, cout, 4, stride, 1, bias=False), _group_norm(cout), nn.LeakyReLU(0.2)]

        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        channels = ndf
        for i in range(1, n_layers):
            out = ndf * min(2**i, 8)
            layers += block(channels, out, 2)
            channels = out
        out = ndf * min(2**n_layers, 8)
        layers += block(channels, out, 1)
        layers.append(nn.Conv2d(out, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """pix2pix init: conv weights N(0, 0.02), norm scales N(1, 0.02), biases zero."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.GroupNorm):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, log_hdr: torch.Tensor) -> torch.Tensor:
        """Logits [B, 1, h, w], one per patch."""
        return self.main(log_hdr * self.input_scale)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: 0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake)))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator loss of the hinge GAN: -mean(fake logits)."""
    return -logits_fake.mean()


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float = DEFAULT_MAX_ADAPTIVE_WEIGHT,
                    grad_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Adaptive GAN weight ||d rec / d last|| / (||d g / d last|| + 1e-4), clamped to [0, max], detached.

    Esser et al. 2021 (taming-transformers) eq. 7: balances the GAN gradient against the
    reconstruction gradient at the decoder's last layer. The graph is retained for the backward.
    ``grad_reduce`` (e.g. ``lambda t: accelerator.reduce(t, "mean")``) averages both gradients over
    processes first, so that N processes use the weight of the combined batch; without it each
    process uses its local batch's weight.
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    if grad_reduce is not None:
        rec_grad, g_grad = grad_reduce(rec_grad), grad_reduce(g_grad)
    weight = rec_grad.norm() / (g_grad.norm() + 1e-4)
    return torch.clamp(weight, 0.0, max_weight).detach()


def _unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DDP/FSDP (``.module``) or torch.compile (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(module, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(module, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return module
        module = inner


class Stage1Loss(nn.Module):
    """L1 + LPIPS + adaptive-weighted hinge PatchGAN on log HDR, the GAN from ``gan_start`` on.

    reconstruction = mean |out - target| + lpips_weight * LPIPS  (LDM adds the per-sample LPIPS to
    every pixel's L1 before averaging, the same ratio); generator = reconstruction + gan_weight *
    adaptive_weight * (-mean D(out)) once ``step >= gan_start``. Before that, or with ``gan_weight``
    0, the GAN contributes exactly nothing and the discriminator is never run. ``perceptual`` is None
    when ``lpips_weight`` is 0, ``discriminator`` None when ``gan_weight`` is 0.

    The trainer owns ``discriminator``'s optimiser (and may replace the attribute with its
    accelerate-prepared wrapper); only the discriminator needs checkpointing, LPIPS is frozen.
    """

    def __init__(self, lpips_weight: float = DEFAULT_LPIPS_WEIGHT, gan_weight: float = DEFAULT_GAN_WEIGHT,
                 gan_start: int = DEFAULT_GAN_START, lpips_net: str = "alex", hub_dir: str | Path | None = None,
                 disc_ndf: int = 64, disc_layers: int = 3, max_adaptive_weight: float = DEFAULT_MAX_ADAPTIVE_WEIGHT):
        super().__init__()
        for name, value in (("lpips_weight", lpips_weight), ("gan_weight", gan_weight)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"--{name.replace('_', '-')} must be a number >= 0, got {value!r}")
        if int(gan_start) != gan_start or gan_start < 0:
            raise ValueError(f"--gan-start must be a step number >= 0, got {gan_start!r}")
        self.lpips_weight = float(lpips_weight)
        self.gan_weight = float(gan_weight)
        self.gan_start = int(gan_start)
        self.max_adaptive_weight = float(max_adaptive_weight)
        self.perceptual = PerceptualLoss(lpips_net, hub_dir) if self.lpips_weight > 0 else None
        self.discriminator = PatchDiscriminator(ndf=disc_ndf, n_layers=disc_layers) if self.gan_weight > 0 else None

    def gan_active(self, step: int) -> bool:
        """Whether the GAN terms (and the discriminator's training step) run at this step."""
        return self.discriminator is not None and step >= self.gan_start

    def reconstruction_loss(self, out: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        if out.shape != target.shape:
            raise ValueError(f"decoder output {tuple(out.shape)} and target log HDR {tuple(target.shape)} differ")
        l1 = (out - target).abs().mean()
        logs = {"loss/l1": float(l1.detach())}
        rec = l1
        if self.perceptual is not None:
            p = self.perceptual(out, target)
            rec = rec + self.lpips_weight * p
            logs["loss/lpips"] = float(p.detach())
        logs["loss/rec"] = float(rec.detach())
        return rec, logs

    def _frozen_logits(self, images: torch.Tensor) -> torch.Tensor:
        """D(images) with D's parameters as constants: the gradient reaches the generator only."""
        disc = _unwrap(self.discriminator)
        params = {name: p.detach() for name, p in disc.named_parameters()}
        return torch.func.functional_call(disc, params, (images,))

    def generator_loss(self, out: torch.Tensor, target: torch.Tensor, step: int,
                       last_layer: torch.Tensor | None = None,
                       grad_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       ) -> tuple[torch.Tensor, dict[str, float]]:
        """The fusion + decoder loss and its logs; ``last_layer`` (decoder conv_out weight) for the GAN weight."""
        rec, logs = self.reconstruction_loss(out, target)
        if not self.gan_active(step):
            logs["loss/total"] = logs["loss/rec"]
            return rec, logs
        if last_layer is None:
            raise ValueError("generator_loss needs last_layer (the decoder's last conv weight) once the GAN is on")
        g = hinge_g_loss(self._frozen_logits(out))
        weight = adaptive_weight(rec, g, last_layer, self.max_adaptive_weight, grad_reduce)
        total = rec + self.gan_weight * weight * g
        logs.update({"loss/g": float(g.detach()), "loss/adaptive_weight": float(weight),
                     "loss/total": float(total.detach())})
        return total, logs

    def discriminator_loss(self, out: torch.Tensor, target: torch.Tensor, step: int
                           ) -> tuple[torch.Tensor, dict[str, float]]:
        """Hinge loss of the discriminator on ``target`` (real) vs ``out`` (fake, pass it detached).

        Inactive (``not gan_active(step)``): a constant 0 without a graph and no discriminator forward;
        the trainer skips the discriminator's backward and optimiser step then.
        """
        if not self.gan_active(step):
            return torch.zeros((), device=out.device), {"loss/d": 0.0}
        if out.shape != target.shape:
            raise ValueError(f"decoder output {tuple(out.shape)} and target log HDR {tuple(target.shape)} differ")
        # One forward over real and fake: a wrapped (DDP) module is called once per step.
        logits = self.discriminator(torch.cat([target, out.detach()], dim=0))
        real, fake = logits[: target.shape[0]], logits[target.shape[0]:]
        d = hinge_d_loss(real, fake)
        return d, {"loss/d": float(d.detach()), "d/logits_real": float(real.detach().mean()),
                   "d/logits_fake": float(fake.detach().mean())}
