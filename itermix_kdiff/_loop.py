"""The loop every itermix sampler shares (docs/algorithm.md A4, A5, B1–B3).

A sampler checks its arguments with :func:`prepare_run`, which returns the blending weights
``c1``, and gives :func:`itermix_loop` its own step, ``step(s) -> Stepped``: the model calls
and the update from ``sigma_i`` to ``sigma_{i+1}`` (Euler, DPM-Solver++(2M), LCM, or a wrapped
k-diffusion sampler). The loop owns everything around it: the rewind passes and their noised
latents, the denoise masks, the mix before or after the step, the steps the blend throws away,
the progress bar and the callback.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import torch

from .blending import masked_blend
from .blending_schedules import check_some_step_kept, sampler_weights
from .masks import check_mask, check_mask_values, denoise_mask_at, mask_after, mask_before, masked_latents
from .noised import (CheckedLatents, LazyNoisedLatents, NoisedLatents, check_noised_latents, per_row,
                     noised_latents as make_noised_latents)
from .options import ItermixOptions
from .sigmas import check_sigmas
from .statistics import match_statistics


class Step(NamedTuple):
    """What a sampler's step function is given for step ``i``."""

    i: int  # counted over the whole schedule
    x: torch.Tensor  # the running latent (already mixed with mix="before_step")
    x_m: torch.Tensor  # x under the denoise mask: what the model is called on
    start: int  # the first step of this pass (A5)
    pass_index: int  # 0 for the first pass, then one per rewind
    discarded: bool  # the blend will throw the step's result away: the step may skip its model call


class Stepped(NamedTuple):
    """A step's result: ``x`` before the after-step mix, and what the callback reports."""

    x: torch.Tensor
    sigma_hat: torch.Tensor
    denoised: Optional[torch.Tensor]  # None: nothing to report


StepFunction = Callable[[Step], Optional[Stepped]]  # None: skipped (only when s.discarded)


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


def progress_bar(iterable: range, disable: Optional[bool]):
    """tqdm over ``iterable`` when tqdm is installed (it is optional for the core)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, disable=disable)


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
        check_noised_latents(noised_latents, x, n)
    if per_row(opts.generator) and len(opts.generator) != x.shape[0]:
        raise ValueError(f"generator holds {len(opts.generator)} generators for a batch of {x.shape[0]}: "
                         f"give one per batch row")
    if opts.denoise_mask is not None:
        check_mask("denoise_mask", opts.denoise_mask, x.shape)
    if opts.mixing_masks is not None:
        masks = opts.mixing_masks
        if masks.ndim < 1 or masks.shape[0] not in (1, n):
            raise ValueError(f"mixing_masks must hold one mask per step ({n}) or one mask "
                             f"(first dimension 1); got shape {tuple(masks.shape)}")
        check_mask("mixing_masks[i]", masks[0], x.shape)
        check_mask_values("mixing_masks", masks)
    if opts.normalize_on_mean:
        warnings.warn("normalize_on_mean is deprecated (as in the reference); it still matches the "
                      "result's per-channel mean and std to the input latent's", DeprecationWarning,
                      stacklevel=4)
    c1 = sampler_weights(model, sigmas, opts)
    check_some_step_kept(c1, opts, opts.mixing_masks is not None)
    return c1


def pass_source(x: torch.Tensor, sigmas: torch.Tensor, start: int,
                given: Optional[NoisedLatents], opts: ItermixOptions) -> NoisedLatents:
    """The noised latents of one pass: the caller's for the first pass, else fresh ones
    built from the pass's clean latent over ``sigmas[start:]`` (A1, A5)."""
    if start == 0 and given is not None:
        if isinstance(given, (torch.Tensor, list, tuple, LazyNoisedLatents)):
            return given  # checked whole by prepare_run
        return CheckedLatents(given, x)
    return make_noised_latents(x, sigmas[start:], noise=opts.noise, generator=opts.generator, lazy=opts.lazy)


def mix_latents(z: torch.Tensor, x: torch.Tensor, i: int, c1: torch.Tensor, opts: ItermixOptions) -> torch.Tensor:
    """``blend(z'_i, x, c1[i])`` (A3), limited by step i's mixing mask when there are some (B3)."""
    masks = opts.mixing_masks
    mask = None if masks is None else masks[i if len(masks) > 1 else 0]
    return masked_blend(opts.blend, z, x, c1[i], mask)


