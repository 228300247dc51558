"""Blending schedules: the weight ``c1`` of the running latent at each step.

docs/algorithm.md A2 (the reference's ``cosine``, ``linear`` and ``logistic``) and B2
(``demofusion``). ``c1`` rises from 0 towards 1; ``1 - c1`` is the share of the
noised latent ``z'``. The reference computes in float32 with integer step
indices, and so do we, expression for expression, so that its numbers come out
bit for bit.
"""

from __future__ import annotations

from typing import Optional

import torch

from ._checks import check_choice, check_int, check_number

BLENDING_SCHEDULES = ("cosine", "linear", "logistic", "demofusion")


def pct_to_step(pct: Optional[float], steps: int, default: int) -> int:
    """A2's percent-to-step conversion, in Python floats: ``int(pct * steps)``."""
    return default if pct is None else int(pct * steps)


def cosine_schedule(t: torch.Tensor, stop: int, alpha_1: float) -> torch.Tensor:
    """A2 cosine: ``(0.5 (1 + cos(pi (T - t) / T))) ** alpha_1`` with ``T = stop``; 1 past T."""
    c1 = (0.5 * (1 + torch.cos(torch.pi * (stop - t) / stop))) ** alpha_1
    return torch.where(t > stop, torch.tensor(1.0), c1)


def linear_schedule(t: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """A2 linear: ``t / T`` with ``T = stop``; 1 past T, 0 before ``start``."""
    c1 = t / stop
    c1 = torch.where(t > stop, torch.tensor(1.0), c1)
    return torch.where(t < start, torch.tensor(0.0), c1)


def logistic_schedule(t: torch.Tensor, start: int, stop: int, alpha_1: float) -> torch.Tensor:
    """A2 logistic: ``1 / (1 + exp(-5 alpha_1 (u - mid)))`` with ``u = t / m``, ``m = n - 1``,
    ``mid = (stop + start) / 2 / m``; 1 for ``u > stop / m``, 0 for ``u < start / m``."""
    m = torch.max(t)
    k = alpha_1 * 5
    mid = ((stop + start) / 2) / m
    u = t.float() / m
    c1 = 1 / (1 + torch.exp(-k * (u - mid)))
    c1 = torch.where(u > stop / m, torch.tensor(1.0), c1)
    return torch.where(u < start / m, torch.tensor(0.0), c1)


def demofusion_schedule(progress: torch.Tensor, alpha_1: float) -> torch.Tensor:
    """B2: DemoFusion gives the noised latent ``((1 + cos(pi p)) / 2) ** alpha_1``
    (its ``cosine_scale_1``), so the running latent's weight is one minus that."""
    return 1 - (0.5 * (1 + torch.cos(torch.pi * progress))) ** alpha_1


def blending_schedule(
    steps: int,
    schedule: str = "cosine",
    *,
    alpha_1: float = 2.4,
    start_blending_at_pct: Optional[float] = 0.0,
    stop_blending_at_pct: Optional[float] = 1.0,
    clamp_blending_at_pct: Optional[float] = 1.0,
    blend_min: float = 0.0,
    blend_max: float = 1.0,
    progress: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The blending weights ``c1`` (float32, length ``steps``) of docs/algorithm.md A2 / B2.

    With ``t = 0..steps-1``, ``start = int(start_pct * steps)``, ``stop = int(stop_pct * steps)``
    (a None percentage means 0 for start and ``steps`` for stop and clamp):

    - ``cosine``: ``c1[t] = (0.5 (1 + cos(pi (stop - t) / stop))) ** alpha_1``, 1 for ``t > stop``
      (``start`` is ignored, as in the reference);
    - ``linear``: ``c1[t] = t / stop``, 1 for ``t > stop``, 0 for ``t < start``;
    - ``logistic``: ``1 / (1 + exp(-5 alpha_1 (t/m - mid)))``, ``m = steps - 1``,
      ``mid = (stop + start) / 2 / m``, 1 beyond stop, 0 before start;
    - ``demofusion`` (B2): ``c1 = 1 - ((1 + cos(pi p)) / 2) ** alpha_1`` with ``p = t / stop``
      (1 for ``t > stop``), or ``p = progress[t]`` when a progress tensor is given (the samplers
      pass DemoFusion's timestep progress ``(T - t) / T`` for discrete models).

    Then ``c1[int(clamp_pct * steps):] = 1`` and ``c1 = lerp(blend_min, blend_max, c1)``.
    """
    check_int("steps", steps, low=1)
    check_choice("blending_schedule", schedule, BLENDING_SCHEDULES)
    check_number("alpha_1", alpha_1, low=0.0)
    for name, value in (("start_blending_at_pct", start_blending_at_pct),
                        ("stop_blending_at_pct", stop_blending_at_pct),
                        ("clamp_blending_at_pct", clamp_blending_at_pct)):
        if value is not None:
            check_number(name, value, low=0.0)
    check_number("blend_min", blend_min, low=0.0, high=1.0)
    check_number("blend_max", blend_max, low=0.0, high=1.0)

    start = pct_to_step(start_blending_at_pct, steps, 0)
    stop = pct_to_step(stop_blending_at_pct, steps, steps)
    if stop < 1 and not (schedule == "demofusion" and progress is not None):
        raise ValueError(
            f"stop_blending_at_pct={stop_blending_at_pct} leaves zero blending steps out of {steps}: "
            f"int(stop_blending_at_pct * steps) must be >= 1")
    t = torch.arange(steps)
    if schedule == "cosine":
        c1 = cosine_schedule(t, stop, alpha_1)
    elif schedule == "linear":
        c1 = linear_schedule(t, start, stop)
    elif schedule == "logistic":
        if steps < 2:
            raise ValueError("the logistic blending_schedule needs steps >= 2 (it divides by steps - 1)")
        c1 = logistic_schedule(t, start, stop, alpha_1)
    else:
        if progress is None:
            c1 = demofusion_schedule(t / stop, alpha_1)
            c1 = torch.where(t > stop, torch.tensor(1.0), c1)
        else:
            progress = torch.as_tensor(progress, dtype=torch.float32).cpu()
            if progress.shape != (steps,):
                raise ValueError(f"progress must have shape ({steps},), got {tuple(progress.shape)}")
            c1 = demofusion_schedule(progress, alpha_1)
    c1 = c1.to(torch.float32)
    if clamp_blending_at_pct is not None:
        c1[pct_to_step(clamp_blending_at_pct, steps, steps):] = 1.0
    return torch.lerp(torch.full_like(c1, blend_min), torch.full_like(c1, blend_max), c1)
