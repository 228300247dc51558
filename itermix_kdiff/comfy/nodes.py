"""The node classes: the ComfyUI-Iterative-Mixer pack's nine nodes under its node names, with
its inputs in its order, types and defaults (new inputs come after them, optional, defaulting
to its behaviour), and two new ones, ``IterMix DemoFusion Model`` and ``IterMix Upscale``.

Every ``comfy`` import is inside a method: the classes import without ComfyUI, and
``INPUT_TYPES`` reads ComfyUI's sampler and scheduler lists when ComfyUI asks for it.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Any, Dict, Optional

import torch

from .. import (BLENDING_FUNCTIONS, BLENDING_SCHEDULES, PRESETS, SAMPLERS, ItermixOptions, batch_unsample,
                blending_schedule, get_sigmas, get_sigmas_advanced, itermix_ksampler, make_options, mixing_masks)
from .._checks import check_choice
from ..demofusion import WINDOW_WEIGHTS
from ..perlin import PERLIN_MODES
from .demofusion import demofusion_model
from .model import ComfyDenoiser, ScheduleView, patcher_sampling
from .sampler import (PERLIN_OPTIONS, RNG_MODES, SAMPLER_NAMES, brownian_keywords, comfy_function,
                      resolve_options, sample_comfy)

logger = logging.getLogger(__name__)

#: The reference pack's lists, in its order; the core's other names follow.
REFERENCE_SCHEDULES = ("cosine", "linear", "logistic")
REFERENCE_FUNCTIONS = ("addition", "norm_only", "slerp")
SCHEDULE_NAMES = REFERENCE_SCHEDULES + tuple(n for n in BLENDING_SCHEDULES if n not in REFERENCE_SCHEDULES)
FUNCTION_NAMES = REFERENCE_FUNCTIONS + tuple(n for n in BLENDING_FUNCTIONS if n not in REFERENCE_FUNCTIONS)

MAX_RESOLUTION = 16384  # ComfyUI's nodes.MAX_RESOLUTION
UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "bislerp")  # ComfyUI's LatentUpscale
CATEGORY = "sampling/itermix"


def parameter_defaults(function: Any) -> Dict[str, Any]:
    """The defaults of ``function``'s parameters that have one."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


#: The defaults of the inputs that set sampler keywords, read where the core defines them (as
#: itermix_kdiff.webui.settings does): every ItermixOptions field's, then euler_perlin's own
#: Perlin keywords. They equal the reference pack's defaults (tests/test_comfy.py pins those).
DEFAULTS: Dict[str, Any] = {
    **{f.name: f.default for f in dataclasses.fields(ItermixOptions)},
    **{name: value for name, value in parameter_defaults(SAMPLERS["euler_perlin"]).items() if name in PERLIN_OPTIONS},
}
MASK_DEFAULTS = parameter_defaults(mixing_masks)  # MixingMaskGenerator's perlin_scale: its ``scale``
DEMOFUSION_DEFAULTS = parameter_defaults(demofusion_model)


def option(kind: Any, name: str, **spec: Any) -> tuple:
    """An input for the sampler keyword ``name``: ``(kind, {"default": DEFAULTS[name], **spec})``."""
    return (kind, {"default": DEFAULTS[name], **spec})


#: The reference's range of alpha_1 (its nodes' inputs all use it).
ALPHA_RANGE = {"min": 0.05, "max": 100.0, "step": 0.05}


def new_inputs() -> Dict[str, tuple]:
    """The optional inputs the sampler nodes add after the reference's; each default keeps the
    reference's behaviour (tests/test_comfy.py checks that the defaults give its numbers)."""
    return {
        "preset": (list(PRESETS), {"default": "reference"}),
        "mix": (["preset", "after_step", "before_step"], {"default": "preset"}),
        "noise": (["preset", "independent", "shared"], {"default": "preset"}),
        "lazy": option("BOOLEAN", "lazy"),
        "rng": (list(RNG_MODES), {"default": "seed"}),
    }


