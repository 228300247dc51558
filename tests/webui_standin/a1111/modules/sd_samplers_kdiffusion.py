"""``modules.sd_samplers_kdiffusion``: the k-diffusion samplers, ``KDiffusionSampler`` and
the CFG denoiser the sampler functions receive as ``model``."""

import inspect

import k_diffusion.external
import k_diffusion.sampling
import torch

from modules import FLAVOUR, sd_samplers_common, shared
from modules.sd_samplers_common import InterruptedException, SamplerData

samplers_k_diffusion = [
    ("Euler", "sample_euler", ["k_euler"], {}),
    ("Euler a", "sample_euler_ancestral", ["k_euler_a"], {"uses_ensd": True}),
    ("DPM++ 2M", "sample_dpmpp_2m", ["k_dpmpp_2m"], {}),
]

samplers_data_k_diffusion = [
    SamplerData(label, lambda model, funcname=funcname: KDiffusionSampler(funcname, model), aliases, options)
    for label, funcname, aliases, options in samplers_k_diffusion
]

# Keyed by function NAME: a sampler given as a callable never gets these.
sampler_extra_params = {
    "sample_euler": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
}


class PredictionEps:
    """Forge's predictor for an eps model (k-diffusion's convention): x = x0 + noise sigma."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        sigma = sigma.reshape(sigma.shape[:1] + (1,) * (noise.ndim - 1))
        scale = torch.sqrt(1.0 + sigma ** 2) if max_denoise else sigma
        return latent_image + noise * scale


class PredictionFlow:
    """Forge's predictor for a flow model: x = sigma noise + (1 - sigma) x0, sigma in [0, 1]."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        sigma = sigma.reshape(sigma.shape[:1] + (1,) * (noise.ndim - 1))
        return sigma * noise + (1.0 - sigma) * latent_image


class ForgeModelWrap(torch.nn.Module):
    """Forge's ``model_wrap``: the denoiser plus its ``predictor``. An eps model goes through
    the real ``k_diffusion.external.CompVisDenoiser``; a flow model (``sd_model.parameterization
    == "flow"``, ``apply_model`` predicting the velocity) is denoised as ``x - sigma v``."""

    def __init__(self, sd_model):
        super().__init__()
        self.flow = getattr(sd_model, "parameterization", "eps") == "flow"
        self.sd_model = sd_model
        self.predictor = PredictionFlow() if self.flow else PredictionEps()
        self.kd = None if self.flow else k_diffusion.external.CompVisDenoiser(sd_model, quantize=False)

    def get_sigmas(self, n):
        if self.kd is not None:
            return self.kd.get_sigmas(n)
        t = torch.linspace(1, 0, n + 1)
        shift = 3.0
        return shift * t / (1 + (shift - 1) * t)

    def forward(self, x, sigma, cond):
        if self.kd is not None:
            return self.kd(x, sigma, cond=cond)
        v = self.sd_model.apply_model(x, sigma * 1000, cond=cond)
        return x - sigma.reshape(-1, 1, 1, 1) * v


class CFGDenoiser(torch.nn.Module):
    """Classifier-free guidance around ``sampler.model_wrap``: forward kwargs are exactly
    the keys of ``sampler_extra_args``. Inpainting is handled here (``init_latent`` blended
    in by ``mask``); an interrupted job raises ``InterruptedException``."""

    def __init__(self, sampler):
        super().__init__()
        self.sampler = sampler
        self.p = None
        self.init_latent = None
        self.mask = None
        self.nmask = None
        self.step = 0

    @property
    def inner_model(self):
        return self.sampler.model_wrap

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        if shared.state.interrupted or shared.state.skipped:
            raise InterruptedException
        x_in = torch.cat([x, x])
        sigma_in = torch.cat([sigma, sigma])
        cond_in = torch.cat([cond, uncond])
        denoised_cond, denoised_uncond = self.inner_model(x_in, sigma_in, cond=cond_in).chunk(2)
        denoised = denoised_uncond + (denoised_cond - denoised_uncond) * cond_scale
        if self.mask is not None:
            denoised = self.init_latent * self.mask + self.nmask * denoised
        self.step += 1
        return denoised


class TorchHijack:
    """Replaces ``k_diffusion.sampling.torch``: ``randn_like`` inside k_diffusion.sampling
    draws from the job's seeded RNG ``p.rng``; everything else is torch."""

    def __init__(self, p):
        self.p = p

    def __getattr__(self, item):
        if item == "randn_like":
            return self.randn_like
        return getattr(torch, item)

    def randn_like(self, x):
        noise = self.p.rng.next()
        if noise.shape == x.shape:
            return noise.to(x.device, x.dtype)
        return torch.randn_like(x)


