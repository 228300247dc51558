"""comfy.k_diffusion.sampling (ComfyUI 0.8.0's names): ComfyUI ships its own copy of
k-diffusion's samplers; the stand-in offers k-diffusion's own functions under the same names.

They are k-diffusion's very function objects (their signatures equal ComfyUI 0.8.0's for
these names), so code that patches this module's samplers reaches the module they run in,
as it does in ComfyUI. Two differences from ComfyUI's copies: when no ``noise_sampler`` is
passed, k-diffusion's draw from torch's global RNG where ComfyUI's seed theirs from
``extra_args["seed"]`` (the itermix samplers always pass one), and k-diffusion's
``sample_euler``/``sample_heun``/``sample_dpm_2`` draw their churn noise at every step where
ComfyUI's draw it only on steps that churn (the noise is used only there in both).
:func:`to_d` and :func:`default_noise_sampler` (which node packs call) are written here with
ComfyUI's signatures and behaviour.
"""

import torch

import k_diffusion.sampling
from k_diffusion.sampling import (sample_dpm_2, sample_dpm_2_ancestral, sample_dpm_adaptive, sample_dpm_fast,
                                  sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_2s_ancestral,
                                  sample_dpmpp_3m_sde, sample_dpmpp_sde, sample_euler, sample_euler_ancestral,
                                  sample_heun, sample_lms)

__all__ = ["BrownianTreeNoiseSampler", "default_noise_sampler", "sample_dpm_2", "sample_dpm_2_ancestral",
           "sample_dpm_adaptive", "sample_dpm_fast", "sample_dpmpp_2m", "sample_dpmpp_2m_sde",
           "sample_dpmpp_2s_ancestral", "sample_dpmpp_3m_sde", "sample_dpmpp_sde", "sample_euler",
           "sample_euler_ancestral", "sample_heun", "sample_lms", "to_d"]


def to_d(x, sigma, denoised):
    """The slope of the probability-flow ODE at ``x``: ``(x - denoised) / sigma``, ``sigma``
    (one value or one per batch row) broadcast over the latent's other dimensions."""
    return (x - denoised) / sigma.reshape(*sigma.shape, *[1] * (x.ndim - sigma.ndim))


def default_noise_sampler(x, seed=None):
    """``noise(sigma, sigma_next)``: standard normal noise shaped like ``x``. Without ``seed``
    it comes from torch's global RNG; with one, from a generator on ``x``'s device seeded with
    it (plus 1 on the CPU, as ComfyUI does)."""
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(seed + 1 if x.device == torch.device("cpu") else seed)

    def noise(sigma, sigma_next):
        return torch.randn(x.size(), dtype=x.dtype, layout=x.layout, device=x.device, generator=generator)

    return noise


class BrownianTreeNoiseSampler(k_diffusion.sampling.BrownianTreeNoiseSampler):
    """k-diffusion's Brownian-tree noise with ComfyUI's constructor: ``cpu`` asks ComfyUI to
    keep the tree on the CPU; here the tree lives on ``x``'s device, which is the CPU."""

    def __init__(self, x, sigma_min, sigma_max, seed=None, transform=lambda x: x, cpu=False):
        super().__init__(x, sigma_min, sigma_max, seed=seed, transform=transform)
