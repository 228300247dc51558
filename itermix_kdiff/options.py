"""The mixing options shared by every itermix sampler, validated once at the entry point.

:func:`make_options` checks the keyword arguments a sampler was given and returns
an :class:`ItermixOptions`; the sampling loops then read it without re-checking.
The tensor-valued options (masks) are checked against ``x`` and the sigmas by
:func:`itermix_kdiff.sampling.prepare_run`, which knows their shapes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, Optional

import torch

from ._checks import check_choice, check_int, check_number
from .blending import BLENDING_FUNCTIONS
from .noised import NOISE_KINDS
from .blending_schedules import BLENDING_SCHEDULES

MIX_MODES = ("after_step", "before_step")


@dataclasses.dataclass(frozen=True)
class ItermixOptions:
    """Every mixing option with its default (docs/algorithm.md section in brackets).

    generator: torch.Generator for the noised latents (None: the global RNG, as the reference) [A1]
    noise: "independent" (a new eps per step, A1) or "shared" (one eps, B2)
    lazy: compute each noised latent on demand instead of holding all n+1 (B1)
    alpha_1, blending_schedule, start/stop/clamp_blending_at_pct, blend_min, blend_max: c1 [A2, B2]
    blending_function: "addition", "slerp" or "norm_only" [A3]
    schedule_steps, schedule_offset: take c1 over schedule_steps steps and use
        c1[schedule_offset : schedule_offset + n], so a run split over two calls keeps one curve
    normalize_on_mean: deprecated reference option [A6]
    rewind, rewind_min, rewind_max: re-noise and run again from later steps [A5]
    denoise_mask (1 = repaint, 0 = keep), denoise_mask_fn(sigma, mask) -> mask [A4]
    mixing_masks: per-step masks, 1 where the noised latent may be mixed in [B3]
    mix: "after_step" (the reference, A4) or "before_step" (DemoFusion, B2)
    s_churn, s_tmin, s_tmax, s_noise: Karras churn, as k-diffusion's sample_euler [A4]
    """

    generator: Optional[torch.Generator] = None
    noise: str = "independent"
    lazy: bool = False
    alpha_1: float = 2.4
    blending_schedule: str = "cosine"
    blending_function: str = "addition"
    start_blending_at_pct: Optional[float] = 0.0
    stop_blending_at_pct: Optional[float] = 1.0
    clamp_blending_at_pct: Optional[float] = 1.0
    blend_min: float = 0.0
    blend_max: float = 1.0
    schedule_steps: Optional[int] = None
    schedule_offset: int = 0
    normalize_on_mean: bool = False
    rewind: bool = False
    rewind_min: float = 0.5
    rewind_max: float = 0.8
    denoise_mask: Optional[torch.Tensor] = None
    denoise_mask_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None
    mixing_masks: Optional[torch.Tensor] = None
    mix: str = "after_step"
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = float("inf")
    s_noise: float = 1.0

    @property
    def blend(self) -> Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]:
        return BLENDING_FUNCTIONS[self.blending_function]


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(ItermixOptions))

#: DemoFusion's own skip residual (B2): one shared noise, mixing before the model call
#: at the matching noise level, its cosine schedule with ``cosine_scale_1 = 3``.
DEMOFUSION: Dict[str, Any] = {
    "noise": "shared",
    "mix": "before_step",
    "blending_schedule": "demofusion",
    "alpha_1": 3.0,
}

PRESETS: Dict[str, Dict[str, Any]] = {
    "reference": {},
    "demofusion": DEMOFUSION,
}


def make_options(**kwargs: Any) -> ItermixOptions:
    """Validate sampler keyword arguments into an :class:`ItermixOptions`.

    Unknown names raise TypeError; bad values raise ValueError/TypeError naming the
    argument and what it accepts.
    """
    unknown = sorted(set(kwargs) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(f"unknown itermix option(s) {', '.join(unknown)}; accepted: {', '.join(OPTION_NAMES)}")
    opts = ItermixOptions(**kwargs)

    check_choice("noise", opts.noise, NOISE_KINDS)
    check_choice("blending_schedule", opts.blending_schedule, BLENDING_SCHEDULES)
    check_choice("blending_function", opts.blending_function, tuple(BLENDING_FUNCTIONS))
    check_choice("mix", opts.mix, MIX_MODES)
    if opts.generator is not None and not isinstance(opts.generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(opts.generator).__name__}")
    for name in ("lazy", "normalize_on_mean", "rewind"):
        if not isinstance(getattr(opts, name), bool):
            raise TypeError(f"{name} must be True or False, got {getattr(opts, name)!r}")
    check_number("alpha_1", opts.alpha_1, low=0.0)
    for name in ("start_blending_at_pct", "stop_blending_at_pct", "clamp_blending_at_pct"):
        if getattr(opts, name) is not None:
            check_number(name, getattr(opts, name), low=0.0)
    check_number("blend_min", opts.blend_min, low=0.0, high=1.0)
    check_number("blend_max", opts.blend_max, low=0.0, high=1.0)
    if opts.schedule_steps is not None:
        check_int("schedule_steps", opts.schedule_steps, low=1)
    check_int("schedule_offset", opts.schedule_offset, low=0)
    check_number("rewind_min", opts.rewind_min, low=0.0, high=1.0)
    check_number("rewind_max", opts.rewind_max, low=0.0, high=1.0)
    if opts.rewind and opts.rewind_min >= opts.rewind_max:
        raise ValueError(f"rewind_min must be < rewind_max, got {opts.rewind_min} >= {opts.rewind_max}")
    check_number("s_churn", opts.s_churn, low=0.0)
    check_number("s_noise", opts.s_noise, low=0.0)
    for name in ("s_tmin", "s_tmax"):
        value = getattr(opts, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise TypeError(f"{name} must be a number, got {value!r}")
    if opts.denoise_mask is not None and not isinstance(opts.denoise_mask, torch.Tensor):
        raise TypeError(f"denoise_mask must be a tensor or None, got {type(opts.denoise_mask).__name__}")
    if opts.denoise_mask_fn is not None:
        if not callable(opts.denoise_mask_fn):
            raise TypeError("denoise_mask_fn must be callable as fn(sigma, mask) -> mask")
        if opts.denoise_mask is None:
            raise ValueError("denoise_mask_fn needs a denoise_mask to act on")
    if opts.mixing_masks is not None and not isinstance(opts.mixing_masks, torch.Tensor):
        raise TypeError(f"mixing_masks must be a tensor or None, got {type(opts.mixing_masks).__name__}")
    return opts
