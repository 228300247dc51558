"""``modules.sd_samplers_kdiffusion``: the built-in k-diffusion samplers, ``KDiffusionSampler``
and its CFG denoiser (docs/webui-api.md, "Registration", "Sampler options", "Schedules", "The
sampler call").

``samplers_k_diffusion`` has the rows (label, function name, aliases, options) of the
samplers the itermix ones are built on, with A1111 1.10.1's options. Forge's model wrapper
is modelled by :class:`ForgeModelWrap`: the real ``k_diffusion.external.CompVisDenoiser`` for
an eps model, a flow denoiser ``x - sigma v`` otherwise, and the ``predictor`` whose
``noise_scaling`` Forge noises with."""

import inspect

import k_diffusion.external
import k_diffusion.sampling
import torch

from modules import FLAVOUR, devices, sd_samplers_cfg_denoiser, sd_samplers_common, sd_schedulers, shared
from modules.sd_samplers_common import SamplerData

samplers_k_diffusion = [
    ("DPM++ 2M", "sample_dpmpp_2m", ["k_dpmpp_2m"], {"scheduler": "karras"}),
    ("DPM++ SDE", "sample_dpmpp_sde", ["k_dpmpp_sde"], {"scheduler": "karras", "second_order": True,
                                                       "brownian_noise": True}),
    ("DPM++ 2M SDE", "sample_dpmpp_2m_sde", ["k_dpmpp_2m_sde"], {"scheduler": "exponential",
                                                                "brownian_noise": True}),
    ("DPM++ 2S a", "sample_dpmpp_2s_ancestral", ["k_dpmpp_2s_a"], {"scheduler": "karras", "uses_ensd": True,
                                                                  "second_order": True}),
    ("Euler a", "sample_euler_ancestral", ["k_euler_a", "k_euler_ancestral"], {"uses_ensd": True}),
    ("Euler", "sample_euler", ["k_euler"], {}),
    ("LMS", "sample_lms", ["k_lms"], {}),
    ("Heun", "sample_heun", ["k_heun"], {"second_order": True}),
    ("DPM2", "sample_dpm_2", ["k_dpm_2"], {"scheduler": "karras", "discard_next_to_last_sigma": True,
                                           "second_order": True}),
    ("DPM2 a", "sample_dpm_2_ancestral", ["k_dpm_2_a"], {"scheduler": "karras", "discard_next_to_last_sigma": True,
                                                         "uses_ensd": True, "second_order": True}),
]

samplers_data_k_diffusion = [
    SamplerData(label, lambda model, funcname=funcname: KDiffusionSampler(funcname, model), aliases, options)
    for label, funcname, aliases, options in samplers_k_diffusion
    if callable(funcname) or hasattr(k_diffusion.sampling, funcname)
]

