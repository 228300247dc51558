"""``modules.sd_samplers``: the sampler lists, their lookups and ``create_sampler``
(docs/webui-api.md, "Registration")."""

import functools

from modules import FLAVOUR, sd_samplers_kdiffusion, shared

all_samplers = [*sd_samplers_kdiffusion.samplers_data_k_diffusion]
all_samplers_map = {x.name: x for x in all_samplers}

samplers = []
samplers_map = {}
samplers_hidden = set()

# "<sampler> <label>" names a scheduler: the label is stripped off the sampler name.
scheduler_labels = ["Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform",
                    "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM", "Beta"]


def find_sampler_config(name):
    if name is not None:
        return all_samplers_map.get(name, None)
    return all_samplers[0]


def create_sampler(name, model):
    config = find_sampler_config(name)
    assert config is not None, f"bad sampler name: {name}"
    sampler = config.constructor(model)
    sampler.config = config
    return sampler


def set_samplers():
    """Rebuild the visible list and the name/alias lookup (the module-level names are
    re-bound, so holding on to an old list sees no change)."""
    global samplers, samplers_hidden
    samplers_hidden = set(shared.opts.hide_samplers)
    samplers = [x for x in all_samplers if x.name not in samplers_hidden]
    samplers_map.clear()
    for sampler in all_samplers:
        samplers_map[sampler.name.lower()] = sampler.name
        for alias in sampler.aliases:
            samplers_map[alias.lower()] = sampler.name


def visible_sampler_names():
    return [x.name for x in samplers]


if FLAVOUR == "forge":
    def add_sampler(sampler):
        all_samplers.append(sampler)
        all_samplers_map[sampler.name] = sampler
        set_samplers()


@functools.cache
def get_sampler_and_scheduler(sampler_name, scheduler_name):
    """``(sampler name, scheduler label)`` for infotext or API names: a trailing scheduler
    label moves from the sampler name to the scheduler; unknown samplers give the first."""
    for label in scheduler_labels:
        if sampler_name.endswith(" " + label):
            sampler_name, scheduler_name = sampler_name[:-len(label) - 1], label
            break
    name = samplers_map.get(sampler_name.lower(), all_samplers[0].name)
    return name, scheduler_name


set_samplers()
