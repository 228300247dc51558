"""Iterative-mixing samplers with k-diffusion's conventions (docs/algorithm.md A4–A6, B1–B3).

A sampler here is called like ``k_diffusion.sampling.sample_euler(model, x, sigmas, ...)``
except that ``x`` is the CLEAN latent (ComfyUI's SamplerCustom with add_noise off):
the sampler noises it along the sigmas itself, starts from the noisiest copy and,
step by step, blends the matching noised copy back into the running latent.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import torch

from ._checks import check_int, check_number
from .noised import LazyNoisedLatents, noised_latents as make_noised_latents
from .options import ItermixOptions, make_options
from .perlin import PERLIN_MODES
from .blending_schedules import blending_schedule

NoisedLatents = Union[torch.Tensor, LazyNoisedLatents, Sequence[torch.Tensor]]


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


def rewind_starts(n: int, rewind_min: float, rewind_max: float) -> List[int]:
    """A5: the first step of each pass. Starts ``[0]``, then ``s' = s + int((n - s) * r)``
    until ``s' >= n``, ``s' <= s`` or ``s' > int(n * R)``; every pass runs to step n."""
    starts = [0]
    while True:
        s = starts[-1]
        nxt = s + int((n - s) * rewind_min)
        if nxt >= n or nxt <= s or nxt > int(n * rewind_max):
            return starts
        starts.append(nxt)


def pass_starts(n: int, opts: ItermixOptions) -> List[int]:
    """The first step of each pass: ``[0]``, or A5's rewind starts with ``rewind=True``."""
    return rewind_starts(n, opts.rewind_min, opts.rewind_max) if opts.rewind else [0]


def timestep_progress(model: Any, sigmas: torch.Tensor) -> Optional[torch.Tensor]:
    """DemoFusion's progress ``p = (T - t) / T`` for each step's sigma (B2), where the
    model (or a wrapper's ``inner_model`` chain, e.g. a CFG denoiser) is a discrete
    k-diffusion wrapper with ``sigma_to_t`` and a ``sigmas`` table of T entries; else None."""
    wrapper = model
    # Bounded against cycles; deep enough for the webui's DemoFusion stack (five layers).
    for _ in range(8):
        if hasattr(wrapper, "sigma_to_t") and isinstance(getattr(wrapper, "sigmas", None), torch.Tensor):
            T = len(wrapper.sigmas)
            t = wrapper.sigma_to_t(sigmas[:-1].to(wrapper.sigmas.device, wrapper.sigmas.dtype))
            return ((T - t) / T).float().cpu()
        wrapper = getattr(wrapper, "inner_model", None)
        if wrapper is None:
            return None
    return None


def mixing_weights(model: Any, sigmas: torch.Tensor, opts: ItermixOptions) -> torch.Tensor:
    """``c1`` for a run over ``sigmas`` (A2, B2): the named schedule over ``schedule_steps``
    (default n) steps, sliced at ``schedule_offset``; the ``demofusion`` schedule uses the
    model's timestep progress when it has one, otherwise ``i / n``."""
    n = len(sigmas) - 1
    kwargs = dict(alpha_1=opts.alpha_1, start_blending_at_pct=opts.start_blending_at_pct,
                  stop_blending_at_pct=opts.stop_blending_at_pct,
                  clamp_blending_at_pct=opts.clamp_blending_at_pct,
                  blend_min=opts.blend_min, blend_max=opts.blend_max)
    steps = opts.schedule_steps or n
    if opts.schedule_offset + n > steps:
        raise ValueError(f"schedule_offset + steps ({opts.schedule_offset} + {n}) exceeds "
                         f"schedule_steps ({steps})")
    progress = timestep_progress(model, sigmas) if opts.blending_schedule == "demofusion" else None
    if progress is not None:
        # only this run's steps have a timestep; the padding is sliced away below
        pad = torch.zeros(steps)
        pad[opts.schedule_offset:opts.schedule_offset + n] = progress
        progress = pad
    c1 = blending_schedule(steps, opts.blending_schedule, progress=progress, **kwargs)
    return c1[opts.schedule_offset:opts.schedule_offset + n]


