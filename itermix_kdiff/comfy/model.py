"""ComfyUI's model objects under the names the core reads.

A sampler function run by ComfyUI's ``KSAMPLER`` receives ``KSamplerX0Inpaint`` as ``model``:
``model(x, sigma, denoise_mask=..., model_options=..., seed=...)`` is the denoised latent,
``model.latent_image`` the clean latent, ``model.noise`` the noise SamplerCustom made (zeros
with ``add_noise`` off) and ``model.inner_model`` the guider, whose ``inner_model`` (the
diffusion model) holds ``model_sampling``. ComfyUI's ``model_sampling`` keeps its sigma table
as ``sigmas`` and maps sigma to timestep with ``timestep``/``sigma``; the core's schedules
(``itermix_kdiff.sigmas``) and DemoFusion's progress (docs/algorithm.md B2) read a discrete
k-diffusion wrapper's ``sigmas``, ``sigma_to_t`` and ``t_to_sigma``.
"""

from __future__ import annotations

from typing import Any

import torch


class ScheduleView:
    """A ComfyUI ``model_sampling`` as a k-diffusion discrete schedule: ``sigmas`` (its table,
    rising), ``sigma_min``/``sigma_max``, ``sigma_to_t`` = ``model_sampling.timestep`` and
    ``t_to_sigma`` = ``model_sampling.sigma``. With it ``itermix_kdiff.sigmas.get_sigmas`` gives
    ComfyUI's ``calculate_sigmas`` numbers."""

    def __init__(self, model_sampling: Any):
        self.model_sampling = model_sampling
        self.sigmas = model_sampling.sigmas
        self.sigma_min = model_sampling.sigma_min
        self.sigma_max = model_sampling.sigma_max

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.model_sampling.timestep(sigma)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.model_sampling.sigma(t)


def sampling_of(model: Any) -> Any:
    """The ``model_sampling`` of the diffusion model behind a ``KSamplerX0Inpaint``."""
    return model.inner_model.inner_model.model_sampling


def patcher_sampling(model: Any) -> Any:
    """The ``model_sampling`` of a MODEL (a ``ModelPatcher``), patches included."""
    return model.get_model_object("model_sampling")


class ComfyDenoiser(ScheduleView):
    """``KSamplerX0Inpaint`` as a k-diffusion denoiser ``(x, sigma, **extra_args)``.

    It keeps ``inner_model`` (the guider), which ComfyUI's own samplers read
    (``model.inner_model.inner_model.model_sampling``, ``model.inner_model.model_patcher``), and
    the schedule of :class:`ScheduleView`, which the core's ``demofusion`` blending schedule
    reads for DemoFusion's progress ``(T - t) / T``."""

    def __init__(self, model: Any):
        super().__init__(sampling_of(model))
        self.model = model
        self.inner_model = model.inner_model

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
        return self.model(x, sigma, **extra_args)


def timestep_progress_fn(model_sampling: Any):
    """``sigma -> p = (T - t) / T`` with ``t = model_sampling.timestep(sigma)`` and ``T`` the
    length of its table: DemoFusion's progress through sampling (B2), from the first batch row."""
    T = len(model_sampling.sigmas)

    def progress(sigma: torch.Tensor) -> float:
        first = torch.as_tensor(sigma).reshape(-1)[:1].to(model_sampling.sigmas.device)
        return float((T - model_sampling.timestep(first).float()) / T)

    return progress
