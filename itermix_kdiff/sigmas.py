"""Sigma schedules by the names ComfyUI and the webuis use.

The reference pack's ``IterativeMixingScheduler`` and ``IterativeMixingSchedulerAdvanced``
nodes turn (model, scheduler name, steps, denoise) into the sigmas fed to the mixing
sampler (the reference's README). :func:`get_sigmas` and :func:`get_sigmas_advanced` do the same for
k-diffusion models, giving the sigmas ComfyUI gives for the same model and name (and
AUTOMATIC1111's where the two agree; each schedule's docstring says where they do not).
:func:`blending_args_for_split` keeps the blending curve (docs/algorithm.md A2) of a run split
across two samplers aligned with the unsplit run.

``model`` may be

- a discrete k-diffusion wrapper: anything with a 1-D ``sigmas`` table (rising, as
  ``k_diffusion.external.DiscreteSchedule`` keeps it) and ``sigma_to_t``/``t_to_sigma``,
  such as ``CompVisDenoiser``, ``DiscreteEpsDDPMDenoiser`` or the webuis' wrappers. Its
  sigma range is ``(sigmas[0], sigmas[-1])``. Every schedule works;
- a continuous model (such as ``k_diffusion.layers.Denoiser``): give ``sigma_min`` and
  ``sigma_max``, or a k-diffusion ``config`` (its ``"model"`` section holds them), unless the
  model has ``sigma_min``/``sigma_max`` attributes. Only the schedules that need no table work;
- a plain ``(sigma_min, sigma_max)`` pair, with the same schedules as a continuous model.

Explicit ``sigma_min``/``sigma_max`` override the model's range for every schedule that uses
a range, as the webui's sigma settings do.

Where a schedule needs timesteps (``normal``, ``sgm_uniform``), the discrete model's own
``sigma_to_t`` maps the range ends to (fractional) table indices, ``t_max = sigma_to_t(sigma_max)``
(999 for SD) and ``t_min = sigma_to_t(sigma_min)`` (0), and its ``t_to_sigma`` maps the spaced
timesteps back, interpolating ``log sigma`` linearly between table entries, exactly as ComfyUI's
``model_sampling.timestep``/``sigma`` and A1111's ``sigma_to_t``/``t_to_sigma`` do. A wrapper
built with ``quantize=True`` rounds in ``sigma_to_t``; the range ends are table entries, so
this changes nothing.

Everything is computed in float32 and returned as a float32 tensor on ``device`` (CPU by
default, as ComfyUI and ``k_diffusion.sampling.get_sigmas_*`` return them).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Optional, Tuple, Union

import torch

from ._checks import check_choice, check_int, check_number
from .blending_schedules import BLENDING_SCHEDULES, pct_to_step
from .options import ItermixOptions

SigmaRange = Tuple[Optional[float], Optional[float]]


def check_sigmas(sigmas) -> None:
    """A sampling schedule: a 1-D floating-point tensor of n + 1 >= 2 finite sigmas, strictly
    decreasing, so 0 only at the end (a repeated sigma is a step of length 0: k-diffusion's
    DPM-Solver++ divides by it, and a 0 before the end makes every ``to_d`` divide by 0)."""
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or len(sigmas) < 2 or not sigmas.is_floating_point():
        raise ValueError("sigmas must be a 1-D floating-point tensor of at least 2 values (n + 1 for n steps)")
    if not torch.isfinite(sigmas).all() or (sigmas < 0).any():
        raise ValueError("sigmas must be finite and >= 0")
    repeats = (sigmas[1:] >= sigmas[:-1]).nonzero()
    if len(repeats):
        i = int(repeats[0])
        raise ValueError(f"sigmas must be strictly decreasing, 0 only at the end: sigmas[{i}] = "
                         f"{sigmas[i].item():g}, sigmas[{i + 1}] = {sigmas[i + 1].item():g}")


# ---------------------------------------------------------------- model access

def _table(model, scheduler: str) -> torch.Tensor:
    """The discrete model's rising sigma table, or a ValueError naming what works instead."""
    sigmas = getattr(model, "sigmas", None)
    if isinstance(sigmas, torch.Tensor) and sigmas.ndim == 1 and len(sigmas) >= 2:
        return sigmas
    raise ValueError(
        f"scheduler {scheduler!r} needs a discrete model: one with a 1-D `sigmas` table and "
        f"sigma_to_t/t_to_sigma, such as k_diffusion.external.CompVisDenoiser; got "
        f"{type(model).__name__}. Continuous models and (sigma_min, sigma_max) pairs work with: "
        f"{', '.join(RANGE_SCHEDULERS)}")


