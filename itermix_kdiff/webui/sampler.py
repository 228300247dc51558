"""The sampler function the webui calls for an itermix sampler (docs/webui-api.md, "The
sampler call").

The webui calls ``func(model, x, sigmas=..., extra_args=..., callback=..., disable=False)``,
plus ``noise_sampler=...`` for a sampler whose options say ``brownian_noise``, with ``model``
its CFG denoiser. For img2img and the hires-fix second pass ``x`` is the
noised latent ``xi`` it made from the clean latent ``model.init_latent``, its seeded
noise and ``sigmas[0]`` (the schedule starts part-way for a denoising strength < 1).
The itermix sampler then runs on the clean latent with noised latents ``z'_k`` built here:

- ``z'_0 = xi`` exactly: the webui's own first latent (its seed, its extra noise);
- ``z'_k`` for ``k >= 1`` from noise ``eps_k`` drawn, per image, from a CPU generator
  seeded with that image's seed (independent per step, as the reference, A1), so the
  same seed gives the same picture on any device; or, with ``noise="shared"`` (the
  demofusion preset, B2), the webui's own noise recovered from ``xi`` for every k;
- ``z'_k = x0 + eps_k sigma_k`` in A1111 (k-diffusion's convention), and Forge's
  ``predictor.noise_scaling(sigma_k, eps_k, x0, max_denoise=False)``, which for flow
  models is ``sigma eps + (1 - sigma) x0``.

In txt2img there is no clean latent (``model.init_latent`` is None): the built-in sampler
of the entry's family runs instead, exactly as the webui runs it, and one log line says so.

The "DemoFusion IterMix" entry runs the same Euler sampler with DemoFusion's skip residual
(the demofusion preset, B2) on :func:`webui_demofusion_denoiser`: the CFG denoiser run on
tiles of the model's native size fused with dilated sampling (``itermix_kdiff.demofusion``),
one tile per call so that each call's batch lines up with the webui's conditioning, which
goes around DemoFusion's cutting of tensors into views (:data:`PROMPT_CONDITIONING`).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import torch

from .. import SAMPLERS
from ..demofusion import DemoFusionDenoiser, sigma_progress
from ..noised import add_noise, noised_latents
from ..statistics import match_statistics
from ..wrap import BROWNIAN_SAMPLERS, KDIFFUSION_SAMPLERS
from .settings import LATENT_FACTOR, default_settings, sampler_options

logger = logging.getLogger(__name__)


class WebuiSampler(NamedTuple):
    """One webui sampler: ``sampler``, the core sampler it runs (a key of
    :data:`itermix_kdiff.SAMPLERS`); ``family``, the label of the webui's built-in sampler it
    takes its options from and runs as in txt2img; whether the model runs as DemoFusion's
    tiled + dilated denoiser."""

    sampler: str
    family: str
    demofusion: bool = False

    @property
    def function(self) -> Optional[Callable[..., torch.Tensor]]:
        """The core sampler function, None when this version of the package has none of that name."""
        return SAMPLERS.get(self.sampler)

    @property
    def brownian(self) -> bool:
        """Whether the core sampler's own noise is a Brownian tree (an SDE sampler)."""
        return KDIFFUSION_SAMPLERS.get(self.sampler, ("",))[0] in BROWNIAN_SAMPLERS

    @property
    def perlin(self) -> bool:
        """Whether the core sampler takes the Perlin settings."""
        return self.function is not None and "perlin_mode" in inspect.signature(self.function).parameters


