"""The sampler function the webui calls for an itermix sampler.

The webui calls ``func(model, x, sigmas=..., extra_args=..., callback=..., disable=False)``
with ``model`` its CFG denoiser. For img2img and the hires-fix second pass ``x`` is the
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

In txt2img there is no clean latent (``model.init_latent`` is None): the entry's plain
k-diffusion sampler runs instead, and one log line says so.

The "DemoFusion IterMix" entry runs the same Euler sampler with DemoFusion's skip residual
(the demofusion preset, B2) on :func:`webui_demofusion_denoiser`: the CFG denoiser run on
tiles of the model's native size fused with dilated sampling (``itermix_kdiff.demofusion``),
one tile per call so that each call's batch lines up with the webui's conditioning.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import torch

from .. import sampling, wrap
from ..demofusion import DemoFusionDenoiser, match_statistics, sigma_progress
from ..noised import add_noise, noised_latents
from .settings import LATENT_FACTOR, default_settings, sampler_options

logger = logging.getLogger(__name__)


class WebuiSampler(NamedTuple):
    """One webui sampler: the itermix function's name (see :func:`itermix_function`), the
    plain ``k_diffusion.sampling`` function it falls back to in txt2img, whether it takes
    the Perlin settings, whether it calls the model twice per step, whether the
    fallback's default noise is a Brownian tree (then seeded from the image seeds), and
    whether the model runs as DemoFusion's tiled + dilated denoiser."""

    function: str
    fallback: str
    perlin: bool = False
    second_order: bool = False
    brownian: bool = False
    demofusion: bool = False


def itermix_function(name: str) -> Optional[Callable[..., torch.Tensor]]:
    """The itermix sampler called ``name``: ``itermix_kdiff.sampling.<name>``, else the
    wrapped k-diffusion sampler of that name in ``itermix_kdiff.wrap.SAMPLERS``; None
    when neither exists."""
    function = getattr(sampling, name, None)
    if function is not None:
        return function
    return next((f for f in wrap.SAMPLERS.values() if getattr(f, "__name__", None) == name), None)


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


def sample_plain(label: str, entry: WebuiSampler, p: Any, model: Any, x: torch.Tensor, sigmas: torch.Tensor,
                 extra_args: Optional[Dict[str, Any]], callback: Optional[Callable], disable: Optional[bool]):
    """txt2img: nothing to mix with, so run the entry's plain k-diffusion sampler. Its
    Gaussian noise comes from the webui's seeded RNG (``torch.randn_like`` inside
    k_diffusion.sampling); a Brownian tree is seeded with the image seeds."""
    import k_diffusion.sampling

    logger.warning("%s: no init image to mix with (txt2img first pass), sampling with plain %s; "
                   "use it as the hires-fix sampler or in img2img", label, entry.fallback)
    plain = getattr(k_diffusion.sampling, entry.fallback)
    kwargs = {}
    if entry.brownian:
        kwargs["noise_sampler"] = k_diffusion.sampling.BrownianTreeNoiseSampler(
            x, sigmas[sigmas > 0].min(), sigmas.max(), seed=image_seeds(p, x.shape[0]))
    return plain(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable, **kwargs)


class PinnedStep:
    """The webui's CFG denoiser, called once per tile within one sampler step.

    The CFG denoiser counts its calls in ``step``, which A1111 reads for prompt editing
    (``[a:b:when]``): every tile of a step must see the same count, and the step as a
    whole must advance it by one (:meth:`advance`), as a plain sampler's single call does.
    ``inner_model`` keeps the wrapper chain the samplers search for a discrete schedule."""

    def __init__(self, model: Any):
        self.inner_model = model
        self.step = getattr(model, "step", None)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
        if isinstance(self.step, int):
            self.inner_model.step = self.step
        return self.inner_model(x, sigma, **extra_args)

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


def webui_demofusion_denoiser(model: Any, shape: torch.Size, sigmas: torch.Tensor, tile: int,
                              seed: int) -> StepDenoiser:
    """``DemoFusionDenoiser`` (local tiles fused with dilated sampling) around the webui's CFG
    denoiser ``model``, for latents of ``shape``.

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
    pinned = PinnedStep(model)
    fused = DemoFusionDenoiser(pinned, window, stride, factor, view_batch_size=1,
                               progress_fn=sigma_progress(model, sigmas), seed=seed)
    return StepDenoiser(fused, pinned)


def sample_webui(label: str, entry: WebuiSampler, sampler: Any, model: Any, x: torch.Tensor,
                 sigmas: torch.Tensor, extra_args: Optional[Dict[str, Any]] = None,
                 callback: Optional[Callable] = None, disable: Optional[bool] = None) -> torch.Tensor:
    """Run the itermix sampler ``entry`` for the webui sampler object ``sampler``.

    ``x`` is the webui's ``xi``; ``model.init_latent`` the clean latent ``x0`` (None in
    txt2img); the settings come from ``model.p.itermix`` (defaults when absent); the
    core sampler runs on exactly the webui's ``sigmas`` with ``extra_args`` passed on
    unchanged, on the noised latents of :func:`webui_noised_latents`. A DemoFusion entry
    samples on :func:`webui_demofusion_denoiser` with the demofusion preset and matches the
    result's mean and std to the init latent's, as DemoFusion does after each phase; it
    cannot inpaint (the CFG denoiser blends the init latent at full size into every call),
    so with a mask it runs as plain Euler IterMix and says so.
    """
    x0 = getattr(model, "init_latent", None)
    p = getattr(model, "p", None)
    if x0 is None:
        return sample_plain(label, entry, p, model, x, sigmas, extra_args, callback, disable)
    if x0.shape != x.shape:
        raise ValueError(f"{label}: the init latent's shape {tuple(x0.shape)} differs from the "
                         f"sampled latent's {tuple(x.shape)}")
    settings = getattr(p, "itermix", None) or default_settings()
    demofusion = entry.demofusion
    if demofusion and getattr(model, "mask", None) is not None:
        logger.warning("%s: DemoFusion's tiles cannot be inpainted (the webui blends the mask at full "
                       "size), sampling with Euler IterMix", label)
        demofusion = False
    if demofusion:
        settings = {**settings, "preset": "demofusion"}
    seeds = image_seeds(p, x.shape[0])
    options = sampler_options(settings, perlin=entry.perlin, seed=seeds[0])
    noise = options.pop("noise", "independent")
    model_wrap = getattr(sampler, "model_wrap", None)
    if options["rewind"] and not is_additive(model_wrap, sigmas[0], x0):
        raise ValueError(f"{label}: rewind draws noised latents as x0 + eps * sigma, which this "
                         f"model does not use (a flow model); turn Rewind off")
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    z = webui_noised_latents(model_wrap, x0, x, sigmas, generators, noise)
    # Rewind passes draw fresh noise from the first image's generator, now past its first draw.
    function = itermix_function(entry.function)
    if demofusion:
        denoiser = webui_demofusion_denoiser(model, x0.shape, sigmas, settings["demofusion_tile"], seeds[0])
        x = function(denoiser, x0, sigmas, extra_args=extra_args, callback=callback, disable=disable,
                     noised_latents=z, generator=generators[0], noise=noise, **options)
        return match_statistics(x, x0)
    return function(model, x0, sigmas, extra_args=extra_args, callback=callback, disable=disable,
                    noised_latents=z, generator=generators[0], noise=noise, **options)
