"""``modules.sd_samplers``: the sampler lists, the name lookups and ``create_sampler``
(docs/webui-api.md, "Registration")."""

import functools
import re

from modules import FLAVOUR, sd_samplers_kdiffusion, shared

all_samplers = list(sd_samplers_kdiffusion.samplers_data_k_diffusion)
all_samplers_map = {data.name: data for data in all_samplers}

# set_samplers() fills these
samplers = []
samplers_map = {}  # lower-cased name or alias -> name
samplers_hidden = set()

# The webui's scheduler labels: a sampler name ending in " <label>" names a scheduler.
SCHEDULER_LABELS = ("Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
                    "Align Your Steps", "Simple", "Normal", "DDIM", "Beta")
if FLAVOUR == "forge":
    SCHEDULER_LABELS += ("Turbo", "Align Your Steps GITS", "Align Your Steps 11", "Align Your Steps 32")
_WITH_SCHEDULER = re.compile("(.+) (%s)" % "|".join(re.escape(label) for label in SCHEDULER_LABELS))


def find_sampler_config(name):
    """The ``SamplerData`` called ``name`` (None if unknown); no name means the first."""
    return all_samplers[0] if name is None else all_samplers_map.get(name)


def create_sampler(name, model):
    config = find_sampler_config(name)
    assert config is not None, f"no sampler named {name!r}"
    sampler = config.constructor(model)
    sampler.config = config
    return sampler


def set_samplers():
    """Rebuild ``samplers`` (the visible ones), ``samplers_hidden`` and ``samplers_map``
    from ``all_samplers``. The lists are new objects: a caller holding the old one does
    not see the change."""
    global samplers, samplers_hidden
    samplers_hidden = set(shared.opts.hide_samplers)
    samplers = [data for data in all_samplers if data.name not in samplers_hidden]
    samplers_map.clear()
    for data in all_samplers:
        samplers_map.update((key.lower(), data.name) for key in (data.name, *data.aliases))


def visible_sampler_names():
    return [data.name for data in samplers]


if FLAVOUR == "forge":
    def add_sampler(sampler):
        all_samplers.append(sampler)
        all_samplers_map[sampler.name] = sampler
        set_samplers()


@functools.cache
def get_sampler_and_scheduler(sampler_name, scheduler_name):
    """``(sampler name, scheduler label)`` from an infotext's or the API's names: a trailing
    scheduler label moves from the sampler's name to the scheduler; names and aliases
    match regardless of case; an unknown sampler gives the first one."""
    suffixed = _WITH_SCHEDULER.fullmatch(sampler_name)
    if suffixed is not None:
        sampler_name, scheduler_name = suffixed.groups()
    return samplers_map.get(sampler_name.lower(), all_samplers[0].name), scheduler_name


set_samplers()
