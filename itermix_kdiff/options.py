"""The mixing options shared by every itermix sampler, checked once where they are made.

:class:`ItermixOptions` is the one place each option is named, typed, documented and given
its default; building one checks every value (``__post_init__``), so the sampling loops read
it without checking again. The tensor-valued options (masks) are checked against the latent
and the sigmas when a run starts, where their shapes can be compared. :func:`sampler_signature`
builds every sampler's signature from the fields, so ``inspect.signature`` and ``help()``
show the same keywords with the same defaults everywhere.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch

from ._checks import check_choice, check_int, check_number
from .blending import BLENDING_FUNCTIONS
from .blending_schedules import BLENDING_SCHEDULES
from .noised import NOISE_KINDS, Generators, check_generator

MIX_MODES = ("after_step", "before_step")


@dataclasses.dataclass(frozen=True)
class ItermixOptions:
    """Every mixing option with its default (docs/algorithm.md section in brackets).

    generator: torch.Generator for the noised latents and other noise (None: the global RNG, as
        the reference) [A1], or a list of them, one per batch row [B1]
    noise: "independent" (a new eps per step, A1) or "shared" (one eps, B2)
    lazy: compute each noised latent on demand instead of holding all n+1 (B1)
    alpha_1, blending_schedule, start/stop/clamp_blending_at_pct, blend_min, blend_max: c1 [A2, B2]
    blending_function: "addition", "slerp" or "norm_only" [A3]
    schedule_steps, schedule_offset: take c1 over schedule_steps steps and use
        c1[schedule_offset : schedule_offset + n], so a run split over two calls keeps one curve [B4]
    normalize_on_mean: deprecated reference option [A6]
    rewind, rewind_min, rewind_max: re-noise and run again from later steps [A5]
    denoise_mask (1 = repaint, 0 = keep), denoise_mask_fn(sigma, mask) -> mask [A4]
    mixing_masks: per-step masks, 1 where the noised latent may be mixed in [B3]
    mix: "after_step" (the reference, A4) or "before_step" (DemoFusion, B2)
    s_churn, s_tmin, s_tmax, s_noise: Karras churn, as k-diffusion's sample_euler [A4]

    Raises TypeError or ValueError naming the field and what it accepts.
    """

    generator: Generators = None
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

    def __post_init__(self) -> None:
        check_choice("noise", self.noise, NOISE_KINDS)
        check_choice("blending_schedule", self.blending_schedule, tuple(BLENDING_SCHEDULES))
        check_choice("blending_function", self.blending_function, tuple(BLENDING_FUNCTIONS))
        check_choice("mix", self.mix, MIX_MODES)
        check_generator(self.generator)
        for name in ("lazy", "normalize_on_mean", "rewind"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_number("alpha_1", self.alpha_1, low=0.0)
        for name in ("start_blending_at_pct", "stop_blending_at_pct", "clamp_blending_at_pct"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), low=0.0)
        check_number("blend_min", self.blend_min, low=0.0, high=1.0)
        check_number("blend_max", self.blend_max, low=0.0, high=1.0)
        if self.blend_min > self.blend_max:
            raise ValueError(f"blend_min must be <= blend_max (it would turn the curve upside down), "
                             f"got {self.blend_min} > {self.blend_max}")
        if (self.blending_schedule in ("linear", "logistic") and self.start_blending_at_pct is not None
                and self.start_blending_at_pct >= 1):
            raise ValueError(f"start_blending_at_pct must be < 1 with the {self.blending_schedule} schedule: "
                             f"{self.start_blending_at_pct} keeps c1 at 0 for every step, so no step would "
                             f"be sampled")
        if self.schedule_steps is not None:
            check_int("schedule_steps", self.schedule_steps, low=1)
        check_int("schedule_offset", self.schedule_offset, low=0)
        check_number("rewind_min", self.rewind_min, low=0.0, high=1.0)
        check_number("rewind_max", self.rewind_max, low=0.0, high=1.0)
        if self.rewind and self.rewind_min >= self.rewind_max:
            raise ValueError(f"rewind_min must be < rewind_max, got {self.rewind_min} >= {self.rewind_max}")
        check_number("s_churn", self.s_churn, low=0.0)
        check_number("s_noise", self.s_noise, low=0.0)
        for name in ("s_tmin", "s_tmax"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise TypeError(f"{name} must be a number, got {value!r}")
        if self.denoise_mask is not None and not isinstance(self.denoise_mask, torch.Tensor):
            raise TypeError(f"denoise_mask must be a tensor or None, got {type(self.denoise_mask).__name__}")
        if self.denoise_mask_fn is not None:
            if not callable(self.denoise_mask_fn):
                raise TypeError("denoise_mask_fn must be callable as fn(sigma, mask) -> mask")
            if self.denoise_mask is None:
                raise ValueError("denoise_mask_fn needs a denoise_mask to act on")
        if self.mixing_masks is not None and not isinstance(self.mixing_masks, torch.Tensor):
            raise TypeError(f"mixing_masks must be a tensor or None, got {type(self.mixing_masks).__name__}")

    @property
    def blend(self) -> Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]:
        return BLENDING_FUNCTIONS[self.blending_function]


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(ItermixOptions))

#: Karras churn (A4): options of the samplers that take a churned step, and also keywords of
#: the k-diffusion samplers that churn; the other samplers do not offer them.
CHURN_OPTIONS = ("s_churn", "s_tmin", "s_tmax", "s_noise")

#: The parameters every sampler takes before its keywords, k-diffusion's first, then ours.
CALL_PARAMETERS = ("model", "x", "sigmas", "extra_args", "callback", "disable", "noised_latents")

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


def apply_preset(preset: str, options: Dict[str, Any], chosen: Sequence[str] = ()) -> Dict[str, Any]:
    """The option keywords of a run with ``preset``: ``options``, then the preset's values over
    them, then the options named in ``chosen`` (those the user set on purpose) over the preset.
    A command line knows which flags were given and passes them all as ``chosen``; a UI that
    sends every field's value passes only the fields it can tell were set (ComfyUI's "preset"
    choices), so there the preset wins over the other fields' defaults."""
    check_choice("preset", preset, tuple(PRESETS))
    return {**options, **PRESETS[preset], **{name: options[name] for name in chosen if name in options}}