def _timestep_maps(model, scheduler: str) -> Tuple[Callable, Callable]:
    """The discrete model's ``sigma_to_t`` and ``t_to_sigma``."""
    to_t = getattr(model, "sigma_to_t", None)
    to_sigma = getattr(model, "t_to_sigma", None)
    if not (callable(to_t) and callable(to_sigma)):
        raise ValueError(
            f"scheduler {scheduler!r} needs the model's sigma_to_t and t_to_sigma "
            f"(a k-diffusion discrete wrapper); {type(model).__name__} lacks them")
    return to_t, to_sigma


def _as_float(name: str, value) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _is_pair(model) -> bool:
    return (isinstance(model, (tuple, list)) and len(model) == 2
            and all(isinstance(v, (int, float, torch.Tensor)) and not isinstance(v, bool)
                    for v in model))


def sigma_range(model, sigma_min=None, sigma_max=None,
                config: Optional[Mapping] = None) -> SigmaRange:
    """``(sigma_min, sigma_max)`` for ``model`` as Python floats, None where unknown.

    Each end comes from the first of: the explicit argument; a ``(sigma_min, sigma_max)`` pair
    passed as ``model``; ``config`` (a k-diffusion config, or its ``"model"`` section);
    the model's ``sigma_min``/``sigma_max`` attributes; a discrete table's ``sigmas[0]`` and
    ``sigmas[-1]``.
    """
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping (a k-diffusion config), got {type(config).__name__}")
    section = config.get("model", config) if config is not None else {}
    ends = []
    for name, explicit in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if explicit is not None:
            value = explicit
        elif _is_pair(model):
            value = model[0] if name == "sigma_min" else model[1]
        elif name in section:
            value = section[name]
        else:
            value = getattr(model, name, None)
            table = getattr(model, "sigmas", None)
            if value is None and isinstance(table, torch.Tensor) and table.ndim == 1 and len(table) >= 2:
                value = table[0] if name == "sigma_min" else table[-1]
        ends.append(None if value is None else _as_float(name, value))
    if ends[0] is not None and ends[1] is not None and not ends[0] < ends[1]:
        raise ValueError(f"sigma_min must be < sigma_max, got sigma_min={ends[0]}, sigma_max={ends[1]}")
    return ends[0], ends[1]


def _need_range(scheduler: str, sigma_min: Optional[float], sigma_max: Optional[float],
                need_min: bool = True) -> None:
    if sigma_max is None or (need_min and sigma_min is None):
        raise ValueError(
            f"scheduler {scheduler!r} needs the model's sigma range: pass sigma_min and sigma_max "
            f"(or a k-diffusion config), a (sigma_min, sigma_max) pair as the model, or a discrete "
            f"wrapper with a `sigmas` table")


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


# ---------------------------------------------------------------- schedules
# Each takes (model, steps, sigma_min, sigma_max), with the range already resolved by
# sigma_range (None where unknown), and returns float32 sigmas on the CPU.

def normal(model, steps: int, sigma_min, sigma_max, sgm: bool = False) -> torch.Tensor:
    """Timesteps spaced evenly from ``t_max = sigma_to_t(sigma_max)`` to
    ``t_min = sigma_to_t(sigma_min)`` (``steps`` of them, both ends included), mapped back
    with ``t_to_sigma``, then 0. For SD and the default range this is
    ``DiscreteSchedule.get_sigmas(steps)`` (A1111's "Uniform", which equals its "Normal").

    ComfyUI only: where ``t_to_sigma(t_min)`` is within 1e-5 of 0 it spaces ``steps + 1``
    timesteps and appends no 0 (A1111 always appends the 0).
    """
    table = _table(model, "sgm_uniform" if sgm else "normal")
    to_t, to_sigma = _timestep_maps(model, "sgm_uniform" if sgm else "normal")
    lo = table[0] if sigma_min is None else torch.tensor(sigma_min, dtype=table.dtype, device=table.device)
    hi = table[-1] if sigma_max is None else torch.tensor(sigma_max, dtype=table.dtype, device=table.device)
    t_max, t_min = float(to_t(hi)), float(to_t(lo))
    if sgm:
        t = torch.linspace(t_max, t_min, steps + 1, device=table.device)[:-1]
        return _append_zero(to_sigma(t).float().cpu())
    t_end = torch.tensor([t_min], device=table.device)
    if math.isclose(float(to_sigma(t_end)[0]), 0.0, abs_tol=1e-5):
        return to_sigma(torch.linspace(t_max, t_min, steps + 1, device=table.device)).float().cpu()
    t = torch.linspace(t_max, t_min, steps, device=table.device)
    return _append_zero(to_sigma(t).float().cpu())


