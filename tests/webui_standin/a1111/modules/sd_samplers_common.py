"""``modules.sd_samplers_common``: ``SamplerData``, the interrupt, the img2img step count,
``TorchHijack`` and the ``Sampler`` base class (docs/webui-api.md, "Registration", "The
sampler call", "Noise and seeds")."""

import inspect
from collections import namedtuple

import k_diffusion.sampling
import torch

from modules import shared

SamplerDataTuple = namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])


class SamplerData(SamplerDataTuple):
    def total_steps(self, steps):
        """How many model calls ``steps`` steps take: twice as many for a second-order
        sampler. ``options`` must be a dict (the webui's API listing fails on None too)."""
        return 2 * steps if self.options.get("second_order", False) else steps


class InterruptedException(BaseException):
    """Raised inside sampling to stop the job; a BaseException, so ``except Exception``
    in a sampler lets it through to ``launch_sampling``."""


def setup_img2img_steps(p, steps=None):
    """``(steps, t_enc)``: the length of the schedule and the number of its steps that
    the denoising strength leaves to run (the sampler runs ``sigmas[steps - t_enc - 1:]``).
    Given ``steps`` (the hires pass) or with ``opts.img2img_fix_steps``, the requested
    count is what runs and the schedule grows to fit."""
    strength = min(p.denoising_strength, 0.999)
    if steps is None and not shared.opts.img2img_fix_steps:
        return p.steps, int(strength * p.steps)
    requested = steps or p.steps
    schedule_length = int(requested / strength) if p.denoising_strength > 0 else 0
    return schedule_length, requested - 1


def store_latent(decoded):
    """The live preview's latent (the stand-in keeps it and draws nothing)."""
    shared.state.current_latent = decoded


def is_sampler_using_eta_noise_seed_delta(p):
    """Whether the infotext records ENSD: the job's sampler is marked ``uses_ensd`` and
    runs with an eta other than 0 (the job's, else the sampler's, else 1)."""
    from modules import sd_samplers  # imports this module

    config = sd_samplers.find_sampler_config(p.sampler_name)
    if not config.options.get("uses_ensd", False):
        return False
    etas = [eta for eta in (p.eta, getattr(p.sampler, "eta", None)) if eta is not None]
    return (etas[0] if etas else 1.0) != 0


class TorchHijack:
    """Put in place of the name ``torch`` inside ``k_diffusion.sampling``: there
    ``torch.randn_like(x)`` becomes the job's next per-image draw ``p.rng.next()`` (the
    shape of ``x`` does not matter), while every other name is torch's own."""

    def __init__(self, p):
        self.rng = p.rng

    def randn_like(self, x):
        return self.rng.next()

    def __getattr__(self, name):
        # Only called for names the class itself lacks.
        return getattr(torch, name)


class Sampler:
    def __init__(self, funcname):
        self.func = funcname
        self.extra_params = []  # the churn keywords this function is given (by its name)
        self.config = None  # the SamplerData; sd_samplers.create_sampler sets it
        self.model_wrap_cfg = None
        self.sampler_extra_args = None
        self.eta = None
        self.s_min_uncond = None
        self.last_latent = None
        self.steps_reported = []  # stand-in only: the ``i`` of every callback, for the tests

    def callback_state(self, d):
        self.steps_reported.append(d["i"])
        shared.state.sampling_step = d["i"]

    def launch_sampling(self, steps, func):
        """Run ``func`` (the sampling) for ``steps`` steps; an interrupt ends it with the
        last latent the CFG denoiser saw."""
        self.model_wrap_cfg.steps = steps
        self.model_wrap_cfg.total_steps = self.config.total_steps(steps)
        shared.state.sampling_step, shared.state.sampling_steps = 0, steps
        try:
            return func()
        except InterruptedException:
            return self.last_latent

    def initialize(self, p):
        """Hand the job to the CFG denoiser, put :class:`TorchHijack` in k-diffusion, and
        return the keywords the function's signature asks for: the churn keywords of
        ``extra_params`` (read from ``p``) and ``eta`` (recorded when not 1)."""
        cfg = self.model_wrap_cfg
        cfg.p, cfg.step = p, 0
        cfg.mask, cfg.nmask = getattr(p, "mask", None), getattr(p, "nmask", None)
        cfg.image_cfg_scale = getattr(p, "image_cfg_scale", None)
        self.eta = shared.opts.eta_ancestral if p.eta is None else p.eta
        self.s_min_uncond = getattr(p, "s_min_uncond", 0.0)
        k_diffusion.sampling.torch = TorchHijack(p)

        accepted = inspect.signature(self.func).parameters
        keywords = {name: getattr(p, name) for name in self.extra_params if name in accepted and hasattr(p, name)}
        if "eta" in accepted:
            keywords["eta"] = self.eta
            if self.eta != 1.0:
                p.extra_generation_params["Eta"] = self.eta
        return keywords

    def create_noise_sampler(self, x, sigmas, p):
        """The noise of a ``brownian_noise`` sampler: a Brownian tree per image of this
        batch, each seeded with its image's seed, over the nonzero sigmas."""
        if shared.opts.no_dpmpp_sde_batch_determinism:
            return None
        first = p.iteration * p.batch_size
        positive = sigmas[sigmas > 0]
        return k_diffusion.sampling.BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(),
                                                             seed=p.all_seeds[first:first + p.batch_size])
