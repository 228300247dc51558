"""DemoFusion's tiled local and dilated global denoising on a ComfyUI MODEL.

The ``IterMix DemoFusion Model`` node clones the MODEL and adds a ``predict_noise`` wrapper
(``comfy.patcher_extension.WrappersMP.PREDICT_NOISE``): every denoiser call of the guider,
``predict_noise(x, timestep, model_options, seed)`` (the latent and sigma in, the denoised
latent out, classifier-free guidance included), then runs as
``itermix_kdiff.demofusion.DemoFusionDenoiser``: the call on windows of the model's native size
fused with dilated sampling, so every sampler, itermix or not, samples with full DemoFusion.

Inpainting masks act outside this call (``KSamplerX0Inpaint``) and work; spatial conditioning
(area conditioning, ControlNet hints, an inpainting model's concat latent) describes the whole
picture and is not cut per window.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch

from .. import DemoFusionDenoiser
from ..demofusion import BLUR_SIGMA, COSINE_SCALE_2, COSINE_SCALE_3
from .model import timestep_progress_fn

WRAPPER_KEY = "itermix_demofusion"

#: Pixels per latent pixel of the image models ComfyUI runs (SD 1.x, SDXL, SD3, Flux).
LATENT_DOWNSCALE = 8


def tiling(shape: torch.Size, tile: int, downscale: int) -> Tuple[Tuple[int, int], Tuple[int, int], int]:
    """``(window, stride, factor)`` for a latent of ``shape``: windows of ``tile // downscale``
    latent pixels (clipped to the latent), half a window apart, and the dilation factor, the
    latent's size in windows rounded to the nearest integer (at least 1)."""
    height, width = shape[-2:]
    size = max(int(tile) // downscale, 1)
    window = (min(size, height), min(size, width))
    stride = (max(window[0] // 2, 1), max(window[1] // 2, 1))
    factor = max(1, round(max(height, width) / size))
    return window, stride, factor


def step_index(sigma: torch.Tensor, model_options: Dict[str, Any]) -> int:
    """The index of ``sigma`` in the run's schedule (``transformer_options["sample_sigmas"]``),
    0 when the schedule is not known: it seeds the window jitter of that step."""
    schedule = model_options.get("transformer_options", {}).get("sample_sigmas")
    if not isinstance(schedule, torch.Tensor) or schedule.numel() == 0:
        return 0
    first = torch.as_tensor(sigma).reshape(-1)[:1].to(schedule.device, schedule.dtype)
    return int((schedule - first).abs().argmin())


def demofusion_wrapper(tile: int, cosine_scale_2: float, cosine_scale_3: float, blur_sigma: float,
                       view_batch_size: int, jitter: bool, weights: str,
                       downscale: int = LATENT_DOWNSCALE) -> Callable[..., torch.Tensor]:
    """The ``predict_noise`` wrapper ``(executor, x, timestep, model_options, seed)``.

    Latents no larger than one window are denoised as they are. Otherwise each call builds a
    ``DemoFusionDenoiser`` around the rest of the wrapper chain, with DemoFusion's progress
    ``p = (T - t) / T`` from the model's timesteps (B2) and the window jitter seeded with
    ``seed + step``, so a run repeats exactly."""

    def wrapper(executor: Any, x: torch.Tensor, timestep: torch.Tensor, model_options: Dict[str, Any],
                seed: Optional[int]) -> torch.Tensor:
        window, stride, factor = tiling(x.shape, tile, downscale)
        if factor == 1 and window == tuple(x.shape[-2:]):
            return executor(x, timestep, model_options, seed)
        model_sampling = executor.class_obj.inner_model.model_sampling
        fused = DemoFusionDenoiser(lambda xs, ts: executor(xs, ts, model_options, seed), window, stride, factor,
                                   cosine_scale_2, cosine_scale_3, blur_sigma, view_batch_size, jitter, weights,
                                   progress_fn=timestep_progress_fn(model_sampling),
                                   seed=(int(seed or 0) + step_index(timestep, model_options)) % 2 ** 63)
        return fused(x, timestep)

    return wrapper


def demofusion_model(model: Any, tile: int = 512, cosine_scale_2: float = COSINE_SCALE_2,
                     cosine_scale_3: float = COSINE_SCALE_3, blur_sigma: float = BLUR_SIGMA, view_batch_size: int = 4,
                     jitter: bool = True, weights: str = "uniform") -> Any:
    """A clone of the MODEL ``model`` whose denoiser calls run DemoFusion (see the module
    docstring); ``tile`` is the model's native size in pixels (512 for SD 1.x, 1024 for SDXL).
    The arguments are checked now, by building one denoiser."""
    DemoFusionDenoiser(lambda x, sigma: x, 2, 1, 2, cosine_scale_2, cosine_scale_3, blur_sigma,
                       view_batch_size, jitter, weights, progress_fn=lambda sigma: 0.0)
    import comfy.patcher_extension

    patched = model.clone()
    patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.PREDICT_NOISE, WRAPPER_KEY)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREDICT_NOISE, WRAPPER_KEY,
                                 demofusion_wrapper(tile, cosine_scale_2, cosine_scale_3, blur_sigma,
                                                    view_batch_size, jitter, weights))
    return patched