def sgm_uniform(model, steps: int, sigma_min, sigma_max) -> torch.Tensor:
    """Like ``normal`` but ``steps + 1`` timesteps from ``t_max`` to ``t_min`` with the last
    one dropped, then 0 (the SGM/SDXL "trailing" spacing). Same in ComfyUI and A1111."""
    return normal(model, steps, sigma_min, sigma_max, sgm=True)


def simple(model, steps: int, sigma_min, sigma_max) -> torch.Tensor:
    """Every ``L/steps``-th table entry from the top: ``sigma[i] = table[L - 1 - int(i L / steps)]``
    for ``i = 0..steps-1`` (``L = len(table)``, the stride a float), then 0.
    Same in ComfyUI and A1111."""
    table = _table(model, "simple").float().cpu()
    stride = len(table) / steps
    picked = [float(table[-(1 + int(i * stride))]) for i in range(steps)]
    return torch.tensor(picked + [0.0], dtype=torch.float32)


def ddim_uniform(model, steps: int, sigma_min, sigma_max) -> torch.Tensor:
    """Table entries ``1, 1 + s, 1 + 2s, ...`` below ``L`` with ``s = max(L // steps, 1)``,
    highest first, then 0 (A1111 calls it "DDIM").

    The length follows ComfyUI, not ``steps``: there are ``ceil((L - 1) / s)`` entries, which
    can exceed ``steps`` (for SD, 30 steps give ``s = 33`` and 31 sigmas before the 0).
    ComfyUI only: where ``table[1]`` is within 1e-5 of 0 it uses ``steps + 1`` for ``s`` and
    appends no 0.
    """
    table = _table(model, "ddim_uniform").float().cpu()
    zero_end = math.isclose(float(table[1]), 0.0, abs_tol=1e-5)
    stride = max(len(table) // (steps + 1 if zero_end else steps), 1)
    picked = [float(table[k]) for k in range(1, len(table), stride)]
    tail = [] if zero_end else [0.0]
    return torch.tensor(picked[::-1] + tail, dtype=torch.float32)


def beta(model, steps: int, sigma_min, sigma_max, a: float = 0.6, b: float = 0.6) -> torch.Tensor:
    """"Beta Sampling is All You Need" (arXiv:2407.12173) as ComfyUI does it: with
    ``T = len(table) - 1`` and ``q_i = 1 - i/steps`` (``i = 0..steps-1``, numpy's
    ``linspace(0, 1, steps, endpoint=False)``), timestep ``t_i = rint(T * F^-1(q_i))``, where
    F^-1 is scipy's Beta(a, b) quantile function, a = b = 0.6, and rint rounds half to even
    (which matters: for even ``steps``, ``q = 1/2`` gives ``F^-1 = 1/2`` and ``T/2 = 499.5`` for
    SD, so 500). ``sigma_i = table[t_i]``; a timestep equal to the previous one is skipped (so
    very many steps give fewer sigmas); then 0.

    Needs scipy, imported here only; k-diffusion depends on it, so a k-diffusion install has it.

    A1111's "Beta" differs: ``sigma_i = sigma_min + F^-1(q_i) (sigma_max - sigma_min)``, linear
    in sigma rather than a table look-up, with ``q_i = 1 - i/(steps - 1)`` reaching 0 (so its
    last sigma before the 0 is ``sigma_min``), and no skipping. We follow ComfyUI.
    """
    table = _table(model, "beta").float().cpu()
    try:
        import numpy as np
        from scipy import stats
    except ImportError as error:
        raise ImportError("scheduler 'beta' needs scipy (k-diffusion depends on it)") from error
    q = 1 - np.linspace(0, 1, steps, endpoint=False)
    timesteps = np.rint(stats.beta.ppf(q, a, b) * (len(table) - 1))
    picked, previous = [], None
    for t in timesteps:
        if t != previous:
            picked.append(float(table[int(t)]))
        previous = t
    return torch.tensor(picked + [0.0], dtype=torch.float32)


def linear_quadratic(model, steps: int, sigma_min, sigma_max,
                     threshold_noise: float = 0.025) -> torch.Tensor:
    """Mochi's schedule (ComfyUI only), in units of ``sigma_max``: with ``k = steps // 2``
    linear steps, ``u_i = i * threshold_noise / k`` for ``i < k``, then the quadratic
    ``u_i = q i^2 + l i + c`` for ``k <= i < steps`` that continues it and reaches 1 at
    ``i = steps``, where ``d = k - threshold_noise * steps``, ``q = d / (k (steps - k)^2)``,
    ``l = threshold_noise / k - 2 d / (steps - k)^2``, ``c = q k^2``;
    ``sigma_i = (1 - u_i) * sigma_max``, ending in 0. One step gives ``[sigma_max, 0]``.
    """
    _need_range("linear_quadratic", sigma_min, sigma_max, need_min=False)
    if steps == 1:
        fractions = [1.0, 0.0]
    else:
        k = steps // 2
        d = k - threshold_noise * steps
        q = d / (k * (steps - k) ** 2)
        lin = threshold_noise / k - 2 * d / (steps - k) ** 2
        c = q * k ** 2
        u = [i * threshold_noise / k for i in range(k)]
        u += [q * i ** 2 + lin * i + c for i in range(k, steps)]
        fractions = [1.0 - v for v in u + [1.0]]
    return torch.tensor(fractions, dtype=torch.float32) * sigma_max


def kl_optimal(model, steps: int, sigma_min, sigma_max) -> torch.Tensor:
    """The KL-optimal schedule (A1111 pull request 15608): with ``w_i = i / (steps - 1)``,
    ``sigma_i = tan(w_i atan(sigma_min) + (1 - w_i) atan(sigma_max))`` for ``i = 0..steps-1``
    (``sigma_max`` down to ``sigma_min``), then 0 — as ComfyUI does.

    A1111's "KL Optimal" uses ``w_i = i / steps`` for ``i = 0..steps``: ``steps + 1`` sigmas
    ending at ``sigma_min``, with no final 0. For one step ComfyUI divides 0 by 0 (NaN);
    we give ``[sigma_max, 0]``.
    """
    _need_range("kl_optimal", sigma_min, sigma_max)
    w = torch.arange(steps, dtype=torch.float32) / max(steps - 1, 1)
    sigmas = (w * math.atan(sigma_min) + (1 - w) * math.atan(sigma_max)).tan()
    return _append_zero(sigmas)


def karras(model, steps: int, sigma_min, sigma_max, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022): ``sigma_i = (max^(1/rho) + i/(steps-1) (min^(1/rho) - max^(1/rho)))^rho``,
    ``rho = 7``, then 0 (``k_diffusion.sampling.get_sigmas_karras``; same in ComfyUI and A1111,
    whose settings can change rho and the range)."""
    _need_range("karras", sigma_min, sigma_max)
    ramp = torch.linspace(0, 1, steps)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    return _append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def _need_positive_min(scheduler: str, sigma_min: float) -> None:
    if sigma_min <= 0:
        raise ValueError(f"scheduler {scheduler!r} takes log(sigma_min): sigma_min must be > 0, got {sigma_min}")


def exponential(model, steps: int, sigma_min, sigma_max) -> torch.Tensor:
    """Evenly spaced in log sigma: ``exp(linspace(log sigma_max, log sigma_min, steps))``, then 0
    (``k_diffusion.sampling.get_sigmas_exponential``; same in ComfyUI and A1111)."""
    _need_range("exponential", sigma_min, sigma_max)
    _need_positive_min("exponential", sigma_min)
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps).exp())


def polyexponential(model, steps: int, sigma_min, sigma_max, rho: float = 1.0) -> torch.Tensor:
    """A polynomial in log sigma: ``r_i = (1 - i/(steps-1))^rho``,
    ``sigma_i = exp(r_i (log sigma_max - log sigma_min) + log sigma_min)``, ``rho = 1``, then 0
    (``k_diffusion.sampling.get_sigmas_polyexponential``; A1111's "Polyexponential";
    ComfyUI has no scheduler of this name)."""
    _need_range("polyexponential", sigma_min, sigma_max)
    _need_positive_min("polyexponential", sigma_min)
    ramp = torch.linspace(1, 0, steps) ** rho
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def vp(model, steps: int, sigma_min, sigma_max, beta_d: float = 19.9, beta_min: float = 0.1,
       eps_s: float = 1e-3) -> torch.Tensor:
    """The continuous VP schedule: ``t = linspace(1, eps_s, steps)``,
    ``sigma = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)``, then 0
    (``k_diffusion.sampling.get_sigmas_vp``; neither webui offers it). It ignores the model's
    range: for the defaults it starts at about 152.2, above SD's 14.6."""
    t = torch.linspace(1, eps_s, steps)
    return _append_zero(torch.sqrt(torch.exp(beta_d * t ** 2 / 2 + beta_min * t) - 1))