def discards_step(i: int, c1: torch.Tensor, opts: ItermixOptions) -> bool:
    """Whether the blend throws step i's result away: ``c1[i] == 0`` when mixing after the
    step, without a mixing mask that would keep part of it (A4's free skip)."""
    return opts.mix == "after_step" and c1[i] == 0 and opts.mixing_masks is None


def itermix_loop(step: StepFunction, x: torch.Tensor, sigmas: torch.Tensor, c1: torch.Tensor,
                 callback: Optional[Callable[[Dict[str, Any]], Any]], disable: Optional[bool],
                 noised_latents: Optional[NoisedLatents], opts: ItermixOptions, *,
                 after_mix: Optional[Callable[[torch.Tensor, Step], torch.Tensor]] = None,
                 skippable: bool = True,
                 intermediates: Optional[List[Tuple[torch.Tensor, torch.Tensor]]] = None) -> torch.Tensor:
    """Iterative mixing around ``step``, from the clean latent ``x``, with the blending weights
    ``c1`` of :func:`prepare_run` (which checked the arguments). For each pass (one, or
    A5's rewind passes, each from the previous result) and each of its steps i::

        x_m, z_m = mask_before(x, z'_i)           # identity without a denoise mask
        x = x_m = blend(z_m, x_m, c1[i])          # only with mix="before_step" (B2)
        x = step(Step(i, x, x_m, ...)).x          # the sampler's own update
        x = blend(z_m, x, c1[i])                  # only with mix="after_step" (A4, B3)
        x = after_mix(x, s)                       # the sampler's extra (Perlin's, LCM's noise)
        x = mask_after(x)

    starting each pass from its noisiest latent ``z'_start``. A step the blend throws away
    (``s.discarded``) may return None: its result is then ``z_m`` and the callback reports the
    pass's clean latent as ``denoised``. The callback gets k-diffusion's dict with ``x`` the
    latent the step started from (``x_m``) and ``i`` counted over the whole schedule, as
    copies it may change.
    ``skippable=False`` never marks a step discarded (samplers whose next step needs this
    one's model call); ``intermediates`` (a list) also turns skipping off and collects
    ``(step result, latent after mixing)`` per step.
    """
    n = len(sigmas) - 1
    x0 = x
    for p, start in enumerate(pass_starts(n, opts)):
        source = x
        z = pass_source(source, sigmas, start, noised_latents, opts)  # drawn now, before the pass's other noise
        zs = masked_latents(z, x.shape, sigmas, start, opts.denoise_mask, opts.denoise_mask_fn)
        for i, z_i in zip(progress_bar(range(start, n), disable), zs):
            if i == start:
                x = z_i  # each pass starts from its noisiest latent
            mask = denoise_mask_at(sigmas[i], opts.denoise_mask, opts.denoise_mask_fn, x.shape)
            x_m, z_m = mask_before(x, z_i, x0, mask)
            if opts.mix == "before_step":
                x = x_m = mix_latents(z_m, x_m, i, c1, opts)
            s = Step(i, x, x_m, start, p, skippable and intermediates is None and discards_step(i, c1, opts))
            out = step(s)
            if out is None:
                out, x = Stepped(z_m, sigmas[i], source), z_m.clone()
            else:
                x = mix_latents(z_m, out.x, i, c1, opts) if opts.mix == "after_step" else out.x
            if after_mix is not None:
                x = after_mix(x, s)
            x = mask_after(x, x0, mask)
            if intermediates is not None:
                intermediates.append((out.x, x))
            if callback is not None and out.denoised is not None:
                # copies: at a pass's first step x_m is the caller's noised latent, at a skipped
                # step denoised is the caller's x, and a preview may clamp what it is given in place
                callback({'x': x_m.clone(), 'i': i, 'sigma': sigmas[i].clone(), 'sigma_hat': out.sigma_hat.clone(),
                          'denoised': out.denoised.clone()})
    if opts.normalize_on_mean:
        x = match_statistics(x, x0, dims=tuple(range(2, x.ndim)))
    return x
