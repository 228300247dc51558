"""The sampler function behind the IterativeMixingSampler node's SAMPLER.

ComfyUI's ``KSAMPLER.sample`` calls ``fn(model, x, sigmas, extra_args=..., callback=...,
disable=..., **extra_options)`` with ``model`` its ``KSamplerX0Inpaint``, ``x`` the latent it
noised with ``noise_scaling(sigmas[0], noise, latent_image)`` and ``extra_args`` holding
``model_options``, ``seed`` (SamplerCustom's ``noise_seed``) and ``denoise_mask``.
:func:`sample_comfy` is that ``fn``: it runs an itermix sampler on the clean
``model.latent_image``, whatever noise SamplerCustom added (``add_noise`` on or off), with

- noised latents ``z'_k = model_sampling.noise_scaling(sigma_k, eps_k, x0)`` (``x0 + eps sigma``
  for SD, ``sigma eps + (1 - sigma) x0`` for flow models; docs/algorithm.md A1). With
  ``rng="seed"`` (the default) ``eps_k`` is the core's seeded noise from a CPU
  ``torch.Generator`` seeded with ``extra_args["seed"]`` (the same picture on any device, and
  whatever ran before); with ``rng="global"`` it is drawn from torch's global RNG exactly as
  the ComfyUI-Iterative-Mixer pack draws it;
- the sampler's own noise (ancestral steps, LCM, churn) from a generator on the latent's device
  seeded by one number drawn from that CPU generator (``rng="seed"``), or from the global RNG
  (``rng="global"``); the SDE samplers' Brownian tree is seeded with ``extra_args["seed"]``,
  ComfyUI's own default for them;
- the denoise mask (inpainting) and the model's ``denoise_mask_function`` (differential
  diffusion) handled by the core (A4), not by ``KSamplerX0Inpaint``;
- ComfyUI's callback (progress bar, latent previews) called every step.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Dict, Optional

import torch
import torch.nn.functional as F

from .. import (SAMPLERS, make_itermix_sampler, noised_latents, sample_itermix_dpmpp_2m,
                sample_itermix_euler, sample_itermix_euler_perlin, sample_itermix_lcm)
from .._checks import check_choice
from ..options import apply_preset
from ..wrap import BROWNIAN_SAMPLERS
from .model import ComfyDenoiser, sampling_of

logger = logging.getLogger(__name__)

#: The samplers of the core that keep their own step loop; every other name in SAMPLERS is
#: ComfyUI's copy of the k-diffusion sampler, run one step at a time.
NATIVE_SAMPLERS = (sample_itermix_euler, sample_itermix_euler_perlin, sample_itermix_dpmpp_2m, sample_itermix_lcm)

#: The ComfyUI-Iterative-Mixer pack's sampler names, in its order; then the rest of SAMPLERS.
REFERENCE_SAMPLERS = ("euler", "euler_perlin", "lcm", "dpmpp_2m")
SAMPLER_NAMES = REFERENCE_SAMPLERS + tuple(name for name in SAMPLERS if name not in REFERENCE_SAMPLERS)

RNG_MODES = ("seed", "global")

PERLIN_OPTIONS = ("perlin_mode", "perlin_strength", "perlin_scale")

#: ComfyUI's name suffixes for variants of a k-diffusion sampler: ``_gpu`` keeps the Brownian
#: tree on the device, ``dpmpp_2m_sde_heun`` is ``dpmpp_2m_sde`` with ``solver_type="heun"``.
VARIANT_SUFFIXES = ("_gpu", "_heun")


def is_brownian(function_name: str) -> bool:
    """Whether ComfyUI's sampler function ``function_name`` (``sample_dpmpp_sde_gpu``, or its
    wrapped name ``sample_itermix_dpmpp_sde``) draws its default noise from a Brownian tree: the
    core's ``BROWNIAN_SAMPLERS`` and ComfyUI's variants of them. Unlike the core, which seeds the
    tree of a wrapped sampler from its generator, the adapter passes these functions one
    ComfyUI ``BrownianTreeNoiseSampler`` for the run, seeded with ``extra_args["seed"]`` on the
    CPU (ComfyUI's own default for them); the core's default would import k-diffusion, which
    ComfyUI does not install."""
    name = function_name.replace("sample_itermix_", "sample_", 1)
    for suffix in VARIANT_SUFFIXES:
        name = name[:-len(suffix)] if name.endswith(suffix) else name
    return name in BROWNIAN_SAMPLERS


def brownian_keywords(function_name: str, x: torch.Tensor, sigmas: torch.Tensor,
                      seed: Optional[int]) -> Dict[str, Any]:
    """For a Brownian sampler (:func:`is_brownian`) a ``noise_sampler``: one ComfyUI
    Brownian tree over the whole schedule, seeded with ``seed`` on the CPU; else nothing."""
    if not is_brownian(function_name):
        return {}
    import comfy.k_diffusion.sampling

    return {"noise_sampler": comfy.k_diffusion.sampling.BrownianTreeNoiseSampler(
        x, sigmas[sigmas > 0].min(), sigmas.max(), seed=seed, cpu=True)}


def comfy_function(name: str) -> Callable[..., torch.Tensor]:
    """ComfyUI's sampler function for the sampler name ``name`` of ``KSampler.SAMPLERS``, as
    ``comfy.samplers.sampler_object`` builds it (``ddim`` is its Euler; ``dpm_fast`` and
    ``dpm_adaptive`` take their range from ``sigmas``; ``uni_pc`` is ComfyUI's UniPC), which
    ``make_itermix_sampler`` runs one step at a time."""
    import comfy.samplers

    if name not in comfy.samplers.KSampler.SAMPLERS:
        raise ValueError(f"sampler_name must be one of ComfyUI's samplers "
                         f"({', '.join(comfy.samplers.KSampler.SAMPLERS)}); got {name!r}")
    return comfy.samplers.sampler_object(name).sampler_function


@functools.lru_cache(maxsize=None)
def comfy_itermix_sampler(name: str) -> Callable[..., torch.Tensor]:
    """:func:`comfy_function` wrapped by ``make_itermix_sampler``, built once per name."""
    return make_itermix_sampler(comfy_function(name))


def sampler_function(name: str) -> Callable[..., torch.Tensor]:
    """The itermix sampler ``name`` of ``SAMPLERS``: the core's native one, or ComfyUI's
    ``comfy.k_diffusion.sampling.sample_<name>`` (which knows ComfyUI's model types: flow
    models, its own noise seeding) wrapped by ``make_itermix_sampler``, built once
    (:func:`comfy_itermix_sampler`). Not the registry's wrapped entry, which wraps
    k-diffusion's own function: ComfyUI ships no ``k_diffusion`` package, and k-diffusion's
    samplers do not know flow models."""
    check_choice("sampler", name, SAMPLER_NAMES)
    if SAMPLERS[name] in NATIVE_SAMPLERS:
        return SAMPLERS[name]
    return comfy_itermix_sampler(name)


def is_additive(model_sampling: Any, sigma: torch.Tensor, x0: torch.Tensor) -> bool:
    """Whether the model noises as ``x0 + eps sigma`` (the formula by which the core draws the
    noised latents of a rewind pass itself)."""
    offset = model_sampling.noise_scaling(sigma, torch.zeros_like(x0), x0)
    gain = model_sampling.noise_scaling(sigma, torch.ones_like(x0), torch.zeros_like(x0))
    return torch.allclose(offset, x0) and torch.allclose(gain, torch.full_like(gain, float(sigma)))


class ScaledNoisedLatents:
    """``z'_k = model_sampling.noise_scaling(sigma_k, eps_k, x0)`` computed on access, ``eps_k``
    from a core lazy source (``noised_latents(..., lazy=True)``, on the CPU) moved to ``x0``'s
    device and dtype: a lazy source the core's samplers accept, holding O(1) latents (B1)."""

    def __init__(self, model_sampling: Any, x0: torch.Tensor, sigmas: torch.Tensor, source: Any):
        self.model_sampling = model_sampling
        self.x0 = x0
        self.sigmas = sigmas
        self.source = source

    def __len__(self) -> int:
        return len(self.sigmas)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.x0.shape))

    def __getitem__(self, k: int) -> torch.Tensor:
        if not -len(self) <= k < len(self):
            raise IndexError(f"noised latent index {k} out of range for {len(self)} sigmas")
        k = k % len(self)
        # a copy: shared noise is one tensor, and model code may scale its noise in place
        eps = self.source.noise(k).to(self.x0.device, self.x0.dtype, copy=True)
        return self.model_sampling.noise_scaling(self.sigmas[k], eps, self.x0).to(self.x0.dtype)


