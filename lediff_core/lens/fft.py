"""FFT convolution helpers shared by Lens Blur (``lens_blur``) and Glare (``glare``)."""

from __future__ import annotations

import torch


def fft_size(n: int) -> int:
    """The smallest size >= n (n >= 1) whose only prime factors are 2, 3 and 5 (where FFTs are fast)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def kernel_spectrum(kernel: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """rfft2 of ``kernel`` (odd sizes, centred) zero-padded to ``shape`` with its centre moved to
    index 0 (offset d at index d mod n): its product with a plane's rfft2 at ``shape`` is their
    convolution, without a shift."""
    ky, kx = kernel.shape
    padded = kernel.new_zeros(shape)
    padded[:ky, :kx] = kernel
    return torch.fft.rfft2(torch.roll(padded, (-(ky // 2), -(kx // 2)), dims=(0, 1)))
