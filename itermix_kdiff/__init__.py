"""Iterative mixing of latents (DemoFusion's skip residual) for k-diffusion samplers.

The core imports nothing but torch. See ALGORITHM.md for the formulas each name implements.
"""

from .blending import BLENDING_FUNCTIONS
from .demofusion import DemoFusionDenoiser, DilatedDenoiser, TiledDenoiser, demofusion_upscale
from .noised import LazyNoisedLatents, noised_latents
from .perlin import mixing_masks, perlin_masks
from .options import DEMOFUSION, PRESETS, ItermixOptions, make_options
from .sampling import (sample_itermix_dpmpp_2m, sample_itermix_euler, sample_itermix_euler_perlin,
                       sample_itermix_lcm)
from .schedules import SCHEDULES, blending_schedule
from .wrap import SAMPLERS, batch_unsample, itermix_ksampler, make_itermix_sampler

__version__ = "0.1.0"

__all__ = [
    "BLENDING_FUNCTIONS", "DEMOFUSION", "PRESETS", "SCHEDULES", "DemoFusionDenoiser", "DilatedDenoiser",
    "ItermixOptions", "LazyNoisedLatents", "SAMPLERS", "TiledDenoiser", "batch_unsample", "blending_schedule",
    "demofusion_upscale", "itermix_ksampler", "make_itermix_sampler", "make_options", "mixing_masks", "perlin_masks", "noised_latents", "sample_itermix_dpmpp_2m", "sample_itermix_euler",
    "sample_itermix_euler_perlin", "sample_itermix_lcm",
]