def make_options(**kwargs: Any) -> ItermixOptions:
    """:class:`ItermixOptions` from keyword arguments; an unknown name raises TypeError
    listing the accepted ones."""
    unknown = sorted(set(kwargs) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(f"unknown itermix option(s) {', '.join(unknown)}; accepted: {', '.join(OPTION_NAMES)}")
    return ItermixOptions(**kwargs)


def split_options(arguments: Dict[str, Any]) -> Tuple[ItermixOptions, Dict[str, Any]]:
    """A sampler's bound arguments as ``(options, the rest)``."""
    options = {name: arguments[name] for name in OPTION_NAMES if name in arguments}
    rest = {name: value for name, value in arguments.items() if name not in options}
    return ItermixOptions(**options), rest


def sampler_signature(own: Dict[str, Any], *, churn: Sequence[str], noise_sampler: bool = False,
                      seed: bool = False) -> inspect.Signature:
    """The signature every itermix sampler shows: k-diffusion's ``(model, x, sigmas,
    extra_args, callback, disable)``, then ``noised_latents`` (and ``noise_sampler`` where the
    sampler takes one), then keyword-only the :class:`ItermixOptions` fields with their
    defaults (of :data:`CHURN_OPTIONS` only those in ``churn``, the ones the sampler uses),
    ``seed`` (default None) with ``seed``, and the sampler's ``own`` keywords with theirs."""
    P = inspect.Parameter
    params = [P(name, P.POSITIONAL_OR_KEYWORD) for name in CALL_PARAMETERS[:3]]
    params += [P(name, P.POSITIONAL_OR_KEYWORD, default=None) for name in CALL_PARAMETERS[3:]]
    if noise_sampler:
        params.append(P("noise_sampler", P.POSITIONAL_OR_KEYWORD, default=None))
    params += [P(f.name, P.KEYWORD_ONLY, default=f.default) for f in dataclasses.fields(ItermixOptions)
               if f.name not in CHURN_OPTIONS or f.name in churn]
    if seed:
        params.append(P("seed", P.KEYWORD_ONLY, default=None))
    params += [P(name, P.KEYWORD_ONLY, default=value) for name, value in own.items()]
    return inspect.Signature(params, return_annotation=torch.Tensor)


def bind_arguments(signature: inspect.Signature, args: Sequence[Any], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """``signature.bind`` with defaults applied, as a plain dict; a wrong call raises TypeError."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)