def ksampler_sigmas(model: Any, sampler_name: str, scheduler: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """The sigmas ComfyUI's ``KSampler`` runs ``sampler_name`` on: ``get_sigmas`` on the MODEL's
    ``model_sampling``, with ``steps + 1`` computed and the last but one dropped for the samplers
    in ``KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS`` (dpm_2, ...), and ``denoise`` < 1 taking the
    last ``steps + 1`` of ``int(steps / denoise)`` steps."""
    import comfy.samplers

    if denoise <= 0.0:
        return torch.zeros(0)
    whole = denoise > 0.9999
    discard = sampler_name in comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS
    n = steps if whole else int(steps / denoise)
    sigmas = get_sigmas(ScheduleView(patcher_sampling(model)), scheduler, n + 1 if discard else n)
    if discard:
        sigmas = sigmas[torch.arange(len(sigmas)) != len(sigmas) - 2]
    return sigmas if whole else sigmas[-(steps + 1):]


def sample_latent(model: Any, positive: Any, negative: Any, latent: Dict[str, Any], seed: int, cfg: float,
                  sampler: Any, sigmas: torch.Tensor, samples: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``comfy.sample.sample_custom`` as SamplerCustom runs it with ``add_noise`` off: zero noise,
    ``seed`` in ``extra_args``, the latent's noise mask, ComfyUI's progress bar and previews."""
    import comfy.sample
    import comfy.utils
    import latent_preview

    samples = latent["samples"] if samples is None else samples
    samples = comfy.sample.fix_empty_latent_channels(model, samples)
    noise = torch.zeros_like(samples, device="cpu")
    callback = latent_preview.prepare_callback(model, sigmas.shape[-1] - 1)
    return comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, samples,
                                      noise_mask=latent.get("noise_mask"), callback=callback,
                                      disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)


def pil_to_image(image: Any) -> torch.Tensor:
    """A PIL image as a ComfyUI IMAGE: float32 ``(1, H, W, 3)`` in [0, 1]."""
    import numpy as np

    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.float32) / 255.0)[None]


class IterativeMixingSampler:
    """A SAMPLER for SamplerCustom / SamplerCustomAdvanced: iterative mixing with any itermix
    sampler (itermix_kdiff.comfy.sampler.sample_comfy)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "sampler": (list(SAMPLER_NAMES), {"default": "euler"}),
            "alpha_1": option("FLOAT", "alpha_1", **ALPHA_RANGE),
            "blending_schedule": option(list(SCHEDULE_NAMES), "blending_schedule"),
            "blending_function": option(list(FUNCTION_NAMES), "blending_function"),
            "normalize_on_mean": option("BOOLEAN", "normalize_on_mean"),
            "start_blending_at_pct": option("FLOAT", "start_blending_at_pct", min=0.0, step=0.01),
            "stop_blending_at_pct": option("FLOAT", "stop_blending_at_pct", min=0.0, step=0.01),
            "clamp_blending_at_pct": option("FLOAT", "clamp_blending_at_pct", min=0.0, max=1.0, step=0.01),
            "blend_min": option("FLOAT", "blend_min", step=0.01),
            "blend_max": option("FLOAT", "blend_max", step=0.01),
            "perlin_mode": option(list(PERLIN_MODES), "perlin_mode"),
            "perlin_strength": option("FLOAT", "perlin_strength", step=0.001),
            "perlin_scale": option("FLOAT", "perlin_scale", min=0.1, max=400.0),
            "rewind": option("BOOLEAN", "rewind"),
            "rewind_min": option("FLOAT", "rewind_min", min=0.0, max=0.99),
            "rewind_max": option("FLOAT", "rewind_max", min=0.01, max=0.99),
        }, "optional": {"mixing_masks": ("MASK",), **new_inputs()}}

    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    CATEGORY = "sampling/custom_sampling/samplers"

    def get_sampler(self, model, sampler, alpha_1, blending_schedule, blending_function, normalize_on_mean,
                    start_blending_at_pct, stop_blending_at_pct, clamp_blending_at_pct, blend_min, blend_max,
                    perlin_mode, perlin_strength, perlin_scale, rewind, rewind_min, rewind_max,
                    mixing_masks=None, preset="reference", mix="preset", noise="preset", lazy=False, rng="seed"):
        import comfy.samplers

        check_choice("rng", rng, RNG_MODES)
        check_choice("sampler", sampler, SAMPLER_NAMES)
        options = dict(alpha_1=alpha_1, blending_schedule=blending_schedule, blending_function=blending_function,
                       normalize_on_mean=normalize_on_mean, start_blending_at_pct=start_blending_at_pct,
                       stop_blending_at_pct=stop_blending_at_pct, clamp_blending_at_pct=clamp_blending_at_pct,
                       blend_min=blend_min, blend_max=blend_max, rewind=rewind, rewind_min=rewind_min,
                       rewind_max=rewind_max, mix=mix, noise=noise, lazy=lazy)
        make_options(**resolve_options(preset, options))  # bad values fail here, naming the input
        perlin = dict(perlin_mode=perlin_mode, perlin_strength=perlin_strength, perlin_scale=perlin_scale)
        extra = {"sampler": sampler, "rng": rng, "preset": preset, "mixing_masks": mixing_masks, **options, **perlin}
        return (comfy.samplers.KSAMPLER(sample_comfy, extra_options=extra),)


