"""``modules.sd_samplers_kdiffusion``: the built-in k-diffusion samplers, ``KDiffusionSampler``
and its CFG denoiser (docs/webui-api.md, "Registration", "Sampler options", "Schedules", "The
sampler call").

``samplers_k_diffusion`` holds the rows (label, function name, aliases, options) of the
samplers the itermix ones are modelled on, with A1111 1.10.1's options. The model wrapper
is the real ``k_diffusion.external.CompVisDenoiser`` in A1111; in Forge it is
:class:`ForgeModelWrap`, with the ``predictor`` whose ``noise_scaling`` Forge noises with.
"""

import inspect

import k_diffusion.external
import k_diffusion.sampling
import torch

from modules import FLAVOUR, devices, sd_samplers_cfg_denoiser, sd_samplers_common, sd_schedulers, shared
from modules.sd_samplers_common import SamplerData

samplers_k_diffusion = [
    ("DPM++ 2M", "sample_dpmpp_2m", ["k_dpmpp_2m"], {"scheduler": "karras"}),
    ("DPM++ SDE", "sample_dpmpp_sde", ["k_dpmpp_sde"],
     {"scheduler": "karras", "second_order": True, "brownian_noise": True}),
    ("DPM++ 2M SDE", "sample_dpmpp_2m_sde", ["k_dpmpp_2m_sde"], {"scheduler": "exponential", "brownian_noise": True}),
    ("DPM++ 2S a", "sample_dpmpp_2s_ancestral", ["k_dpmpp_2s_a"],
     {"scheduler": "karras", "uses_ensd": True, "second_order": True}),
    ("Euler a", "sample_euler_ancestral", ["k_euler_a", "k_euler_ancestral"], {"uses_ensd": True}),
    ("Euler", "sample_euler", ["k_euler"], {}),
    ("Heun", "sample_heun", ["k_heun"], {"second_order": True}),
    ("DPM2", "sample_dpm_2", ["k_dpm_2"], {"scheduler": "karras", "discard_next_to_last_sigma": True,
                                           "second_order": True}),
    ("DPM2 a", "sample_dpm_2_ancestral", ["k_dpm_2_a"],
     {"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True, "second_order": True}),
]


def _sampler_data(label, function, aliases, options):
    def constructor(sd_model):
        return KDiffusionSampler(function, sd_model)

    return SamplerData(label, constructor, aliases, options)


samplers_data_k_diffusion = [_sampler_data(*row) for row in samplers_k_diffusion]

# The churn keywords, by function NAME: a function handed over as an object gets none.
_CHURN = ["s_churn", "s_tmin", "s_tmax", "s_noise"]
sampler_extra_params = {
    **{name: list(_CHURN) for name in ("sample_euler", "sample_heun", "sample_dpm_2")},
    **{name: ["s_noise"] for name in ("sample_dpm_2_ancestral", "sample_dpmpp_2s_ancestral", "sample_dpmpp_sde",
                                      "sample_dpmpp_2m_sde")},
}


def _per_image(sigma, like):
    """``sigma`` (a number or one per image) shaped to multiply a batch like ``like``."""
    return torch.as_tensor(sigma).reshape(-1, *[1] * (like.ndim - 1))


class PredictionEps:
    """Forge's predictor of an eps model, in k-diffusion's convention ``x = x0 + sigma noise``."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        sigma = _per_image(sigma, noise)
        return latent_image + noise * (torch.sqrt(1.0 + sigma ** 2) if max_denoise else sigma)


class PredictionFlow:
    """Forge's predictor of a flow model: ``x`` goes from ``x0`` at sigma 0 to the noise at 1."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return torch.lerp(latent_image, noise, _per_image(sigma, noise).to(noise.dtype))


class ForgeModelWrap(torch.nn.Module):
    """Forge's ``model_wrap``: a denoiser with a ``sigmas`` table and a ``predictor``. An eps
    model runs through the real ``k_diffusion.external.CompVisDenoiser``; a flow model
    (``sd_model.parameterization == "flow"``, its ``apply_model`` giving the velocity at
    ``t = 1000 sigma``) is denoised as ``x - sigma v``, on linear times shifted by :attr:`SHIFT`."""

    SHIFT = 3.0

    def __init__(self, sd_model):
        super().__init__()
        self.inner_model = sd_model
        is_flow = getattr(sd_model, "parameterization", "eps") == "flow"
        self.predictor = PredictionFlow() if is_flow else PredictionEps()
        self.eps_denoiser = None if is_flow else k_diffusion.external.CompVisDenoiser(sd_model, quantize=False)
        if is_flow:
            self.sigmas = self.shifted(torch.linspace(1e-3, 1, 1000))
        else:
            self.sigmas = self.eps_denoiser.sigmas

    def shifted(self, t):
        return self.SHIFT * t / (1 + (self.SHIFT - 1) * t)

    def get_sigmas(self, n):
        if self.eps_denoiser is not None:
            return self.eps_denoiser.get_sigmas(n)
        return self.shifted(torch.linspace(1, 0, n + 1))

    def forward(self, x, sigma, cond):
        if self.eps_denoiser is not None:
            return self.eps_denoiser(x, sigma, cond=cond)
        velocity = self.inner_model.apply_model(x, sigma * 1000, cond=cond)
        return x - _per_image(sigma, x) * velocity


class CFGDenoiserKDiffusion(sd_samplers_cfg_denoiser.CFGDenoiser):
    @property
    def inner_model(self):
        return self.sampler.model_wrap


class KDiffusionSampler(sd_samplers_common.Sampler):
    def __init__(self, funcname, sd_model, options=None):
        super().__init__(funcname)
        self.func = funcname if callable(funcname) else getattr(k_diffusion.sampling, funcname)
        self.extra_params = sampler_extra_params.get(funcname, [])
        self.options = options or {}
        if FLAVOUR == "forge":
            self.model_wrap = ForgeModelWrap(sd_model)
        else:
            self.model_wrap = k_diffusion.external.CompVisDenoiser(sd_model, quantize=False)
        self.model_wrap_cfg = CFGDenoiserKDiffusion(self)
        self.last_sigma_sched = self.last_xi = None  # stand-in only: what the tests compare against

    def _scheduler(self, p):
        """The UI's scheduler for this pass; "Automatic" stands for the sampler's own."""
        label = (p.hr_scheduler if p.is_hr_pass else p.scheduler) or "Automatic"
        name = self.config.options.get("scheduler") if label == "Automatic" else label
        return sd_schedulers.schedulers_map.get(name)

    def get_sigmas(self, p, steps):
        """The schedule of ``steps`` steps, on the CPU: the model's own, or the scheduler's
        over the model's sigma range (recorded in the infotext); a
        ``discard_next_to_last_sigma`` sampler (or ``opts.always_discard_next_to_last_sigma``)
        computes one step more and drops the next-to-last sigma."""
        own = self.config is not None and self.config.options.get("discard_next_to_last_sigma", False)
        forced = not own and shared.opts.always_discard_next_to_last_sigma
        if forced:  # only a setting's doing goes into the infotext
            p.extra_generation_params["Discard penultimate sigma"] = True
        discard = own or forced
        n = steps + 1 if discard else steps

        scheduler = self._scheduler(p)
        function = getattr(scheduler, "function", None)
        if function is None:
            sigmas = self.model_wrap.get_sigmas(n)
        else:
            self._record_scheduler(p, scheduler.label)
            table = self.model_wrap.sigmas  # ascending
            sigmas = function(n=n, sigma_min=float(table[0]), sigma_max=float(table[-1]), device=devices.cpu)
        if discard:
            sigmas = sigmas[torch.arange(len(sigmas)) != len(sigmas) - 2]
        return sigmas.cpu()

    @staticmethod
    def _record_scheduler(p, label):
        """The first pass's scheduler, and the hires pass's where it differs."""
        recorded = p.extra_generation_params
        if not p.is_hr_pass:
            recorded["Schedule type"] = label
        elif recorded.get("Schedule type") != label:
            recorded["Hires schedule type"] = label

    def extra_args(self, p, conditioning, unconditional_conditioning, image_conditioning):
        """The five keywords the CFG denoiser's forward takes besides ``x`` and ``sigma``."""
        return dict(cond=conditioning, image_cond=image_conditioning, uncond=unconditional_conditioning,
                    cond_scale=p.cfg_scale, s_min_uncond=self.s_min_uncond)

    def _keywords(self, p, noise_like, sigmas, schedule_values):
        """``initialize(p)``'s keywords, then those of ``schedule_values`` that the
        function's signature names, then ``noise_sampler`` (``brownian_noise``, whatever the
        signature) and Forge's ``solver_type``, as the options say."""
        keywords = self.initialize(p)
        accepted = inspect.signature(self.func).parameters
        keywords.update((name, value) for name, value in schedule_values.items() if name in accepted)
        options = self.config.options
        if options.get("brownian_noise", False):
            keywords["noise_sampler"] = self.create_noise_sampler(noise_like, sigmas, p)
        if options.get("solver_type") == "heun":
            keywords["solver_type"] = "heun"
        return keywords

    def _run(self, p, x, steps, keywords, conditioning, unconditional_conditioning, image_conditioning):
        self.sampler_extra_args = self.extra_args(p, conditioning, unconditional_conditioning, image_conditioning)
        return self.launch_sampling(steps, lambda: self.func(self.model_wrap_cfg, x, extra_args=self.sampler_extra_args,
                                                             disable=False, callback=self.callback_state, **keywords))

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps = steps or p.steps
        sigmas = self.get_sigmas(p, steps)
        if FLAVOUR == "forge":
            x = self.model_wrap.predictor.noise_scaling(sigmas[0], x, torch.zeros_like(x),
                                                        max_denoise=shared.opts.sgm_noise_multiplier)
        else:
            x = x * (torch.sqrt(1.0 + sigmas[0] ** 2.0) if shared.opts.sgm_noise_multiplier else sigmas[0])
        table = self.model_wrap.sigmas
        keywords = self._keywords(p, x, sigmas, {"n": steps, "sigma_min": float(table[0]),
                                                 "sigma_max": float(table[-1]), "sigmas": sigmas})
        self.last_latent = x
        self.last_sigma_sched = sigmas
        return self._run(p, x, steps, keywords, conditioning, unconditional_conditioning, image_conditioning)

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None,
                       image_conditioning=None):
        steps, t_enc = sd_samplers_common.setup_img2img_steps(p, steps)
        sigmas = self.get_sigmas(p, steps)
        sigma_sched = sigmas[steps - t_enc - 1:]
        if FLAVOUR == "forge":
            xi = self.model_wrap.predictor.noise_scaling(sigma_sched[0], noise, x, max_denoise=False)
        else:
            xi = x + noise * sigma_sched[0]
        extra_noise = shared.opts.img2img_extra_noise
        if extra_noise > 0:
            p.extra_generation_params["Extra noise"] = extra_noise
            xi = xi + noise * extra_noise
        # sigma_min is the last sigma above 0: the samplers that take it reject 0
        keywords = self._keywords(p, x, sigmas, {"n": len(sigma_sched) - 1, "sigma_min": sigma_sched[-2],
                                                 "sigma_max": sigma_sched[0], "sigma_sched": sigma_sched,
                                                 "sigmas": sigma_sched})
        self.model_wrap_cfg.init_latent = x
        self.last_latent = x
        self.last_xi, self.last_sigma_sched = xi, sigma_sched
        return self._run(p, xi, t_enc + 1, keywords, conditioning, unconditional_conditioning, image_conditioning)