SCHEDULERS: dict = {
    "normal": normal,
    "karras": karras,
    "exponential": exponential,
    "sgm_uniform": sgm_uniform,
    "simple": simple,
    "ddim_uniform": ddim_uniform,
    "beta": beta,
    "linear_quadratic": linear_quadratic,
    "kl_optimal": kl_optimal,
    "polyexponential": polyexponential,
    "vp": vp,
}
"""Scheduler name -> ``fn(model, steps, sigma_min, sigma_max) -> Tensor``."""

TABLE_SCHEDULERS = ("normal", "sgm_uniform", "simple", "ddim_uniform", "beta")
"""The schedules that need a discrete model's ``sigmas`` table."""

RANGE_SCHEDULERS = tuple(name for name in SCHEDULERS if name not in TABLE_SCHEDULERS)
"""The schedules that work with any model whose sigma range is known (``vp`` needs none)."""

ALIASES = {"uniform": "normal", "ddim": "ddim_uniform", "sgmuniform": "sgm_uniform"}
"""A1111's names for the same schedules. Names are also matched case-blind, with spaces as
underscores, so A1111's labels ("SGM Uniform", "KL Optimal", "DDIM") work too."""


def scheduler_name(scheduler: str) -> str:
    """The canonical name for ``scheduler`` (ComfyUI's spelling), or a ValueError."""
    if not isinstance(scheduler, str):
        raise TypeError(f"scheduler must be a str, got {type(scheduler).__name__}")
    name = scheduler.strip().lower().replace(" ", "_")
    name = ALIASES.get(name, name)
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)} "
                         f"(or {', '.join(ALIASES)}); got {scheduler!r}")
    return name


