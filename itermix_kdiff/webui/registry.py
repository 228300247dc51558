"""Adding the itermix samplers to the webui's sampler lists (A1111 1.10 and Forge).

:data:`SAMPLERS` lists every webui sampler this package can offer; :func:`register`
adds those whose function exists (:func:`itermix_function`), so another sampler
appears by adding one line here.
"""

from __future__ import annotations

from typing import Any, Dict, List

from .sampler import WebuiSampler, itermix_function, sample_webui

#: label -> sampler. Labels must not end in a scheduler label (the webui strips those).
#: The wrapped ones run k-diffusion's sampler one step at a time (itermix_kdiff.wrap).
SAMPLERS: Dict[str, WebuiSampler] = {
    "Euler IterMix": WebuiSampler("sample_itermix_euler", "sample_euler"),
    "Euler Perlin IterMix": WebuiSampler("sample_itermix_euler_perlin", "sample_euler", perlin=True),
    "DPM++ 2M IterMix": WebuiSampler("sample_itermix_dpmpp_2m", "sample_dpmpp_2m"),
    "Euler a IterMix": WebuiSampler("sample_itermix_euler_ancestral", "sample_euler_ancestral"),
    "Heun IterMix": WebuiSampler("sample_itermix_heun", "sample_heun", second_order=True),
    "DPM2 IterMix": WebuiSampler("sample_itermix_dpm_2", "sample_dpm_2", second_order=True),
    "DPM2 a IterMix": WebuiSampler("sample_itermix_dpm_2_ancestral", "sample_dpm_2_ancestral", second_order=True),
    "DPM++ 2S a IterMix": WebuiSampler("sample_itermix_dpmpp_2s_ancestral", "sample_dpmpp_2s_ancestral",
                                       second_order=True),
    "DPM++ SDE IterMix": WebuiSampler("sample_itermix_dpmpp_sde", "sample_dpmpp_sde", second_order=True,
                                      brownian=True),
    "DPM++ 2M SDE IterMix": WebuiSampler("sample_itermix_dpmpp_2m_sde", "sample_dpmpp_2m_sde", brownian=True),
    "DemoFusion IterMix": WebuiSampler("sample_itermix_euler", "sample_euler", demofusion=True),
}

#: The schedulers' labels in A1111 1.10 and Forge: "<sampler> <label>" names a scheduler.
SCHEDULER_LABELS = ("Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform",
                    "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM", "Beta", "Turbo")


def available_samplers() -> Dict[str, WebuiSampler]:
    """The entries of :data:`SAMPLERS` whose itermix function exists."""
    return {label: entry for label, entry in SAMPLERS.items() if itermix_function(entry.function) is not None}


def check_label(label: str) -> None:
    for scheduler in SCHEDULER_LABELS:
        if label.endswith(" " + scheduler):
            raise ValueError(f"sampler label {label!r} ends in the scheduler label {scheduler!r}, "
                             f"which the webui would strip from it")


def new_sampler(label: str, kdiffusion_sampler: type, sd_model: Any) -> Any:
    """``KDiffusionSampler(func, sd_model)`` whose ``func`` runs :func:`sample_webui` for
    ``label``. ``func`` has the parameters the webui looks for (``sigmas``; no
    ``noise_sampler``, ``eta``, ``n``) and reaches the sampler object (Forge keeps the
    model's noise scaling on ``sampler.model_wrap.predictor``)."""
    def func(model, x, sigmas, extra_args=None, callback=None, disable=None):
        # ``sampler`` is looked up when the webui calls func, after it has been assigned below.
        return sample_webui(label, SAMPLERS[label], sampler, model, x, sigmas, extra_args, callback, disable)

    sampler = kdiffusion_sampler(func, sd_model)
    return sampler


def sampler_data(label: str, sampler_data_cls: type, kdiffusion_sampler: type) -> Any:
    """``SamplerData(label, constructor, aliases, options)`` for one itermix sampler.
    ``options`` is a dict (the API rejects None) with ``second_order`` for samplers that
    call the model twice per step, as the webui's own; never ``brownian_noise`` (it would
    inject a ``noise_sampler`` argument: the wrapped SDE samplers seed their own tree)."""
    entry = SAMPLERS[label]
    alias = ("demofusion_" if entry.demofusion else "") + entry.function.replace("sample_", "", 1)
    options = {"second_order": True} if entry.second_order else {}
    return sampler_data_cls(label, lambda sd_model: new_sampler(label, kdiffusion_sampler, sd_model), [alias], options)


def put_sampler(sd_samplers: Any, data: Any) -> None:
    """Replace the entry of the same name in place, or add it (Forge's ``add_sampler``
    where it exists); then point ``all_samplers_map`` at it."""
    names = [s.name for s in sd_samplers.all_samplers]
    if data.name in names:
        sd_samplers.all_samplers[names.index(data.name)] = data
    elif hasattr(sd_samplers, "add_sampler"):
        sd_samplers.add_sampler(data)
    else:
        sd_samplers.all_samplers.append(data)
    sd_samplers.all_samplers_map[data.name] = data


def register(sd_samplers: Any, sd_samplers_common: Any, sd_samplers_kdiffusion: Any) -> List[str]:
    """Add (or, on a second call or a UI reload, replace) one webui sampler per available
    itermix sampler, rebuild the visible lists with ``set_samplers()`` and clear the cached
    ``get_sampler_and_scheduler``. Pass the webui's modules ``modules.sd_samplers``,
    ``modules.sd_samplers_common`` and ``modules.sd_samplers_kdiffusion``; returns the
    labels registered. Call it before the UI is built (the dropdowns are made once)."""
    labels = list(available_samplers())
    for label in labels:
        check_label(label)
    for label in labels:
        put_sampler(sd_samplers, sampler_data(label, sd_samplers_common.SamplerData,
                                              sd_samplers_kdiffusion.KDiffusionSampler))
    sd_samplers.set_samplers()
    cached = getattr(sd_samplers, "get_sampler_and_scheduler", None)
    if hasattr(cached, "cache_clear"):
        cached.cache_clear()
    return labels


def active_samplers(p: Any) -> List[str]:
    """The itermix labels this job samples with: ``p.sampler_name`` and, with hires fix on,
    ``p.hr_sampler_name``."""
    names = [getattr(p, "sampler_name", None)]
    if getattr(p, "enable_hr", False):
        names.append(getattr(p, "hr_sampler_name", None))
    return [name for name in names if name in SAMPLERS]
