"""Iterative mixing around any k-diffusion sampler, the two-node flow, and the registry
of every itermix sampler (docs/algorithm.md A4, A5, A10, B2, B3).

:func:`make_itermix_sampler` turns ``k_diffusion.sampling.sample_heun`` (or any sampler
with the k-diffusion signature) into an iterative-mixing sampler: it runs the wrapped
sampler over one step, ``sigmas[i:i+2]``, at a time and mixes the noised latent in
between the steps. :func:`batch_unsample` and :func:`itermix_ksampler` are the reference's
deprecated "Batch Unsampler" and "Iterative Mixing KSampler (Advanced)" nodes as
functions. :data:`SAMPLERS` maps a name to every sampler function tools can offer.

Nothing here imports k-diffusion at import time: the wrapped registry entries look
their k-diffusion function up on the first call.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

import torch

from ._checks import check_choice, check_int, check_number
from ._loop import Step, Stepped, itermix_loop, prepare_run
from .noised import (NOISE_KINDS, Generators, NoisedLatents, Seeds, draw_base_seed, fresh_noise, randn_rows,
                     noised_latents as make_noised_latents)
from .options import (CALL_PARAMETERS, CHURN_OPTIONS, OPTION_NAMES, ItermixOptions, bind_arguments, make_options,
                      sampler_signature, split_options)
from .perlin import check_perlin_keywords
from .sampling import (churn_gamma, sample_itermix_dpmpp_2m, sample_itermix_euler, sample_itermix_euler_perlin,
                       sample_itermix_lcm)
from .sigmas import check_sigmas

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: The parameters of a k-diffusion sampler that the wrapper fills in itself.
KDIFFUSION_PARAMETERS = CALL_PARAMETERS[:6] + ("noise_sampler",)

#: k-diffusion samplers whose own default noise is a Brownian tree (their SDE solvers assume
#: noise that is consistent between nested intervals): wrapped, they get one tree per pass.
BROWNIAN_SAMPLERS = ("sample_dpmpp_sde", "sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde")

#: k-diffusion samplers whose step to sigma = 0 is ``x = denoised`` and which raise
#: UnboundLocalError when called on that one step alone (k-diffusion 0.1.1 and its master set
#: ``h`` only on steps to sigma > 0): the wrapper takes that step itself.
DENOISED_LAST_STEP = ("sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde")


class WrappedSampler(NamedTuple):
    """What the wrapper needs to know about a sampler function, read once from its signature."""

    fn: Callable[..., torch.Tensor]
    own: Dict[str, Any]  # the sampler's own keywords (eta, order, ...) with their defaults
    parameters: frozenset  # every parameter name of ``fn``
    brownian: bool  # default noise: a Brownian tree (True) or Gaussian draws (False)
    denoised_last_step: bool  # take the step to sigma = 0 as x = D(x, sigma) (DENOISED_LAST_STEP)


def sampler_keywords(sampler_fn: Callable[..., Any]) -> Dict[str, Any]:
    """The sampler's own keywords (all parameters after ``model, x`` except
    :data:`KDIFFUSION_PARAMETERS`) with their defaults (``inspect.Parameter.empty`` when required).

    Raises TypeError when ``sampler_fn`` has no ``sigmas`` parameter (``sample_dpm_fast``
    and ``sample_dpm_adaptive`` take ``sigma_min, sigma_max`` instead: they cannot be split
    into steps) or when one of its keywords has the name of an itermix option.
    """
    if not callable(sampler_fn):
        raise TypeError(f"sampler_fn must be a k-diffusion sampler function, got {type(sampler_fn).__name__}")
    params = inspect.signature(sampler_fn).parameters
    name = getattr(sampler_fn, "__name__", repr(sampler_fn))
    if "sigmas" not in params:
        raise TypeError(f"sampler_fn {name} has no 'sigmas' parameter; only samplers called as "
                        f"sampler_fn(model, x, sigmas, ...) can be run one step at a time")
    own = {}
    for p in list(params.values())[2:]:
        if p.name in KDIFFUSION_PARAMETERS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if (p.name in OPTION_NAMES and p.name not in CHURN_OPTIONS) or p.name in ("seed", "noised_latents"):
            raise TypeError(f"sampler_fn {name}'s keyword {p.name!r} clashes with the itermix option "
                            f"of that name; wrap a function that names it differently")
        own[p.name] = p.default
    return own


#: Ranges of the k-diffusion samplers' own keywords, checked where a wrapped sampler is called
#: (k-diffusion itself takes any value: ``eta=nan`` would silently mean full ancestral noise).
OWN_KEYWORD_RANGES: Dict[str, Tuple[Optional[float], Optional[float]]] = {
    "eta": (0.0, None),
    "s_noise": (0.0, None),
    "r": (1e-6, 1.0),
}

#: The accepted values of the k-diffusion samplers' own keywords that are names.
OWN_KEYWORD_CHOICES: Dict[str, Tuple[str, ...]] = {"solver_type": ("midpoint", "heun")}


def check_own_keywords(own: Dict[str, Any], values: Dict[str, Any]) -> None:
    """Check a wrapped sampler's own keywords: the known ones by :data:`OWN_KEYWORD_RANGES` /
    :data:`OWN_KEYWORD_CHOICES`, the others by the type of their default (a float default takes
    a finite number, an int an int, a bool True or False, a str a str). The function's own
    default always passes (ComfyUI's ``exp_heun_2_x0`` defaults ``solver_type`` to ``"phi_2"``,
    which k-diffusion's samplers do not know)."""
    for name, value in values.items():
        default = own.get(name, inspect.Parameter.empty)
        if type(value) is type(default) and value == default:
            continue
        if name in OWN_KEYWORD_CHOICES:
            check_choice(name, value, OWN_KEYWORD_CHOICES[name])
        elif name in OWN_KEYWORD_RANGES:
            check_number(name, value, *OWN_KEYWORD_RANGES[name])
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        elif isinstance(default, int):
            check_int(name, value, low=-2 ** 63)
        elif isinstance(default, float):
            check_number(name, value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {type(value).__name__}")


def wrapped_spec(sampler_fn: Callable[..., torch.Tensor], brownian_noise: Optional[bool]) -> WrappedSampler:
    """Read what the wrapper needs from ``sampler_fn``'s signature (see :func:`make_itermix_sampler`)."""
    own = sampler_keywords(sampler_fn)
    name = getattr(sampler_fn, "__name__", "")
    if brownian_noise is None:
        brownian_noise = name in BROWNIAN_SAMPLERS
    elif not isinstance(brownian_noise, bool):
        raise TypeError(f"brownian_noise must be True, False or None, got {brownian_noise!r}")
    params = frozenset(inspect.signature(sampler_fn).parameters)
    return WrappedSampler(sampler_fn, own, params, brownian_noise, name in DENOISED_LAST_STEP)


def itermix_signature(own: Dict[str, Any], takes_noise_sampler: bool,
                      defaults: Optional[Dict[str, Any]] = None) -> inspect.Signature:
    """The signature of a wrapped sampler: :func:`~itermix_kdiff.options.sampler_signature`
    with the churn options the wrapped sampler takes, ``noise_sampler`` and ``seed`` when it
    takes a noise sampler, its own keywords, and ``defaults`` in place of the defaults."""
    signature = sampler_signature({name: value for name, value in own.items() if name not in OPTION_NAMES},
                                  churn=[name for name in CHURN_OPTIONS if name in own],
                                  noise_sampler=takes_noise_sampler, seed=takes_noise_sampler)
    defaults = defaults or {}
    return signature.replace(parameters=[p.replace(default=defaults[p.name]) if p.name in defaults else p
                                         for p in signature.parameters.values()])


def itermix_name(sampler_fn: Callable[..., Any]) -> str:
    """``sample_heun`` -> ``sample_itermix_heun``; any other name gets an ``itermix_`` prefix."""
    name = getattr(sampler_fn, "__name__", "sampler")
    return "sample_itermix_" + name[len("sample_"):] if name.startswith("sample_") else "itermix_" + name


def make_itermix_sampler(sampler_fn: Callable[..., torch.Tensor], *, brownian_noise: Optional[bool] = None,
                         **defaults: Any) -> Callable[..., torch.Tensor]:
    """Wrap a k-diffusion sampler into an iterative-mixing sampler (A10, generalised).

    The result is called like ``sample_itermix_euler(model, x, sigmas, ...)``: ``x`` is the
    clean latent ``x0``; it starts from ``z'_0`` and for each step i runs::

        x_m, z_m = mask_before(x, z'_i)                        # A4, identity without a mask
        x_m = blend(z_m, x_m, c1[i])                           # only with mix="before_step" (B2)
        x   = sampler_fn(model, x_m, sigmas[i:i+2], ...)       # one step of the wrapped sampler
        x   = blend(z_m, x, c1[i])                             # only with mix="after_step" (A4)
        x   = mask_after(x)

    with the rewind passes of A5 and the mixing masks of B3. With ``sample_euler`` (and no
    churn) this is exactly :func:`~itermix_kdiff.sampling.sample_itermix_euler`. A step whose
    result the blend discards (``c1[i] == 0``, mixing after the step) is skipped.

    Keywords. The result takes, keyword-only: every :class:`~itermix_kdiff.options.ItermixOptions`
    field (one options object per call, checked where it is made), ``seed`` (when the wrapped
    sampler takes a ``noise_sampler``), and the wrapped sampler's own keywords (``eta``, ``r``,
    ``order``, ``solver_type``, ...), passed to it unchanged. The churn options ``s_churn,
    s_tmin, s_tmax, s_noise`` belong to both sets: they are offered only when the wrapped
    sampler takes them, and go to it (``s_churn`` divided by n, so each one-step call gets the
    whole run's churn ``min(s_churn / n, sqrt 2 - 1)``). ``defaults`` are defaults for any of these keywords
    (and for ``extra_args``, ``callback``, ``disable``); unknown names raise TypeError.

    Noise. A sampler with a ``noise_sampler`` parameter gets one that spans the whole run,
    unless the caller passes its own (then ``seed``, which seeds only the default, is refused
    with TypeError): for :data:`BROWNIAN_SAMPLERS` (or ``brownian_noise=True``)
    one ``BrownianTreeNoiseSampler`` over ``[min sigma > 0, max sigma]`` per pass, seeded
    ``seed + pass`` (``seed`` defaults to one number drawn from ``generator``, or the global
    RNG, after the first pass's noised latents); for the others Gaussian draws from a
    ``torch.Generator`` seeded ``seed``, or when ``seed`` is None from ``generator`` (the
    global RNG when None). Noise is never repeated between steps or passes. k-diffusion's
    churn noise (``sample_euler``, ``sample_heun`` and ``sample_dpm_2`` draw it at every step,
    churn or not) is drawn only on steps that churn (:func:`churn_noise`), from ``generator``
    when one is given, else from the global RNG: as in ``sample_itermix_euler``, a run without
    churn reads no RNG for it, and a run with a generator leaves the global RNG untouched.
    ``generator`` and ``seed`` may hold one generator or seed per batch row, so that each row
    follows its own.

    Multistep samplers (``sample_lms``, ``sample_dpmpp_2m``, ``sample_dpmpp_2m_sde``,
    ``sample_dpmpp_3m_sde``) lose their history at every step: k-diffusion keeps it in local
    variables and takes no argument to pass it in, so each one-step call is their
    first-order step (``lms`` becomes Euler, ``dpmpp_2m`` DPM-Solver++(1), ``dpmpp_2m_sde``
    and ``dpmpp_3m_sde`` the same first-order SDE step; ``order`` and ``solver_type``, which
    only shape the history terms, then change nothing). Use
    :func:`~itermix_kdiff.sampling.sample_itermix_dpmpp_2m`, which keeps it. The step to
    sigma = 0 of ``dpmpp_2m_sde`` and ``dpmpp_3m_sde`` is taken by the wrapper as their code
    defines it, ``x = D(x, sigma)``: k-diffusion raises UnboundLocalError on that step alone
    (:data:`DENOISED_LAST_STEP`).

    The result has a real ``inspect.signature`` (A1111 passes ``sigmas`` and ``eta`` only to
    functions that declare them), has a ``noise_sampler`` parameter only when ``sampler_fn``
    does, and reports callback ``i`` counted over the whole run. Differences from
    ``sample_itermix_euler`` with ``sample_euler``: with a denoise mask the wrapped step
    differentiates the masked latent (A4's Euler uses the un-masked one; the same for binary
    masks and ``addition``), and churn noise is added to the latent the step differentiates
    (A4 adds it to the model input only).
    """
    spec = wrapped_spec(sampler_fn, brownian_noise)
    signature = itermix_signature(spec.own, "noise_sampler" in spec.parameters, defaults)
    check_defaults(signature, defaults, spec.own)

    def sampler(*args: Any, **kwargs: Any) -> torch.Tensor:
        return run_wrapped(spec, bind_arguments(signature, args, kwargs))

    sampler.__signature__ = signature
    sampler.__name__ = sampler.__qualname__ = itermix_name(sampler_fn)
    sampler.__doc__ = (f"{getattr(sampler_fn, '__name__', 'sampler_fn')} run one step at a time with iterative "
                       f"mixing between the steps; see itermix_kdiff.make_itermix_sampler.")
    return sampler


def check_defaults(signature: inspect.Signature, defaults: Dict[str, Any], own: Dict[str, Any]) -> None:
    """Names must be keywords of the wrapped sampler; option values are checked now, by
    making the options they belong to, and the sampler's own keywords by their checks."""
    accepted = [name for name in signature.parameters if name not in ("model", "x", "sigmas")]
    unknown = sorted(set(defaults) - set(accepted))
    if unknown:
        raise TypeError(f"unknown default(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    make_options(**{name: value for name, value in defaults.items() if name in OPTION_NAMES})
    check_seed(defaults.get("seed"))
    check_own_keywords(own, {name: value for name, value in defaults.items()
                             if name in own and name not in OPTION_NAMES})


def run_wrapped(spec: WrappedSampler, arguments: Dict[str, Any],
                intermediates: Optional[List[Tuple[torch.Tensor, torch.Tensor]]] = None) -> torch.Tensor:
    """Split a wrapped sampler's bound arguments into the itermix options and the wrapped
    sampler's keywords, then run :func:`sample_segments`."""
    opts, arguments = split_options(arguments)
    seed = arguments.pop("seed", None)
    check_seed(seed)
    if seed is not None and arguments.get("noise_sampler") is not None:
        raise TypeError("give seed or noise_sampler, not both: seed seeds the default noise sampler, "
                        "which noise_sampler replaces")
    step_kwargs = {name: arguments.pop(name) for name in spec.own if name not in OPTION_NAMES}
    check_own_keywords(spec.own, step_kwargs)
    sigmas = arguments["sigmas"]
    for name in CHURN_OPTIONS:
        if name in spec.own:
            step_kwargs[name] = getattr(opts, name)
    if "s_churn" in spec.own and isinstance(sigmas, torch.Tensor) and len(sigmas) > 1:
        step_kwargs["s_churn"] = opts.s_churn / (len(sigmas) - 1)
    return sample_segments(spec, opts, step_kwargs=step_kwargs, seed=seed, intermediates=intermediates,
                           **arguments)


def check_seed(seed: Optional[Seeds]) -> None:
    """A wrapped sampler's ``seed``: None, an int >= 0, or a list of them (one per batch row)."""
    for s in seed if isinstance(seed, (list, tuple)) else [seed]:
        if s is not None:
            check_int("seed", s, low=0)


def wrapped_noise_sampler(x: torch.Tensor, sigmas: torch.Tensor, seed: Optional[Seeds], brownian: bool,
                          opts: ItermixOptions) -> NoiseSampler:
    """The default noise of a wrapped sampler (see :func:`make_itermix_sampler`); with one
    seed per batch row, one Brownian tree or Gaussian stream per row."""
    if isinstance(seed, (list, tuple)) and len(seed) != x.shape[0]:
        raise ValueError(f"seed holds {len(seed)} seeds for a batch of {x.shape[0]}: give one per batch row")
    if brownian:
        from k_diffusion.sampling import BrownianTreeNoiseSampler

        return BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=seed)
    if seed is None:
        return lambda sigma, sigma_next: fresh_noise(x, opts.generator)
    if isinstance(seed, (list, tuple)):
        rows = [torch.Generator(device=x.device).manual_seed(s) for s in seed]
        return lambda sigma, sigma_next: randn_rows(x.shape, rows, x.dtype, x.device)
    g = torch.Generator(device=x.device).manual_seed(seed)
    return lambda sigma, sigma_next: torch.randn(x.shape, generator=g, dtype=x.dtype, device=x.device)


class ChurnTorch:
    """``torch`` as a wrapped churn sampler's module sees it during one step: everything is
    torch's, but ``randn_like`` gives ``noise(x)``. k-diffusion's ``sample_euler``,
    ``sample_heun`` and ``sample_dpm_2`` call ``torch.randn_like`` at every step for their
    churn noise, used only when the step churns; left alone they would read (and advance)
    the global RNG whatever generator the caller gave, even on steps that do not churn."""

    def __init__(self, noise: Callable[[torch.Tensor], torch.Tensor]):
        self.noise = noise

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def randn_like(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.noise(x)


@contextlib.contextmanager
def churn_noise(fn: Callable[..., Any], gamma: float, generator: Generators) -> Iterator[None]:
    """For one call of a churn sampler ``fn``, its module's ``torch`` is a :class:`ChurnTorch`
    (as the webuis do for k-diffusion's samplers): without churn (``gamma == 0``) the unused
    noise is zeros and no RNG is touched; with churn it comes from ``generator`` when there is
    one, else (no change) from the global RNG, as in k-diffusion. Not safe for two threads
    sampling through the same module at once."""
    module = getattr(inspect.unwrap(fn), "__globals__", {})  # past decorators such as torch.no_grad
    if (gamma > 0 and generator is None) or module.get("torch") is not torch:
        yield
        return
    if gamma > 0:
        module["torch"] = ChurnTorch(lambda x: randn_rows(x.shape, generator, x.dtype, x.device))
    else:
        module["torch"] = ChurnTorch(torch.zeros_like)
    try:
        yield
    finally:
        module["torch"] = torch


def offset_seed(seed: Optional[Seeds], offset: int) -> Optional[Seeds]:
    """``seed + offset`` (each seed's, for one per row): a new Brownian tree for each pass."""
    if seed is None:
        return None
    return [s + offset for s in seed] if isinstance(seed, (list, tuple)) else seed + offset


@torch.no_grad()
def sample_segments(
    spec: WrappedSampler,
    opts: ItermixOptions,
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Optional[Dict[str, Any]] = None,
    callback: Optional[Callable[[Dict[str, Any]], Any]] = None,
    disable: Optional[bool] = None,
    noised_latents: Optional[NoisedLatents] = None,
    noise_sampler: Optional[NoiseSampler] = None,
    *,
    step_kwargs: Dict[str, Any],
    seed: Optional[Seeds] = None,
    intermediates: Optional[List[Tuple[torch.Tensor, torch.Tensor]]] = None,
) -> torch.Tensor:
    """The loop of :func:`make_itermix_sampler` (its docstring gives the formula): each step
    is one call of the wrapped sampler on ``sigmas[i:i+2]``. With ``intermediates`` (a list)
    no step is skipped and each step appends ``(sampler output, latent after mixing)``."""
    c1 = prepare_run(model, x, sigmas, noised_latents, opts)
    extra_args = {} if extra_args is None else extra_args
    n = len(sigmas) - 1
    x0 = x
    churn = "s_churn" in spec.own
    default_noise = "noise_sampler" in spec.parameters and noise_sampler is None
    call = {name: value for name, value in (("extra_args", extra_args), ("disable", True),
                                            ("noise_sampler", noise_sampler)) if name in spec.parameters}

    def step(s: Step) -> Optional[Stepped]:
        nonlocal seed
        if default_noise and s.i == s.start and (spec.brownian or s.pass_index == 0):
            # drawn after the pass's noised latents: a Brownian tree per pass, one Gaussian stream per run
            if spec.brownian:
                seed = draw_base_seed(opts.generator) if seed is None else seed
            call["noise_sampler"] = wrapped_noise_sampler(x0, sigmas, offset_seed(seed, s.pass_index),
                                                          spec.brownian, opts)
        gamma = churn_gamma(sigmas[s.i], n, opts) if churn else 0.0
        if s.discarded and gamma == 0:
            return None
        if spec.denoised_last_step and sigmas[s.i + 1] == 0:
            denoised = model(s.x_m, sigmas[s.i] * s.x_m.new_ones([s.x_m.shape[0]]), **extra_args)
            return Stepped(denoised, sigmas[s.i], denoised)
        reported = []
        if "callback" in spec.parameters:
            # some samplers (DPM-Solver, UniPC) report neither sigma_hat nor denoised
            call["callback"] = lambda info: reported.append(info) if {"sigma_hat", "denoised"} <= set(info) else None
        # k-diffusion's float32 sigmas promote a half latent: keep the caller's dtype
        with churn_noise(spec.fn, gamma, opts.generator) if churn else contextlib.nullcontext():
            stepped = spec.fn(model, s.x_m, sigmas[s.i:s.i + 2], **call, **step_kwargs).to(s.x_m.dtype)
        if not reported:
            return Stepped(stepped, sigmas[s.i], None)
        return Stepped(stepped, reported[-1]["sigma_hat"], reported[-1]["denoised"])

    return itermix_loop(step, x, sigmas, c1, callback, disable, noised_latents, opts, intermediates=intermediates)


def batch_unsample(x0: torch.Tensor, sigmas: torch.Tensor, *, noise: str = "independent",
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The reference's "Batch Unsampler" (A10): the noised latents ``z'_k = x0 + eps_k sigma_k``
    (A1) of a sampling schedule ``sigmas`` (falling), returned in RISING-noise order:
    ``out[j] = z'_{n-j}``, shape ``(n + 1, *x0.shape)``, so ``out[0] == x0`` when
    ``sigma_n == 0`` and ``out[-1]`` is the noisiest.

    With ``noise="independent"`` and no generator the noise is one global ``torch.randn``
    over the flipped schedule, k-major: for a batch of one, the reference node's random
    numbers for the same global seed. With a ``generator`` (or ``noise="shared"``) it is
    ``noised_latents(x0, sigmas, noise=noise, generator=generator).flip(0)``: the very
    latents a sampler given the same generator would draw.

    Fixed from the reference: the node divided its sigmas by the model's latent scale factor
    (0.18215 for SD 1.x), so its noise was about 5.5 times the schedule's; here ``sigmas``
    are used as given. The node's deprecated ``normalize`` option is not offered.
    """
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.ndim < 2:
        raise TypeError("x0 must be a floating-point latent tensor with a leading batch dimension (B, C, H, W)")
    check_sigmas(sigmas)
    if noise not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {', '.join(NOISE_KINDS)}; got {noise!r}")
    if noise == "independent" and generator is None:
        return make_noised_latents(x0, sigmas.flip(0))
    return make_noised_latents(x0, sigmas, noise=noise, generator=generator).flip(0)


#: Options :func:`itermix_ksampler` refuses: its noised latents are given (``noise``, ``lazy``),
#: a rewind would make new ones, and masks and ``normalize_on_mean`` need the clean latent.
KSAMPLER_REFUSED = ("noise", "lazy", "rewind", "rewind_min", "rewind_max", "denoise_mask",
                    "denoise_mask_fn", "normalize_on_mean")


def itermix_ksampler(
    sampler_fn: Callable[..., torch.Tensor],
    model: Callable[..., torch.Tensor],
    latent_batch: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Optional[Dict[str, Any]] = None,
    callback: Optional[Callable[[Dict[str, Any]], Any]] = None,
    disable: Optional[bool] = None,
    *,
    reverse_input_batch: bool = True,
    brownian_noise: Optional[bool] = None,
    **options: Any,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference's "Iterative Mixing KSampler (Advanced)" (A10) over any k-diffusion sampler.

    ``latent_batch`` holds the noised latents ``z'_0 .. z'_n`` of ``sigmas``, shape
    ``(n + 1, B, C, H, W)``: in rising-noise order as :func:`batch_unsample` returns them
    (``reverse_input_batch=True``), or noisiest first with ``reverse_input_batch=False``.
    Runs :func:`make_itermix_sampler`'s loop (``mix`` "after_step": blend the result of step
    i with ``z'_i``, as A4) with no step skipped, and returns three ``(n + 1, B, C, H, W)``
    batches:

    - ``mixed_latents``: ``[0]`` is ``z'_0``, ``[i+1]`` the latent after step i and its mix;
      ``[n]`` is the wrapped sampler's result;
    - ``noised_latents``: ``z'_0 .. z'_n``, noisiest first (the order they were used in);
    - ``intermediate_latents``: ``[0]`` zeros, ``[i+1]`` the sampler's output of step i
      before mixing (with ``mix="before_step"`` the mix comes first and ``[i+1]`` equals
      ``mixed_latents[i+1]``).

    ``options`` are the wrapped sampler's keywords (:func:`make_itermix_sampler`) except
    :data:`KSAMPLER_REFUSED`. A batch in the reference's layout ``(n + 1, C, H, W)`` is
    ``latent_batch[:, None]``. The reference node ran ComfyUI's sampler from step ``i-1`` to
    ``i`` and mixed the result with the noised latent at its end; here each step mixes with
    the latent at its start, ``z'_i``, as every other itermix sampler (A4).
    """
    refused = sorted(set(options) & set(KSAMPLER_REFUSED))
    if refused:
        raise TypeError(f"itermix_ksampler does not take {', '.join(refused)}: its noised latents are "
                        f"given and it has no clean latent")
    if not isinstance(reverse_input_batch, bool):
        raise TypeError(f"reverse_input_batch must be True or False, got {reverse_input_batch!r}")
    check_sigmas(sigmas)
    if not isinstance(latent_batch, torch.Tensor) or not latent_batch.is_floating_point() or latent_batch.ndim < 3:
        raise TypeError("latent_batch must be a floating-point tensor of shape (n + 1, B, C, H, W)")
    if len(latent_batch) != len(sigmas):
        raise ValueError(f"latent_batch must hold one latent per sigma ({len(sigmas)}), got {len(latent_batch)}")
    noised = latent_batch.flip(0) if reverse_input_batch else latent_batch.clone()
    spec = wrapped_spec(sampler_fn, brownian_noise)
    signature = itermix_signature(spec.own, "noise_sampler" in spec.parameters)
    # the least-noised latent stands in for the clean one, which only masks and rewind would read
    bound = signature.bind(model, noised[-1], sigmas, extra_args, callback, disable, noised, **options)
    bound.apply_defaults()
    steps: List[Tuple[torch.Tensor, torch.Tensor]] = []
    run_wrapped(spec, dict(bound.arguments), intermediates=steps)
    mixed = torch.stack([noised[0]] + [after for _, after in steps])
    unmixed = torch.stack([torch.zeros_like(noised[0])] + [out for out, _ in steps])
    return mixed, noised, unmixed


def kdiffusion_sampler(function: str, own: Dict[str, Any],
                       takes_noise_sampler: bool) -> Callable[..., torch.Tensor]:
    """A registry entry for ``k_diffusion.sampling.<function>`` wrapped by
    :func:`make_itermix_sampler`, which imports k-diffusion and wraps the function on its first
    call only. Its signature is built from ``own`` (the k-diffusion function's keywords and
    defaults) without the import."""

    @functools.lru_cache(maxsize=None)
    def wrapped() -> Callable[..., torch.Tensor]:
        import k_diffusion.sampling

        return make_itermix_sampler(getattr(k_diffusion.sampling, function))

    def sampler(*args: Any, **kwargs: Any) -> torch.Tensor:
        return wrapped()(*args, **kwargs)

    sampler.__signature__ = itermix_signature(own, takes_noise_sampler)
    sampler.__name__ = sampler.__qualname__ = "sample_itermix_" + function[len("sample_"):]
    sampler.__doc__ = (f"k_diffusion.sampling.{function} run one step at a time with iterative mixing "
                       f"between the steps; see itermix_kdiff.make_itermix_sampler.")
    return sampler


# The churn options' defaults are ItermixOptions' (k-diffusion's own, as the test checks).
_CHURN = {name: getattr(ItermixOptions, name) for name in CHURN_OPTIONS}
_ANCESTRAL = {"eta": 1.0, "s_noise": ItermixOptions.s_noise}

#: Registry name -> (``k_diffusion.sampling`` function, its own keywords and defaults, whether it
#: takes ``noise_sampler``), as in k-diffusion 0.1.1 (a test checks them against the real ones).
#: ``sample_lms`` and ``sample_dpmpp_3m_sde`` are left out: one step at a time they are the same
#: sampler as Euler and ``dpmpp_2m_sde`` (see :func:`make_itermix_sampler`).
KDIFFUSION_SAMPLERS: Dict[str, Tuple[str, Dict[str, Any], bool]] = {
    "euler_ancestral": ("sample_euler_ancestral", _ANCESTRAL, True),
    "heun": ("sample_heun", _CHURN, False),
    "dpm_2": ("sample_dpm_2", _CHURN, False),
    "dpm_2_ancestral": ("sample_dpm_2_ancestral", _ANCESTRAL, True),
    "dpmpp_2s_ancestral": ("sample_dpmpp_2s_ancestral", _ANCESTRAL, True),
    "dpmpp_sde": ("sample_dpmpp_sde", {**_ANCESTRAL, "r": 0.5}, True),
    "dpmpp_2m_sde": ("sample_dpmpp_2m_sde", {**_ANCESTRAL, "solver_type": "midpoint"}, True),
}

#: Every itermix sampler by name: the native ones of :mod:`itermix_kdiff.sampling` (they keep a
#: multistep history and follow the reference exactly) and k-diffusion's samplers wrapped by
#: :func:`make_itermix_sampler`. Each is called like ``sample_itermix_euler``.
SAMPLERS: Dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_itermix_euler,
    "euler_perlin": sample_itermix_euler_perlin,
    "dpmpp_2m": sample_itermix_dpmpp_2m,
    "lcm": sample_itermix_lcm,
    **{name: kdiffusion_sampler(*entry) for name, entry in KDIFFUSION_SAMPLERS.items()},
}


def check_sampler_keywords(name: str, keywords: Dict[str, Any]) -> None:
    """Check keyword arguments for ``SAMPLERS[name]`` without running it (a CLI checks its flags
    before it loads a model): an unknown keyword raises TypeError naming the accepted ones, the
    option values are checked by making the options, the sampler's own keywords by its checks."""
    check_choice("sampler", name, tuple(SAMPLERS))
    parameters = inspect.signature(SAMPLERS[name]).parameters
    accepted = [p for p in parameters if p not in KDIFFUSION_PARAMETERS + CALL_PARAMETERS]
    unknown = sorted(set(keywords) - set(accepted))
    if unknown:
        raise TypeError(f"sampler {name} does not take {', '.join(unknown)}; it takes {', '.join(accepted)}")
    _, own = split_options(keywords)
    if name == "euler_perlin":
        perlin = inspect.signature(check_perlin_keywords).parameters
        check_perlin_keywords(**{**{p: parameters[p].default for p in perlin}, **own})
    elif name in KDIFFUSION_SAMPLERS:
        check_seed(own.get("seed"))
        check_own_keywords(KDIFFUSION_SAMPLERS[name][1], {k: v for k, v in own.items() if k != "seed"})
