"""``modules.sd_schedulers``: the scheduler dropdown's entries (docs/webui-api.md, "Schedules").

Only those the samplers' ``options["scheduler"]`` name, plus "Automatic", which has no
function: it defers to the sampler's option, and without one to the model's own schedule.
"""

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


schedulers = [
    Scheduler("automatic", "Automatic", None),
    Scheduler("karras", "Karras", k_diffusion.sampling.get_sigmas_karras, default_rho=7.0),
    Scheduler("exponential", "Exponential", k_diffusion.sampling.get_sigmas_exponential),
]

# Looked up by name (the options) and by label (the UI, p.scheduler).
schedulers_map = {key: scheduler for scheduler in schedulers for key in (scheduler.name, scheduler.label)}
