"""``modules.sd_schedulers``: the schedule dropdown's entries (docs/webui-api.md, "Schedules").

The schedulers the sampler options name (``karras``, ``exponential``) and the model's own
``uniform``; ``automatic`` has no function (the sampler's ``options["scheduler"]`` decides)."""

import dataclasses
from typing import Any

import k_diffusion.sampling


@dataclasses.dataclass
class Scheduler:
    name: str
    label: str
    function: Any
    default_rho: float = -1
    need_inner_model: bool = False
    aliases: list = None


def uniform(n, sigma_min, sigma_max, inner_model, device):
    return inner_model.get_sigmas(n).to(device)


schedulers = [
    Scheduler("automatic", "Automatic", None),
    Scheduler("uniform", "Uniform", uniform, need_inner_model=True),
    Scheduler("karras", "Karras", k_diffusion.sampling.get_sigmas_karras, default_rho=7.0),
    Scheduler("exponential", "Exponential", k_diffusion.sampling.get_sigmas_exponential),
    Scheduler("polyexponential", "Polyexponential", k_diffusion.sampling.get_sigmas_polyexponential, default_rho=1.0),
]

schedulers_map = {**{x.name: x for x in schedulers}, **{x.label: x for x in schedulers}}