# ---------------------------------------------------------------- entry points

def get_sigmas(model, scheduler: str, steps: int, denoise: float = 1.0, *,
               sigma_min: Optional[float] = None, sigma_max: Optional[float] = None,
               config: Optional[Mapping] = None,
               device: Union[torch.device, str] = "cpu") -> torch.Tensor:
    """The sigmas of the reference's ``IterativeMixingScheduler`` node for a k-diffusion model.

    ``denoise > 0.9999``: ``SCHEDULERS[scheduler](steps)``. Otherwise the schedule for
    ``int(steps / denoise)`` steps, of which the last ``steps + 1`` sigmas are kept (so the run
    starts part-way down the full schedule). ``denoise == 0`` gives an empty tensor (ComfyUI's
    ``BasicScheduler`` does so; the reference node divides by zero). Every sampler here refuses
    it (``check_sigmas`` needs at least 2 values): it is kept for parity with ComfyUI, whose
    sampling skips a run with no sigmas, so a caller must do the same.

    Normally ``steps + 1`` sigmas ending in 0; ``ddim_uniform`` and ``beta`` follow ComfyUI's
    lengths (see their docstrings). A schedule with a repeated sigma, which the samplers refuse,
    is a ValueError naming ``steps`` (too many for the table or for float32) or ``sigma_min``
    (0 for a schedule that reaches it before the final 0, such as ``karras``).
    ``sigma_min``/``sigma_max``/``config``: see :func:`sigma_range`. Returns float32 on ``device``.
    """
    name = scheduler_name(scheduler)
    check_int("steps", steps, 1)
    if isinstance(denoise, bool) or not isinstance(denoise, (int, float)):
        raise TypeError(f"denoise must be a number in [0, 1], got {type(denoise).__name__}")
    if not 0.0 <= denoise <= 1.0:
        raise ValueError(f"denoise must be in [0, 1], got {denoise}")
    lo, hi = sigma_range(model, sigma_min, sigma_max, config)
    if denoise <= 0.0:
        return torch.zeros(0, dtype=torch.float32, device=device)
    if denoise > 0.9999:
        sigmas = SCHEDULERS[name](model, steps, lo, hi)
    else:
        sigmas = SCHEDULERS[name](model, int(steps / denoise), lo, hi)[-(steps + 1):]
    repeats = int((sigmas[1:] >= sigmas[:-1]).sum())
    if repeats:
        # ComfyUI keeps such schedules; every step of length 0 would divide by zero in our samplers
        if lo == 0 and bool((sigmas[:-1] == 0).any()):
            raise ValueError(f"scheduler {name!r} reaches sigma_min=0 before its final 0, a step of length 0: "
                             f"give sigma_min > 0 (fewer steps do not help)")
        why = ("its timestep table has too few distinct values for that many steps" if name in TABLE_SCHEDULERS
               else "float32 cannot tell that many sigmas apart in this range")
        raise ValueError(f"scheduler {name!r} gives {repeats} repeated sigma(s) for steps={steps} on this model "
                         f"({why}): use fewer steps")
    return sigmas.to(device=device, dtype=torch.float32)