def check_sigmas(sigmas: Any) -> None:
    """A sampling schedule: a 1-D tensor of n + 1 >= 2 finite, non-negative, non-increasing sigmas."""
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError("sigmas must be a 1-D tensor of at least 2 values (n + 1 for n steps)")
    if not torch.isfinite(sigmas).all() or (sigmas < 0).any():
        raise ValueError("sigmas must be finite and >= 0")
    if (sigmas[1:] > sigmas[:-1]).any():
        raise ValueError("sigmas must be non-increasing (sigma_0 >= sigma_1 >= ... >= sigma_n)")


def prepare_run(model: Any, x: torch.Tensor, sigmas: torch.Tensor,
                noised_latents: Optional[NoisedLatents], opts: ItermixOptions) -> torch.Tensor:
    """Check the tensors of a run against each other and return its ``c1``.

    Every error names the argument and what it accepts; nothing is modified.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise TypeError("x must be a floating-point latent tensor with a leading batch dimension (B, C, H, W)")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    check_sigmas(sigmas)
    n = len(sigmas) - 1
    if noised_latents is not None:
        _check_noised_latents(noised_latents, x, n)
    if opts.denoise_mask is not None:
        _check_broadcast("denoise_mask", opts.denoise_mask, x.shape)
    if opts.mixing_masks is not None:
        masks = opts.mixing_masks
        if masks.ndim < 1 or masks.shape[0] not in (1, n):
            raise ValueError(f"mixing_masks must hold one mask per step ({n}) or one mask "
                             f"(first dimension 1); got shape {tuple(masks.shape)}")
        _check_broadcast("mixing_masks[i]", masks[0], x.shape)
    if opts.normalize_on_mean:
        warnings.warn("normalize_on_mean is deprecated (as in the reference); it still matches the "
                      "result's per-channel mean and std to the input latent's", DeprecationWarning,
                      stacklevel=3)
    return mixing_weights(model, sigmas, opts)


def _check_noised_latents(z: NoisedLatents, x: torch.Tensor, n: int) -> None:
    accepted = (f"a stack of shape ({n + 1}, {', '.join(map(str, x.shape))}) or "
                f"({n + 1}, {', '.join(map(str, x.shape[1:]))}), or a lazy source of {n + 1} latents")
    if isinstance(z, torch.Tensor):
        if z.shape[1:] not in (x.shape, x.shape[1:]) or len(z) != n + 1:
            raise ValueError(f"noised_latents must be {accepted}; got shape {tuple(z.shape)}")
        return
    if not (hasattr(z, "__len__") and hasattr(z, "__getitem__")):
        raise TypeError(f"noised_latents must be {accepted}; got {type(z).__name__}")
    if len(z) != n + 1:
        raise ValueError(f"noised_latents must be {accepted}; got {len(z)} latents")
    shape = getattr(z, "shape", None)
    if shape is not None and tuple(shape[1:]) not in (tuple(x.shape), tuple(x.shape[1:])):
        raise ValueError(f"noised_latents must be {accepted}; got shape {tuple(shape)}")


def _check_broadcast(name: str, t: torch.Tensor, shape: torch.Size) -> None:
    try:
        ok = torch.broadcast_shapes(t.shape, shape) == shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} of shape {tuple(t.shape)} does not broadcast to the latent's shape {tuple(shape)}")


def latent_at(z: NoisedLatents, k: int, shape: torch.Size) -> torch.Tensor:
    """Entry ``k`` of a stack or lazy source, as a tensor of the latent's ``shape``
    (a stack without a batch dimension is shared by every row)."""
    z_k = z[k]
    return z_k.expand(shape) if z_k.shape != shape else z_k


def pass_latents(x: torch.Tensor, sigmas: torch.Tensor, start: int, given: Optional[NoisedLatents],
                 opts: ItermixOptions) -> Iterator[torch.Tensor]:
    """Yield the noised latents of the pass that starts at step ``start`` from the clean latent
    ``x`` (:func:`pass_source`), for steps ``start .. n-1``, each multiplied by the denoise mask
    as the reference does before its loop: the mask function is applied to the previous step's
    result rather than to the original mask, so with a ``denoise_mask_fn`` the masks compound
    (the reference's code; docs/algorithm.md A4 says ``M'(sigma_k)``)."""
    z = pass_source(x, sigmas, start, given, opts)  # drawn now, before the pass's other noise
    return masked_latents(z, x.shape, sigmas, start, opts)


def masked_latents(z: NoisedLatents, shape: torch.Size, sigmas: torch.Tensor, start: int,
                   opts: ItermixOptions) -> Iterator[torch.Tensor]:
    """The generator behind :func:`pass_latents` (``z`` covers ``sigmas[start:]``)."""
    mask = opts.denoise_mask
    for k in range(start, len(sigmas) - 1):
        z_k = latent_at(z, k - start, shape)
        if mask is not None:
            if opts.denoise_mask_fn is not None:
                mask = opts.denoise_mask_fn(sigmas[k].reshape(1).to(mask.device), mask)
            z_k = z_k * mask
        yield z_k


def denoise_mask_at(sigma: torch.Tensor, opts: ItermixOptions) -> Optional[torch.Tensor]:
    """``M'(sigma)``: the denoise mask, through ``denoise_mask_fn`` when one is given (A4)."""
    if opts.denoise_mask is None or opts.denoise_mask_fn is None:
        return opts.denoise_mask
    return opts.denoise_mask_fn(sigma.reshape(1).to(opts.denoise_mask.device), opts.denoise_mask)


