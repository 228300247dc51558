"""Iterative mixing of latents (DemoFusion's skip residual) for k-diffusion samplers.

The core imports nothing but torch. See docs/algorithm.md for the formulas each name implements.
"""

from .blending import BLENDING_FUNCTIONS
from .demofusion import DemoFusionDenoiser, DilatedDenoiser, TiledDenoiser, demofusion_upscale
from .models import load_demo_model, load_kdiffusion_model
from .noised import LazyNoisedLatents, noised_latents
from .options import DEMOFUSION, PRESETS, ItermixOptions, make_options
from .perlin import mixing_masks, perlin_masks
from .sampling import (sample_itermix_dpmpp_2m, sample_itermix_euler, sample_itermix_euler_perlin,
                       sample_itermix_lcm)
from .blending_schedules import BLENDING_SCHEDULES, blending_schedule
from .sigmas import SCHEDULERS, blending_args_for_split, get_sigmas, get_sigmas_advanced
from .wrap import SAMPLERS, batch_unsample, itermix_ksampler, make_itermix_sampler

__version__ = "0.1.0"

__all__ = [
    "BLENDING_FUNCTIONS", "BLENDING_SCHEDULES", "DEMOFUSION", "PRESETS", "SAMPLERS", "SCHEDULERS",
    "DemoFusionDenoiser", "DilatedDenoiser", "ItermixOptions", "LazyNoisedLatents", "TiledDenoiser",
    "batch_unsample", "blending_args_for_split", "blending_schedule", "demofusion_upscale", "get_sigmas",
    "get_sigmas_advanced", "itermix_ksampler", "load_demo_model", "load_kdiffusion_model",
    "make_itermix_sampler", "make_options", "mixing_masks", "noised_latents", "perlin_masks",
    "sample_itermix_dpmpp_2m", "sample_itermix_euler", "sample_itermix_euler_perlin", "sample_itermix_lcm",
]
