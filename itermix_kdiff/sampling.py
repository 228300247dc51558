"""Iterative-mixing samplers with k-diffusion's conventions (docs/algorithm.md A4–A9, B1–B3).

A sampler here is called like ``k_diffusion.sampling.sample_euler(model, x, sigmas, ...)``
except that ``x`` is the CLEAN latent (ComfyUI's SamplerCustom with add_noise off):
the sampler noises it along the sigmas itself, starts from the noisiest copy and,
step by step, blends the matching noised copy back into the running latent. Each sampler
below is its own step math; the loop around it (passes, masks, mixing, skipping, the
callback) is :func:`itermix_kdiff._loop.itermix_loop`, and its keywords are the fields of
:class:`itermix_kdiff.options.ItermixOptions` plus its own.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import torch

from ._loop import Step, Stepped, itermix_loop, prepare_run
from .noised import fresh_noise
from .options import CHURN_OPTIONS, ItermixOptions, bind_arguments, sampler_signature, split_options
from .perlin import check_perlin_keywords, perlin_tensors

__all__ = ["sample_itermix_dpmpp_2m", "sample_itermix_euler", "sample_itermix_euler_perlin",
           "sample_itermix_lcm", "churn", "churn_gamma", "dpmpp_2m_update", "to_d"]


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dimensions to ``v`` until it has ``ndim`` dimensions."""
    return v[(...,) + (None,) * (ndim - v.ndim)]


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The Karras ODE derivative ``(x - denoised) / sigma``, as k-diffusion's ``to_d``
    (sigma in ``x``'s dtype, so a half-precision run stays in half precision)."""
    return (x - denoised) / append_dims(sigma.to(x.dtype), x.ndim)


def churn_gamma(sigma: torch.Tensor, n: int, opts: ItermixOptions) -> float:
    """Karras churn: ``min(s_churn / n, sqrt(2) - 1)`` inside ``[s_tmin, s_tmax]``, else 0 (A4)."""
    return min(opts.s_churn / n, 2 ** 0.5 - 1) if opts.s_tmin <= sigma <= opts.s_tmax else 0.0


def churn(v: torch.Tensor, sigma: torch.Tensor, n: int, opts: ItermixOptions) -> Tuple[torch.Tensor, torch.Tensor]:
    """A4's churned input and noise level: ``sigma_hat = sigma (gamma + 1)`` and, when
    ``gamma > 0``, ``v + randn * s_noise * sqrt(sigma_hat^2 - sigma^2)`` (noise from the
    options' generator); ``(v, sigma)`` unchanged without churn."""
    gamma = churn_gamma(sigma, n, opts)
    sigma_hat = sigma * (gamma + 1)
    if gamma > 0:
        v = v + fresh_noise(v, opts.generator) * opts.s_noise * (sigma_hat ** 2 - sigma ** 2) ** 0.5
    return v, sigma_hat


def itermix_sampler(*, churn: bool) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Make a public sampler from ``fn(model, x, sigmas, extra_args, callback, disable,
    noised_latents, opts, [noise_sampler], *, <own keywords>)``: its signature is
    :func:`~itermix_kdiff.options.sampler_signature` (the churn options only with ``churn``),
    the call's option keywords become one :class:`ItermixOptions` (checked there), and it
    runs without gradients."""

    def decorate(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        params = inspect.signature(fn).parameters
        own = {name: p.default for name, p in params.items() if p.kind is p.KEYWORD_ONLY}
        signature = sampler_signature(own, churn=CHURN_OPTIONS if churn else (),
                                      noise_sampler="noise_sampler" in params)

        @functools.wraps(fn)
        def sampler(*args: Any, **kwargs: Any) -> torch.Tensor:
            opts, rest = split_options(bind_arguments(signature, args, kwargs))
            with torch.no_grad():
                return fn(opts=opts, **rest)

        sampler.__signature__ = signature
        return sampler

    return decorate


@itermix_sampler(churn=True)
def sample_itermix_euler(model, x, sigmas, extra_args, callback, disable, noised_latents, opts) -> torch.Tensor:
    """Euler sampling with iterative mixing: the reference's ``euler`` (docs/algorithm.md A4).

    ``x`` is the clean latent ``x0``; ``z'_k = x0 + eps_k sigma_k`` (A1, or ``noised_latents``
    when given: a stack, a stack without batch dimension, or a lazy source). Per step i::

        x_m, z_m = mask_before(x, z'_i)              # identity without denoise_mask
        den = model(x_m, sigma_hat)                  # sigma_hat = sigma_i (1 + gamma)
        x   = x_m + (x - den) / sigma_hat * (sigma_{i+1} - sigma_hat)
        x   = blend(z_m, x, c1[i])                   # c1: the blending schedule (A2)
        x   = mask_after(x)

    starting from ``x = z'_0``. ``mix="before_step"`` blends before the model call
    instead (B2); ``mixing_masks`` limit where the blend applies (B3); ``rewind`` re-runs
    from later steps with fresh noised latents of the result (A5); a step with
    ``c1[i] == 0`` skips its model call (the blend discards it; the callback then reports
    the pass's clean latent as ``denoised``). The callback receives k-diffusion's dict with
    ``i`` counted over the whole schedule. The options are documented on
    :class:`itermix_kdiff.options.ItermixOptions`.
    """
    c1 = prepare_run(model, x, sigmas, noised_latents, opts)
    extra_args = {} if extra_args is None else extra_args
    n = len(sigmas) - 1
    s_in = x.new_ones([x.shape[0]])

    def step(s: Step) -> Optional[Stepped]:
        if s.discarded and churn_gamma(sigmas[s.i], n, opts) == 0:
            return None  # the blend throws this step away, and no churn noise is owed
        x_m, sigma_hat = churn(s.x_m, sigmas[s.i], n, opts)
        denoised = model(x_m, sigma_hat * s_in, **extra_args)
        d = to_d(s.x, sigma_hat, denoised)  # the reference's d uses the un-masked x
        return Stepped(x_m + d * (sigmas[s.i + 1] - sigma_hat), sigma_hat, denoised)

    return itermix_loop(step, x, sigmas, c1, callback, disable, noised_latents, opts)


@itermix_sampler(churn=True)
def sample_itermix_euler_perlin(model, x, sigmas, extra_args, callback, disable, noised_latents, opts, *,
                                perlin_mode: str = "masks", perlin_strength: float = 0.75,
                                perlin_scale: float = 10.0, seed: Union[int, Sequence[int]] = 0,
                                perlin_per_row: bool = False) -> torch.Tensor:
    """Euler with iterative mixing plus Perlin structure: the reference's ``euler_perlin`` (A7).

    With ``c1p = 1 + perlin_strength (c1 - 1)`` and ``P_i`` the A8 masks (``seed``,
    ``perlin_scale``; one set per pass, shared by the batch unless ``perlin_per_row``, or one
    set per row from a list of one ``seed`` per row), per step::

        x_m, z_m = mask_before(x, z'_i);  x = step(x_m, i);  x = blend(z_m, x, c1[i])
        latents:        x = x c1p[i] + P_i (1 - c1p[i]) x
        masks (i<n-1):  x = x (1 - P_i) + (x c1p[i+1] + step(x, i+1) (1 - c1p[i+1])) P_i
        matched_noise:  x = x c1p[i] + P_i (1 - c1p[i])
        x = mask_after(x)

    where ``step(v, j) = v + (v - D(v, s)) / s (sigma_{j+1} - s)``, ``s = sigma_j (1 + gamma)``:
    unlike A4, ``d`` uses the masked input. ``masks`` mode calls the model twice per step
    (2n - 1 calls; the callback reports the first); no step is skipped.
    """
    check_perlin_keywords(perlin_mode, perlin_strength, perlin_scale, seed, perlin_per_row)
    c1 = prepare_run(model, x, sigmas, noised_latents, opts)
    if x.ndim != 4:
        raise ValueError(f"sample_itermix_euler_perlin needs a (B, C, H, W) latent, got shape {tuple(x.shape)}")
    extra_args = {} if extra_args is None else extra_args
    n = len(sigmas) - 1
    s_in = x.new_ones([x.shape[0]])
    c1p = 1.0 + perlin_strength * (c1 - 1.0)
    P = None

    def euler(v: torch.Tensor, j: int) -> Stepped:
        v, sigma_hat = churn(v, sigmas[j], n, opts)
        denoised = model(v, sigma_hat * s_in, **extra_args)
        return Stepped(v + to_d(v, sigma_hat, denoised) * (sigmas[j + 1] - sigma_hat), sigma_hat, denoised)

    def perlin(x: torch.Tensor, s: Step) -> torch.Tensor:
        nonlocal P
        if s.i == s.start:  # one mask set per pass
            P = perlin_tensors(perlin_mode, n - s.start, x, seed, perlin_scale, perlin_per_row)
        p = P[s.i - s.start]
        if perlin_mode == "latents":
            return x * c1p[s.i] + p * (1. - c1p[s.i]) * x
        if perlin_mode == "masks" and s.i < n - 1:
            x_p = euler(x, s.i + 1).x
            return x * (1. - p) + (x * c1p[s.i + 1] + x_p * (1. - c1p[s.i + 1])) * p
        if perlin_mode == "matched_noise":
            return x * c1p[s.i] + p * (1. - c1p[s.i])
        return x

    def step(s: Step) -> Stepped:
        return euler(s.x_m, s.i)

    return itermix_loop(step, x, sigmas, c1, callback, disable, noised_latents, opts,
                        after_mix=perlin, skippable=False)


def dpmpp_2m_update(x: torch.Tensor, denoised: torch.Tensor, old_denoised: Optional[torch.Tensor],
                    sigmas: torch.Tensor, i: int) -> torch.Tensor:
    """One DPM-Solver++(2M) step from ``sigmas[i]`` to ``sigmas[i+1]``, as k-diffusion's
    ``sample_dpmpp_2m``: with ``t = -log sigma`` and ``h = t_{i+1} - t_i``,
    ``x' = (sigma_{i+1} / sigma_i) x - expm1(-h) D``, where ``D`` is ``denoised`` on the first
    step of a pass and the last step, else ``(1 + 1/2r) denoised - (1/2r) old_denoised``
    with ``r = h_{i-1} / h``."""
    t, t_next = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
    h = t_next - t
    ratio = t_next.neg().exp() / t.neg().exp()
    if old_denoised is None or sigmas[i + 1] == 0:
        return ratio * x - (-h).expm1() * denoised
    r = (t - sigmas[i - 1].log().neg()) / h
    denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
    return ratio * x - (-h).expm1() * denoised_d


@itermix_sampler(churn=False)
def sample_itermix_dpmpp_2m(model, x, sigmas, extra_args, callback, disable, noised_latents, opts) -> torch.Tensor:
    """DPM-Solver++(2M) with iterative mixing: the reference's ``dpmpp_2m`` (A9). Per step::

        x_m, z_m = mask_before(x, z'_i);  den = D(x_m, sigma_i)
        x = dpmpp_2m_update(x, den, old_den);  x = blend(z_m, x, c1[i]);  x = mask_after(x)

    As in the reference the update starts from the un-masked ``x``. No step is skipped: the
    next step's second-order correction needs every ``denoised``. Each rewind pass starts a
    fresh history.
    """
    c1 = prepare_run(model, x, sigmas, noised_latents, opts)
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None

    def step(s: Step) -> Stepped:
        nonlocal old_denoised
        if s.i == s.start:
            old_denoised = None
        denoised = model(s.x_m, sigmas[s.i] * s_in, **extra_args)
        x = dpmpp_2m_update(s.x, denoised, old_denoised, sigmas, s.i)
        old_denoised = denoised
        return Stepped(x, sigmas[s.i], denoised)

    return itermix_loop(step, x, sigmas, c1, callback, disable, noised_latents, opts, skippable=False)


@itermix_sampler(churn=False)
def sample_itermix_lcm(model, x, sigmas, extra_args, callback, disable, noised_latents, opts,
                       noise_sampler=None) -> torch.Tensor:
    """Latent Consistency Model sampling with iterative mixing: the reference's ``lcm`` (A9). Per step::

        den = D(x, sigma_i);  x = blend(z'_i, den, c1[i])
        if sigma_{i+1} > 0:  x = x + sigma_{i+1} noise_sampler(sigma_i, sigma_{i+1})

    ``noise_sampler`` defaults to ``randn_like`` from ``generator`` (or the global RNG, drawn
    after the noised latents, as the reference). Denoise masks act as in A4 (the reference
    has none). A step with ``c1[i] == 0`` skips its model call but still draws its noise.
    """
    c1 = prepare_run(model, x, sigmas, noised_latents, opts)
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    x0 = x
    if noise_sampler is None:
        def noise_sampler(sigma, sigma_next):
            return fresh_noise(x0, opts.generator)

    def step(s: Step) -> Optional[Stepped]:
        if s.discarded:
            return None
        denoised = model(s.x_m, sigmas[s.i] * s_in, **extra_args)
        return Stepped(denoised, sigmas[s.i], denoised)

    def add_noise(x: torch.Tensor, s: Step) -> torch.Tensor:
        if sigmas[s.i + 1] > 0:
            x = x + sigmas[s.i + 1] * noise_sampler(sigmas[s.i], sigmas[s.i + 1])
        return x

    return itermix_loop(step, x, sigmas, c1, callback, disable, noised_latents, opts, after_mix=add_noise)
