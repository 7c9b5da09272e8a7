"""Stage 1 losses (lediff_train.losses): LPIPS on log HDR, PatchGAN, hinge, adaptive weight, the GAN gate.

LPIPS runs offline on a random-weights AlexNet trunk written into a temporary TORCH_HOME
(``write_random_lpips_trunk``); network access is blocked in those tests.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lediff_train import losses
from lediff_train.losses import (
    LPIPSUnavailable,
    LPIPSWeightsMissing,
    PatchDiscriminator,
    PerceptualLoss,
    Stage1Loss,
    adaptive_weight,
    hinge_d_loss,
    hinge_g_loss,
)
from support.train_models import write_random_lpips_trunk


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt or torch hub download fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.fixture(scope="module")
def trunk_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("torch_home")
    write_random_lpips_trunk(home)
    return home


@pytest.fixture
def lpips_home(trunk_home, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(trunk_home))
    assert Path(torch.hub.get_dir()) == trunk_home / "hub"
    return trunk_home


# ---- LPIPS -----------------------------------------------------------------------------------------

def test_backbone_files_are_torchvisions():
    import torchvision

    assert losses.LPIPS_BACKBONES["alex"][1] == torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url
    assert losses.LPIPS_BACKBONES["vgg"][1] == torchvision.models.VGG16_Weights.IMAGENET1K_V1.url


@pytest.mark.parametrize("net,name,builder", [("alex", "alexnet-owt-7be5be79.pth", "alexnet"),
                                              ("vgg", "vgg16-397923af.pth", "vgg16")])
def test_missing_trunk_weights_clear_error_without_network(tmp_path, monkeypatch, no_network, net, name, builder):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(LPIPSWeightsMissing) as err:
        PerceptualLoss(net)
    message = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / name) in message
    assert f"https://download.pytorch.org/models/{name}" in message
    assert f"torchvision.models.{builder}(weights='IMAGENET1K_V1')" in message
    assert "--lpips-weight 0" in message
    with pytest.raises(LPIPSWeightsMissing):
        Stage1Loss(lpips_net=net)
    assert Stage1Loss(lpips_weight=0.0, lpips_net=net).perceptual is None
    assert not (tmp_path / "hub").exists()  # nothing was created, let alone downloaded


def test_lpips_loads_the_cached_trunk_and_the_wheel_heads_strictly(lpips_home, capsys):
    import lpips

    loss = PerceptualLoss()
    assert capsys.readouterr().out == ""  # lpips' own "Setting up ..." banner is off
    trunk = torch.load(lpips_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth", weights_only=True)
    heads = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth", weights_only=True,
                       map_location="cpu")
    net = loss.lpips
    torch.testing.assert_close(getattr(net.net.slice1, "0").weight, trunk["features.0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(getattr(net.net.slice5, "10").bias, trunk["features.10.bias"], rtol=0, atol=0)
    torch.testing.assert_close(net.lin3.model[1].weight, heads["lin3.model.1.weight"], rtol=0, atol=0)
    assert not any(p.requires_grad for p in loss.parameters())


def test_lpips_zero_for_identical_positive_otherwise_with_gradient(lpips_home):
    loss = PerceptualLoss().train()  # train mode must not switch the heads' dropout on
    assert not loss.lpips.training
    g = torch.Generator().manual_seed(1)
    target = torch.randn(2, 3, 64, 64, generator=g) * 2 - 1
    assert float(loss(target, target.clone())) == 0.0
    # far outside [-1, 1] (bright highlights): the squash keeps a gradient where a clamp gives none
    out = (target + 8.0 + 0.3 * torch.randn(2, 3, 64, 64, generator=g)).requires_grad_(True)
    per_sample = loss(out, target, reduction="none")
    assert per_sample.shape == (2,) and bool((per_sample > 0).all())
    mean = loss(out, target)
    torch.testing.assert_close(mean, per_sample.mean())
    torch.testing.assert_close(loss(out, target), mean)  # deterministic: no dropout
    mean.backward()
    assert torch.isfinite(out.grad).all() and float(out.grad.abs().sum()) > 0
    assert float(out.grad[:, :, 10:20, 10:20].abs().sum()) > 0


def test_lpips_input_squash_is_tanh_of_a_quarter(lpips_home):
    x = torch.tensor([-11.5, -1.7, 0.0, 3.2, 20.0])  # noise floor, mid-tone, 0, highlight, beyond
    torch.testing.assert_close(PerceptualLoss().squash(x), torch.tensor([-0.99365, -0.40113, 0.0, 0.66404, 0.99991]),
                               atol=2e-5, rtol=0)


def test_lpips_rejects_a_foreign_trunk_file(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(LPIPSUnavailable, match="fetch it again"):
        PerceptualLoss()
    path.write_bytes(b"truncated download")
    with pytest.raises(LPIPSUnavailable, match="cannot read"):
        PerceptualLoss()


# ---- hinge and adaptive weight -------------------------------------------------------------------

def test_hinge_losses_closed_form():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - real) = 0, 0.5, 2   -> mean 5/6
    fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + fake) = 0, 1, 2     -> mean 1
    torch.testing.assert_close(hinge_d_loss(real, fake), torch.tensor(0.5 * (5 / 6 + 1)))
    torch.testing.assert_close(hinge_g_loss(fake), torch.tensor(1 / 3))


def test_adaptive_weight_closed_form():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    x, t = torch.tensor([3.0, -1.0]), torch.tensor(4.0)
    rec = 0.5 * (w @ x - t) ** 2  # d/dw = (w.x - t) x = (1 - 4) * (3, -1) = (-9, 3), norm sqrt(90)
    g = torch.tensor([0.6, 0.8]) @ w * 2  # d/dw = (1.2, 1.6), norm 2
    weight = adaptive_weight(rec, g, w)
    torch.testing.assert_close(weight, torch.tensor(90**0.5 / (2 + 1e-4)))
    assert not weight.requires_grad
    (rec + weight * g).backward()  # the graph was retained
    torch.testing.assert_close(w.grad, torch.tensor([-9.0, 3.0]) + weight * torch.tensor([1.2, 1.6]))
    # a GAN gradient of zero: sqrt(90) / 1e-4 clamps to max_weight
    flat = (w * 0).sum()
    assert float(adaptive_weight(0.5 * (w @ x - t) ** 2, flat, w)) == 1e4
    assert float(adaptive_weight(0.5 * (w @ x - t) ** 2, flat, w, max_weight=7.0)) == 7.0
    # grad_reduce acts on both gradients before the norms (e.g. the mean over processes): keep x only
    g = torch.tensor([0.6, 0.8]) @ w * 2
    halved = adaptive_weight(0.5 * (w @ x - t) ** 2, g, w, grad_reduce=lambda t_: t_ * torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(halved, torch.tensor(9.0 / (1.2 + 1e-4)))


# ---- PatchGAN -------------------------------------------------------------------------------------

def _conv_out(n: int, stride: int) -> int:
    return (n + 2 * 1 - 4) // stride + 1  # 4x4 kernel, padding 1


@pytest.mark.parametrize("n_layers,size", [(3, (64, 96)), (2, (32, 40)), (1, (16, 16))])
def test_patchgan_logit_grid(n_layers, size):
    disc = PatchDiscriminator(ndf=4, n_layers=n_layers)
    expected = []
    for n in size:
        for _ in range(n_layers):
            n = _conv_out(n, 2)
        expected.append(_conv_out(_conv_out(n, 1), 1))
    assert disc(torch.randn(2, 3, *size)).shape == (2, 1, *expected)
    if n_layers == 3:
        assert expected == [64 // 8 - 2, 96 // 8 - 2]


def test_patchgan_receptive_field_is_70():
    disc = PatchDiscriminator(ndf=4, n_layers=3, norm="none")  # GroupNorm would couple all positions
    x = torch.randn(1, 3, 128, 128, requires_grad=True)
    disc(x)[0, 0, 7, 7].backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero().flatten()
    cols = x.grad.abs().sum(dim=(0, 1, 2)).nonzero().flatten()
    # RF = 1 + 3 * (1 + 2 + 4 + 8 + 8); it starts at 7 * 8 - (1 + 2 + 4 + 8 + 8) = 33
    assert (int(rows.min()), int(rows.max()) - int(rows.min()) + 1) == (33, 70)
    assert (int(cols.min()), int(cols.max()) - int(cols.min()) + 1) == (33, 70)


def test_patchgan_has_no_batch_statistics():
    torch.manual_seed(0)
    disc = PatchDiscriminator(ndf=8, n_layers=3).train()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in disc.modules())
    batch = torch.randn(3, 3, 64, 64) * 3
    together = disc(batch)
    for i in range(3):
        torch.testing.assert_close(disc(batch[i:i + 1]), together[i:i + 1], rtol=1e-5, atol=1e-6)


def test_patchgan_init_like_pix2pix():
    torch.manual_seed(0)
    disc = PatchDiscriminator()  # ndf 64, n_layers 3
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride for c in convs] == [(2, 2), (2, 2), (2, 2), (1, 1), (1, 1)]
    big = convs[3].weight.detach()  # 512 * 256 * 16 samples of N(0, 0.02)
    assert abs(float(big.std()) - 0.02) < 0.0005 and abs(float(big.mean())) < 0.0005
    norms = [m for m in disc.modules() if isinstance(m, nn.GroupNorm)]
    assert [n.num_groups for n in norms] == [32, 32, 32]
    assert all(float(n.bias.detach().abs().max()) == 0 for n in norms)


# ---- Stage1Loss: composition and the gate --------------------------------------------------------

def _setup(gan_start=10):
    torch.manual_seed(0)
    decoder = nn.Conv2d(4, 3, 3, padding=1)  # stands in for the HDR decoder; its weight is the last layer
    loss = Stage1Loss(lpips_weight=0.0, gan_weight=0.5, gan_start=gan_start, disc_ndf=8, disc_layers=2)
    calls = []
    loss.discriminator.register_forward_hook(lambda *a: calls.append(1))
    latent = torch.randn(2, 4, 32, 32)
    target = torch.randn(2, 3, 32, 32) * 2 - 1
    return decoder, loss, calls, latent, target


def test_gan_is_off_before_gan_start():
    decoder, loss, calls, latent, target = _setup(gan_start=10)
    out = decoder(latent)
    total, logs = loss.generator_loss(out, target, step=9, last_layer=decoder.weight)
    torch.testing.assert_close(total, (out - target).abs().mean())
    assert logs["loss/total"] == logs["loss/rec"] == logs["loss/l1"] and "loss/g" not in logs
    total.backward()
    d_loss, d_logs = loss.discriminator_loss(out.detach(), target, step=9)
    assert float(d_loss) == 0.0 and not d_loss.requires_grad and d_logs == {"loss/d": 0.0}
    assert calls == [] and all(p.grad is None for p in loss.discriminator.parameters())
    assert not loss.gan_active(9) and loss.gan_active(10)
    assert not Stage1Loss(lpips_weight=0.0, gan_weight=0.0, gan_start=0).gan_active(10**6)


def test_generator_loss_with_gan_matches_an_independent_computation():
    decoder, loss, calls, latent, target = _setup(gan_start=10)
    disc = loss.discriminator
    out = decoder(latent)
    total, logs = loss.generator_loss(out, target, step=10, last_layer=decoder.weight)
    total.backward()
    assert all(p.grad is None for p in disc.parameters())  # the generator step leaves D alone
    got_grad = decoder.weight.grad.clone()

    # reference: each term through its own graph
    rec = (decoder(latent) - target).abs().mean()
    g = -disc(decoder(latent)).mean()
    rec_grad = torch.autograd.grad(rec, decoder.weight)[0]
    g_grad = torch.autograd.grad(g, decoder.weight)[0]
    weight = rec_grad.norm() / (g_grad.norm() + 1e-4)
    torch.testing.assert_close(total.detach(), (rec + 0.5 * weight * g).detach())
    torch.testing.assert_close(got_grad, rec_grad + 0.5 * weight * g_grad)
    assert logs["loss/adaptive_weight"] == pytest.approx(float(weight), rel=1e-5)
    assert logs["loss/g"] == pytest.approx(float(g.detach()), rel=1e-5)


def test_discriminator_loss_is_the_hinge_on_real_and_fake():
    decoder, loss, calls, latent, target = _setup(gan_start=0)
    out = decoder(latent)
    d_loss, logs = loss.discriminator_loss(out.detach(), target, step=0)
    assert len(calls) == 1  # real and fake in one forward
    expected = hinge_d_loss(loss.discriminator(target), loss.discriminator(out.detach()))
    torch.testing.assert_close(d_loss, expected)
    d_loss.backward()
    assert decoder.weight.grad is None
    assert all(p.grad is not None for p in loss.discriminator.parameters())
    assert set(logs) == {"loss/d", "d/logits_real", "d/logits_fake"}


def test_stage1_with_lpips_adds_the_weighted_perceptual_term(lpips_home):
    loss = Stage1Loss(lpips_weight=0.7, gan_weight=0.0)
    assert loss.discriminator is None
    g = torch.Generator().manual_seed(2)
    out, target = torch.randn(2, 3, 64, 64, generator=g), torch.randn(2, 3, 64, 64, generator=g)
    total, logs = loss.generator_loss(out, target, step=10**6)
    expected = F.l1_loss(out, target) + 0.7 * loss.perceptual(out, target)
    torch.testing.assert_close(total, expected)
    assert logs["loss/lpips"] > 0


def test_stage1_rejects_bad_settings():
    with pytest.raises(ValueError, match="--gan-weight"):
        Stage1Loss(lpips_weight=0.0, gan_weight=-1.0)
    with pytest.raises(ValueError, match="--lpips-weight"):
        Stage1Loss(lpips_weight=float("nan"))
    with pytest.raises(ValueError, match="--gan-start"):
        Stage1Loss(lpips_weight=0.0, gan_start=-5)
    loss = Stage1Loss(lpips_weight=0.0, gan_start=0, disc_ndf=4, disc_layers=1)
    with pytest.raises(ValueError, match="last_layer"):
        loss.generator_loss(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16), step=0)
    with pytest.raises(ValueError, match="differ"):
        loss.generator_loss(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 8, 8), step=0)


# ---- two processes (gloo) = one process with the combined batch ----------------------------------

def test_two_processes_equal_one_with_the_combined_batch(tmp_path):
    import torch.multiprocessing as mp

    result = tmp_path / "params.pt"
    from support.ddp_stage1 import build, data, train, worker

    mp.spawn(worker, args=(str(tmp_path / "init"), str(result)), nprocs=2)
    decoder, loss = build()
    latent, target = data()
    expected = train(decoder, loss, latent, target)
    got = torch.load(result, weights_only=True)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_lpips_refuses_a_legacy_trunk_that_is_not_torchvisions_but_loads_the_packaged_legacy_heads(
        tmp_path, monkeypatch, no_network):
    """torch's legacy format is read at whatever sizes its pickle claims. The lpips wheel's heads are
    such files (shipped with its code: loaded), and torchvision's older downloads may be; a legacy
    trunk is loaded only when its SHA-256 starts with the hash its name carries (torchvision's rule)."""
    import lpips

    from lediff_core.model.weights import is_legacy_torch_file

    heads = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    assert is_legacy_torch_file(str(heads))  # what makes the exception necessary
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = write_random_lpips_trunk(tmp_path)
    PerceptualLoss()  # a current-format trunk and the packaged legacy heads
    torch.save(torch.load(path, weights_only=True), path, _use_new_zipfile_serialization=False)
    with pytest.raises(LPIPSUnavailable, match=r"legacy-format PyTorch file but not torchvision's download \(their "
                                               r"SHA-256 does not start with the 7be5be79 in the name\)"):
        PerceptualLoss()
    # the same legacy bytes under a name carrying their own hash: torchvision's file, loaded
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    named = path.with_name(f"alexnet-owt-{digest}.pth")
    path.rename(named)
    monkeypatch.setitem(losses.LPIPS_BACKBONES, "alex", ("alexnet", f"https://download.pytorch.org/models/{named.name}"))
    PerceptualLoss()