class KDiffusionSampler:
    def __init__(self, funcname, sd_model, options=None):
        self.funcname = funcname
        self.func = funcname if callable(funcname) else getattr(k_diffusion.sampling, funcname)
        self.extra_params = sampler_extra_params.get(funcname, [])
        self.options = options or {}
        self.config = None
        self.p = None
        self.eta = None
        self.s_min_uncond = 0.0
        self.stop_at = None
        self.last_latent = None
        self.sampler_extra_args = None
        self.steps_reported = []
        if FLAVOUR == "forge":
            self.model_wrap = ForgeModelWrap(sd_model)
        else:
            self.model_wrap = k_diffusion.external.CompVisDenoiser(sd_model, quantize=False)
        self.model_wrap_cfg = CFGDenoiser(self)

    def callback_state(self, d):
        step = d["i"]
        if self.stop_at is not None and step > self.stop_at:
            raise InterruptedException
        shared.state.sampling_step = step
        self.steps_reported.append(step)
        self.last_latent = d["denoised"]

    def launch_sampling(self, steps, func):
        shared.state.sampling_steps = steps
        shared.state.sampling_step = 0
        try:
            return func()
        except InterruptedException:
            return self.last_latent

    def initialize(self, p):
        self.p = p
        self.model_wrap_cfg.p = p
        self.model_wrap_cfg.mask = getattr(p, "mask", None)
        self.model_wrap_cfg.nmask = getattr(p, "nmask", None)
        self.model_wrap_cfg.step = 0
        self.eta = getattr(p, "eta", None) or 1.0
        k_diffusion.sampling.torch = TorchHijack(p)

        parameters = inspect.signature(self.func).parameters
        extra_params_kwargs = {}
        for name in self.extra_params:
            if hasattr(p, name) and name in parameters:
                extra_params_kwargs[name] = getattr(p, name)
        if "eta" in parameters:
            extra_params_kwargs["eta"] = self.eta
        if self.config is not None and self.config.options.get("brownian_noise", False):
            # Injected whatever the function's signature (docs/webui-api.md).
            extra_params_kwargs["noise_sampler"] = lambda sigma, sigma_next: torch.randn_like(p.rng.next())
        return extra_params_kwargs

    def get_sigmas(self, p, steps):
        return self.model_wrap.get_sigmas(steps)

    def make_extra_args(self, p, conditioning, unconditional_conditioning, image_conditioning):
        return {
            "cond": conditioning,
            "image_cond": image_conditioning,
            "uncond": unconditional_conditioning,
            "cond_scale": p.cfg_scale,
            "s_min_uncond": self.s_min_uncond,
        }

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps = steps or p.steps
        sigmas = self.get_sigmas(p, steps)
        if shared.opts.sgm_noise_multiplier:
            x = x * torch.sqrt(1.0 + sigmas[0] ** 2.0)
        else:
            x = x * sigmas[0]

        extra_params_kwargs = self.initialize(p)
        parameters = inspect.signature(self.func).parameters
        if "n" in parameters:
            extra_params_kwargs["n"] = steps
        if "sigma_min" in parameters:
            extra_params_kwargs["sigma_min"] = sigmas[-2]
        if "sigma_max" in parameters:
            extra_params_kwargs["sigma_max"] = sigmas[0]
        if "sigmas" in parameters:
            extra_params_kwargs["sigmas"] = sigmas

        self.last_latent = x
        self.sampler_extra_args = self.make_extra_args(p, conditioning, unconditional_conditioning,
                                                       image_conditioning)
        return self.launch_sampling(steps, lambda: self.func(
            self.model_wrap_cfg, x, extra_args=self.sampler_extra_args, disable=False,
            callback=self.callback_state, **extra_params_kwargs))

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None,
                       image_conditioning=None):
        steps, t_enc = sd_samplers_common.setup_img2img_steps(p, steps)
        sigmas = self.get_sigmas(p, steps)
        sigma_sched = sigmas[steps - t_enc - 1:]

        if FLAVOUR == "forge":
            xi = self.model_wrap.predictor.noise_scaling(sigma_sched[0], noise, x, max_denoise=False)
        else:
            xi = x + noise * sigma_sched[0]
            if shared.opts.img2img_extra_noise > 0:
                xi = xi + noise * shared.opts.img2img_extra_noise

        extra_params_kwargs = self.initialize(p)
        parameters = inspect.signature(self.func).parameters
        if "sigma_min" in parameters:
            extra_params_kwargs["sigma_min"] = sigma_sched[-2]
        if "sigma_max" in parameters:
            extra_params_kwargs["sigma_max"] = sigma_sched[0]
        if "n" in parameters:
            extra_params_kwargs["n"] = len(sigma_sched) - 1
        if "sigma_sched" in parameters:
            extra_params_kwargs["sigma_sched"] = sigma_sched
        if "sigmas" in parameters:
            extra_params_kwargs["sigmas"] = sigma_sched

        self.model_wrap_cfg.init_latent = x
        self.last_latent = x
        self.sampler_extra_args = self.make_extra_args(p, conditioning, unconditional_conditioning,
                                                       image_conditioning)
        # What the tests compare against: the webui's own first latent and schedule.
        self.last_xi = xi
        self.last_sigma_sched = sigma_sched
        return self.launch_sampling(t_enc + 1, lambda: self.func(
            self.model_wrap_cfg, xi, extra_args=self.sampler_extra_args, disable=False,
            callback=self.callback_state, **extra_params_kwargs))