def comfy_noised_latents(model_sampling: Any, x0: torch.Tensor, sigmas: torch.Tensor, *, noise: str,
                         generator: Optional[torch.Generator], lazy: bool):
    """The noised latents of a run (A1, B1, B2) in the model's own noising.

    ``generator`` (a CPU generator) gives the core's seeded per-step noise, drawn on the CPU in
    float32. None reads the global RNG: for a model that noises as ``x0 + eps sigma`` this is
    the core's ``noised_latents(x0, sigmas, ...)`` itself, whose independent stack is the
    reference's one ``torch.randn`` on ``x0``'s device."""
    if generator is None and is_additive(model_sampling, sigmas[0], x0):
        return noised_latents(x0, sigmas, noise=noise, lazy=lazy)
    source = noised_latents(x0.detach().to("cpu", torch.float32), sigmas.detach().cpu().float(),
                            noise=noise, generator=generator, lazy=True)
    z = ScaledNoisedLatents(model_sampling, x0, sigmas, source)
    return z if lazy else torch.stack([z[k] for k in range(len(z))])


def latent_masks(masks: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """A MASK batch ``(M, H', W')`` (or the reference generator's ``(M, 1, H', W')``) resized to
    the latent's H x W (bilinear) as ``(M, 1, H, W)``: one mask per step, or one for all."""
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"mixing_masks must be a MASK tensor, got {type(masks).__name__}")
    m = masks.detach().float()
    if m.ndim == 2:
        m = m[None]
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3 or x0.ndim != 4:
        raise ValueError(f"mixing_masks must be a MASK (M, H, W) for a (B, C, H, W) latent; got mask shape "
                         f"{tuple(masks.shape)} and latent shape {tuple(x0.shape)}")
    if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise ValueError(f"mixing_masks must hold values in [0, 1] (1 where the noised latent is mixed in, 0 where "
                         f"it is not); got values from {float(m.min()):.3g} to {float(m.max()):.3g}. "
                         f"MixingMaskGenerator's 'random' masks are standard normal, as in the reference pack, and "
                         f"only for viewing: feed mask_type 'perlin' or any MASK in [0, 1]")
    m = F.interpolate(m[:, None].to(x0.device), size=tuple(x0.shape[-2:]), mode="bilinear", align_corners=False)
    return m.to(x0.dtype)