# Keyed by function NAME: a sampler given as a callable never gets these.
sampler_extra_params = {
    "sample_euler": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
    "sample_heun": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
    "sample_dpm_2": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
    "sample_dpm_2_ancestral": ["s_noise"],
    "sample_dpmpp_2s_ancestral": ["s_noise"],
    "sample_dpmpp_sde": ["s_noise"],
    "sample_dpmpp_2m_sde": ["s_noise"],
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
    """Forge's ``model_wrap``: the denoiser, its ``sigmas`` table and its ``predictor``. An
    eps model goes through the real ``k_diffusion.external.CompVisDenoiser``; a flow model
    (``sd_model.parameterization == "flow"``, ``apply_model`` predicting the velocity) is
    denoised as ``x - sigma v`` on a shifted linear schedule."""

    SHIFT = 3.0

    def __init__(self, sd_model):
        super().__init__()
        self.flow = getattr(sd_model, "parameterization", "eps") == "flow"
        self.inner_model = sd_model
        self.predictor = PredictionFlow() if self.flow else PredictionEps()
        self.kd = None if self.flow else k_diffusion.external.CompVisDenoiser(sd_model, quantize=False)
        self.sigmas = self.kd.sigmas if self.kd is not None else self.flow_sigmas(torch.linspace(1e-3, 1, 1000))

    def flow_sigmas(self, t):
        return self.SHIFT * t / (1 + (self.SHIFT - 1) * t)

    def get_sigmas(self, n):
        if self.kd is not None:
            return self.kd.get_sigmas(n)
        return self.flow_sigmas(torch.linspace(1, 0, n + 1))

    def forward(self, x, sigma, cond):
        if self.kd is not None:
            return self.kd(x, sigma, cond=cond)
        v = self.inner_model.apply_model(x, sigma * 1000, cond=cond)
        return x - sigma.reshape(-1, 1, 1, 1) * v


class CFGDenoiserKDiffusion(sd_samplers_cfg_denoiser.CFGDenoiser):
    @property
    def inner_model(self):
        return self.sampler.model_wrap


class KDiffusionSampler(sd_samplers_common.Sampler):
    def __init__(self, funcname, sd_model, options=None):
        super().__init__(funcname)
        self.extra_params = sampler_extra_params.get(funcname, [])
        self.options = options or {}
        self.func = funcname if callable(funcname) else getattr(k_diffusion.sampling, funcname)
        if FLAVOUR == "forge":
            self.model_wrap = ForgeModelWrap(sd_model)
        else:
            self.model_wrap = k_diffusion.external.CompVisDenoiser(sd_model, quantize=False)
        self.model_wrap_cfg = CFGDenoiserKDiffusion(self)

    def get_sigmas(self, p, steps):
        """The schedule: the UI's scheduler, or with "Automatic" the sampler's
        ``options["scheduler"]`` (none: the model's own), with one step more and the
        next-to-last sigma dropped for ``discard_next_to_last_sigma`` samplers."""
        discard = self.config is not None and self.config.options.get("discard_next_to_last_sigma", False)
        if shared.opts.always_discard_next_to_last_sigma and not discard:
            discard = True
            p.extra_generation_params["Discard penultimate sigma"] = True
        steps += 1 if discard else 0

        name = (p.hr_scheduler if p.is_hr_pass else p.scheduler) or "Automatic"
        if name == "Automatic":
            name = self.config.options.get("scheduler", None)
        scheduler = sd_schedulers.schedulers_map.get(name)

        m_sigma_min, m_sigma_max = self.model_wrap.sigmas[0].item(), self.model_wrap.sigmas[-1].item()
        sigma_min, sigma_max = (0.1, 10) if shared.opts.use_old_karras_scheduler_sigmas else (m_sigma_min, m_sigma_max)
        if p.sampler_noise_scheduler_override:
            sigmas = p.sampler_noise_scheduler_override(steps)
        elif scheduler is None or scheduler.function is None:
            sigmas = self.model_wrap.get_sigmas(steps)
        else:
            kwargs = {"sigma_min": sigma_min, "sigma_max": sigma_max}
            if scheduler.label != "Automatic" and not p.is_hr_pass:
                p.extra_generation_params["Schedule type"] = scheduler.label
            elif scheduler.label != p.extra_generation_params.get("Schedule type"):
                p.extra_generation_params["Hires schedule type"] = scheduler.label
            if scheduler.need_inner_model:
                kwargs["inner_model"] = self.model_wrap
            sigmas = scheduler.function(n=steps, **kwargs, device=devices.cpu)
        if discard:
            sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
        return sigmas.cpu()

    def sampler_kwargs(self, p, x, sigmas, by_signature):
        """The keywords the function's signature asks for (from ``by_signature``, the values
        of ``n``, ``sigma_min``, ``sigma_max``, ``sigma_sched``, ``sigmas`` for this call) and
        those the sampler's options inject."""
        kwargs = self.initialize(p)
        parameters = inspect.signature(self.func).parameters
        kwargs.update({name: value for name, value in by_signature.items() if name in parameters})
        if self.config.options.get("brownian_noise", False):
            # Injected whatever the function's signature (docs/webui-api.md, "Sampler options").
            kwargs["noise_sampler"] = self.create_noise_sampler(x, sigmas, p)
        if self.config.options.get("solver_type", None) == "heun":
            kwargs["solver_type"] = "heun"
        return kwargs

    def extra_args(self, p, conditioning, unconditional_conditioning, image_conditioning):
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
        if FLAVOUR == "forge":
            x = self.model_wrap.predictor.noise_scaling(sigmas[0], x, torch.zeros_like(x),
                                                        max_denoise=shared.opts.sgm_noise_multiplier)
        elif shared.opts.sgm_noise_multiplier:
            x = x * torch.sqrt(1.0 + sigmas[0] ** 2.0)
        else:
            x = x * sigmas[0]
        kwargs = self.sampler_kwargs(p, x, sigmas, {
            "n": steps, "sigma_min": self.model_wrap.sigmas[0].item(), "sigma_max": self.model_wrap.sigmas[-1].item(),
            "sigmas": sigmas})
        self.last_latent = x
        self.sampler_extra_args = self.extra_args(p, conditioning, unconditional_conditioning, image_conditioning)
        self.last_sigma_sched = sigmas  # stand-in only: what the tests compare against
        return self.launch_sampling(steps, lambda: self.func(
            self.model_wrap_cfg, x, extra_args=self.sampler_extra_args, disable=False,
            callback=self.callback_state, **kwargs))

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
            p.extra_generation_params["Extra noise"] = shared.opts.img2img_extra_noise
            xi = xi + noise * shared.opts.img2img_extra_noise
        kwargs = self.sampler_kwargs(p, x, sigmas, {
            "sigma_min": sigma_sched[-2], "sigma_max": sigma_sched[0], "n": len(sigma_sched) - 1,
            "sigma_sched": sigma_sched, "sigmas": sigma_sched})
        self.model_wrap_cfg.init_latent = x
        self.last_latent = x
        self.sampler_extra_args = self.extra_args(p, conditioning, unconditional_conditioning, image_conditioning)
        self.last_xi, self.last_sigma_sched = xi, sigma_sched  # stand-in only: what the tests compare against
        return self.launch_sampling(t_enc + 1, lambda: self.func(
            self.model_wrap_cfg, xi, extra_args=self.sampler_extra_args, disable=False,
            callback=self.callback_state, **kwargs))