def get_sigmas_advanced(model, scheduler: str, steps: int, start_at_step: int = 0,
                        end_at_step: int = 10000, denoise: float = 1.0, *,
                        sigma_min: Optional[float] = None, sigma_max: Optional[float] = None,
                        config: Optional[Mapping] = None,
                        device: Union[torch.device, str] = "cpu") -> torch.Tensor:
    """The sigmas of the reference's ``IterativeMixingSchedulerAdvanced`` node.

    ``s = get_sigmas(model, scheduler, steps, denoise)``; then ``s = s[:end_at_step + 1]`` when
    ``end_at_step < len(s) - 1``; then ``s = s[start_at_step:]`` when
    ``start_at_step < len(s) - 1``, else an empty tensor (a slice with no step in it). As
    with ``denoise=0`` in :func:`get_sigmas`, the samplers refuse that empty tensor; it is kept
    for parity with ComfyUI, so a caller skips the run instead.
    The sampler run on such a slice keeps the full run's blending curve with the keywords
    :func:`blending_args_for_split` returns.
    """
    check_int("start_at_step", start_at_step, 0)
    check_int("end_at_step", end_at_step, 0)
    sigmas = get_sigmas(model, scheduler, steps, denoise, sigma_min=sigma_min,
                        sigma_max=sigma_max, config=config, device=device)
    if end_at_step < len(sigmas) - 1:
        sigmas = sigmas[:end_at_step + 1]
    if start_at_step < len(sigmas) - 1:
        return sigmas[start_at_step:]
    return sigmas.new_zeros(0)


# ---------------------------------------------------------------- split runs

def _pct_for_step(target: int, steps: int) -> float:
    """A percentage ``p`` with ``int(p * steps) == target`` (A2's conversion), preferring a
    short decimal; float rounding rules out plain ``target / steps`` in some cases
    (``int(0.29 * 100) == 28``), so candidates are checked."""
    exact = target / steps
    for candidate in (round(exact, 2), round(exact, 4), round(exact, 6), exact,
                      (target + 0.5) / steps):
        if pct_to_step(candidate, steps, 0) == target:
            return candidate
    raise AssertionError("unreachable: (target + 0.5) / steps always converts back")


