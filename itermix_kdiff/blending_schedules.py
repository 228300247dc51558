"""Blending schedules: the weight ``c1`` of the running latent at each step.

docs/algorithm.md A2 (the reference's ``cosine``, ``linear`` and ``logistic``) and B2
(``demofusion``). ``c1`` rises from 0 towards 1; ``1 - c1`` is the share of the
noised latent ``z'``. The reference computes in float32 with integer step
indices, and so do we, expression for expression, so that its numbers come out
bit for bit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Union

import torch

from ._checks import check_int

if TYPE_CHECKING:  # options.py imports this module's registry
    from .options import ItermixOptions

Curve = Callable[..., torch.Tensor]


def pct_to_step(pct: Optional[float], steps: int, default: int) -> int:
    """A2's percent-to-step conversion, in Python floats: ``int(pct * steps)``."""
    return default if pct is None else int(pct * steps)


def cosine_factor(p: Union[float, torch.Tensor]) -> Union[float, torch.Tensor]:
    """DemoFusion's ``cf = (1 + cos(pi p)) / 2``: 1 at the start of sampling (``p = 0``),
    0 at the end (``p = 1``) (B2, B7). A tensor ``p`` is computed in its dtype, a float in
    Python's double precision."""
    cos = torch.cos if isinstance(p, torch.Tensor) else math.cos
    return 0.5 * (1 + cos(math.pi * p))


def cosine_schedule(t: torch.Tensor, *, start: int, stop: int, alpha_1: float,
                    progress: Optional[torch.Tensor]) -> torch.Tensor:
    """A2 cosine: ``(0.5 (1 + cos(pi (T - t) / T))) ** alpha_1`` with ``T = stop``; 1 past T
    (``start`` is ignored, as in the reference)."""
    c1 = (0.5 * (1 + torch.cos(torch.pi * (stop - t) / stop))) ** alpha_1
    return torch.where(t > stop, torch.tensor(1.0), c1)


def linear_schedule(t: torch.Tensor, *, start: int, stop: int, alpha_1: float,
                    progress: Optional[torch.Tensor]) -> torch.Tensor:
    """A2 linear: ``t / T`` with ``T = stop``; 1 past T, 0 before ``start``."""
    c1 = t / stop
    c1 = torch.where(t > stop, torch.tensor(1.0), c1)
    return torch.where(t < start, torch.tensor(0.0), c1)


def logistic_schedule(t: torch.Tensor, *, start: int, stop: int, alpha_1: float,
                      progress: Optional[torch.Tensor]) -> torch.Tensor:
    """A2 logistic: ``1 / (1 + exp(-5 alpha_1 (u - mid)))`` with ``u = t / m``, ``m = n - 1``,
    ``mid = (stop + start) / 2 / m``; 1 for ``u > stop / m``, 0 for ``u < start / m``."""
    m = torch.max(t)
    k = alpha_1 * 5
    mid = ((stop + start) / 2) / m
    u = t.float() / m
    c1 = 1 / (1 + torch.exp(-k * (u - mid)))
    c1 = torch.where(u > stop / m, torch.tensor(1.0), c1)
    return torch.where(u < start / m, torch.tensor(0.0), c1)


def demofusion_schedule(t: torch.Tensor, *, start: int, stop: int, alpha_1: float,
                        progress: Optional[torch.Tensor]) -> torch.Tensor:
    """B2: DemoFusion gives the noised latent ``cosine_factor(p) ** alpha_1`` (its
    ``cosine_scale_1``), so the running latent's weight is one minus that. ``p = progress``
    when given (DemoFusion's timestep progress), else ``t / stop`` (and 1 past stop)."""
    if progress is not None:
        return 1 - cosine_factor(progress) ** alpha_1
    c1 = 1 - cosine_factor(t / stop) ** alpha_1
    return torch.where(t > stop, torch.tensor(1.0), c1)