def mask_before(x: torch.Tensor, z: torch.Tensor, x0: torch.Tensor,
                mask: Optional[torch.Tensor]) -> tuple:
    """A4 ``mask_before``: ``x M' + x0 (1 - M')`` and the same for ``z'``."""
    if mask is None:
        return x, z
    mask = mask.to(x.dtype)
    keep = x0 * (1. - mask)
    return x * mask + keep, z * mask + keep


def mask_after(x: torch.Tensor, x0: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """A4 ``mask_after``: ``x M' + x0 (1 - M')``."""
    if mask is None:
        return x
    mask = mask.to(x.dtype)
    return x * mask + x0 * (1. - mask)


def mix_latents(z: torch.Tensor, x: torch.Tensor, i: int, c1: torch.Tensor, opts: ItermixOptions) -> torch.Tensor:
    """``blend(z'_i, x, c1[i])`` (A3), limited by the step's mixing mask ``m_i`` when given:
    ``blend(...) m_i + x (1 - m_i)`` (B3)."""
    mixed = opts.blend(z, x, c1[i])
    if opts.mixing_masks is None:
        return mixed
    m = opts.mixing_masks[i if len(opts.mixing_masks) > 1 else 0].to(x.device, x.dtype)
    return mixed * m + x * (1 - m)


def can_skip(i: int, c1: torch.Tensor, gamma: float, opts: ItermixOptions) -> bool:
    """A step whose result the blend throws away (``c1[i] == 0`` when mixing after the
    step, without churn noise or a mixing mask) needs no model call."""
    return opts.mix == "after_step" and c1[i] == 0 and gamma == 0 and opts.mixing_masks is None


def match_normalize(x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """A6: give ``x`` the per-channel mean and (unbiased) std of ``source`` over the spatial dims."""
    dims = tuple(range(2, x.ndim))
    x_mean, x_std = x.mean(dim=dims, keepdim=True), x.std(dim=dims, keepdim=True)
    s_mean, s_std = source.mean(dim=dims, keepdim=True), source.std(dim=dims, keepdim=True)
    return (x - x_mean) / x_std * s_std + s_mean


def fresh_noise(x: torch.Tensor, opts: ItermixOptions) -> torch.Tensor:
    """Noise like ``x`` (churn, LCM) from ``opts.generator``, or from the global RNG as
    k-diffusion and the reference draw it."""
    if opts.generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=opts.generator, dtype=x.dtype, device=x.device)


def progress_bar(iterable: range, disable: Optional[bool]):
    """tqdm over ``iterable`` when tqdm is installed (it is optional for the core)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, disable=disable)


def pass_source(x: torch.Tensor, sigmas: torch.Tensor, start: int,
                given: Optional[NoisedLatents], opts: ItermixOptions) -> NoisedLatents:
    """The noised latents of one pass: the caller's for the first pass, else fresh ones
    built from the pass's clean latent over ``sigmas[start:]`` (A1, A5)."""
    if start == 0 and given is not None:
        return given
    return make_noised_latents(x, sigmas[start:], noise=opts.noise, generator=opts.generator, lazy=opts.lazy)


@torch.no_grad()
def sample_itermix_euler(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Optional[Dict[str, Any]] = None,
    callback: Optional[Callable[[Dict[str, Any]], Any]] = None,
    disable: Optional[bool] = None,
    noised_latents: Optional[NoisedLatents] = None,
    *,
    generator: Optional[torch.Generator] = None,
    noise: str = "independent",
    lazy: bool = False,
    alpha_1: float = 2.4,
    blending_schedule: str = "cosine",
    blending_function: str = "addition",
    start_blending_at_pct: Optional[float] = 0.0,
    stop_blending_at_pct: Optional[float] = 1.0,
    clamp_blending_at_pct: Optional[float] = 1.0,
    blend_min: float = 0.0,
    blend_max: float = 1.0,
    schedule_steps: Optional[int] = None,
    schedule_offset: int = 0,
    normalize_on_mean: bool = False,
    rewind: bool = False,
    rewind_min: float = 0.5,
    rewind_max: float = 0.8,
    denoise_mask: Optional[torch.Tensor] = None,
    denoise_mask_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    mixing_masks: Optional[torch.Tensor] = None,
    mix: str = "after_step",
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
) -> torch.Tensor:
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
    opts = make_options(
        generator=generator, noise=noise, lazy=lazy, alpha_1=alpha_1,
        blending_schedule=blending_schedule, blending_function=blending_function,
        start_blending_at_pct=start_blending_at_pct, stop_blending_at_pct=stop_blending_at_pct,
        clamp_blending_at_pct=clamp_blending_at_pct, blend_min=blend_min, blend_max=blend_max,
        schedule_steps=schedule_steps, schedule_offset=schedule_offset,
        normalize_on_mean=normalize_on_mean, rewind=rewind, rewind_min=rewind_min,
        rewind_max=rewind_max, denoise_mask=denoise_mask, denoise_mask_fn=denoise_mask_fn,
        mixing_masks=mixing_masks, mix=mix, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax,
        s_noise=s_noise)
    c1 = prepare_run(model, x, sigmas, noised_latents, opts)
    extra_args = {} if extra_args is None else extra_args
    n = len(sigmas) - 1
    x0 = x
    s_in = x.new_ones([x.shape[0]])
    for start in pass_starts(n, opts):
        source = x
        zs = pass_latents(source, sigmas, start, noised_latents, opts)
        for i, z_i in zip(progress_bar(range(start, n), disable), zs):
            if i == start:
                x = z_i  # each pass starts from its noisiest latent
            mask = denoise_mask_at(sigmas[i], opts)
            x_m, z_m = mask_before(x, z_i, x0, mask)
            if opts.mix == "before_step":
                x = x_m = mix_latents(z_m, x_m, i, c1, opts)
            gamma = churn_gamma(sigmas[i], n, opts)
            sigma_hat = sigmas[i] * (gamma + 1)
            if can_skip(i, c1, gamma, opts):
                if callback is not None:
                    callback({'x': x, 'i': i, 'sigma': sigmas[i], 'sigma_hat': sigma_hat, 'denoised': source})
                x = mask_after(z_m.clone(), x0, mask)
                continue
            if gamma > 0:
                x_m = x_m + fresh_noise(x_m, opts) * opts.s_noise * (sigma_hat ** 2 - sigmas[i] ** 2) ** 0.5
            denoised = model(x_m, sigma_hat * s_in, **extra_args)
            d = to_d(x, sigma_hat, denoised)  # the reference's d uses the un-masked x
            if callback is not None:
                callback({'x': x, 'i': i, 'sigma': sigmas[i], 'sigma_hat': sigma_hat, 'denoised': denoised})
            x = x_m + d * (sigmas[i + 1] - sigma_hat)
            if opts.mix == "after_step":
                x = mix_latents(z_m, x, i, c1, opts)
            x = mask_after(x, x0, mask)
    if opts.normalize_on_mean:
        x = match_normalize(x, x0)
    return x



def perlin_tensors(mode: str, count: int, x: torch.Tensor, seed: int, scale: float,
                   per_row: bool) -> torch.Tensor:
    """A7's Perlin tensors ``P_0 .. P_{count-1}`` (A8 masks of the latent's H x W), shaped to
    broadcast against ``x``: ``(count, 1|B, C|1, H, W)``. ``latents`` mode repeats each mask
    over the channels; one mask set serves the whole batch unless ``per_row``."""
    from .perlin import perlin_masks

    B, C, H, W = x.shape
    rows = B if per_row else 1
    masks = perlin_masks(count * rows, W, H, seed=seed, scale=scale, device=x.device, dtype=x.dtype)
    # row r takes masks r*count .. (r+1)*count - 1, so row 0 sees the shared set
    masks = masks.permute(0, 3, 1, 2).reshape(rows, count, 1, H, W).transpose(0, 1)
    return masks.expand(count, rows, C, H, W) if mode == "latents" else masks


@torch.no_grad()
def sample_itermix_euler_perlin(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Optional[Dict[str, Any]] = None,
    callback: Optional[Callable[[Dict[str, Any]], Any]] = None,
    disable: Optional[bool] = None,
    noised_latents: Optional[NoisedLatents] = None,
    *,
    perlin_mode: str = "masks",
    perlin_strength: float = 0.75,
    perlin_scale: float = 10.0,
    seed: int = 0,
    perlin_per_row: bool = False,
    **options: Any,
) -> torch.Tensor:
    """Euler with iterative mixing plus Perlin structure: the reference's ``euler_perlin`` (A7).

    ``options`` are :func:`sample_itermix_euler`'s keywords. With ``c1p = 1 + perlin_strength
    (c1 - 1)`` and ``P_i`` the A8 masks (``seed``, ``perlin_scale``; one set per pass, shared
    by the batch unless ``perlin_per_row``), per step::

        x_m, z_m = mask_before(x, z'_i);  x = step(x_m, i);  x = blend(z_m, x, c1[i])
        latents:        x = x c1p[i] + P_i (1 - c1p[i]) x
        masks (i<n-1):  x = x (1 - P_i) + (x c1p[i+1] + step(x, i+1) (1 - c1p[i+1])) P_i
        matched_noise:  x = x c1p[i] + P_i (1 - c1p[i])
        x = mask_after(x);  callback

    where ``step(v, j) = v + (v - D(v, s)) / s (sigma_{j+1} - s)``, ``s = sigma_j (1 + gamma)``:
    unlike A4, ``d`` uses the masked input. ``masks`` mode calls the model twice per step
    (2n - 1 calls); no step is skipped.
    """
    if perlin_mode not in PERLIN_MODES:
        raise ValueError(f"perlin_mode must be one of {', '.join(PERLIN_MODES)}; got {perlin_mode!r}")
    check_number("perlin_strength", perlin_strength, low=0.0, high=1.0)
    check_number("perlin_scale", perlin_scale, low=1e-6)
    check_int("seed", seed, low=0)
    if not isinstance(perlin_per_row, bool):
        raise TypeError(f"perlin_per_row must be True or False, got {perlin_per_row!r}")
    opts = make_options(**options)
    c1 = prepare_run(model, x, sigmas, noised_latents, opts)
    if x.ndim != 4:
        raise ValueError(f"sample_itermix_euler_perlin needs a (B, C, H, W) latent, got shape {tuple(x.shape)}")
    extra_args = {} if extra_args is None else extra_args
    n = len(sigmas) - 1
    x0 = x
    s_in = x.new_ones([x.shape[0]])
    c1p = 1.0 + perlin_strength * (c1 - 1.0)

    def step(v: torch.Tensor, j: int):
        gamma = churn_gamma(sigmas[j], n, opts)
        sigma_hat = sigmas[j] * (gamma + 1)
        if gamma > 0:
            v = v + fresh_noise(v, opts) * opts.s_noise * (sigma_hat ** 2 - sigmas[j] ** 2) ** 0.5
        denoised = model(v, sigma_hat * s_in, **extra_args)
        return v + to_d(v, sigma_hat, denoised) * (sigmas[j + 1] - sigma_hat), sigma_hat, denoised

    for start in pass_starts(n, opts):
        P = perlin_tensors(perlin_mode, n - start, x, seed, perlin_scale, perlin_per_row)
        zs = pass_latents(x, sigmas, start, noised_latents, opts)
        for i, z_i in zip(progress_bar(range(start, n), disable), zs):
            if i == start:
                x = z_i
            p = P[i - start]
            mask = denoise_mask_at(sigmas[i], opts)
            x_m, z_m = mask_before(x, z_i, x0, mask)
            if opts.mix == "before_step":
                x_m = mix_latents(z_m, x_m, i, c1, opts)
            x, sigma_hat, denoised = step(x_m, i)
            if opts.mix == "after_step":
                x = mix_latents(z_m, x, i, c1, opts)
            if perlin_mode == "latents":
                x = x * c1p[i] + p * (1. - c1p[i]) * x
            elif perlin_mode == "masks" and i < n - 1:
                x_p, sigma_hat, denoised = step(x, i + 1)
                x = x * (1. - p) + (x * c1p[i + 1] + x_p * (1. - c1p[i + 1])) * p
            elif perlin_mode == "matched_noise":
                x = x * c1p[i] + p * (1. - c1p[i])
            x = mask_after(x, x0, mask)
            if callback is not None:
                callback({'x': x, 'i': i, 'sigma': sigmas[i], 'sigma_hat': sigma_hat, 'denoised': denoised})
    if opts.normalize_on_mean:
        x = match_normalize(x, x0)
    return x


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


@torch.no_grad()
def sample_itermix_dpmpp_2m(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Optional[Dict[str, Any]] = None,
    callback: Optional[Callable[[Dict[str, Any]], Any]] = None,
    disable: Optional[bool] = None,
    noised_latents: Optional[NoisedLatents] = None,
    **options: Any,
) -> torch.Tensor:
    """DPM-Solver++(2M) with iterative mixing: the reference's ``dpmpp_2m`` (A9).

    ``options`` are :func:`sample_itermix_euler`'s keywords (churn does not apply). Per step::

        x_m, z_m = mask_before(x, z'_i);  den = D(x_m, sigma_i)
        x = dpmpp_2m_update(x, den, old_den);  x = blend(z_m, x, c1[i]);  x = mask_after(x)

    As in the reference the update starts from the un-masked ``x`` and the callback
    reports the masked one. No step is skipped: the next step's second-order correction
    needs every ``denoised``. Each rewind pass starts a fresh history.
    """
    opts = make_options(**options)
    c1 = prepare_run(model, x, sigmas, noised_latents, opts)
    extra_args = {} if extra_args is None else extra_args
    n = len(sigmas) - 1
    x0 = x
    s_in = x.new_ones([x.shape[0]])
    for start in pass_starts(n, opts):
        old_denoised = None
        zs = pass_latents(x, sigmas, start, noised_latents, opts)
        for i, z_i in zip(progress_bar(range(start, n), disable), zs):
            if i == start:
                x = z_i
            mask = denoise_mask_at(sigmas[i], opts)
            x_m, z_m = mask_before(x, z_i, x0, mask)
            if opts.mix == "before_step":
                x = x_m = mix_latents(z_m, x_m, i, c1, opts)
            denoised = model(x_m, sigmas[i] * s_in, **extra_args)
            if callback is not None:
                callback({'x': x_m, 'i': i, 'sigma': sigmas[i], 'sigma_hat': sigmas[i], 'denoised': denoised})
            x = dpmpp_2m_update(x, denoised, old_denoised, sigmas, i)
            if opts.mix == "after_step":
                x = mix_latents(z_m, x, i, c1, opts)
            old_denoised = denoised
            x = mask_after(x, x0, mask)
    if opts.normalize_on_mean:
        x = match_normalize(x, x0)
    return x


@torch.no_grad()
def sample_itermix_lcm(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Optional[Dict[str, Any]] = None,
    callback: Optional[Callable[[Dict[str, Any]], Any]] = None,
    disable: Optional[bool] = None,
    noised_latents: Optional[NoisedLatents] = None,
    noise_sampler: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    **options: Any,
) -> torch.Tensor:
    """Latent Consistency Model sampling with iterative mixing: the reference's ``lcm`` (A9).

    ``options`` are :func:`sample_itermix_euler`'s keywords (churn does not apply). Per step::

        den = D(x, sigma_i);  x = blend(z'_i, den, c1[i])
        if sigma_{i+1} > 0:  x = x + sigma_{i+1} noise_sampler(sigma_i, sigma_{i+1})

    ``noise_sampler`` defaults to ``randn_like`` from ``generator`` (or the global RNG, drawn
    after the noised latents, as the reference). Denoise masks act as in A4 (the reference
    has none). A step with ``c1[i] == 0`` skips its model call but still draws its noise.
    """
    opts = make_options(**options)
    c1 = prepare_run(model, x, sigmas, noised_latents, opts)
    extra_args = {} if extra_args is None else extra_args
    n = len(sigmas) - 1
    x0 = x
    if noise_sampler is None:
        def noise_sampler(sigma, sigma_next):
            return fresh_noise(x0, opts)
    s_in = x.new_ones([x.shape[0]])
    for start in pass_starts(n, opts):
        source = x
        zs = pass_latents(source, sigmas, start, noised_latents, opts)
        for i, z_i in zip(progress_bar(range(start, n), disable), zs):
            if i == start:
                x = z_i
            mask = denoise_mask_at(sigmas[i], opts)
            x_m, z_m = mask_before(x, z_i, x0, mask)
            if opts.mix == "before_step":
                x_m = mix_latents(z_m, x_m, i, c1, opts)
            if can_skip(i, c1, 0.0, opts):
                denoised, x = source, z_m.clone()
            else:
                denoised = model(x_m, sigmas[i] * s_in, **extra_args)
                x = mix_latents(z_m, denoised, i, c1, opts) if opts.mix == "after_step" else denoised
            if callback is not None:
                callback({'x': x_m, 'i': i, 'sigma': sigmas[i], 'sigma_hat': sigmas[i], 'denoised': denoised})
            if sigmas[i + 1] > 0:
                x = x + sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
            x = mask_after(x, x0, mask)
    if opts.normalize_on_mean:
        x = match_normalize(x, x0)
    return x
