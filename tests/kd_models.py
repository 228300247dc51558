"""Small real k-diffusion models for the tests: a conv eps-model inside
``k_diffusion.external.DiscreteEpsDDPMDenoiser`` with Stable Diffusion's noise table."""

from __future__ import annotations

import torch
from torch import nn


def sd_alphas_cumprod(steps: int = 1000) -> torch.Tensor:
    """Stable Diffusion's table: betas linear in sqrt from 0.00085 to 0.012, squared."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, dim=0).float()


class TinyEps(nn.Module):
    """A 3x3 convolution whose output also depends on the timestep, with fixed weights."""

    def __init__(self, channels: int = 4, seed: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.1)
            self.conv.bias.copy_(torch.randn(self.conv.bias.shape, generator=g) * 0.1)
        self.calls = 0

    def forward(self, x, t, **kwargs):
        self.calls += 1
        return self.conv(x) * torch.sigmoid(t.float() / 500 - 1).view(-1, 1, 1, 1)


def discrete_denoiser(channels: int = 4, seed: int = 0):
    """A real k-diffusion discrete eps wrapper around :class:`TinyEps`."""
    import k_diffusion as K

    return K.external.DiscreteEpsDDPMDenoiser(TinyEps(channels, seed), sd_alphas_cumprod(), quantize=False).eval()


def seeded_setup(model, n: int, shape=(1, 4, 8, 8)):
    """``(x0, sigmas, stack)``: a clean latent (seed 0), ``model``'s n-step sigmas and the
    core's seeded noised latents for them (seed 1)."""
    from itermix_kdiff import noised_latents

    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    sigmas = model.get_sigmas(n)
    return x0, sigmas, noised_latents(x0, sigmas, generator=torch.Generator().manual_seed(1))
