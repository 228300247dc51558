"""``modules.sd_samplers_common``: ``SamplerData``, the interrupt exception, img2img steps,
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
        # options must be a dict: .get on None fails here as in the webui's API listing.
        if self.options.get("second_order", False):
            steps = steps * 2
        return steps


class InterruptedException(BaseException):
    pass


def setup_img2img_steps(p, steps=None):
    """``(steps, t_enc)``: the full schedule length and how many of its steps the
    denoising strength runs; the sampler then uses ``sigmas[steps - t_enc - 1:]``."""
    if shared.opts.img2img_fix_steps or steps is not None:
        requested = steps or p.steps
        steps = int(requested / min(p.denoising_strength, 0.999)) if p.denoising_strength > 0 else 0
        return steps, requested - 1
    return p.steps, int(min(p.denoising_strength, 0.999) * p.steps)


def store_latent(decoded):
    shared.state.current_latent = decoded


def apply_refiner(cfg_denoiser, x):
    """Whether the refiner model took over (it reloads the model and the conditioning); the
    stand-in has no refiner."""
    return False


def is_sampler_using_eta_noise_seed_delta(p):
    """Whether the infotext records ENSD: the first-pass sampler has ``uses_ensd`` and its
    eta is not 0."""
    from modules import sd_samplers

    config = sd_samplers.find_sampler_config(p.sampler_name)
    eta = p.eta
    if eta is None and p.sampler is not None:
        eta = p.sampler.eta
    if eta is None and config is not None:
        eta = 0 if config.options.get("default_eta_is_0", False) else 1.0
    if eta == 0:
        return False
    return config.options.get("uses_ensd", False)


class TorchHijack:
    """Replaces ``k_diffusion.sampling.torch``: ``randn_like`` inside k_diffusion.sampling
    is the job's next per-image draw ``p.rng.next()``, whatever its argument; everything
    else is torch."""

    def __init__(self, p):
        self.rng = p.rng

    def __getattr__(self, item):
        if item == "randn_like":
            return self.randn_like
        return getattr(torch, item)

    def randn_like(self, x):
        return self.rng.next()


class Sampler:
    def __init__(self, funcname):
        self.funcname = funcname
        self.func = funcname
        self.extra_params = []
        self.sampler_noises = None
        self.stop_at = None
        self.eta = None
        self.config = None  # set by sd_samplers.create_sampler
        self.last_latent = None
        self.s_min_uncond = None
        self.eta_option_field = "eta_ancestral"
        self.eta_default = 1.0
        self.p = None
        self.model_wrap_cfg = None
        self.sampler_extra_args = None
        self.options = {}
        self.steps_reported = []  # stand-in only: every callback's ``i``, for the tests

    def callback_state(self, d):
        step = d["i"]
        if self.stop_at is not None and step > self.stop_at:
            raise InterruptedException
        shared.state.sampling_step = step
        self.steps_reported.append(step)

    def launch_sampling(self, steps, func):
        self.model_wrap_cfg.steps = steps
        self.model_wrap_cfg.total_steps = self.config.total_steps(steps)
        shared.state.sampling_steps = steps
        shared.state.sampling_step = 0
        try:
            return func()
        except InterruptedException:
            return self.last_latent

    def initialize(self, p):
        """Hand ``p`` to the CFG denoiser, hijack k-diffusion's ``torch``, and collect the
        keywords the function's signature asks for (churn from ``sampler_extra_params``,
        which is keyed by function name, and ``eta``)."""
        self.p = p
        self.model_wrap_cfg.p = p
        self.model_wrap_cfg.mask = getattr(p, "mask", None)
        self.model_wrap_cfg.nmask = getattr(p, "nmask", None)
        self.model_wrap_cfg.step = 0
        self.model_wrap_cfg.image_cfg_scale = getattr(p, "image_cfg_scale", None)
        self.eta = p.eta if p.eta is not None else getattr(shared.opts, self.eta_option_field, 0.0)
        self.s_min_uncond = getattr(p, "s_min_uncond", 0.0)
        k_diffusion.sampling.torch = TorchHijack(p)

        parameters = inspect.signature(self.func).parameters
        kwargs = {name: getattr(p, name) for name in self.extra_params if hasattr(p, name) and name in parameters}
        if "eta" in parameters:
            if self.eta != self.eta_default:
                p.extra_generation_params["Eta"] = self.eta
            kwargs["eta"] = self.eta
        return kwargs

    def create_noise_sampler(self, x, sigmas, p):
        """The Brownian noise of ``brownian_noise`` samplers: one tree per image of this
        batch, seeded with the image's seed."""
        if shared.opts.no_dpmpp_sde_batch_determinism:
            return None
        sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
        seeds = p.all_seeds[p.iteration * p.batch_size:(p.iteration + 1) * p.batch_size]
        return k_diffusion.sampling.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seeds)