class IterativeMixingScheduler:
    """SIGMAS for the mixing sampler: ``itermix_kdiff.sigmas.get_sigmas`` on the model's schedule,
    ComfyUI's ``calculate_sigmas`` numbers."""

    @classmethod
    def INPUT_TYPES(cls):
        import comfy.samplers

        return {"required": {
            "model": ("MODEL",),
            "scheduler": (comfy.samplers.SCHEDULER_NAMES,),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"

    def get_sigmas(self, model, scheduler, steps, denoise):
        return (get_sigmas(ScheduleView(patcher_sampling(model)), scheduler, steps, denoise),)


class IterativeMixingSchedulerAdvanced:
    """The scheduler's sigmas sliced to ``start_at_step .. end_at_step`` (one run over two samplers)."""

    @classmethod
    def INPUT_TYPES(cls):
        import comfy.samplers

        return {"required": {
            "model": ("MODEL",),
            "scheduler": (comfy.samplers.SCHEDULER_NAMES,),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000}),
            "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"

    def get_sigmas(self, model, scheduler, steps, start_at_step, end_at_step, denoise):
        view = ScheduleView(patcher_sampling(model))
        return (get_sigmas_advanced(view, scheduler, steps, start_at_step, end_at_step, denoise),)


class MixingMaskGenerator:
    """A MASK batch ``(batch_size, height // 8, width // 8)`` for the sampler's ``mixing_masks``:
    Perlin masks in [0, 1] or the reference's standard-normal ``random`` values."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "mask_type": (["perlin", "random"], {"default": "perlin"}),
            "perlin_scale": ("FLOAT", {"default": MASK_DEFAULTS["scale"], "min": 0.1, "max": 400.0, "step": 0.01}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff}),
            "width": ("INT", {"default": 512, "min": 16, "max": 8192, "step": 8}),
            "height": ("INT", {"default": 512, "min": 16, "max": 8192, "step": 8}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
        }}

    RETURN_TYPES = ("MASK",)
    FUNCTION = "get_masks"
    CATEGORY = "mask/generation"

    def get_masks(self, mask_type, perlin_scale, seed, width, height, batch_size):
        masks = mixing_masks(mask_type, batch_size, width // 8, height // 8, seed=seed, scale=perlin_scale)
        return (masks[:, 0],)


class BatchUnsampler:
    """The deprecated flow's first node: the noised latents of the schedule's steps
    ``start_at_step .. end_at_step`` in rising-noise order (``batch_unsample``), noised in the
    model's latent space and returned in ComfyUI's (unscaled) one."""

    @classmethod
    def INPUT_TYPES(cls):
        import comfy.samplers

        return {"required": {
            "model": ("MODEL",),
            "sampler_name": (comfy.samplers.KSampler.SAMPLERS,),
            "scheduler": (comfy.samplers.KSampler.SCHEDULERS,),
            "steps": ("INT", {"default": 10000, "min": 0, "max": 10000}),
            "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000}),
            "end_at_step": ("INT", {"default": 10000, "min": 1, "max": 10000}),
            "latent_image": ("LATENT",),
            "normalize": ("BOOLEAN", {"default": False}),
        }}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent_batch",)
    FUNCTION = "unsampler"
    CATEGORY = CATEGORY

    def unsampler(self, model, sampler_name, scheduler, steps, start_at_step, end_at_step, latent_image,
                  normalize=False):
        sigmas = ksampler_sigmas(model, sampler_name, scheduler, steps)[start_at_step:end_at_step + 1]
        if len(sigmas) < 2:
            raise ValueError(f"start_at_step={start_at_step} and end_at_step={end_at_step} leave no step of the "
                             f"{steps}-step schedule")
        return (unsample_latent(model, sigmas, latent_image, normalize),)


def unsample_latent(model: Any, sigmas: torch.Tensor, latent_image: Dict[str, Any], normalize: bool = False,
                    generator: Optional[torch.Generator] = None) -> Dict[str, Any]:
    """Batch Unsampler's LATENT: ``batch_unsample`` of the latent (in the model's latent space) over
    ``sigmas``, returned unscaled as ``n + 1`` groups of the latent's rows in rising-noise order,
    with ``itermix_batch_size`` (the rows per group). The noise comes from the global RNG, as in
    the reference, or from ``generator`` (a CPU generator)."""
    latent_format = model.get_model_object("latent_format")
    x0 = latent_format.process_in(latent_image["samples"].float())
    batch = batch_unsample(x0, sigmas, generator=generator)  # (n + 1, B, C, H, W), rising noise
    out = latent_format.process_out(batch).reshape(-1, *x0.shape[1:])
    if normalize:
        logger.warning("Batch Unsampler: normalize is deprecated (as in the reference pack); it subtracts the "
                       "mean of the least-noised latent")
        out = out - out[:x0.shape[0]].mean()
    result = {k: v for k, v in latent_image.items() if k != "batch_index"}
    return {**result, "samples": out, "itermix_batch_size": x0.shape[0]}


def schedule_plot(c1: torch.Tensor) -> torch.Tensor:
    """``c1`` against the step as an IMAGE (the reference's plot of its blending schedule)."""
    from ..plots import figure_to_image
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(c1.numpy(), marker="o", ms=3)
    ax.set_title("blending schedule")
    ax.set_xlabel("step")
    ax.set_ylabel("c1 (share of the model's latent)")
    fig.tight_layout()
    return pil_to_image(figure_to_image(fig))


class IterativeMixingKSamplerAdvanced:
    """The deprecated flow's sampler: ``itermix_ksampler`` over ComfyUI's k-diffusion sampler
    ``sampler_name`` on a Batch Unsampler batch, run inside ComfyUI's sampling (conditioning, CFG,
    model loading, progress). Returns the mixed latents, the noised ones (noisiest first), the
    sampler's outputs before mixing and a plot of the blending schedule."""

    @classmethod
    def INPUT_TYPES(cls):
        import comfy.samplers

        return {"required": {
            "model": ("MODEL",),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "sampler_name": (comfy.samplers.KSampler.SAMPLERS,),
            "scheduler": (comfy.samplers.KSampler.SCHEDULERS,),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "latent_image_batch": ("LATENT",),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            "alpha_1": option("FLOAT", "alpha_1", **ALPHA_RANGE),
            "reverse_input_batch": ("BOOLEAN", {"default": True}),
            "blending_schedule": option(list(SCHEDULE_NAMES), "blending_schedule"),
            "stop_blending_at_pct": option("FLOAT", "stop_blending_at_pct"),
            "clamp_blending_at_pct": option("FLOAT", "clamp_blending_at_pct"),
            "blending_function": option(list(FUNCTION_NAMES), "blending_function"),
        }}

    RETURN_TYPES = ("LATENT", "LATENT", "LATENT", "IMAGE")
    RETURN_NAMES = ("mixed_latents", "noised_latents", "intermediate_latents", "plot_image")
    FUNCTION = "sample"
    CATEGORY = CATEGORY

    def sample(self, model, seed, cfg, sampler_name, scheduler, positive, negative, latent_image_batch,
               denoise=1.0, alpha_1=DEFAULTS["alpha_1"], reverse_input_batch=True,
               blending_schedule=DEFAULTS["blending_schedule"],
               stop_blending_at_pct=DEFAULTS["stop_blending_at_pct"],
               clamp_blending_at_pct=DEFAULTS["clamp_blending_at_pct"],
               blending_function=DEFAULTS["blending_function"]):
        function = comfy_function(sampler_name)
        batch = latent_image_batch["samples"]
        rows = int(latent_image_batch.get("itermix_batch_size", 1))
        if batch.shape[0] % rows or batch.shape[0] // rows < 2:
            raise ValueError(f"latent_image_batch must hold n + 1 >= 2 latents of {rows} rows each (a Batch "
                             f"Unsampler output); got {batch.shape[0]}")
        steps = batch.shape[0] // rows - 1
        sigmas = ksampler_sigmas(model, sampler_name, scheduler, steps, denoise)
        if len(sigmas) != steps + 1:
            raise ValueError(f"the {sampler_name}/{scheduler} schedule has {len(sigmas)} sigmas for {steps} steps "
                             f"at denoise {denoise}, the batch {steps + 1} latents")
        options = dict(alpha_1=alpha_1, blending_schedule=blending_schedule, stop_blending_at_pct=stop_blending_at_pct,
                       clamp_blending_at_pct=clamp_blending_at_pct, blending_function=blending_function)
        results = mix_batch(model, positive, negative, latent_image_batch, seed, cfg, function, sigmas,
                            reverse_input_batch, options)
        base = {k: v for k, v in latent_image_batch.items() if k != "batch_index"}
        outs = tuple({**base, "samples": results[key]} for key in ("mixed", "noised", "unmixed"))
        return (*outs, schedule_plot(blending_schedule_c1(steps, options)))


def mix_batch(model: Any, positive: Any, negative: Any, latent_batch: Dict[str, Any], seed: int, cfg: float,
              function: Any, sigmas: torch.Tensor, reverse_input_batch: bool,
              options: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """The deprecated flow's sampling: ``itermix_ksampler`` over ComfyUI's sampler function
    ``function`` (:func:`~itermix_kdiff.comfy.sampler.comfy_function`) on the Batch Unsampler
    LATENT ``latent_batch`` (``n + 1`` groups of ``itermix_batch_size`` rows), run inside
    ComfyUI's sampling (conditioning, CFG, model loading, progress) on ``sigmas``. The sampler's
    own noise comes from a generator seeded with ``seed`` (a Brownian tree seeded with it for the
    SDE samplers). Returns the ``mixed``, ``noised`` (noisiest first) and ``unmixed`` batches,
    unscaled, in the layout of ``latent_batch``."""
    import comfy.samplers

    batch = latent_batch["samples"]
    rows = int(latent_batch.get("itermix_batch_size", 1))
    stack = batch.reshape(batch.shape[0] // rows, rows, *batch.shape[1:])
    results: Dict[str, torch.Tensor] = {}

    def run(k_model, x, run_sigmas, extra_args=None, callback=None, disable=None):
        latent_format = k_model.inner_model.inner_model.latent_format
        noised = latent_format.process_in(stack.to(x.device, x.dtype))
        generator = torch.Generator(device=x.device).manual_seed(int(seed))
        mixed, used, unmixed = itermix_ksampler(
            function, ComfyDenoiser(k_model), noised, run_sigmas, extra_args, callback, disable,
            reverse_input_batch=reverse_input_batch, generator=generator,
            **brownian_keywords(function.__name__, x, run_sigmas, seed), **options)
        for key, value in (("mixed", mixed), ("noised", used), ("unmixed", unmixed)):
            results[key] = latent_format.process_out(value).reshape(-1, *x.shape[1:]).cpu()
        return mixed[-1]

    least_noised = stack[0] if reverse_input_batch else stack[-1]
    sample_latent(model, positive, negative, latent_batch, seed, cfg, comfy.samplers.KSAMPLER(run), sigmas,
                  samples=least_noised)
    return results


def blending_schedule_c1(steps: int, options: Dict[str, Any]) -> torch.Tensor:
    """``c1`` of a ``steps``-step run with the node's schedule options (A2)."""
    return blending_schedule(steps, options["blending_schedule"], alpha_1=options["alpha_1"],
                             stop_blending_at_pct=options["stop_blending_at_pct"],
                             clamp_blending_at_pct=options["clamp_blending_at_pct"])


class IterativeMixingKSampler:
    """The deprecated one-node flow, as the reference builds it: Batch Unsampler over the
    ``steps``-step schedule of ``sampler_name``/``scheduler`` (at ``denoise``), then Iterative
    Mixing KSampler Advanced on that batch (``batch_unsample`` then ``itermix_ksampler`` over
    ComfyUI's sampler ``sampler_name``); returns the final latent. Unlike the reference its noised
    latents are seeded by ``seed`` and share the sampled schedule when ``denoise`` < 1."""

    @classmethod
    def INPUT_TYPES(cls):
        import comfy.samplers

        return {"required": {
            "model": ("MODEL",),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "latent_image": ("LATENT",),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff}),
            "steps": ("INT", {"default": 40, "min": 0, "max": 10000}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "sampler_name": (comfy.samplers.KSampler.SAMPLERS,),
            "scheduler": (comfy.samplers.KSampler.SCHEDULERS,),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            "alpha_1": option("FLOAT", "alpha_1", **ALPHA_RANGE),
            "blending_schedule": option(list(SCHEDULE_NAMES), "blending_schedule"),
            "blending_function": option(list(FUNCTION_NAMES), "blending_function"),
            "normalize_on_mean": option("BOOLEAN", "normalize_on_mean"),
        }}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = CATEGORY

    def sample(self, model, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler, denoise,
               alpha_1, blending_schedule, blending_function, normalize_on_mean):
        function = comfy_function(sampler_name)
        sigmas = ksampler_sigmas(model, sampler_name, scheduler, steps, denoise) if steps > 0 else torch.zeros(0)
        if len(sigmas) < 2:
            return ({**latent_image},)
        batch = unsample_latent(model, sigmas, latent_image, normalize_on_mean,
                                generator=torch.Generator().manual_seed(int(seed)))
        options = dict(alpha_1=alpha_1, blending_schedule=blending_schedule, blending_function=blending_function)
        mixed = mix_batch(model, positive, negative, batch, seed, cfg, function, sigmas, True, options)["mixed"]
        out = {k: v for k, v in latent_image.items() if k != "batch_index"}
        return ({**out, "samples": mixed[-latent_image["samples"].shape[0]:]},)


class LatentBatchStatisticsPlot:
    """IMAGE: Shapiro-Wilk p-value, mean and std of each latent of a batch (itermix_kdiff.plots)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"batch": ("LATENT",)}}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("plot_image",)
    FUNCTION = "statistics"
    CATEGORY = CATEGORY

    def statistics(self, batch):
        from ..plots import plot_latent_batch_statistics

        return (pil_to_image(plot_latent_batch_statistics(batch["samples"])),)


class LatentBatchComparisonPlot:
    """IMAGE: the cosine similarity of every latent of one batch with every latent of another."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent_batch_1": ("LATENT",), "latent_batch_2": ("LATENT",)}}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("plot_image",)
    FUNCTION = "plot_latent_differences"
    CATEGORY = CATEGORY

    def plot_latent_differences(self, latent_batch_1, latent_batch_2):
        from ..plots import plot_cosine_similarity

        return (pil_to_image(plot_cosine_similarity(latent_batch_1["samples"], latent_batch_2["samples"])),)


class IterMixDemoFusionModel:
    """MODEL -> MODEL whose every denoiser call runs DemoFusion's tiled local and dilated global
    denoising (itermix_kdiff.comfy.demofusion)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "tile_size": ("INT", {"default": DEMOFUSION_DEFAULTS["tile"], "min": 64, "max": MAX_RESOLUTION, "step": 8}),
            "cosine_scale_2": ("FLOAT", {"default": DEMOFUSION_DEFAULTS["cosine_scale_2"], "min": 0.0, "max": 10.0,
                                         "step": 0.05}),
            "cosine_scale_3": ("FLOAT", {"default": DEMOFUSION_DEFAULTS["cosine_scale_3"], "min": 0.0, "max": 10.0,
                                         "step": 0.05}),
            "blur_sigma": ("FLOAT", {"default": DEMOFUSION_DEFAULTS["blur_sigma"], "min": 0.0, "max": 10.0,
                                     "step": 0.05}),
            "view_batch_size": ("INT", {"default": DEMOFUSION_DEFAULTS["view_batch_size"], "min": 1, "max": 64}),
            "jitter": ("BOOLEAN", {"default": DEMOFUSION_DEFAULTS["jitter"]}),
            "weights": (list(WINDOW_WEIGHTS), {"default": DEMOFUSION_DEFAULTS["weights"]}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = CATEGORY

    def patch(self, model, tile_size, cosine_scale_2, cosine_scale_3, blur_sigma, view_batch_size, jitter, weights):
        return (demofusion_model(model, tile_size, cosine_scale_2, cosine_scale_3, blur_sigma, view_batch_size,
                                 jitter, weights),)


class IterMixUpscale:
    """The whole upscale in one node: the latent upscaled, sampled with iterative mixing over the
    full schedule, then cleaned up by a light pass of an ordinary ComfyUI sampler."""

    @classmethod
    def INPUT_TYPES(cls):
        import comfy.samplers

        return {"required": {
            "model": ("MODEL",),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "latent_image": ("LATENT",),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "sampler": (list(SAMPLER_NAMES), {"default": "euler"}),
            "scheduler": (comfy.samplers.SCHEDULER_NAMES, {"default": "karras"}),
            "upscale_method": (list(UPSCALE_METHODS), {"default": "bislerp"}),
            "scale_by": ("FLOAT", {"default": 2.0, "min": 1.0, "max": 8.0, "step": 0.05}),
            "alpha_1": option("FLOAT", "alpha_1", **ALPHA_RANGE),
            "blending_schedule": option(list(SCHEDULE_NAMES), "blending_schedule"),
            "blending_function": option(list(FUNCTION_NAMES), "blending_function"),
            "preset": (list(PRESETS), {"default": "reference"}),
            "cleanup_sampler": (comfy.samplers.KSampler.SAMPLERS, {"default": "euler"}),
            "cleanup_steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "cleanup_denoise": ("FLOAT", {"default": 0.15, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}

    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("latent", "mixed")
    FUNCTION = "upscale"
    CATEGORY = CATEGORY

    def upscale(self, model, positive, negative, latent_image, seed, steps, cfg, sampler, scheduler, upscale_method,
                scale_by, alpha_1, blending_schedule, blending_function, preset, cleanup_sampler, cleanup_steps,
                cleanup_denoise):
        import comfy.sample
        import comfy.samplers
        import comfy.utils
        import latent_preview

        check_choice("upscale_method", upscale_method, UPSCALE_METHODS)
        check_choice("sampler", sampler, SAMPLER_NAMES)
        options = dict(sampler=sampler, preset=preset, alpha_1=alpha_1, blending_schedule=blending_schedule,
                       blending_function=blending_function)
        make_options(**resolve_options(preset, {k: v for k, v in options.items() if k not in ("sampler", "preset")}))
        samples = latent_image["samples"]
        width, height = round(samples.shape[-1] * scale_by), round(samples.shape[-2] * scale_by)
        upscaled = comfy.utils.common_upscale(samples, width, height, upscale_method, "disabled")
        sigmas = get_sigmas(ScheduleView(patcher_sampling(model)), scheduler, steps)
        mixed = sample_latent(model, positive, negative, latent_image, seed, cfg,
                              comfy.samplers.KSAMPLER(sample_comfy, extra_options=options), sigmas, samples=upscaled)
        out = {k: v for k, v in latent_image.items() if k != "batch_index"}
        if cleanup_denoise <= 0:
            return ({**out, "samples": mixed}, {**out, "samples": mixed})
        noise = comfy.sample.prepare_noise(mixed, seed)
        callback = latent_preview.prepare_callback(model, cleanup_steps)
        cleaned = comfy.sample.sample(model, noise, cleanup_steps, cfg, cleanup_sampler, scheduler, positive, negative,
                                      mixed, denoise=cleanup_denoise, noise_mask=latent_image.get("noise_mask"),
                                      callback=callback, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
        return ({**out, "samples": cleaned}, {**out, "samples": mixed})


NODE_CLASS_MAPPINGS = {
    "Batch Unsampler": BatchUnsampler,
    "Latent Batch Statistics Plot": LatentBatchStatisticsPlot,
    "Latent Batch Comparison Plot": LatentBatchComparisonPlot,
    "Iterative Mixing KSampler Advanced": IterativeMixingKSamplerAdvanced,
    "Iterative Mixing KSampler": IterativeMixingKSampler,
    "IterativeMixingSampler": IterativeMixingSampler,
    "IterativeMixingScheduler": IterativeMixingScheduler,
    "IterativeMixingSchedulerAdvanced": IterativeMixingSchedulerAdvanced,
    "MixingMaskGenerator": MixingMaskGenerator,
    "IterMix DemoFusion Model": IterMixDemoFusionModel,
    "IterMix Upscale": IterMixUpscale,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "Batch Unsampler": "Batch Unsampler (deprecated flow)",
    "Latent Batch Statistics Plot": "Latent Batch Statistics Plot",
    "Latent Batch Comparison Plot": "Latent Batch Comparison Plot",
    "Iterative Mixing KSampler Advanced": "Iterative Mixing KSampler Advanced (deprecated flow)",
    "Iterative Mixing KSampler": "Iterative Mixing KSampler (deprecated flow)",
    "IterativeMixingSampler": "Iterative Mixing Sampler",
    "IterativeMixingScheduler": "Iterative Mixing Scheduler",
    "IterativeMixingSchedulerAdvanced": "Iterative Mixing Scheduler Advanced",
    "MixingMaskGenerator": "Mixing Mask Generator",
    "IterMix DemoFusion Model": "IterMix DemoFusion Model",
    "IterMix Upscale": "IterMix Upscale",
}