def mask_function(model: Any, sigmas: torch.Tensor, model_options: Dict[str, Any]):
    """The model's ``denoise_mask_function`` (differential diffusion) as the core's
    ``denoise_mask_fn(sigma, mask)``, called with the extra options ComfyUI gives it."""
    fn = model_options.get("denoise_mask_function")
    if fn is None:
        return None
    return lambda sigma, mask: fn(sigma, mask, extra_options={"model": model.inner_model, "sigmas": sigmas})


def resolve_options(preset: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """The node's options under ``preset`` (:func:`itermix_kdiff.options.apply_preset`): a node
    sends every input, so the preset wins, except for the inputs that offer a ``"preset"``
    choice (``mix``, ``noise``): another value there was chosen over the preset."""
    given = {name: value for name, value in options.items() if value != "preset"}
    return apply_preset(preset, given, chosen=("mix", "noise"))


@torch.no_grad()
def sample_comfy(model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[Dict[str, Any]] = None,
                 callback: Optional[Callable] = None, disable: Optional[bool] = None, *, sampler: str = "euler",
                 rng: str = "seed", preset: str = "reference", mixing_masks: Optional[torch.Tensor] = None,
                 **options: Any) -> torch.Tensor:
    """Run the itermix sampler ``sampler`` for ComfyUI's ``KSAMPLER`` (see the module docstring).

    ``options`` are the core's sampler keywords (``alpha_1``, ``blending_function``, ``rewind``,
    ..., Perlin settings for ``euler_perlin`` only), on top of ``PRESETS[preset]``. The Perlin
    seed is ``extra_args["seed"]``, as in the reference pack. Rewind needs a model that noises as
    ``x0 + eps sigma`` (not a flow model)."""
    check_choice("rng", rng, RNG_MODES)
    function = sampler_function(sampler)
    extra_args = dict(extra_args or {})
    x0 = getattr(model, "latent_image", None)
    if x0 is None:
        raise ValueError("iterative mixing needs the clean latent (KSamplerX0Inpaint.latent_image); got none")
    if len(sigmas) < 2:
        return x0
    noise = getattr(model, "noise", None)
    if noise is not None and torch.count_nonzero(noise) > 0:
        logger.warning("IterativeMixingSampler: add_noise is on; the sampler noises the clean latent itself and "
                       "does not use SamplerCustom's noise (with rng='seed' the result equals add_noise off)")
    options = resolve_options(preset, options)
    if sampler != "euler_perlin":
        options = {k: v for k, v in options.items() if k not in PERLIN_OPTIONS}
    seed = extra_args.get("seed")
    model_sampling = sampling_of(model)
    if options.get("rewind") and not is_additive(model_sampling, sigmas[0], x0):
        raise ValueError("rewind draws noised latents as x0 + eps * sigma, which this model does not use "
                         "(a flow model); turn rewind off")
    if rng == "seed":
        cpu = torch.Generator().manual_seed(int(seed or 0))
        z = comfy_noised_latents(model_sampling, x0, sigmas, noise=options.get("noise", "independent"),
                                 generator=cpu, lazy=options.get("lazy", False))
        generator = torch.Generator(device=x0.device).manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=cpu)))
    else:
        z = comfy_noised_latents(model_sampling, x0, sigmas, noise=options.get("noise", "independent"),
                                 generator=None, lazy=options.get("lazy", False))
        generator = None
    model_options = extra_args.get("model_options", {})
    denoise_mask = extra_args.get("denoise_mask")
    extra_args["denoise_mask"] = None  # the core masks (A4); KSamplerX0Inpaint must not mask again
    keywords: Dict[str, Any] = {}
    if sampler == "euler_perlin":
        keywords["seed"] = int(seed or 0)
    keywords.update(brownian_keywords(getattr(function, "__name__", ""), x0, sigmas, seed))
    return function(ComfyDenoiser(model), x0, sigmas, extra_args, callback, disable, noised_latents=z,
                    generator=generator, denoise_mask=denoise_mask,
                    denoise_mask_fn=mask_function(model, sigmas, model_options) if denoise_mask is not None else None,
                    mixing_masks=None if mixing_masks is None else latent_masks(mixing_masks, x0),
                    **keywords, **options)