#: Every blending schedule by name (the reference's three, then DemoFusion's).
BLENDING_SCHEDULES: Dict[str, Curve] = {
    "cosine": cosine_schedule,
    "linear": linear_schedule,
    "logistic": logistic_schedule,
    "demofusion": demofusion_schedule,
}


def mixing_weights(n: int, opts: "ItermixOptions", progress: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``c1`` (float32, length ``n``) for a run of ``n`` steps with the options ``opts``.

    The named schedule is computed over ``steps = opts.schedule_steps or n`` steps (B4) with
    ``t = 0..steps-1``, ``start = int(start_pct * steps)``, ``stop = int(stop_pct * steps)``
    (a None percentage: 0 for start, ``steps`` for stop and clamp):

    - ``cosine``: ``c1[t] = (0.5 (1 + cos(pi (stop - t) / stop))) ** alpha_1``, 1 for ``t > stop``
      (``start`` is ignored, as in the reference);
    - ``linear``: ``c1[t] = t / stop``, 1 for ``t > stop``, 0 for ``t < start``;
    - ``logistic``: ``1 / (1 + exp(-5 alpha_1 (t/m - mid)))``, ``m = steps - 1``,
      ``mid = (stop + start) / 2 / m``, 1 beyond stop, 0 before start;
    - ``demofusion`` (B2): ``c1 = 1 - ((1 + cos(pi p)) / 2) ** alpha_1`` with ``p = t / stop``
      (1 for ``t > stop``), or ``p = progress[i]`` for this run's steps when ``progress``
      (length ``n``, see :func:`timestep_progress`) is given.

    Then ``c1[int(clamp_pct * steps):] = 1``, ``c1 = lerp(blend_min, blend_max, c1)``, and the
    run takes ``c1[schedule_offset : schedule_offset + n]``. The options were checked when
    ``opts`` was made; what depends on ``n`` is checked here.
    """
    steps = opts.schedule_steps or n
    offset = opts.schedule_offset
    if offset + n > steps:
        raise ValueError(f"schedule_offset + steps ({offset} + {n}) exceeds schedule_steps ({steps})")
    start = pct_to_step(opts.start_blending_at_pct, steps, 0)
    stop = pct_to_step(opts.stop_blending_at_pct, steps, steps)
    if progress is not None:
        if opts.blending_schedule != "demofusion":
            raise ValueError(f"progress applies to the demofusion blending_schedule, not {opts.blending_schedule!r}")
        progress = torch.as_tensor(progress, dtype=torch.float32).cpu()
        if progress.shape != (n,):
            raise ValueError(f"progress must have shape ({n},), got {tuple(progress.shape)}")
        # only this run's steps have a timestep; the padding is sliced away below
        progress = torch.zeros(steps).index_copy_(0, torch.arange(offset, offset + n), progress)
    elif stop < 1:
        raise ValueError(
            f"stop_blending_at_pct={opts.stop_blending_at_pct} leaves zero blending steps out of {steps}: "
            f"int(stop_blending_at_pct * steps) must be >= 1")
    if opts.blending_schedule == "logistic" and steps < 2:
        raise ValueError("the logistic blending_schedule needs steps >= 2 (it divides by steps - 1)")
    curve = BLENDING_SCHEDULES[opts.blending_schedule]
    c1 = curve(torch.arange(steps), start=start, stop=stop, alpha_1=opts.alpha_1, progress=progress)
    c1 = c1.to(torch.float32)
    if opts.clamp_blending_at_pct is not None:
        c1[pct_to_step(opts.clamp_blending_at_pct, steps, steps):] = 1.0
    c1 = torch.lerp(torch.full_like(c1, opts.blend_min), torch.full_like(c1, opts.blend_max), c1)
    return c1[offset:offset + n]


def check_some_step_kept(c1: torch.Tensor, opts: "ItermixOptions", mixing_masks: bool) -> None:
    """Refuse a run whose every step the blend would throw away: with ``mix="after_step"`` and
    no mixing masks, ``c1 == 0`` everywhere returns the noised latent without sampling
    anything. The error names what made every ``c1`` 0."""
    if opts.mix != "after_step" or mixing_masks or bool((c1 > 0).any()):
        return
    n = len(c1)
    start = pct_to_step(opts.start_blending_at_pct, opts.schedule_steps or n, 0)
    schedule = opts.blending_schedule
    if opts.blend_max == 0:
        cause = "blend_max=0"
    elif schedule in ("linear", "logistic") and start >= opts.schedule_offset + n:
        cause = f"start_blending_at_pct={opts.start_blending_at_pct}: c1 is 0 before step {start}"
    elif n == 1 and opts.schedule_offset == 0:
        cause = f"steps=1: the {schedule} schedule's c1 starts at 0; give at least 2 steps"
    else:  # the power underflows float32
        cause = f"alpha_1={opts.alpha_1} with the {schedule} schedule"
    raise ValueError(f"every c1 is 0 for this run of {n} step(s) ({cause}): with mix='after_step' every "
                     f"step's result would be thrown away and the noised latent returned, so no step would "
                     f"be sampled")


def blending_schedule(steps: int, schedule: Optional[str] = None, *, progress: Optional[torch.Tensor] = None,
                      **options: Any) -> torch.Tensor:
    """``c1`` over ``steps`` steps for the named schedule: :func:`mixing_weights` with
    ``ItermixOptions(blending_schedule=schedule, **options)`` (``options``: ``alpha_1``, the
    percentages, ``blend_min``/``blend_max``, ...; these and ``schedule``, when None, take the
    options object's defaults)."""
    from .options import make_options  # options.py imports this module's registry

    check_int("steps", steps, low=1)
    if schedule is not None:
        options["blending_schedule"] = schedule
    return mixing_weights(steps, make_options(**options), progress)


def discrete_wrapper(model: Any) -> Optional[Any]:
    """The k-diffusion discrete-schedule wrapper (``sigma_to_t`` and a ``sigmas`` table) that
    ``model`` is or wraps through its ``inner_model`` chain (a CFG denoiser, a DemoFusion
    denoiser, the webui's wrappers), or None."""
    wrapper = model
    # Bounded against cycles; deep enough for the webui's DemoFusion stack (five layers).
    for _ in range(8):
        if hasattr(wrapper, "sigma_to_t") and isinstance(getattr(wrapper, "sigmas", None), torch.Tensor):
            return wrapper
        wrapper = getattr(wrapper, "inner_model", None)
        if wrapper is None:
            return None
    return None


def progress_at(wrapper: Any, sigma: torch.Tensor) -> torch.Tensor:
    """DemoFusion's progress ``p = (T - t) / T`` at each value of ``sigma`` (B2), with
    ``t = wrapper.sigma_to_t(sigma)`` and T the length of the :func:`discrete_wrapper`'s table."""
    T = len(wrapper.sigmas)
    t = wrapper.sigma_to_t(sigma.to(wrapper.sigmas.device, wrapper.sigmas.dtype))
    return ((T - t) / T).float().cpu()


def timestep_progress(model: Any, sigmas: torch.Tensor) -> Optional[torch.Tensor]:
    """:func:`progress_at` each step's sigma ``sigmas[:-1]``, where ``model`` has a
    :func:`discrete_wrapper`; else None."""
    wrapper = discrete_wrapper(model)
    return None if wrapper is None else progress_at(wrapper, sigmas[:-1])


def sampler_weights(model: Any, sigmas: torch.Tensor, opts: "ItermixOptions") -> torch.Tensor:
    """``c1`` as a sampler running ``model`` over ``sigmas`` uses it: :func:`mixing_weights`
    for ``len(sigmas) - 1`` steps, the ``demofusion`` schedule with the model's
    :func:`timestep_progress` when it has one (else ``i / n``)."""
    progress = timestep_progress(model, sigmas) if opts.blending_schedule == "demofusion" else None
    return mixing_weights(len(sigmas) - 1, opts, progress)