def blending_args_for_split(steps: int, start_at_step: int = 0, end_at_step: int = 10000, *,
                            blending_schedule: str = ItermixOptions.blending_schedule,
                            start_blending_at_pct: Optional[float] = ItermixOptions.start_blending_at_pct,
                            stop_blending_at_pct: Optional[float] = ItermixOptions.stop_blending_at_pct,
                            clamp_blending_at_pct: Optional[float] = ItermixOptions.clamp_blending_at_pct) -> dict:
    """Sampler keywords that give the steps ``start_at_step..`` of a run split with
    :func:`get_sigmas_advanced` the blending weights ``c1`` (docs/algorithm.md A2) of the unsplit
    ``steps``-step run, step for step.

    A2 converts the percentages with the run's own step count n (``stop = int(stop_pct * n)``
    and so on), so a slice of n' < steps steps given the full run's percentages squeezes the
    whole curve into the slice. Let ``e = min(end_at_step, steps)`` and ``n' = e - start_at_step``.

    - First slice (``start_at_step == 0``) with ``cosine``, ``linear`` or ``demofusion``: their
      c1 depends on ``t`` and the step indices ``start``/``stop`` only, so percentages ``p'`` with
      ``int(p' * n') == int(p * steps)`` reproduce the full run's ``c1[0:n']`` (the clamp only needs
      the same cut inside the slice; 1.0 when the full run's cut lies beyond it). Returns
      ``start_/stop_/clamp_blending_at_pct``; these are also what the reference node accepts.
    - A later slice (``start_at_step > 0``), or ``logistic`` (which scales by ``n - 1``): no
      percentages give a shifted curve, so this returns the original percentages with
      ``schedule_steps=steps, schedule_offset=start_at_step``: the sampler computes c1 over
      ``steps`` steps and uses ``c1[start_at_step : start_at_step + n']``.

    A None percentage means what it means in A2 (start 0, stop and clamp at the end).
    ``steps`` is the unsplit run's step count, ``len(get_sigmas(...)) - 1`` (for
    ``ddim_uniform`` and ``beta`` that can differ from the ``steps`` asked for).

    Worked example (the reference README's: 40 steps, split at step 20, cosine, stop 1.0, clamp 1.0):
    the full run has ``stop = int(1.0 * 40) = 40``. The first sampler gets
    ``sigmas[0:21]`` (20 steps); ``blending_args_for_split(40, 0, 20)`` gives
    ``stop_blending_at_pct=2.0`` (``int(2.0 * 20) = 40``: the curve stretched to twice the slice,
    as the README asks), ``clamp_blending_at_pct=1.0``, ``start_blending_at_pct=0.0``. The second
    sampler gets ``sigmas[20:]``; ``blending_args_for_split(40, 20)`` gives the percentages
    unchanged plus ``schedule_steps=40, schedule_offset=20``, so its step 0 uses the full run's
    ``c1[20]`` (0.5 ** 2.4 for cosine) instead of restarting the curve at 0.
    """
    check_int("steps", steps, 1)
    check_int("start_at_step", start_at_step, 0)
    check_int("end_at_step", end_at_step, 0)
    check_choice("blending_schedule", blending_schedule, BLENDING_SCHEDULES)
    pcts = {"start_blending_at_pct": start_blending_at_pct,
            "stop_blending_at_pct": stop_blending_at_pct,
            "clamp_blending_at_pct": clamp_blending_at_pct}
    for name, value in pcts.items():
        if value is not None:
            check_number(name, value, low=0.0)
    end = min(end_at_step, steps)
    n = end - start_at_step
    if n < 1:
        raise ValueError(f"start_at_step={start_at_step} leaves no step before "
                         f"min(end_at_step, steps)={end}: get_sigmas_advanced returns no sigmas")
    if n == steps:
        return dict(pcts)
    if start_at_step > 0 or blending_schedule == "logistic":
        return dict(pcts, schedule_steps=steps, schedule_offset=start_at_step)

    start = pct_to_step(start_blending_at_pct, steps, 0)
    stop = pct_to_step(stop_blending_at_pct, steps, steps)
    out = {"start_blending_at_pct": _pct_for_step(start, n),
           "stop_blending_at_pct": _pct_for_step(stop, n)}
    if clamp_blending_at_pct is None:
        out["clamp_blending_at_pct"] = None
    else:
        clamp = pct_to_step(clamp_blending_at_pct, steps, steps)
        out["clamp_blending_at_pct"] = 1.0 if clamp >= n else _pct_for_step(clamp, n)
    return out
