"""comfy.k_diffusion.sampling (ComfyUI 0.8.0's names): ComfyUI ships its own copy of
k-diffusion's samplers; the stand-in offers k-diffusion's own functions under the same names.

They are k-diffusion's very function objects (their signatures equal ComfyUI 0.8.0's for
these names), so code that patches this module's samplers reaches the module they run in,
as it does in ComfyUI. Two differences from ComfyUI's copies: when no ``noise_sampler`` is
passed, k-diffusion's draw from torch's global RNG where ComfyUI's seed theirs from
``extra_args["seed"]`` (the itermix samplers always pass one), and k-diffusion's
``sample_euler``/``sample_heun``/``sample_dpm_2`` draw their churn noise at every step where
ComfyUI's draw it only on steps that churn (the noise is used only there in both).
"""

import k_diffusion.sampling
from k_diffusion.sampling import (sample_dpm_2, sample_dpm_2_ancestral, sample_dpmpp_2m_sde, sample_dpmpp_2s_ancestral,
                                  sample_dpmpp_sde, sample_euler, sample_euler_ancestral, sample_heun)

__all__ = ["BrownianTreeNoiseSampler", "sample_dpm_2", "sample_dpm_2_ancestral", "sample_dpmpp_2m_sde",
           "sample_dpmpp_2s_ancestral", "sample_dpmpp_sde", "sample_euler", "sample_euler_ancestral", "sample_heun"]


class BrownianTreeNoiseSampler(k_diffusion.sampling.BrownianTreeNoiseSampler):
    """k-diffusion's Brownian-tree noise with ComfyUI's constructor: ``cpu`` asks ComfyUI to
    keep the tree on the CPU; here the tree lives on ``x``'s device, which is the CPU."""

    def __init__(self, x, sigma_min, sigma_max, seed=None, transform=lambda x: x, cpu=False):
        super().__init__(x, sigma_min, sigma_max, seed=seed, transform=transform)