def scale_noise(model_wrap: Any, sigma: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The webui's noised latent at ``sigma``: ``x0 + noise sigma`` (A1111, A1), or Forge's
    ``model_wrap.predictor.noise_scaling(sigma, noise, x0, max_denoise=False)``."""
    predictor = getattr(model_wrap, "predictor", None)
    if predictor is not None and hasattr(predictor, "noise_scaling"):
        return predictor.noise_scaling(sigma, noise, x0, max_denoise=False)
    return add_noise(x0, noise, sigma)


def noise_affine(model_wrap: Any, sigma: torch.Tensor, x0: torch.Tensor):
    """``(offset, gain)`` with ``scale_noise(sigma, eps, x0) = offset + gain eps`` (both
    scalings are affine in the noise): ``(x0, sigma)`` for A1111, ``((1 - sigma) x0, sigma)``
    for a flow model."""
    offset = scale_noise(model_wrap, sigma, torch.zeros_like(x0), x0)
    gain = scale_noise(model_wrap, sigma, torch.ones_like(x0), torch.zeros_like(x0))
    return offset, gain


def recover_noise(model_wrap: Any, xi: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The noise the webui used: ``(xi - offset) / gain``, i.e. ``(xi - x0) / sigma_0`` in A1111."""
    offset, gain = noise_affine(model_wrap, sigma, x0)
    return (xi - offset) / gain


def is_additive(model_wrap: Any, sigma: torch.Tensor, x0: torch.Tensor) -> bool:
    """Whether the webui noises as ``x0 + eps sigma`` (the formula the core sampler uses
    when it draws fresh noised latents itself, e.g. for rewind passes)."""
    offset, gain = noise_affine(model_wrap, sigma, x0)
    return torch.allclose(offset, x0) and torch.allclose(gain, torch.full_like(gain, float(sigma)))


def image_seeds(p: Any, batch: int) -> List[int]:
    """One seed per image: ``p.seeds`` (the current batch's seeds) when it fits, else
    ``p.seed + b`` (the webui's own rule for a batch)."""
    seeds = getattr(p, "seeds", None)
    if seeds is not None and len(seeds) == batch:
        return [int(s) for s in seeds]
    seed = int(getattr(p, "seed", 0))
    return [seed + b for b in range(batch)]


def step_noises(x0: torch.Tensor, sigmas: torch.Tensor, generators: List[torch.Generator]) -> List[torch.Tensor]:
    """``eps_k`` for k = 0..n: row b from ``generators[b]`` through the core's seeded
    per-step noise (A1 with a generator), drawn on the CPU in float32, then moved to
    ``x0``'s device and dtype."""
    rows = [noised_latents(x0[b:b + 1].detach().to("cpu", torch.float32), sigmas.detach().cpu().float(),
                           generator=g, lazy=True)
            for b, g in enumerate(generators)]
    return [torch.cat([row.noise(k) for row in rows]).to(x0.device, x0.dtype) for k in range(len(sigmas))]


def webui_noised_latents(model_wrap: Any, x0: torch.Tensor, xi: torch.Tensor, sigmas: torch.Tensor,
                         generators: List[torch.Generator], noise: str) -> torch.Tensor:
    """The stack ``z'`` of shape ``(n + 1, *x0.shape)``: ``z'_0 = xi`` and
    ``z'_k = scale_noise(sigma_k, eps_k, x0)`` for k >= 1, ``eps_k`` independent per step
    from ``generators`` or (``noise="shared"``) the noise recovered from ``xi``."""
    if noise == "shared":
        eps = [recover_noise(model_wrap, xi, x0, sigmas[0])] * len(sigmas)
    else:
        eps = step_noises(x0, sigmas, generators)
    later = [scale_noise(model_wrap, sigmas[k], eps[k], x0).to(x0.dtype) for k in range(1, len(sigmas))]
    return torch.stack([xi.to(x0.dtype)] + later)


def sample_plain(label: str, entry: WebuiSampler, fallback: Any, model: Any, x: torch.Tensor, sigmas: torch.Tensor,
                 extra_args: Optional[Dict[str, Any]], callback: Optional[Callable], disable: Optional[bool],
                 noise_sampler: Optional[Callable]) -> torch.Tensor:
    """txt2img: nothing to mix with, so run the family's built-in function ``fallback`` (a
    ``k_diffusion.sampling`` name or a function) as the webui runs it: its Gaussian noise
    from the webui's seeded RNG (``torch.randn_like`` inside k_diffusion.sampling), its
    Brownian noise from the webui's ``noise_sampler``, one tree per image seed."""
    import k_diffusion.sampling

    logger.warning("%s: no init image to mix with (txt2img first pass), sampling as %s; "
                   "use it as the hires-fix sampler or in img2img", label, entry.family)
    plain = fallback if callable(fallback) else getattr(k_diffusion.sampling, fallback)
    kwargs = {} if noise_sampler is None else {"noise_sampler": noise_sampler}
    return plain(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable, **kwargs)


#: The keys of the webui's ``extra_args`` holding its prompt conditioning: per-image
#: schedules (``prompt_parser``'s namedtuples and objects) that the CFG denoiser rebuilds
#: into tensors itself. DemoFusion's views never need them cut (each call holds one view
#: of the whole batch), so they are handed to the CFG denoiser around DemoFusion's tensor
#: mapping, which only sees ``image_cond`` (cut per view where it has the latent's size)
#: and the scalars.
PROMPT_CONDITIONING = ("cond", "uncond")


class PinnedStep:
    """The webui's CFG denoiser, called once per tile within one sampler step.

    The CFG denoiser counts its calls in ``step``, which A1111 reads for prompt editing
    (``[a:b:when]``): every tile of a step must see the same count, and the step as a
    whole must advance it by one (:meth:`advance`), as a plain sampler's single call does.
    ``inner_model`` keeps the wrapper chain the samplers search for a discrete schedule.
    The :data:`PROMPT_CONDITIONING` entries are read from the webui's own ``extra_args`` at
    each call and added to the ones DemoFusion passes."""

    def __init__(self, model: Any, extra_args: Dict[str, Any]):
        self.inner_model = model
        self.step = getattr(model, "step", None)
        self.extra_args = extra_args

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
        if isinstance(self.step, int):
            self.inner_model.step = self.step
        conditioning = {key: self.extra_args[key] for key in PROMPT_CONDITIONING if key in self.extra_args}
        return self.inner_model(x, sigma, **extra_args, **conditioning)

    def advance(self) -> None:
        if isinstance(self.step, int):
            self.step += 1
            self.inner_model.step = self.step


class StepDenoiser:
    """``inner_model`` (a denoiser around ``pinned``), advancing the step count once per call."""

    def __init__(self, inner_model: Callable[..., torch.Tensor], pinned: PinnedStep):
        self.inner_model = inner_model
        self.pinned = pinned

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
        denoised = self.inner_model(x, sigma, **extra_args)
        self.pinned.advance()
        return denoised


def webui_demofusion_denoiser(model: Any, extra_args: Dict[str, Any], shape: torch.Size, sigmas: torch.Tensor,
                              tile: int, seed: int) -> Tuple[StepDenoiser, Dict[str, Any]]:
    """``DemoFusionDenoiser`` (local tiles fused with dilated sampling) around the webui's CFG
    denoiser ``model``, for latents of ``shape``, and the ``extra_args`` to sample it with:
    the webui's without :data:`PROMPT_CONDITIONING`, which the denoiser adds back.

    Tiles are ``tile // 8`` latent pixels (clipped to the latent), ``stride`` half a tile,
    the dilation factor is the latent's size in tiles rounded to the nearest integer (at
    least 1: 2 for a 2x hires fix of a native-size image), one view per model call
    (``view_batch_size=1``: every call has the webui's batch), jitter seeded with ``seed``,
    DemoFusion's other defaults. The progress ``p`` comes from the webui's model wrapper
    (its timesteps in A1111, the index in ``sigmas`` otherwise), and so does the
    sampler's (B2): the result keeps the wrapper in its ``inner_model`` chain."""
    height, width = shape[-2:]
    size = max(int(tile) // LATENT_FACTOR, 1)
    window = (min(size, height), min(size, width))
    stride = (max(window[0] // 2, 1), max(window[1] // 2, 1))
    factor = max(1, round(max(height, width) / size))
    pinned = PinnedStep(model, extra_args)
    fused = DemoFusionDenoiser(pinned, window, stride, factor, view_batch_size=1,
                               progress_fn=sigma_progress(model, sigmas), seed=seed)
    mapped = {key: value for key, value in extra_args.items() if key not in PROMPT_CONDITIONING}
    return StepDenoiser(fused, pinned), mapped


def demofusion_refusal(model: Any, p: Any) -> Optional[str]:
    """Why DemoFusion's views cannot run through this CFG denoiser, or None. Both cases make
    the CFG denoiser combine the view with a full-size tensor of its own: a mask (it blends
    ``init_latent`` into every result) and A1111's edit models with an image CFG scale other
    than 1 (they add ``zeros_like(init_latent)`` to the image conditioning)."""
    if getattr(model, "mask", None) is not None:
        return "DemoFusion's tiles cannot be inpainted (the webui blends the mask at full size)"
    image_cfg_scale = getattr(model, "image_cfg_scale", None)
    if (getattr(getattr(p, "sd_model", None), "cond_stage_key", None) == "edit"
            and image_cfg_scale is not None and image_cfg_scale != 1.0):
        return ("DemoFusion's tiles cannot run an edit model's image CFG (the webui adds full-size "
                "image conditioning); set Image CFG scale to 1 for DemoFusion")
    return None


def per_image_noise(entry: WebuiSampler, p: Any, seeds: List[int], noise_sampler: Optional[Callable],
                    rewind: bool) -> Dict[str, Any]:
    """The keywords that give a sampler with a ``noise_sampler`` each image's own noise, as the
    webui's own samplers have it. An SDE sampler takes the webui's Brownian noise (one tree per
    image seed), or with Rewind one seed per image (a tree per image and pass). A Gaussian one
    (ancestral, LCM) takes the webui's per-image stream ``p.rng`` (ImageRNG: one generator per
    image seed, re-seeded with the ENSD after the first draw), else one seed per image where
    it takes a seed (otherwise the per-image generators serve)."""
    params = inspect.signature(entry.function).parameters
    if "noise_sampler" not in params:
        return {}
    if entry.brownian:
        return {"noise_sampler": noise_sampler} if noise_sampler is not None and not rewind else {"seed": seeds}
    rng = getattr(p, "rng", None)
    if rng is not None:
        return {"noise_sampler": lambda sigma, sigma_next: rng.next()}
    return {"seed": seeds} if "seed" in params else {}


def sample_webui(label: str, entry: WebuiSampler, fallback: Any, sampler: Any, model: Any, x: torch.Tensor,
                 sigmas: torch.Tensor, extra_args: Optional[Dict[str, Any]] = None,
                 callback: Optional[Callable] = None, disable: Optional[bool] = None,
                 noise_sampler: Optional[Callable] = None) -> torch.Tensor:
    """Run the itermix sampler ``entry`` for the webui sampler object ``sampler``.

    ``x`` is the webui's ``xi``; ``model.init_latent`` the clean latent ``x0`` (None in
    txt2img, where the family's built-in function ``fallback`` runs instead); the settings
    come from ``model.p.itermix`` (defaults when absent); the core sampler runs on exactly
    the webui's ``sigmas`` with ``extra_args`` passed on unchanged, on the noised latents of
    :func:`webui_noised_latents`. ``noise_sampler`` is the webui's Brownian noise (one tree
    per image seed), given for the samplers whose options say ``brownian_noise``: the core
    sampler uses it unless Rewind is on (each rewind pass then seeds a tree of its own). A
    DemoFusion entry samples on :func:`webui_demofusion_denoiser` with the demofusion preset
    and matches the result's mean and std to the init latent's, as DemoFusion does after
    each phase; where :func:`demofusion_refusal` names a reason it runs as plain Euler
    IterMix and says so.
    """
    x0 = getattr(model, "init_latent", None)
    p = getattr(model, "p", None)
    if x0 is None:
        return sample_plain(label, entry, fallback, model, x, sigmas, extra_args, callback, disable, noise_sampler)
    if x0.shape != x.shape:
        raise ValueError(f"{label}: the init latent's shape {tuple(x0.shape)} differs from the "
                         f"sampled latent's {tuple(x.shape)}")
    settings = getattr(p, "itermix", None) or default_settings()
    demofusion = entry.demofusion
    refusal = demofusion_refusal(model, p) if demofusion else None
    if refusal is not None:
        logger.warning("%s: %s, sampling with Euler IterMix", label, refusal)
        demofusion = False
    if demofusion:
        settings = {**settings, "preset": "demofusion"}
    seeds = image_seeds(p, x.shape[0])
    options = sampler_options(settings, perlin=entry.perlin, seed=seeds)  # Perlin masks per image
    noise = options.pop("noise", "independent")
    model_wrap = getattr(sampler, "model_wrap", None)
    if options["rewind"] and not is_additive(model_wrap, sigmas[0], x0):
        raise ValueError(f"{label}: rewind draws noised latents as x0 + eps * sigma, which this "
                         f"model does not use (a flow model); turn Rewind off")
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    z = webui_noised_latents(model_wrap, x0, x, sigmas, generators, noise)
    function = entry.function
    options.update(per_image_noise(entry, p, seeds, noise_sampler, options["rewind"]))
    # one generator per image: each image's churn, LCM and rewind-pass noise follow its seed
    if demofusion:
        denoiser, tensor_args = webui_demofusion_denoiser(model, extra_args or {}, x0.shape, sigmas,
                                                          settings["demofusion_tile"], seeds[0])
        x = function(denoiser, x0, sigmas, extra_args=tensor_args, callback=callback, disable=disable,
                     noised_latents=z, generator=generators, noise=noise, **options)
        return match_statistics(x, x0)
    return function(model, x0, sigmas, extra_args=extra_args, callback=callback, disable=disable,
                    noised_latents=z, generator=generators, noise=noise, **options)
