"""Workers of test_train_losses' two-process test: spawned processes import their target by module
name, which a test module collected under pytest's importlib mode does not have."""

from __future__ import annotations

import torch
from torch import nn

from lediff_train.losses import Stage1Loss


def build():
    torch.manual_seed(0)
    decoder = nn.Conv2d(4, 3, 3, padding=1)
    return decoder, Stage1Loss(lpips_weight=0.0, gan_weight=0.5, gan_start=1, disc_ndf=8, disc_layers=2)


def train(decoder, loss, latent, target, grad_reduce=None, steps=3):
    """Steps 0 (GAN off) to 2 (GAN on) of the generator/discriminator alternation."""
    # SGD, not Adam: Adam turns a gradient that is zero up to rounding (the last bias of D at init) into +-lr
    opt_g = torch.optim.SGD(decoder.parameters(), 0.1)
    opt_d = torch.optim.SGD(loss.discriminator.parameters(), 0.1)
    last = getattr(decoder, "module", decoder).weight
    for step in range(steps):
        out = decoder(latent)
        g_loss, _ = loss.generator_loss(out, target, step, last_layer=last, grad_reduce=grad_reduce)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        if loss.gan_active(step):
            d_loss, _ = loss.discriminator_loss(out.detach(), target, step)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
    return [p.detach().clone() for p in [*decoder.parameters(), *loss.discriminator.parameters()]]


def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 4, 32, 32, generator=g), torch.randn(4, 3, 32, 32, generator=g)


def worker(rank, init_file, result_file):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)  # two workers on a small shared machine
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        decoder, loss = build()
        decoder = DistributedDataParallel(decoder)
        loss.discriminator = DistributedDataParallel(loss.discriminator)  # as accelerate.prepare would

        def mean_over_processes(t):
            t = t.clone()
            dist.all_reduce(t)
            return t / 2

        latent, target = data()
        part = slice(2 * rank, 2 * rank + 2)
        params = train(decoder, loss, latent[part], target[part], mean_over_processes)
        if rank == 0:
            torch.save(params, result_file)
    finally:
        dist.destroy_process_group()
