"""Adding the itermix samplers to the webui's sampler lists (A1111 1.10 and Forge;
docs/webui-api.md, "Registration" and "Sampler options").

:data:`WEBUI_SAMPLERS` lists every webui sampler this package can offer, each naming its
core sampler (a key of :data:`itermix_kdiff.SAMPLERS`) and the webui's built-in sampler of
its family. :func:`register` adds those whose core sampler and family both exist, with the
family's options copied from the webui's own entry, so another sampler appears by adding
one line here.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

from .sampler import WebuiSampler, sample_webui

logger = logging.getLogger(__name__)

#: label -> sampler. Labels must not end in a scheduler label (the webui strips those).
#: All but the first three run k-diffusion's sampler one step at a time (itermix_kdiff.wrap).
WEBUI_SAMPLERS: Dict[str, WebuiSampler] = {
    "Euler IterMix": WebuiSampler("euler", "Euler"),
    "Euler Perlin IterMix": WebuiSampler("euler_perlin", "Euler"),
    "DPM++ 2M IterMix": WebuiSampler("dpmpp_2m", "DPM++ 2M"),
    "Euler a IterMix": WebuiSampler("euler_ancestral", "Euler a"),
    "Heun IterMix": WebuiSampler("heun", "Heun"),
    "DPM2 IterMix": WebuiSampler("dpm_2", "DPM2"),
    "DPM2 a IterMix": WebuiSampler("dpm_2_ancestral", "DPM2 a"),
    "DPM++ 2S a IterMix": WebuiSampler("dpmpp_2s_ancestral", "DPM++ 2S a"),
    "DPM++ SDE IterMix": WebuiSampler("dpmpp_sde", "DPM++ SDE"),
    "DPM++ 2M SDE IterMix": WebuiSampler("dpmpp_2m_sde", "DPM++ 2M SDE"),
    "DemoFusion IterMix": WebuiSampler("euler", "Euler", demofusion=True),
}

#: The options an itermix sampler takes from its family's ``SamplerData.options``: the
#: schedule the "Automatic" scheduler picks, the dropped next-to-last sigma, the doubled
#: step count (progress and prompt-editing schedules), whether the infotext records ENSD,
#: and the webui's Brownian noise (the sampler function takes the ``noise_sampler`` it
#: injects). Others (Forge's ``solver_type``) would be passed as keywords the function
#: does not take.
INHERITED_OPTIONS = ("scheduler", "discard_next_to_last_sigma", "second_order", "uses_ensd", "brownian_noise")

#: The schedulers' labels in A1111 1.10 and Forge: "<sampler> <label>" names a scheduler.
SCHEDULER_LABELS = ("Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform",
                    "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM", "Beta", "Turbo")


def available_samplers() -> Dict[str, WebuiSampler]:
    """The entries of :data:`WEBUI_SAMPLERS` whose core sampler exists."""
    return {label: entry for label, entry in WEBUI_SAMPLERS.items() if entry.function is not None}


def check_label(label: str) -> None:
    for scheduler in SCHEDULER_LABELS:
        if label.endswith(" " + scheduler):
            raise ValueError(f"sampler label {label!r} ends in the scheduler label {scheduler!r}, "
                             f"which the webui would strip from it")


def family_entry(sd_samplers_kdiffusion: Any, family: str) -> Optional[Tuple[Any, Dict[str, Any]]]:
    """``(function, options)`` of the webui's built-in sampler labelled ``family``, from its
    ``samplers_k_diffusion`` rows ``(label, function name or function, aliases, options)``;
    None when this webui has no such sampler."""
    for label, function, _, options in sd_samplers_kdiffusion.samplers_k_diffusion:
        if label == family:
            return function, options
    return None


def new_sampler(label: str, fallback: Any, kdiffusion_sampler: type, sd_model: Any) -> Any:
    """``KDiffusionSampler(func, sd_model)`` whose ``func`` runs :func:`sample_webui` for
    ``label``. ``func`` has the parameters the webui looks for (``sigmas``; no ``eta``, ``n``)
    and takes the ``noise_sampler`` a ``brownian_noise`` sampler is handed; it reaches the
    sampler object (Forge keeps the model's noise scaling on ``sampler.model_wrap.predictor``)."""
    entry = WEBUI_SAMPLERS[label]

    def func(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
        # ``sampler`` is looked up when the webui calls func, after it has been assigned below.
        return sample_webui(label, entry, fallback, sampler, model, x, sigmas, extra_args, callback, disable,
                            noise_sampler)

    sampler = kdiffusion_sampler(func, sd_model)
    return sampler


def sampler_data(label: str, fallback: Any, family_options: Dict[str, Any], sampler_data_cls: type,
                 kdiffusion_sampler: type) -> Any:
    """``SamplerData(label, constructor, aliases, options)`` for one itermix sampler whose
    family's built-in runs ``fallback`` with ``family_options``; ``options`` is a dict (the API
    rejects None) of the family's :data:`INHERITED_OPTIONS`."""
    entry = WEBUI_SAMPLERS[label]
    alias = ("demofusion_" if entry.demofusion else "") + "itermix_" + entry.sampler
    options = {name: family_options[name] for name in INHERITED_OPTIONS if name in family_options}
    return sampler_data_cls(label, lambda sd_model: new_sampler(label, fallback, kdiffusion_sampler, sd_model),
                            [alias], options)


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
    itermix sampler whose family this webui has, rebuild the visible lists with
    ``set_samplers()`` and clear the cached ``get_sampler_and_scheduler``. Pass the webui's
    modules ``modules.sd_samplers``, ``modules.sd_samplers_common`` and
    ``modules.sd_samplers_kdiffusion``; returns the labels registered. Call it before the UI
    is built (the dropdowns are made once)."""
    families = {}
    for label, entry in available_samplers().items():
        found = family_entry(sd_samplers_kdiffusion, entry.family)
        if found is None:
            logger.warning("%s not registered: this webui has no %s sampler", label, entry.family)
        else:
            families[label] = found
    for label in families:
        check_label(label)
    for label, (fallback, options) in families.items():
        put_sampler(sd_samplers, sampler_data(label, fallback, options, sd_samplers_common.SamplerData,
                                              sd_samplers_kdiffusion.KDiffusionSampler))
    sd_samplers.set_samplers()
    cached = getattr(sd_samplers, "get_sampler_and_scheduler", None)
    if hasattr(cached, "cache_clear"):
        cached.cache_clear()
    return list(families)


def active_samplers(p: Any) -> List[str]:
    """The itermix labels this job samples with: ``p.sampler_name`` and, with hires fix on,
    ``p.hr_sampler_name``."""
    names = [getattr(p, "sampler_name", None)]
    if getattr(p, "enable_hr", False):
        names.append(getattr(p, "hr_sampler_name", None))
    return [name for name in names if name in WEBUI_SAMPLERS]
